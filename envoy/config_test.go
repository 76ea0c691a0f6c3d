// Package envoy_test validates the Envoy bootstraps in this folder offline: strict parsing into
// the go-control-plane types Envoy itself is generated from, protoc-gen-validate rules on every
// message (typed configs included), cluster references, and the security settings SECURITY.md
// requires. No Envoy binary exists where this runs; see README.md for what that leaves open.
package envoy_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	streamv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/stream/v3"
	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/resource_monitors/downstream_connections/v3"
	upstreamhttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"
	"sigs.k8s.io/yaml"
)

// maxConfigBytes bounds what the loader reads; the bootstraps are a few KiB.
const maxConfigBytes = 1 << 20

// Names shared with the other parts of orgauthz.
const (
	sidecarCluster = "orgauthz_sidecar"
	proxyCluster   = "mgmtproxy"
	extAuthzType   = "envoy.extensions.filters.http.ext_authz.v3.ExtAuthz"
)

// profile is what differs between the bootstraps.
type profile struct {
	listener string // the one listener's address
}

// bootstraps are the Envoy bootstraps in this folder; every *.yaml here must be one of them or
// listed in notBootstraps, so a new file cannot skip the checks.
var (
	bootstraps = map[string]profile{
		"front-proxy.yaml": {listener: "127.0.0.1:8080"},
		"sidecar.yaml":     {listener: "0.0.0.0:8080"}, // per-pod: the pod's front door
	}
	notBootstraps = []string{"docker-compose.yaml"}
	// upstreams are the only clusters, each on loopback at a fixed port.
	upstreams = map[string]uint32{sidecarCluster: 9191, proxyCluster: 8081}
)

// bootstrap is a parsed and validated Envoy bootstrap.
type bootstrap struct {
	*bootstrapv3.Bootstrap
	typed int // how many google.protobuf.Any were unpacked and validated
}

// loadBootstrap parses JSON strictly (unknown fields are errors), validates every message with
// its protoc-gen-validate rules, and unpacks and validates every google.protobuf.Any at any depth.
func loadBootstrap(js []byte) (*bootstrap, error) {
	if len(js) > maxConfigBytes {
		return nil, fmt.Errorf("config is %d bytes, over %d", len(js), maxConfigBytes)
	}
	var b bootstrapv3.Bootstrap
	if err := (protojson.UnmarshalOptions{DiscardUnknown: false}).Unmarshal(js, &b); err != nil {
		return nil, fmt.Errorf("parse: %w", err)
	}
	if err := b.ValidateAll(); err != nil {
		return nil, fmt.Errorf("validate: %w", err)
	}
	out := &bootstrap{Bootstrap: &b}
	err := walkAnys(b.ProtoReflect(), "bootstrap", func(path string, m proto.Message) error {
		out.typed++
		v, ok := m.(interface{ ValidateAll() error })
		if !ok {
			return fmt.Errorf("%s: %s has no validator", path, m.ProtoReflect().Descriptor().FullName())
		}
		if err := v.ValidateAll(); err != nil {
			return fmt.Errorf("%s: validate: %w", path, err)
		}
		return nil
	})
	return out, err
}

// walkAnys calls visit for the unpacked content of every google.protobuf.Any under m, and walks
// into that content too.
func walkAnys(m protoreflect.Message, path string, visit func(path string, m proto.Message) error) error {
	if a, ok := m.Interface().(*anypb.Any); ok {
		inner, err := a.UnmarshalNew()
		if err != nil {
			return fmt.Errorf("%s: unpack %s: %w", path, a.GetTypeUrl(), err)
		}
		if err := visit(path, inner); err != nil {
			return err
		}
		return walkAnys(inner.ProtoReflect(), path+"("+a.GetTypeUrl()+")", visit)
	}
	var errs []error
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		name := path + "." + string(fd.Name())
		switch {
		case fd.IsList() && fd.Message() != nil:
			for i := range v.List().Len() {
				errs = append(errs, walkAnys(v.List().Get(i).Message(), fmt.Sprintf("%s[%d]", name, i), visit))
			}
		case fd.IsMap() && fd.MapValue().Message() != nil:
			v.Map().Range(func(k protoreflect.MapKey, mv protoreflect.Value) bool {
				errs = append(errs, walkAnys(mv.Message(), fmt.Sprintf("%s[%s]", name, k), visit))
				return true
			})
		case !fd.IsList() && !fd.IsMap() && fd.Message() != nil:
			errs = append(errs, walkAnys(v.Message(), name, visit))
		}
		return true
	})
	return errors.Join(errs...)
}

// unpack returns a's content as a T.
func unpack[T proto.Message](a *anypb.Any) (T, error) {
	var zero T
	m, err := a.UnmarshalNew()
	if err != nil {
		return zero, err
	}
	t, ok := m.(T)
	if !ok {
		return zero, fmt.Errorf("typed_config is %s, want %T", a.GetTypeUrl(), zero)
	}
	return t, nil
}

