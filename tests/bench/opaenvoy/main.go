// Command opaenvoy is the benchmarks' baseline: an ext_authz v3 server that does what
// OPA-Envoy (opa-envoy-plugin) does with the OPA version in go.mod, so the comparison is with
// how users authorize Logto tokens today. It is a benchmark helper, not a product.
//
// Per Check, as opa-envoy-plugin does: the CheckRequest becomes input through protojson plus
// parsed_path, parsed_query, parsed_body, truncated_body and version; a storage transaction
// is opened; the query prepared once is evaluated with the inter-query caches; the object
// decision {allowed, http_status, headers, body} becomes the CheckResponse. The policy
// (policy.rego) verifies the ES384 token with io.jwt.decode_verify against the JWKS, fetched
// once at start and passed as data. With --jwt-cache-size 0 the io_jwt verification cache is
// off, as opa-envoy-plugin ships; above 0 it is on with that many entries.
package main

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/metrics"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage"
	"github.com/open-policy-agent/opa/v1/storage/inmem"
	"github.com/open-policy-agent/opa/v1/topdown/cache"
	"github.com/open-policy-agent/opa/v1/util"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/encoding/protojson"
)

//go:embed policy.rego
var policy string

//go:embed routes.json
var routes []byte

// maxJWKS bounds the key set read at start.
const maxJWKS = 1 << 20

func main() {
	var cfg config
	flag.StringVar(&cfg.addr, "addr", "127.0.0.1:9191", "gRPC listen address")
	flag.StringVar(&cfg.issuer, "issuer", "http://127.0.0.1:3001/oidc", "Logto issuer; the JWKS is read from <issuer>/jwks once")
	flag.StringVar(&cfg.apiResource, "api-resource", "https://api.example.com", "the app's API resource indicator")
	flag.StringVar(&cfg.adminResource, "admin-resource", "https://admin.example.com", "the admin resource indicator")
	flag.IntVar(&cfg.jwtCacheSize, "jwt-cache-size", 0, "entries of OPA's io_jwt inter-query value cache; 0 leaves it off as opa-envoy-plugin ships")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, cfg); err != nil {
		fmt.Fprintln(os.Stderr, "opaenvoy:", err)
		os.Exit(1)
	}
}

type config struct {
	addr, issuer, apiResource, adminResource string
	jwtCacheSize                             int
}

func run(ctx context.Context, cfg config) error {
	jwks, err := fetchJWKS(ctx, cfg.issuer+"/jwks")
	if err != nil {
		return err
	}
	srv, err := newServer(ctx, cfg, jwks)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.addr)
	if err != nil {
		return err
	}
	s := grpc.NewServer()
	authv3.RegisterAuthorizationServer(s, srv)
	go func() {
		<-ctx.Done()
		s.Stop()
	}()
	return s.Serve(ln)
}

func fetchJWKS(ctx context.Context, u string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", fmt.Errorf("jwks: %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxJWKS+1))
	switch {
	case err != nil:
		return "", fmt.Errorf("jwks: %w", err)
	case resp.StatusCode != http.StatusOK:
		return "", fmt.Errorf("jwks: status %d", resp.StatusCode)
	case len(b) > maxJWKS:
		return "", fmt.Errorf("jwks: over %d bytes", maxJWKS)
	case !json.Valid(b):
		return "", errors.New("jwks: not JSON")
	}
	return string(b), nil
}

type server struct {
	authv3.UnimplementedAuthorizationServer
	store      storage.Store
	query      rego.PreparedEvalQuery
	valueCache cache.InterQueryValueCache
	cache      cache.InterQueryCache
}

var _ authv3.AuthorizationServer = (*server)(nil)

func newServer(ctx context.Context, cfg config, jwks string) (*server, error) {
	var table []any
	if err := util.UnmarshalJSON(routes, &table); err != nil {
		return nil, fmt.Errorf("routes: %w", err)
	}
	store := inmem.NewFromObject(map[string]any{
		"config": map[string]any{
			"jwks": jwks, "issuer": cfg.issuer,
			"api_resource": cfg.apiResource, "admin_resource": cfg.adminResource,
		},
		"routes": table,
	})
	cachingConfig, err := cache.ParseCachingConfig(nil) // OPA's defaults, as a plugin manager without caching config has
	if cfg.jwtCacheSize > 0 {
		cachingConfig, err = cache.ParseCachingConfig(fmt.Appendf(nil,
			`{"inter_query_builtin_value_cache": {"named": {"io_jwt": {"max_num_entries": %d}}}}`, cfg.jwtCacheSize))
	}
	if err != nil {
		return nil, err
	}
	s := &server{
		store:      store,
		valueCache: cache.NewInterQueryValueCache(ctx, cachingConfig),
		cache:      cache.NewInterQueryCacheWithContext(ctx, cachingConfig),
	}
	s.query, err = rego.New(
		rego.Query("data.envoy.authz.decision"),
		rego.Module("policy.rego", policy),
		rego.Store(store),
		rego.InterQueryBuiltinValueCache(s.valueCache),
	).PrepareForEval(ctx)
	if err != nil {
		return nil, fmt.Errorf("prepare: %w", err)
	}
	return s, nil
}

