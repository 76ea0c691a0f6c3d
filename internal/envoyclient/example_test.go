package envoyclient

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// examplePath is the CheckRequest a real Envoy sent (OPA's Envoy primer), see SOURCE.txt there.
const examplePath = "../../../shared/envoy/checkrequest-example.json"

var uuidRE = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

// perRequest are the example's values that differ on every request; their format is checked.
var perRequest = map[string]func(v any) error{
	"request.http.id": func(v any) error {
		s, _ := v.(string)
		if _, err := strconv.ParseUint(s, 10, 64); err != nil {
			return fmt.Errorf("not a decimal uint64: %v", v)
		}
		return nil
	},
	"request.time": func(v any) error {
		s, _ := v.(string)
		if _, err := time.Parse(time.RFC3339Nano, s); err != nil {
			return fmt.Errorf("not an RFC 3339 time: %v", v)
		}
		return nil
	},
	"request.http.headers.x-request-id": func(v any) error {
		if s, _ := v.(string); !uuidRE.MatchString(s) {
			return fmt.Errorf("not a version 4 UUID: %v", v)
		}
		return nil
	},
	"source.address.socketAddress.portValue":      port,
	"destination.address.socketAddress.portValue": port,
}

func port(v any) error {
	if f, ok := v.(float64); !ok || f < 1 || f > 65535 || f != float64(int(f)) {
		return fmt.Errorf("not a port: %v", v)
	}
	return nil
}

// addedSinceExample are fields a current Envoy sends that the 2020 capture lacks: Envoy ≥ 1.18
// sets :scheme on HTTP/1 requests, and ext_authz copies it into "scheme".
var addedSinceExample = map[string]any{
	"request.http.headers.:scheme": "http",
	"request.http.scheme":          "http",
}

// exampleTypos are values the OPA docs mangled when the capture was pasted: "172.17.06" is not
// an IPv4 address, and NewCheckRequest accepts only real addresses.
var exampleTypos = map[string][2]any{
	"destination.address.socketAddress.address": {"172.17.06", "172.17.0.6"},
}

func TestNewCheckRequestMatchesEnvoyExample(t *testing.T) {
	raw, err := os.ReadFile(examplePath)
	if err != nil {
		t.Fatal(err)
	}
	var example struct {
		Attributes json.RawMessage `json:"attributes"`
	}
	if err := json.Unmarshal(raw, &example); err != nil {
		t.Fatal(err)
	}
	var want authv3.AttributeContext
	if err := protojson.Unmarshal(example.Attributes, &want); err != nil {
		t.Fatalf("example attributes are not an AttributeContext: %v", err)
	}

	const body = `{"firstname":"Charlie", "lastname":"Opa"}`
	r, err := http.NewRequest("POST", "http://192.168.99.206:30164/people?lang=en", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	r.Header.Set("Accept", "*/*")
	r.Header.Set("Authorization", want.GetRequest().GetHttp().GetHeaders()["authorization"])
	r.Header.Set("Content-Type", "application/json")
	r.Header.Set("User-Agent", "curl/7.54.0")
	got, err := NewCheckRequest(r, Options{WithBody: true, Source: "172.17.0.1:50123", Destination: "172.17.0.6:8000"})
	if err != nil {
		t.Fatal(err)
	}

	gotFields, wantFields := flatten(t, got.GetAttributes()), flatten(t, &want)
	for _, key := range unionKeys(gotFields, wantFields) {
		g, gok := gotFields[key]
		w, wok := wantFields[key]
		if check, ok := perRequest[key]; ok {
			if !gok || !wok {
				t.Errorf("%s: got present %t, example present %t; want both", key, gok, wok)
				continue
			}
			if err := check(w); err != nil {
				t.Errorf("%s: example: %v (the format check is wrong)", key, err)
			}
			if err := check(g); err != nil {
				t.Errorf("%s: %v", key, err)
			}
			continue
		}
		if typo, ok := exampleTypos[key]; ok {
			if w != typo[0] || g != typo[1] {
				t.Errorf("%s = %v (example %v), want %v (example %v)", key, g, w, typo[1], typo[0])
			}
			continue
		}
		if added, ok := addedSinceExample[key]; ok {
			if wok || g != added {
				t.Errorf("%s = %v (example has it: %t), want %v and absent from the example", key, g, wok, added)
			}
			continue
		}
		if !gok || !wok || !reflect.DeepEqual(g, w) {
			t.Errorf("%s = %v (present %t), example %v (present %t)", key, g, gok, w, wok)
		}
	}
	if len(wantFields) < 15 {
		t.Errorf("example has %d fields; the comparison compared almost nothing", len(wantFields))
	}
}

// flatten renders m with the protobuf JSON mapping and returns its leaves by dotted path; an empty
// object is a leaf, so {"metadataContext": {}} is compared too.
func flatten(t *testing.T, m proto.Message) map[string]any {
	t.Helper()
	b, err := protojson.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	out := map[string]any{}
	var walk func(prefix string, v any)
	walk = func(prefix string, v any) {
		obj, ok := v.(map[string]any)
		if !ok || len(obj) == 0 {
			out[prefix] = v
			return
		}
		for k, child := range obj {
			walk(strings.TrimPrefix(prefix+"."+k, "."), child)
		}
	}
	walk("", v)
	return out
}

func unionKeys(a, b map[string]any) []string {
	seen := map[string]bool{}
	for k := range a {
		seen[k] = true
	}
	for k := range b {
		seen[k] = true
	}
	keys := make([]string, 0, len(seen))
	for k := range seen {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