// hcm is one HTTP connection manager and its ext_authz filter.
type hcm struct {
	*hcmv3.HttpConnectionManager
	extAuthzName string
	extAuthz     *extauthzv3.ExtAuthz
}

// hcms returns the connection manager of every filter chain; a chain with any other network
// filter (tcp_proxy would bypass ext_authz) is an error.
func (b *bootstrap) hcms() ([]hcm, error) {
	var out []hcm
	var errs []error
	for _, l := range b.GetStaticResources().GetListeners() {
		chains := l.GetFilterChains()
		if l.GetDefaultFilterChain() != nil {
			chains = append(chains, l.GetDefaultFilterChain())
		}
		if len(chains) == 0 {
			errs = append(errs, fmt.Errorf("listener %s has no filter chain", l.GetName()))
		}
		for _, fc := range chains {
			if n := len(fc.GetFilters()); n != 1 {
				errs = append(errs, fmt.Errorf("listener %s: a filter chain has %d network filters, want only the HTTP connection manager", l.GetName(), n))
				continue
			}
			m, err := unpack[*hcmv3.HttpConnectionManager](fc.GetFilters()[0].GetTypedConfig())
			if err != nil {
				errs = append(errs, fmt.Errorf("listener %s: %w", l.GetName(), err))
				continue
			}
			h := hcm{HttpConnectionManager: m}
			for _, f := range m.GetHttpFilters() {
				if f.GetTypedConfig().GetTypeUrl() != "type.googleapis.com/"+extAuthzType {
					continue
				}
				if h.extAuthz != nil {
					errs = append(errs, fmt.Errorf("listener %s: two ext_authz filters", l.GetName()))
				}
				h.extAuthzName = f.GetName()
				if h.extAuthz, err = unpack[*extauthzv3.ExtAuthz](f.GetTypedConfig()); err != nil {
					errs = append(errs, err)
				}
			}
			if h.extAuthz == nil {
				errs = append(errs, fmt.Errorf("listener %s: no ext_authz filter", l.GetName()))
				continue
			}
			out = append(out, h)
		}
	}
	return out, errors.Join(errs...)
}

// check is one named security property; run returns every violation.
type check struct {
	name string
	run  func(b *bootstrap, p profile) error
}

// eachHCM runs fn on every connection manager.
func eachHCM(fn func(h hcm) error) func(*bootstrap, profile) error {
	return func(b *bootstrap, _ profile) error {
		hs, err := b.hcms()
		if err != nil {
			return err
		}
		var errs []error
		for _, h := range hs {
			errs = append(errs, fn(h))
		}
		return errors.Join(errs...)
	}
}

func want(ok bool, format string, args ...any) error {
	if ok {
		return nil
	}
	return fmt.Errorf(format, args...)
}

func loopback(a *corev3.Address) (netip.AddrPort, bool) {
	sa := a.GetSocketAddress()
	ip, err := netip.ParseAddr(sa.GetAddress())
	return netip.AddrPortFrom(ip, uint16(sa.GetPortValue())), err == nil && ip.IsLoopback()
}

