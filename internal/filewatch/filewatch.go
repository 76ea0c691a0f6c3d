// Package filewatch rereads files when they change: the decision keys of both binaries and
// mgmtproxy's M2M secret, so they rotate without a restart.
package filewatch

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/fsnotify/fsnotify"
)

// settle is how long a burst of events may last: writers replace a file in several steps.
const settle = 50 * time.Millisecond

// Watch calls reload after each burst of changes to paths (fsnotify) and every interval whatever
// fsnotify says (Kubernetes updates a mounted Secret by swapping a symlink, which not every watch
// reports), until ctx ends. A path that is a directory counts every change in it. Any other path
// is a file watched through its directory, where only changes to that name count, or to a name
// starting with ".." (the Secret's ..data swap): a log file written beside a key must not have the
// key reread on every line. The watches are set before Watch returns; reload runs on a goroutine
// of Watch's, never twice at once. A directory that cannot be watched is logged and reread on the
// interval only.
func Watch(ctx context.Context, paths []string, interval time.Duration, log *slog.Logger, reload func()) {
	watched := map[string]*watchedDir{}
	for _, p := range paths {
		p = filepath.Clean(p)
		if st, err := os.Stat(p); err == nil && st.IsDir() {
			watched[p] = &watchedDir{all: true}
			continue
		}
		dir := filepath.Dir(p)
		if watched[dir] == nil {
			watched[dir] = &watchedDir{names: map[string]bool{}}
		}
		if d := watched[dir]; d.names != nil {
			d.names[filepath.Base(p)] = true
		}
	}
	var events <-chan fsnotify.Event
	w, err := fsnotify.NewWatcher()
	if err != nil {
		log.Warn("files not watched; rereading them periodically", "paths", paths, "every", interval, "err", err)
	} else {
		for dir := range watched {
			if err := w.Add(dir); err != nil {
				log.Warn("directory not watched; rereading it periodically", "dir", dir, "every", interval, "err", err)
			}
		}
		events = w.Events
		go func() {
			for range w.Errors {
			}
		}()
	}
	matters := func(e fsnotify.Event) bool {
		d := watched[filepath.Dir(e.Name)]
		name := filepath.Base(e.Name)
		return d != nil && (d.all || d.names[name] || strings.HasPrefix(name, ".."))
	}
	go func() {
		if w != nil {
			defer w.Close()
		}
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case e := <-events:
				if !matters(e) {
					continue
				}
				time.Sleep(settle)
				for drained := false; !drained; {
					select {
					case <-events:
					default:
						drained = true
					}
				}
			case <-tick.C:
			}
			reload()
		}
	}()
}

// watchedDir says which changes in a watched directory count: all of them, or those to names.
type watchedDir struct {
	all   bool
	names map[string]bool
}
