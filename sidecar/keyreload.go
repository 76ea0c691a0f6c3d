package sidecar

import (
	"context"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/orgauthz/orgauthz/decision"
	"github.com/orgauthz/orgauthz/internal/filewatch"
)

// keyRereadInterval is how often the decision key file is reread whatever fsnotify says.
const keyRereadInterval = 10 * time.Second

// signerFile is the signer of --decision-key, replaced when the file changes so the key rotates
// without a restart (README "Rotating the decision key"). A file that does not load leaves the
// last good key signing.
type signerFile struct {
	path    string
	ttl     time.Duration
	current atomic.Pointer[decision.Signer]
	log     *slog.Logger
	lastErr string // the last reload failure logged; only watch's goroutine uses it
}

func newSignerFile(path string, first *decision.Signer, log *slog.Logger) *signerFile {
	f := &signerFile{path: path, ttl: first.TTL(), log: log}
	f.current.Store(first)
	return f
}

// Sign signs with the key in force.
func (f *signerFile) Sign(c decision.Claims) (string, error) { return f.current.Load().Sign(c) }

// KeyID is the kid of the key in force.
func (f *signerFile) KeyID() string { return f.current.Load().KeyID() }

// watch rereads the file on every change to it and every keyRereadInterval until ctx ends.
func (f *signerFile) watch(ctx context.Context) {
	filewatch.Watch(ctx, []string{f.path}, keyRereadInterval, f.log, f.reload)
}

// reload installs the file's key when it loads and differs from the key in force.
func (f *signerFile) reload() {
	old := f.current.Load()
	s, err := decision.LoadSigner(f.path, f.ttl)
	if err != nil {
		if err.Error() != f.lastErr { // once per distinct problem, not every interval
			f.log.Error("decision key not reloaded: the last good key keeps signing", "kid", old.KeyID(), "err", err)
		}
		f.lastErr = err.Error()
		return
	}
	f.lastErr = ""
	if s.KeyID() != old.KeyID() {
		s.Now = old.Now
		f.current.Store(s)
		f.log.Info("decision key reloaded", "kid", s.KeyID(), "previous", old.KeyID())
	}
}