var checks = []check{
	{"static config only", func(b *bootstrap, _ profile) error {
		// xDS could replace every listener and cluster checked here.
		return want(b.GetDynamicResources() == nil, "dynamic_resources set")
	}},
	{"admin on loopback", func(b *bootstrap, _ profile) error {
		if b.GetAdmin().GetAddress() == nil {
			return nil // no admin interface at all
		}
		ap, ok := loopback(b.GetAdmin().GetAddress())
		return want(ok, "admin listens on %v", ap)
	}},
	{"listener address", func(b *bootstrap, p profile) error {
		ls := b.GetStaticResources().GetListeners()
		if len(ls) != 1 {
			return fmt.Errorf("%d listeners, want 1", len(ls))
		}
		sa := ls[0].GetAddress().GetSocketAddress()
		got := fmt.Sprintf("%s:%d", sa.GetAddress(), sa.GetPortValue())
		return want(got == p.listener, "listener on %s, want %s", got, p.listener)
	}},
	{"clusters exist", func(b *bootstrap, _ profile) error {
		defined := map[string]bool{}
		var errs []error
		for _, c := range b.GetStaticResources().GetClusters() {
			if defined[c.GetName()] {
				errs = append(errs, fmt.Errorf("cluster %q defined twice", c.GetName()))
			}
			defined[c.GetName()] = true
		}
		hs, err := b.hcms()
		errs = append(errs, err)
		for _, h := range hs {
			refs := []string{h.extAuthz.GetGrpcService().GetEnvoyGrpc().GetClusterName()}
			for _, vh := range h.GetRouteConfig().GetVirtualHosts() {
				for _, r := range vh.GetRoutes() {
					refs = append(refs, r.GetRoute().GetCluster())
					for _, wc := range r.GetRoute().GetWeightedClusters().GetClusters() {
						refs = append(refs, wc.GetName())
					}
				}
			}
			for _, ref := range refs {
				if ref != "" && !defined[ref] {
					errs = append(errs, fmt.Errorf("cluster %q is referenced but not defined", ref))
				}
			}
		}
		for name := range upstreams {
			if !defined[name] {
				errs = append(errs, fmt.Errorf("cluster %q missing", name))
			}
		}
		return errors.Join(errs...)
	}},
	{"upstreams on loopback", func(b *bootstrap, _ profile) error {
		var errs []error
		for _, c := range b.GetStaticResources().GetClusters() {
			port, known := upstreams[c.GetName()]
			if !known {
				errs = append(errs, fmt.Errorf("unexpected cluster %q", c.GetName()))
				continue
			}
			if c.GetType() != clusterv3.Cluster_STATIC {
				errs = append(errs, fmt.Errorf("cluster %q is %v, want STATIC", c.GetName(), c.GetType()))
			}
			for _, e := range c.GetLoadAssignment().GetEndpoints() {
				for _, le := range e.GetLbEndpoints() {
					ap, ok := loopback(le.GetEndpoint().GetAddress())
					if !ok || uint32(ap.Port()) != port {
						errs = append(errs, fmt.Errorf("cluster %q endpoint %v, want loopback port %d", c.GetName(), ap, port))
					}
				}
			}
		}
		return errors.Join(errs...)
	}},
	{"sidecar cluster speaks HTTP/2", func(b *bootstrap, _ profile) error {
		for _, c := range b.GetStaticResources().GetClusters() {
			if c.GetName() != sidecarCluster {
				continue
			}
			a := c.GetTypedExtensionProtocolOptions()["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]
			if a == nil {
				return errors.New("no HttpProtocolOptions")
			}
			o, err := unpack[*upstreamhttpv3.HttpProtocolOptions](a)
			if err != nil {
				return err
			}
			return want(o.GetExplicitHttpConfig().GetHttp2ProtocolOptions() != nil, "not explicit HTTP/2")
		}
		return fmt.Errorf("no %s cluster", sidecarCluster)
	}},
	{"path normalisation", eachHCM(func(h hcm) error {
		return errors.Join(
			want(h.GetNormalizePath().GetValue(), "normalize_path is not true"),
			want(h.GetMergeSlashes(), "merge_slashes is not true"))
	})},
	{"escaped slashes rejected", eachHCM(func(h hcm) error {
		got := h.GetPathWithEscapedSlashesAction()
		return want(got == hcmv3.HttpConnectionManager_REJECT_REQUEST, "path_with_escaped_slashes_action %v", got)
	})},
	{"underscore headers rejected", eachHCM(func(h hcm) error {
		got := h.GetCommonHttpProtocolOptions().GetHeadersWithUnderscoresAction()
		return want(got == corev3.HttpProtocolOptions_REJECT_REQUEST, "headers_with_underscores_action %v", got)
	})},
	{"remote address used", eachHCM(func(h hcm) error {
		return want(h.GetUseRemoteAddress().GetValue(), "use_remote_address is not true")
	})},
	{"header and time limits", eachHCM(func(h hcm) error {
		c := h.GetCommonHttpProtocolOptions()
		kb := h.GetMaxRequestHeadersKb().GetValue()
		return errors.Join(
			want(kb > 0 && kb <= 60, "max_request_headers_kb %d, want set and at most 60", kb),
			want(c.GetMaxHeadersCount().GetValue() > 0, "max_headers_count unset"),
			want(c.GetIdleTimeout().AsDuration() > 0, "idle_timeout unset"),
			want(h.GetRequestHeadersTimeout().AsDuration() > 0, "request_headers_timeout unset (slow clients)"),
			want(h.GetStreamIdleTimeout().AsDuration() > 0, "stream_idle_timeout unset"))
	})},
	{"filter order", eachHCM(func(h hcm) error {
		fs := h.GetHttpFilters()
		if len(fs) < 2 {
			return fmt.Errorf("%d HTTP filters, want ext_authz then router", len(fs))
		}
		_, routerErr := unpack[*routerv3.Router](fs[len(fs)-1].GetTypedConfig())
		return errors.Join(
			want(fs[0].GetName() == h.extAuthzName, "first HTTP filter is %s, want ext_authz", fs[0].GetName()),
			routerErr)
	})},
	{"ext_authz fails closed", eachHCM(func(h hcm) error {
		a := h.extAuthz
		return errors.Join(
			want(!a.GetFailureModeAllow(), "failure_mode_allow is true"),
			want(a.GetStatusOnError().GetCode() == typev3.StatusCode_ServiceUnavailable,
				"status_on_error %v, want ServiceUnavailable (503)", a.GetStatusOnError().GetCode()))
	})},
	{"ext_authz timeout", eachHCM(func(h hcm) error {
		t := h.extAuthz.GetGrpcService().GetTimeout()
		return want(t != nil && t.AsDuration() > 0 && t.AsDuration().Seconds() <= 5, "grpc_service.timeout %v, want explicit, at most 5s", t.AsDuration())
	})},
	{"ext_authz gRPC v3 to the sidecar", eachHCM(func(h hcm) error {
		a := h.extAuthz
		return errors.Join(
			want(a.GetTransportApiVersion() == corev3.ApiVersion_V3, "transport_api_version %v", a.GetTransportApiVersion()),
			want(a.GetGrpcService().GetEnvoyGrpc().GetClusterName() == sidecarCluster, "grpc_service is not envoy_grpc %s", sidecarCluster))
	})},
	{"request body checked whole", eachHCM(func(h hcm) error {
		w := h.extAuthz.GetWithRequestBody()
		return errors.Join(
			want(w.GetMaxRequestBytes() == 16384, "with_request_body.max_request_bytes %d, want 16384", w.GetMaxRequestBytes()),
			want(w != nil && !w.GetAllowPartialMessage(), "a partial body may be checked"))
	})},
	{"mutations validated", eachHCM(func(h hcm) error {
		r := h.extAuthz.GetDecoderHeaderMutationRules()
		return errors.Join(
			want(h.extAuthz.GetValidateMutations(), "validate_mutations is not true"),
			want(!r.GetAllowAllRouting().GetValue() && !r.GetAllowEnvoy().GetValue(), "mutation rules allow routing or x-envoy-* headers"))
	})},
	{"ext_authz always on", eachHCM(func(h hcm) error {
		a := h.extAuthz
		errs := []error{
			want(a.GetFilterEnabled() == nil && a.GetFilterEnabledMetadata() == nil, "filter_enabled makes the check conditional"),
			want(!a.GetShadowMode(), "shadow_mode lets denied requests through"),
		}
		for _, f := range h.GetHttpFilters() {
			if f.GetName() == h.extAuthzName {
				errs = append(errs, want(!f.GetDisabled() && !f.GetIsOptional(), "the ext_authz HTTP filter is disabled or optional"))
			}
		}
		perFilter := []map[string]*anypb.Any{h.GetRouteConfig().GetTypedPerFilterConfig()}
		for _, vh := range h.GetRouteConfig().GetVirtualHosts() {
			perFilter = append(perFilter, vh.GetTypedPerFilterConfig())
			for _, r := range vh.GetRoutes() {
				perFilter = append(perFilter, r.GetTypedPerFilterConfig())
			}
		}
		for _, pf := range perFilter {
			errs = append(errs, perRouteBypass(pf[h.extAuthzName]))
		}
		return errors.Join(errs...)
	})},
	{"access log", eachHCM(checkAccessLog)},
	{"routes", eachHCM(func(h hcm) error {
		if h.GetRouteConfig() == nil {
			return errors.New("routes are not inline (rds)")
		}
		var errs []error
		for _, vh := range h.GetRouteConfig().GetVirtualHosts() {
			routes := vh.GetRoutes()
			for i, r := range routes {
				prefix := r.GetMatch().GetPrefix()
				switch {
				case r.GetRoute() != nil:
					errs = append(errs,
						want(r.GetRoute().GetCluster() == proxyCluster, "route %d goes to %q, want cluster %s", i, r.GetRoute().GetCluster(), proxyCluster),
						want(prefix == "/api/" || prefix == "/bulk/", "route %d to mgmtproxy matches %v, want prefix /api/ or /bulk/", i, r.GetMatch()))
				case r.GetDirectResponse() != nil:
					s := r.GetDirectResponse().GetStatus()
					errs = append(errs, want(s == 403 || s == 404, "route %d answers %d, want 403 or 404", i, s))
				default:
					errs = append(errs, fmt.Errorf("route %d neither routes to mgmtproxy nor answers directly", i))
				}
			}
			last := routes[len(routes)-1]
			errs = append(errs, want(last.GetMatch().GetPrefix() == "/" && last.GetDirectResponse() != nil,
				"virtual host %s does not end with a catch-all direct response", vh.GetName()))
		}
		return errors.Join(errs...)
	})},
}

// extAuthzMetadata is the dynamic metadata namespace Envoy's ext_authz filter emits a CheckResponse's
// dynamic_metadata under; the sidecar sets decision_id, reason and route there.
const extAuthzMetadata = "envoy.filters.http.ext_authz"

// accessLogFields are the JSON access log fields operators rely on, with the exact command each
// must hold.
var accessLogFields = map[string]string{
	"decision_id":   "%DYNAMIC_METADATA(" + extAuthzMetadata + ":decision_id)%",
	"result":        "%DYNAMIC_METADATA(" + extAuthzMetadata + ":result)%",
	"reason":        "%DYNAMIC_METADATA(" + extAuthzMetadata + ":reason)%",
	"route":         "%DYNAMIC_METADATA(" + extAuthzMetadata + ":route)%",
	"status":        "%RESPONSE_CODE%",
	"method":        "%REQ(:METHOD)%",
	"path":          "%PATH(WQ:ORIG)%", // without the query: a token pasted into a URL stays out of the log
	"duration_ms":   "%DURATION%",
	"upstream_host": "%UPSTREAM_HOST%",
}

// credentialInLog matches access log commands that would write a credential or the query string.
var credentialInLog = regexp.MustCompile(`(?i)authorization|cookie|x-orgauthz-decision\)|:path|original-path|%PATH%|%PATH\((NQ|:|\))`)

// checkAccessLog: exactly one access log, JSON to stdout for every request, with the fields above
// and nothing that logs a credential.
func checkAccessLog(h hcm) error {
	logs := h.GetAccessLog()
	if len(logs) != 1 {
		return fmt.Errorf("%d access logs, want 1", len(logs))
	}
	al := logs[0]
	out, err := unpack[*streamv3.StdoutAccessLog](al.GetTypedConfig())
	if err != nil {
		return fmt.Errorf("access log: %w", err)
	}
	js := out.GetLogFormat().GetJsonFormat()
	errs := []error{
		want(al.GetFilter() == nil, "the access log has a filter: some requests would go unlogged"),
		want(js != nil, "the access log is not JSON"),
		want(h.extAuthzName == extAuthzMetadata, "ext_authz filter is named %s: the log reads metadata of %s", h.extAuthzName, extAuthzMetadata),
	}
	fields := js.GetFields()
	for k, cmd := range accessLogFields {
		errs = append(errs, want(fields[k].GetStringValue() == cmd, "access log field %s = %v, want %s", k, fields[k], cmd))
	}
	for k, v := range fields {
		errs = append(errs, want(!credentialInLog.MatchString(v.GetStringValue()), "access log field %s = %q logs a credential or the query", k, v.GetStringValue()))
	}
	return errors.Join(errs...)
}

// perRouteBypass reports a per-route ext_authz config that turns the check off or drops the body.
func perRouteBypass(a *anypb.Any) error {
	if a == nil {
		return nil
	}
	if fc, err := unpack[*routev3.FilterConfig](a); err == nil {
		if fc.GetDisabled() || fc.GetIsOptional() {
			return errors.New("a FilterConfig disables ext_authz")
		}
		return perRouteBypass(fc.GetConfig())
	}
	pr, err := unpack[*extauthzv3.ExtAuthzPerRoute](a)
	if err != nil {
		return err
	}
	return errors.Join(
		want(!pr.GetDisabled(), "a per-route config disables ext_authz"),
		want(!pr.GetCheckSettings().GetDisableRequestBodyBuffering(), "a per-route config drops the request body"))
}

// checkBootstrap runs every check and reports every failure, each under its check's name.
func checkBootstrap(b *bootstrap, p profile) error {
	var errs []error
	for _, c := range checks {
		if err := c.run(b, p); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", c.name, err))
		}
	}
	return errors.Join(errs...)
}

