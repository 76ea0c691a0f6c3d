package policy

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"path"
	"slices"
	"strings"
	"testing/fstest"

	"github.com/open-policy-agent/opa/v1/bundle"
	"github.com/open-policy-agent/opa/v1/storage"

	"github.com/orgauthz/orgauthz/decisionlog"
)

// LoadStore installs the policy of the bundles OPA's plugin manager activated into store: their
// modules and data pass exactly the checks a directory does (strict compile, denied builtins,
// route table, mask), and a bundle that fails them leaves the last good policy serving. The
// installed policy's decisions name the bundles and their manifest revisions (Decision.Bundles).
// It reports whether the outcome changed, as Watch's reloads do: the same bundles again do not
// compile again.
func (e *Engine) LoadStore(ctx context.Context, store storage.Store) (changed bool, err error) {
	return e.install(ctx, "bundles", func() (*snapshot, error) { return readStore(ctx, store) })
}

// readStore reads the activated bundles' modules and data out of an OPA store into a snapshot,
// within the bounds readDir has: modules keep their ids as paths, and all data becomes one
// data.json (without OPA's own /system/bundles bookkeeping).
func readStore(ctx context.Context, store storage.Store) (*snapshot, error) {
	snap := &snapshot{files: fstest.MapFS{}, bundles: map[string]decisionlog.Bundle{}}
	err := storage.Txn(ctx, store, storage.TransactionParams{}, func(txn storage.Transaction) error {
		names, err := bundle.ReadBundleNamesFromStore(ctx, store, txn)
		if err != nil && !storage.IsNotFound(err) {
			return err
		}
		if len(names) == 0 {
			return errors.New("no bundle activated")
		}
		for _, name := range names {
			rev, err := bundle.ReadBundleRevisionFromStore(ctx, store, txn, name)
			if err != nil && !storage.IsNotFound(err) {
				return err
			}
			snap.bundles[name] = decisionlog.Bundle{Revision: rev}
		}
		ids, err := store.ListPolicies(ctx, txn)
		if err != nil {
			return err
		}
		var total int
		for _, id := range ids {
			name := moduleFile(id)
			if !fs.ValidPath(name) || !isPolicyFile(path.Base(name)) {
				continue
			}
			if len(snap.files) == maxFiles {
				return fmt.Errorf("more than %d policy files", maxFiles)
			}
			raw, err := store.GetPolicy(ctx, txn, id)
			if err != nil {
				return err
			}
			if total += len(raw); total > maxTotalBytes {
				return errTooLarge
			}
			snap.files[name] = &fstest.MapFile{Data: raw, Mode: 0o444}
		}
		data, err := store.Read(ctx, txn, storage.RootPath)
		if err != nil {
			return err
		}
		doc, err := json.Marshal(withoutBundleRecords(data))
		if err != nil {
			return err
		}
		if total += len(doc); total > maxTotalBytes {
			return errTooLarge
		}
		snap.files["data.json"] = &fstest.MapFile{Data: doc, Mode: 0o444}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("policy: read bundles: %w", err)
	}
	// The revision covers the bundles' names and revisions too, so a new manifest revision with
	// the same files still updates what the audit records name.
	h := sha256.New()
	h.Write([]byte(revision(snap.files)))
	for _, name := range slices.Sorted(maps.Keys(snap.bundles)) {
		fmt.Fprintf(h, "\x00%d:%s\x00%s", len(name), name, snap.bundles[name].Revision)
	}
	snap.revision = hex.EncodeToString(h.Sum(nil))
	return snap, nil
}

// moduleFile turns a store module id ("/policies/x.rego", "bundle/policies/x.rego") into a
// relative file path ending in .rego.
func moduleFile(id string) string {
	name := path.Clean("/" + id)[1:]
	if !strings.HasSuffix(name, ".rego") {
		name += ".rego"
	}
	return name
}

// withoutBundleRecords is the store's data without data.system.bundles, where OPA keeps each
// bundle's manifest: not the policy's data.
func withoutBundleRecords(data any) any {
	root, ok := data.(map[string]any)
	if !ok {
		return data
	}
	sys, ok := root["system"].(map[string]any)
	if !ok {
		return root
	}
	out := maps.Clone(root)
	rest := make(map[string]any, len(sys))
	for k, v := range sys {
		if k != "bundles" {
			rest[k] = v
		}
	}
	if len(rest) == 0 {
		delete(out, "system")
	} else {
		out["system"] = rest
	}
	return out
}
