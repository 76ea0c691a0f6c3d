package policy

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing/fstest"

	"github.com/orgauthz/orgauthz/decisionlog"
	"github.com/orgauthz/orgauthz/internal/confload"
)

// Bounds on what Load reads, so a stray file or a runaway generator cannot
// exhaust memory: policies are small text files.
const (
	maxTotalBytes = 4 << 20 // all policy and data files together
	maxFiles      = 1000
	maxDepth      = 16
)

// isPolicyFile reports whether a file name is part of the policy: Rego modules
// other than tests, and the data documents OPA bundles recognise.
func isPolicyFile(name string) bool {
	switch name {
	case "data.json", "data.yaml":
		return true
	}
	return strings.HasSuffix(name, ".rego") && !strings.HasSuffix(name, "_test.rego")
}

// isDataFile reports whether a policy file is a data document.
func isDataFile(name string) bool {
	return name == "data.json" || name == "data.yaml"
}

// snapshot is the policy directory read into memory: the files by their
// slash-separated path relative to the directory, and a hash of them.
type snapshot struct {
	files    fstest.MapFS
	revision string
	bundles  map[string]decisionlog.Bundle // LoadStore: the activated bundles' names and revisions
}

// readDir reads the policy files under dir (recursively, skipping hidden
// files and directories and not following symlinked directories) within the
// package's bounds, and computes their revision.
func readDir(dir string) (*snapshot, error) {
	root, err := resolveDir(dir)
	if err != nil {
		return nil, err
	}
	snap := &snapshot{files: fstest.MapFS{}}
	var total int64
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == root {
			return nil
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		if strings.HasPrefix(d.Name(), ".") {
			// Editor swap files, .git, and Kubernetes' ..data indirection
			// (its files are also linked from the top directory).
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if d.IsDir() {
			if strings.Count(rel, "/")+1 > maxDepth {
				return fmt.Errorf("%s: directories nested deeper than %d", rel, maxDepth)
			}
			return nil
		}
		if !isPolicyFile(d.Name()) {
			return nil
		}
		if d.Type()&fs.ModeSymlink != 0 {
			// A ConfigMap mounts its files as symlinks; follow those to
			// regular files only.
			fi, err := os.Stat(p)
			if err != nil {
				return err
			}
			if !fi.Mode().IsRegular() {
				return nil
			}
		} else if !d.Type().IsRegular() {
			return nil
		}
		if len(snap.files) == maxFiles {
			return fmt.Errorf("more than %d policy files", maxFiles)
		}
		data, err := readBounded(p, maxTotalBytes-total)
		if err != nil {
			return err
		}
		total += int64(len(data))
		if len(bytes.TrimSpace(data)) == 0 {
			return fmt.Errorf("%s: empty file", rel)
		}
		snap.files[rel] = &fstest.MapFile{Data: data, Mode: 0o444}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("policy: read %s: %w", dir, err)
	}
	snap.revision = revision(snap.files)
	return snap, nil
}

// resolveDir resolves symlinks in dir (filepath.WalkDir does not descend
// into a symlinked root) and checks that it is a directory.
func resolveDir(dir string) (string, error) {
	root, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return "", fmt.Errorf("policy: %w", err)
	}
	info, err := os.Stat(root)
	if err != nil {
		return "", fmt.Errorf("policy: %w", err)
	}
	if !info.IsDir() {
		return "", fmt.Errorf("policy: %s is not a directory", dir)
	}
	return root, nil
}

var errTooLarge = fmt.Errorf("policy files exceed %d bytes in total", maxTotalBytes)

// readBounded reads the file at p, failing if it holds more than limit bytes.
func readBounded(p string, limit int64) ([]byte, error) {
	data, err := confload.ReadFile(p, limit)
	if errors.Is(err, confload.ErrTooLarge) {
		return nil, errTooLarge
	}
	return data, err
}

// revision hashes the files' names and contents in name order (MapFS walks
// sorted), so the same tree always has the same revision.
func revision(files fstest.MapFS) string {
	h := sha256.New()
	_ = fs.WalkDir(files, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data := files[p].Data
		fmt.Fprintf(h, "%d:%s\x00%d:", len(p), p, len(data))
		h.Write(data)
		return nil
	})
	return hex.EncodeToString(h.Sum(nil))
}

// checkDataObjects verifies that every data file held an object: OPA's
// loader would otherwise accept an array or a scalar as the whole document
// under the file's directory.
func checkDataObjects(files fstest.MapFS, docs map[string]any) error {
	var errs []error
	for _, p := range slices.Sorted(maps.Keys(files)) {
		if !isDataFile(path.Base(p)) {
			continue
		}
		var doc any = docs
		for _, key := range strings.Split(path.Dir(p), "/") {
			if key == "." {
				break
			}
			m, _ := doc.(map[string]any)
			doc = m[key]
		}
		if _, ok := doc.(map[string]any); !ok {
			errs = append(errs, fmt.Errorf("%s: data document is not an object", p))
		}
	}
	return errors.Join(errs...)
}