// readJSON reads a YAML file (bounded) and returns it as JSON.
func readJSON(t *testing.T, name string) []byte {
	t.Helper()
	y, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	if len(y) > maxConfigBytes {
		t.Fatalf("%s is %d bytes, over %d", name, len(y), maxConfigBytes)
	}
	js, err := yaml.YAMLToJSON(y)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return js
}

func TestEveryYAMLIsKnown(t *testing.T) {
	files, err := filepath.Glob("*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if _, ok := bootstraps[f]; !ok && !slices.Contains(notBootstraps, f) {
			t.Errorf("%s is neither a checked bootstrap nor listed in notBootstraps", f)
		}
	}
	for f := range bootstraps {
		if !slices.Contains(files, f) {
			t.Errorf("bootstrap %s is missing", f)
		}
	}
}

func TestBootstraps(t *testing.T) {
	for name, p := range bootstraps {
		t.Run(name, func(t *testing.T) {
			b, err := loadBootstrap(readJSON(t, name))
			if err != nil {
				t.Fatalf("load: %v", err)
			}
			// HCM, access log, ext_authz, router, two HttpProtocolOptions, the resource monitor.
			if b.typed < 7 {
				t.Errorf("unpacked %d typed configs, want at least 7", b.typed)
			}
			if err := checkBootstrap(b, p); err != nil {
				t.Errorf("checks failed:\n%v", err)
			}
		})
	}
}

