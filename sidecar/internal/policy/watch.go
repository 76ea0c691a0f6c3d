package policy

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/fsnotify/fsnotify"
)

// debounce is how long Watch waits after the last change before reloading:
// editors, git and kubectl write several files, or one file in several steps.
const debounce = 200 * time.Millisecond

// dirPoll is how often Watch looks for a policy directory that is missing.
const dirPoll = time.Second

// Watch follows the policy directory and its subdirectories (including ones
// created later) and reloads after each burst of changes, calling onReload
// with the result of every load that changed something: nil when a new
// policy was installed, the error when it was rejected (the last good policy
// keeps serving). A write that leaves the files as they were reports
// nothing. Watch also loads once after it starts watching, so a change made
// between Load and Watch is not missed.
//
// onReload runs on Watch's goroutine; Watch waits for it to return.
//
// Watch returns nil when ctx ends, or an error if it cannot watch dir. It
// watches the directory dir resolves to when Watch starts: if dir is removed
// or its symlink retargeted, later changes are not seen. (A Kubernetes
// ConfigMap update swaps a symlink inside the mounted directory and is seen.)
//
// A directory missing when Watch starts is waited for (checked every
// dirPoll), then watched and loaded: a sidecar started before its policy
// volume was mounted becomes ready when it appears.
func (e *Engine) Watch(ctx context.Context, onReload func(error)) error {
	root, err := resolveDir(e.dir)
	for errors.Is(err, fs.ErrNotExist) {
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(dirPoll):
		}
		root, err = resolveDir(e.dir)
	}
	if err != nil {
		return err
	}
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("policy: watch: %w", err)
	}
	defer w.Close()
	if err := addTree(w, root); err != nil {
		return fmt.Errorf("policy: watch %s: %w", e.dir, err)
	}
	report := func(err error) {
		if onReload != nil && ctx.Err() == nil {
			onReload(err)
		}
	}
	reload := func() {
		if changed, err := e.load(ctx); changed {
			report(err)
		}
	}
	reload()

	timer := time.NewTimer(debounce)
	timer.Stop()
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-w.Events:
			if !ok {
				return errors.New("policy: watch: watcher closed")
			}
			if ev.Op == fsnotify.Chmod {
				continue
			}
			if ev.Has(fsnotify.Create) && !strings.HasPrefix(filepath.Base(ev.Name), ".") {
				if fi, err := os.Lstat(ev.Name); err == nil && fi.IsDir() {
					if err := addTree(w, ev.Name); err != nil {
						report(fmt.Errorf("policy: watch %s: %w", ev.Name, err))
					}
				}
			}
			timer.Reset(debounce)
		case _, ok := <-w.Errors:
			if !ok {
				return errors.New("policy: watch: watcher closed")
			}
			// An overflow or a similar fault may have dropped events:
			// reload to catch up.
			timer.Reset(debounce)
		case <-timer.C:
			reload()
		}
	}
}

// addTree watches dir and its subdirectories, skipping hidden ones and not
// following symlinks, within the bounds Load reads.
func addTree(w *fsnotify.Watcher, dir string) error {
	n := 0
	return filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if p != dir && errors.Is(err, fs.ErrNotExist) {
				return nil // removed while we walked
			}
			return err
		}
		if !d.IsDir() {
			return nil
		}
		if p != dir && strings.HasPrefix(d.Name(), ".") {
			return filepath.SkipDir
		}
		if n++; n > maxFiles {
			return fmt.Errorf("more than %d directories", maxFiles)
		}
		return w.Add(p)
	})
}
