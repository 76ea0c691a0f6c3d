package policy

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/open-policy-agent/opa/v1/bundle"
	"github.com/open-policy-agent/opa/v1/storage"
	"github.com/open-policy-agent/opa/v1/storage/inmem"
)

// activate writes modules (by store id), the orgauthz data and bundle b's manifest at revision
// rev into store, as OPA's bundle activation leaves them.
func activate(t *testing.T, store storage.Store, modules map[string]string, data any, rev string) {
	t.Helper()
	ctx := t.Context()
	err := storage.Txn(ctx, store, storage.WriteParams, func(txn storage.Transaction) error {
		ids, err := store.ListPolicies(ctx, txn)
		if err != nil {
			return err
		}
		for _, id := range ids {
			if err := store.DeletePolicy(ctx, txn, id); err != nil {
				return err
			}
		}
		for id, src := range modules {
			if err := store.UpsertPolicy(ctx, txn, id, []byte(src)); err != nil {
				return err
			}
		}
		if err := store.Write(ctx, txn, storage.AddOp, storage.MustParsePath("/orgauthz"), data); err != nil {
			return err
		}
		return bundle.WriteManifestToStore(ctx, store, txn, "b", bundle.Manifest{Revision: rev})
	})
	if err != nil {
		t.Fatal(err)
	}
}

// bundleModules are goodPolicy's modules under the store ids a bundle named b gets.
func bundleModules(extra map[string]string) map[string]string {
	out := map[string]string{
		"b/orgauthz/decision.rego": goodPolicy["orgauthz/decision.rego"],
		"b/orgauthz/routes.rego":   goodPolicy["orgauthz/routes.rego"],
	}
	for k, v := range extra {
		out[k] = v
	}
	return out
}

func routesData(t *testing.T) any {
	var v any
	if err := json.Unmarshal([]byte(routesJSON("/api/organizations")), &v); err != nil {
		t.Fatal(err)
	}
	return v
}

// TestLoadStore: a bundle's modules and data are installed through the directory's checks; a
// bundle failing them (denied builtin, oversized, no route table) or a store without a bundle
// leaves the last good policy serving; hostile module ids stay inside the snapshot.
func TestLoadStore(t *testing.T) {
	e := New("", Options{})
	store := inmem.New()
	if changed, err := e.LoadStore(t.Context(), store); !changed || err == nil || !strings.Contains(err.Error(), "no bundle activated") {
		t.Fatalf("LoadStore(empty store) = %v, %v; want a no-bundle error", changed, err)
	}
	if e.Ready() {
		t.Fatal("Ready() after an empty store")
	}

	activate(t, store, bundleModules(nil), routesData(t), "r1")
	if _, err := e.LoadStore(t.Context(), store); err != nil {
		t.Fatalf("LoadStore: %v", err)
	}
	checkServes(t, e, goodDecision)
	d, err := e.Eval(t.Context(), parseInput(t, goodInput))
	if err != nil || d.Bundles["b"].Revision != "r1" || e.Bundles()["b"].Revision != "r1" {
		t.Fatalf("Decision.Bundles = %v (%v), Engine.Bundles = %v; want b at r1", d.Bundles, err, e.Bundles())
	}
	if changed, err := e.LoadStore(t.Context(), store); changed || err != nil {
		t.Errorf("LoadStore(same bundle) = %v, %v; want no change", changed, err)
	}
	// Only the manifest's revision changes: the audit must name the new one.
	activate(t, store, bundleModules(nil), routesData(t), "r2")
	if changed, err := e.LoadStore(t.Context(), store); !changed || err != nil || e.Bundles()["b"].Revision != "r2" {
		t.Errorf("LoadStore(new revision) = %v, %v, bundles %v; want r2 installed", changed, err, e.Bundles())
	}

	for _, c := range []struct {
		name    string
		modules map[string]string
		data    any
		wantErr string
	}{
		{"http.send", bundleModules(map[string]string{"b/x.rego": "package x\n\ny := http.send({\"method\": \"GET\", \"url\": \"http://127.0.0.1:1\"})\n"}),
			routesData(t), "http.send is not allowed"},
		{"oversized data", bundleModules(nil), map[string]any{"routes": []any{map[string]any{"method": "GET", "path": "/api/organizations"}},
			"pad": strings.Repeat("x", maxTotalBytes)}, errTooLarge.Error()},
		{"no route table", bundleModules(nil), map[string]any{}, "routes"},
	} {
		activate(t, store, c.modules, c.data, "bad-"+c.name)
		if _, err := e.LoadStore(t.Context(), store); err == nil || !strings.Contains(err.Error(), c.wantErr) {
			t.Errorf("LoadStore(%s) = %v, want an error containing %q", c.name, err, c.wantErr)
		}
		checkServes(t, e, goodDecision)
		if e.Bundles()["b"].Revision != "r2" {
			t.Errorf("after %s: serving bundles %v, want b at r2", c.name, e.Bundles())
		}
	}

	// Module ids that are not clean paths are read as paths inside the bundle.
	hostile := map[string]string{
		"../../../etc/decision.rego": goodPolicy["orgauthz/decision.rego"],
		"/b//./routes":               goodPolicy["orgauthz/routes.rego"],
	}
	activate(t, store, hostile, routesData(t), "r3")
	if _, err := e.LoadStore(t.Context(), store); err != nil {
		t.Fatalf("LoadStore(hostile ids): %v", err)
	}
	checkServes(t, e, goodDecision)
	if got := moduleFile("../../../etc/decision.rego"); got != "etc/decision.rego" {
		t.Errorf("moduleFile(../../../etc/decision.rego) = %q", got)
	}
}