// mutation weakens one setting of a bootstrap's JSON form.
type mutation struct {
	name   string
	mutate func(t *testing.T, root map[string]any)
	want   string // in the error: a check's name or a parse error
}

func TestCheckerCatchesWeakenedConfigs(t *testing.T) {
	mutations := []mutation{
		{"failure_mode_allow true", setIn(extAuthzOf, "failure_mode_allow", true), "ext_authz fails closed"},
		{"status_on_error 403", setIn(extAuthzOf, "status_on_error", map[string]any{"code": "Forbidden"}), "ext_authz fails closed"},
		{"status_on_error unset", deleteIn(extAuthzOf, "status_on_error"), "ext_authz fails closed"},
		{"no timeout", deleteIn(grpcServiceOf, "timeout"), "ext_authz timeout"},
		{"google_grpc instead of the cluster", func(t *testing.T, root map[string]any) {
			g := grpcServiceOf(t, root)
			delete(g, "envoy_grpc")
			g["google_grpc"] = map[string]any{"target_uri": "127.0.0.1:9191", "stat_prefix": "x"}
		}, "ext_authz gRPC v3 to the sidecar"},
		{"merge_slashes false", setIn(hcmOf, "merge_slashes", false), "path normalisation"},
		{"normalize_path false", setIn(hcmOf, "normalize_path", false), "path normalisation"},
		{"escaped slashes KEEP_UNCHANGED", setIn(hcmOf, "path_with_escaped_slashes_action", "KEEP_UNCHANGED"), "escaped slashes rejected"},
		{"headers_with_underscores ALLOW", setIn(commonOptsOf, "headers_with_underscores_action", "ALLOW"), "underscore headers rejected"},
		{"use_remote_address false", setIn(hcmOf, "use_remote_address", false), "remote address used"},
		{"no request_headers_timeout", deleteIn(hcmOf, "request_headers_timeout"), "header and time limits"},
		{"validate_mutations false", setIn(extAuthzOf, "validate_mutations", false), "mutations validated"},
		{"mutation rules allow x-envoy-*", setIn(extAuthzOf, "decoder_header_mutation_rules", map[string]any{"allow_envoy": true}), "mutations validated"},
		{"partial body allowed", setIn(bodyOf, "allow_partial_message", true), "request body checked whole"},
		{"body limit 1 MiB", setIn(bodyOf, "max_request_bytes", 1<<20), "request body checked whole"},
		{"typo'd field name", func(t *testing.T, root map[string]any) {
			h := hcmOf(t, root)
			h["normalise_path"] = h["normalize_path"]
			delete(h, "normalize_path")
		}, `unknown field "normalise_path"`},
		{"typo'd typed_config type", setIn(extAuthzOf, "@type", "type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuth"), "parse"},
		{"invalid value caught by validation", setIn(hcmOf, "stat_prefix", ""), "validate"},
		{"route with ext_authz disabled", func(t *testing.T, root map[string]any) {
			routesOf(t, root)[0].(map[string]any)["typed_per_filter_config"] = map[string]any{
				"envoy.filters.http.ext_authz": map[string]any{
					"@type": "type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthzPerRoute", "disabled": true},
			}
		}, "ext_authz always on"},
		{"virtual host with ext_authz disabled by FilterConfig", func(t *testing.T, root map[string]any) {
			vhostOf(t, root)["typed_per_filter_config"] = map[string]any{
				"envoy.filters.http.ext_authz": map[string]any{
					"@type": "type.googleapis.com/envoy.config.route.v3.FilterConfig", "disabled": true},
			}
		}, "ext_authz always on"},
		{"route without request body", func(t *testing.T, root map[string]any) {
			routesOf(t, root)[0].(map[string]any)["typed_per_filter_config"] = map[string]any{
				"envoy.filters.http.ext_authz": map[string]any{
					"@type":          "type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthzPerRoute",
					"check_settings": map[string]any{"disable_request_body_buffering": true}},
			}
		}, "ext_authz always on"},
		{"shadow mode", setIn(extAuthzOf, "shadow_mode", true), "ext_authz always on"},
		{"filter_enabled 0%", setIn(extAuthzOf, "filter_enabled", map[string]any{
			"default_value": map[string]any{"numerator": 0, "denominator": "HUNDRED"}, "runtime_key": "authz"}), "ext_authz always on"},
		{"ext_authz filter disabled by default", func(t *testing.T, root map[string]any) {
			httpFiltersOf(t, root)[0].(map[string]any)["disabled"] = true
		}, "ext_authz always on"},
		{"router before ext_authz", func(t *testing.T, root map[string]any) {
			fs := httpFiltersOf(t, root)
			fs[0], fs[len(fs)-1] = fs[len(fs)-1], fs[0]
		}, "filter order"},
		{"missing cluster", func(t *testing.T, root map[string]any) {
			routesOf(t, root)[0].(map[string]any)["route"].(map[string]any)["cluster"] = "mgmtproxy_v2"
		}, "clusters exist"},
		{"sidecar cluster removed", func(t *testing.T, root map[string]any) {
			sr := root["static_resources"].(map[string]any)
			cs := sr["clusters"].([]any)
			sr["clusters"] = slices.DeleteFunc(cs, func(c any) bool { return c.(map[string]any)["name"] == sidecarCluster })
		}, "clusters exist"},
		{"sidecar cluster over HTTP/1.1", func(t *testing.T, root map[string]any) {
			for _, o := range findTyped(root, "envoy.extensions.upstreams.http.v3.HttpProtocolOptions") {
				if _, ok := o["explicit_http_config"].(map[string]any)["http2_protocol_options"]; ok {
					o["explicit_http_config"] = map[string]any{"http_protocol_options": map[string]any{}}
				}
			}
		}, "sidecar cluster speaks HTTP/2"},
		{"mgmtproxy cluster off loopback", func(t *testing.T, root map[string]any) {
			for _, c := range root["static_resources"].(map[string]any)["clusters"].([]any) {
				if c.(map[string]any)["name"] == proxyCluster {
					ep := c.(map[string]any)["load_assignment"].(map[string]any)["endpoints"].([]any)[0].(map[string]any)
					sa := ep["lb_endpoints"].([]any)[0].(map[string]any)["endpoint"].(map[string]any)["address"].(map[string]any)["socket_address"].(map[string]any)
					sa["address"] = "10.0.0.8"
				}
			}
		}, "upstreams on loopback"},
		{"catch-all to mgmtproxy", func(t *testing.T, root map[string]any) {
			routes := routesOf(t, root)
			routes[len(routes)-1] = map[string]any{"match": map[string]any{"prefix": "/"}, "route": map[string]any{"cluster": proxyCluster}}
		}, "routes"},
		{"direct 200 response", func(t *testing.T, root map[string]any) {
			routes := routesOf(t, root)
			routes[len(routes)-1].(map[string]any)["direct_response"].(map[string]any)["status"] = 200
		}, "routes"},
		{"admin on all interfaces", func(t *testing.T, root map[string]any) {
			root["admin"].(map[string]any)["address"].(map[string]any)["socket_address"].(map[string]any)["address"] = "0.0.0.0"
		}, "admin on loopback"},
		{"listener moved", func(t *testing.T, root map[string]any) {
			l := root["static_resources"].(map[string]any)["listeners"].([]any)[0].(map[string]any)
			l["address"].(map[string]any)["socket_address"].(map[string]any)["address"] = "10.1.2.3"
		}, "listener address"},
		{"tcp_proxy beside the connection manager", func(t *testing.T, root map[string]any) {
			l := root["static_resources"].(map[string]any)["listeners"].([]any)[0].(map[string]any)
			fc := l["filter_chains"].([]any)[0].(map[string]any)
			fc["filters"] = append([]any{map[string]any{"name": "envoy.filters.network.tcp_proxy", "typed_config": map[string]any{
				"@type": "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy", "stat_prefix": "raw", "cluster": proxyCluster}}},
				fc["filters"].([]any)...)
		}, "network filters"},
		{"no access log", deleteIn(hcmOf, "access_log"), "access log"},
		{"access log without decision_id", func(t *testing.T, root map[string]any) {
			delete(jsonLogOf(t, root), "decision_id")
		}, "access log"},
		{"access log reads the wrong metadata", func(t *testing.T, root map[string]any) {
			jsonLogOf(t, root)["reason"] = "%DYNAMIC_METADATA(envoy.filters.http.ext_authz.v3:reason)%"
		}, "access log"},
		{"access log with the query", func(t *testing.T, root map[string]any) { jsonLogOf(t, root)["path"] = "%REQ(:PATH)%" }, "access log"},
		{"access log with the token", func(t *testing.T, root map[string]any) {
			jsonLogOf(t, root)["auth"] = "%REQ(Authorization)%"
		}, "access log"},
		{"access log of errors only", func(t *testing.T, root map[string]any) {
			hcmOf(t, root)["access_log"].([]any)[0].(map[string]any)["filter"] = map[string]any{
				"status_code_filter": map[string]any{"comparison": map[string]any{"op": "GE", "value": map[string]any{"default_value": 500, "runtime_key": "x"}}}}
		}, "access log"},
		{"access log as text", func(t *testing.T, root map[string]any) {
			field(t, one(t, root, "envoy.extensions.access_loggers.stream.v3.StdoutAccessLog"), "log_format")["text_format_source"] = map[string]any{"inline_string": "%RESPONSE_CODE%\n"}
			delete(field(t, one(t, root, "envoy.extensions.access_loggers.stream.v3.StdoutAccessLog"), "log_format"), "json_format")
		}, "access log"},
		{"xDS", setIn(func(_ *testing.T, root map[string]any) map[string]any { return root }, "dynamic_resources",
			map[string]any{"lds_config": map[string]any{"path_config_source": map[string]any{"path": "/etc/envoy/lds.yaml"}}}), "static config only"},
	}
	for file, p := range bootstraps {
		js := readJSON(t, file)
		for _, m := range mutations {
			t.Run(file+"/"+m.name, func(t *testing.T) {
				var root map[string]any
				if err := json.Unmarshal(js, &root); err != nil {
					t.Fatal(err)
				}
				m.mutate(t, root)
				weakened, err := json.Marshal(root)
				if err != nil {
					t.Fatal(err)
				}
				b, err := loadBootstrap(weakened)
				if err == nil {
					err = checkBootstrap(b, p)
				}
				if err == nil {
					t.Fatalf("weakened config passed; want an error containing %q", m.want)
				}
				if testing.Verbose() {
					t.Logf("caught: %.300v", err)
				}
				if !strings.Contains(err.Error(), m.want) {
					t.Errorf("error = %v\nwant it to contain %q", err, m.want)
				}
			})
		}
	}
}