func (s *server) Check(ctx context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	input, err := requestToInput(req)
	if err != nil {
		return nil, err
	}
	value, err := ast.InterfaceToValue(input)
	if err != nil {
		return nil, err
	}
	txn, err := s.store.NewTransaction(ctx)
	if err != nil {
		return nil, err
	}
	defer s.store.Abort(ctx, txn)
	rs, err := s.query.Eval(ctx,
		rego.EvalParsedInput(value),
		rego.EvalTransaction(txn),
		rego.EvalMetrics(metrics.New()),
		rego.EvalInterQueryBuiltinCache(s.cache),
		rego.EvalInterQueryBuiltinValueCache(s.valueCache),
	)
	switch {
	case err != nil:
		return nil, err
	case len(rs) != 1:
		return nil, errors.New("undefined or multiple decisions")
	}
	d, ok := rs[0].Expressions[0].Value.(map[string]any)
	if !ok {
		return nil, errors.New("decision is not an object")
	}
	return response(d)
}

var version = map[string]any{"ext_authz": "v3", "encoding": "protojson"}

// requestToInput maps the CheckRequest as opa-envoy-plugin's envoyauth.RequestToInput does.
func requestToInput(req *authv3.CheckRequest) (map[string]any, error) {
	b, err := protojson.Marshal(req)
	if err != nil {
		return nil, err
	}
	var input map[string]any
	if err := util.UnmarshalJSON(b, &input); err != nil {
		return nil, err
	}
	input["version"] = version
	h := req.GetAttributes().GetRequest().GetHttp()
	u, err := url.Parse(h.GetPath())
	if err != nil {
		return nil, err
	}
	segments := strings.Split(strings.TrimLeft(u.Path, "/"), "/")
	path := make([]any, len(segments))
	for i, s := range segments {
		path[i] = s
	}
	query := map[string]any{}
	for k, vs := range u.Query() {
		values := make([]any, len(vs))
		for i, v := range vs {
			values[i] = v
		}
		query[k] = values
	}
	input["parsed_path"] = path
	input["parsed_query"] = query
	body, truncated, err := parseBody(h.GetHeaders(), h.GetBody())
	if err != nil {
		return nil, err
	}
	input["parsed_body"] = body
	input["truncated_body"] = truncated
	return input, nil
}

func parseBody(headers map[string]string, body string) (any, bool, error) {
	if !strings.Contains(headers["content-type"], "application/json") || body == "" {
		return nil, false, nil
	}
	if v, ok := headers["content-length"]; ok {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return nil, false, err
		}
		if n != -1 && n > int64(len(body)) {
			return nil, true, nil
		}
	}
	var data any
	if err := util.Unmarshal([]byte(body), &data); err != nil {
		return nil, false, err
	}
	return data, false, nil
}

// response turns the decision into a CheckResponse as opa-envoy-plugin does for an object
// decision: allowed, then http_status, headers and body.
func response(d map[string]any) (*authv3.CheckResponse, error) {
	allowed, ok := d["allowed"].(bool)
	if !ok {
		return nil, errors.New("decision: allowed is not a boolean")
	}
	var headers []*corev3.HeaderValueOption
	if hs, ok := d["headers"].(map[string]any); ok {
		for k, v := range hs {
			s, ok := v.(string)
			if !ok {
				return nil, fmt.Errorf("decision: header %q is not a string", k)
			}
			headers = append(headers, &corev3.HeaderValueOption{Header: &corev3.HeaderValue{Key: k, Value: s}})
		}
	}
	if allowed {
		return &authv3.CheckResponse{
			Status:       &status.Status{Code: int32(codes.OK)},
			HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{Headers: headers}},
		}, nil
	}
	code := typev3.StatusCode_Forbidden
	if n, ok := d["http_status"].(json.Number); ok {
		v, err := n.Int64()
		if err != nil || typev3.StatusCode_name[int32(v)] == "" {
			return nil, fmt.Errorf("decision: bad http_status %v", n)
		}
		code = typev3.StatusCode(v)
	}
	body, _ := d["body"].(string)
	return &authv3.CheckResponse{
		Status: &status.Status{Code: int32(codes.PermissionDenied)},
		HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
			Status: &typev3.HttpStatus{Code: code}, Headers: headers, Body: body,
		}},
	}, nil
}
