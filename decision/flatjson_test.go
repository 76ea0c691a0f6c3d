package decision

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"
)

// decoderWalk is walkObject as it was written with encoding/json's Decoder: the reference
// FuzzWalkObject holds the scanner to.
func decoderWalk(data []byte, fn func(key string, val json.Token) error) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return errors.New("not a JSON object")
	}
	seen := make(map[string]struct{}, 10)
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return errors.New("invalid JSON")
		}
		key := t.(string)
		if _, dup := seen[key]; dup {
			return fmt.Errorf("duplicate member %q", key)
		}
		seen[key] = struct{}{}
		val, err := dec.Token()
		if err != nil {
			return errors.New("invalid JSON")
		}
		if _, nested := val.(json.Delim); nested {
			return fmt.Errorf("member %q is not a scalar", key)
		}
		if err := fn(key, val); err != nil {
			return err
		}
	}
	if t, err := dec.Token(); err != nil || t != json.Delim('}') {
		return errors.New("invalid JSON")
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("trailing data after the object")
	}
	return nil
}

// walkTrace is what a walk told its callback, and how it ended.
func walkTrace(walk func([]byte, func(string, json.Token) error) error, data []byte) string {
	var b strings.Builder
	err := walk(data, func(key string, val json.Token) error {
		fmt.Fprintf(&b, "%q=%#v;", key, val)
		if key == "stop" { // a callback's error ends the walk where it is
			return errors.New("stopped")
		}
		return nil
	})
	fmt.Fprintf(&b, " err=%v", err)
	return b.String()
}

var walkSeeds = []string{
	``, ` `, `{}`, ` { } `, `[]`, `"x"`, `1`, `null`, `{`, `}`, `{"a"}`, `{"a":}`, `{"a":1,}`, `{,"a":1}`,
	`{"a":1 "b":2}`, `{"a":1}}`, `{"a":1} x`, `{"a":1}{}`, "{\"a\":1}\x00", "{\"a\":1}\n\t\r ",
	`{"a":1,"a":2}`, `{"a":1,"\u0061":2}`, `{"a":{"b":1}}`, `{"a":[1]}`, `{"a":[}`, `{"stop":1,"x":[}`,
	`{"a":true,"b":false,"c":null,"d":"s"}`, `{"a":tru}`, `{"a":truex}`, `{"a":nul}`,
	`{"n":0,"m":-0,"o":1.5,"p":-12e+3,"q":1E-2,"r":0.0e0}`, `{"n":01}`, `{"n":-}`, `{"n":1.}`, `{"n":.5}`,
	`{"n":1e}`, `{"n":+1}`, `{"n":1x}`, `{"n":0x1}`, `{"n":NaN}`, `{"n":-Infinity}`,
	`{"s":"a\"b\\c\/d\b\f\n\r\t\u00e9\ud83d\ude00"}`, `{"s":"\ud83d"}`, `{"s":"\x"}`, `{"s":"\u12"}`,
	"{\"s\":\"tab\there\"}", "{\"s\":\"\xff\xfe\"}", "{\"\xff\":1,\"\xfe\":2}", `{"s":"é"}`, `{"s":"unterminated}`,
	`{"m":"GET","p":"/api/organizations/o1","r":"GET /api/organizations/{orgId}","k":"organization","org":"o1","app":false,"sub":"u1","jti":"abc","iat":1764900000,"exp":1764900030}`,
	`{"alg":"EdDSA","typ":"orgauthz-decision+jwt","kid":"k1"}`, `{"a":1,"stop":2,"c":[`,
}

// FuzzWalkObject: the scanner gives the callback what encoding/json's Decoder gave it, in the same
// order, and ends with the same error (or none), on any input.
func FuzzWalkObject(f *testing.F) {
	for _, s := range walkSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if got, want := walkTrace(walkObject, data), walkTrace(decoderWalk, data); got != want {
			t.Errorf("walkObject(%q):\n got %s\nwant %s", data, got, want)
		}
	})
}

func BenchmarkDecodeClaims(b *testing.B) {
	s := NewSigner(newKey(b), 10*time.Second)
	tok := sign(b, s, sampleClaims())
	p64 := strings.Split(tok, ".")[1]
	payload, err := b64.DecodeString(p64)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := decodeClaims(payload); err != nil {
			b.Fatal(err)
		}
	}
}