func TestLoadBootstrapHostileInput(t *testing.T) {
	tests := []struct {
		name string
		js   string
	}{
		{"empty", ``},
		{"not JSON", `{"admin":`},
		{"wrong type", `{"static_resources": []}`},
		{"unknown @type", `{"static_resources":{"listeners":[{"name":"l","address":{"socket_address":{"address":"127.0.0.1","port_value":1}},
			"filter_chains":[{"filters":[{"name":"x","typed_config":{"@type":"type.googleapis.com/evil.Plugin"}}]}]}]}}`},
		{"oversized", `{"node":{"id":"` + strings.Repeat("a", maxConfigBytes) + `"}}`},
		{"deep nesting", strings.Repeat(`{"node":`, 200) + `{}` + strings.Repeat(`}`, 200)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := loadBootstrap([]byte(tc.js)); err == nil {
				t.Error("loadBootstrap succeeded, want an error")
			}
		})
	}
}

// Navigation in the JSON form. Each helper fails the test when the shape is not the expected one.

func findTyped(v any, typeName string) []map[string]any {
	var out []map[string]any
	switch v := v.(type) {
	case map[string]any:
		if v["@type"] == "type.googleapis.com/"+typeName {
			out = append(out, v)
		}
		for _, c := range v {
			out = append(out, findTyped(c, typeName)...)
		}
	case []any:
		for _, c := range v {
			out = append(out, findTyped(c, typeName)...)
		}
	}
	return out
}

