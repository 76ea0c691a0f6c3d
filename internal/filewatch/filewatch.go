// Package filewatch rereads files when they change: the decision keys of both binaries and
// mgmtproxy's M2M secret, so they rotate without a restart.
package filewatch

import (
	"context"
	"log/slog"
	"time"

	"github.com/fsnotify/fsnotify"
)

// settle is how long a burst of events may last: writers replace a file in several steps.
const settle = 50 * time.Millisecond

// Watch calls reload after each burst of changes in dirs (fsnotify) and every interval whatever
// fsnotify says (Kubernetes updates a mounted Secret by swapping a symlink, which not every watch
// reports), until ctx ends. The watches are set before Watch returns; reload runs on a goroutine of
// Watch's, never twice at once. A directory that cannot be watched is logged and reread on the
// interval only.
func Watch(ctx context.Context, dirs []string, interval time.Duration, log *slog.Logger, reload func()) {
	var events <-chan fsnotify.Event
	w, err := fsnotify.NewWatcher()
	if err != nil {
		log.Warn("files not watched; rereading them periodically", "dirs", dirs, "every", interval, "err", err)
	} else {
		for _, dir := range dirs {
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
			case <-events:
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