func one(t *testing.T, root map[string]any, typeName string) map[string]any {
	t.Helper()
	found := findTyped(root, typeName)
	if len(found) != 1 {
		t.Fatalf("found %d %s, want 1", len(found), typeName)
	}
	return found[0]
}

func field(t *testing.T, m map[string]any, name string) map[string]any {
	t.Helper()
	f, ok := m[name].(map[string]any)
	if !ok {
		t.Fatalf("no object %q in %v", name, m)
	}
	return f
}

func hcmOf(t *testing.T, root map[string]any) map[string]any {
	return one(t, root, "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager")
}
func extAuthzOf(t *testing.T, root map[string]any) map[string]any { return one(t, root, extAuthzType) }
func grpcServiceOf(t *testing.T, root map[string]any) map[string]any {
	return field(t, extAuthzOf(t, root), "grpc_service")
}
func bodyOf(t *testing.T, root map[string]any) map[string]any {
	return field(t, extAuthzOf(t, root), "with_request_body")
}
func commonOptsOf(t *testing.T, root map[string]any) map[string]any {
	return field(t, hcmOf(t, root), "common_http_protocol_options")
}
func vhostOf(t *testing.T, root map[string]any) map[string]any {
	return field(t, hcmOf(t, root), "route_config")["virtual_hosts"].([]any)[0].(map[string]any)
}
func routesOf(t *testing.T, root map[string]any) []any { return vhostOf(t, root)["routes"].([]any) }
func httpFiltersOf(t *testing.T, root map[string]any) []any {
	return hcmOf(t, root)["http_filters"].([]any)
}

func jsonLogOf(t *testing.T, root map[string]any) map[string]any {
	return field(t, field(t, one(t, root, "envoy.extensions.access_loggers.stream.v3.StdoutAccessLog"), "log_format"), "json_format")
}

func setIn(at func(*testing.T, map[string]any) map[string]any, key string, v any) func(*testing.T, map[string]any) {
	return func(t *testing.T, root map[string]any) { at(t, root)[key] = v }
}

func deleteIn(at func(*testing.T, map[string]any) map[string]any, key string) func(*testing.T, map[string]any) {
	return func(t *testing.T, root map[string]any) {
		m := at(t, root)
		if _, ok := m[key]; !ok {
			t.Fatalf("no %q to delete", key)
		}
		delete(m, key)
	}
}
