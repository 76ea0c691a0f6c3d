package mgmtproxy

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/orgauthz/orgauthz/decision"
	"github.com/orgauthz/orgauthz/internal/filewatch"
)

// reloadInterval is how often the key and secret files are reread whatever fsnotify says: Kubernetes
// updates a mounted Secret by swapping a symlink, which not every watch reports.
const reloadInterval = 10 * time.Second

// maxPublicKeys bounds the keys of the --decision-public-key files and directories together.
const maxPublicKeys = 16

// publicKeyFiles expands the --decision-public-key paths: a file is itself, a directory is every
// *.pub file in it (not hidden ones: Kubernetes keeps its ..data there), so keys can be added and
// removed while mgmtproxy runs.
func publicKeyFiles(paths []string) ([]string, error) {
	var files []string
	for _, p := range paths {
		st, err := os.Stat(p)
		if err != nil {
			return nil, fmt.Errorf("decision public key: %w", err)
		}
		if !st.IsDir() {
			files = append(files, p)
			continue
		}
		entries, err := os.ReadDir(p)
		if err != nil {
			return nil, fmt.Errorf("decision public key: %w", err)
		}
		n := len(files)
		for _, e := range entries {
			name := e.Name()
			if !strings.HasPrefix(name, ".") && strings.HasSuffix(name, ".pub") {
				files = append(files, filepath.Join(p, name))
			}
		}
		if len(files) == n {
			return nil, fmt.Errorf("decision public key directory %s holds no *.pub file", p)
		}
	}
	if len(files) > maxPublicKeys {
		return nil, fmt.Errorf("more than %d decision public keys", maxPublicKeys)
	}
	return files, nil
}

// loadVerifier reads the keys of the --decision-public-key paths.
func loadVerifier(paths []string) (*decision.Verifier, error) {
	files, err := publicKeyFiles(paths)
	if err != nil {
		return nil, err
	}
	return decision.LoadVerifier(files...)
}

// reloader rereads the decision public keys and the M2M secret file when they change, so keys rotate
// and the secret is replaced without a restart. A broken new file leaves the last good set in force.
type reloader struct {
	p          *Proxy
	keyPaths   []string
	secretPath string // "" when the secret comes from the environment
	secret     string // in force
	interval   time.Duration
}

// start watches the files (before it returns: a change right after New is seen) and rereads them
// on every change and every interval until ctx ends.
func (rl *reloader) start(ctx context.Context) {
	paths := slices.Clone(rl.keyPaths)
	if rl.secretPath != "" {
		paths = append(paths, rl.secretPath)
	}
	filewatch.Watch(ctx, paths, rl.interval, rl.p.log, rl.reload)
}

// reload swaps in the keys and the secret when they changed and are valid.
func (rl *reloader) reload() {
	p := rl.p
	old := p.verifier.Load()
	v, err := loadVerifier(rl.keyPaths)
	switch {
	case err != nil:
		p.log.Error("decision public keys not reloaded: keeping the last good set", "kids", old.KeyIDs(), "err", err)
	case !sameKeys(v.KeyIDs(), old.KeyIDs()):
		// The new Verifier keeps the process's start (decision_stale) and clock; its replay cache
		// starts empty, which the revocation store's claim covers.
		v.Started, v.Now, v.MaxReplayEntries = old.Started, old.Now, old.MaxReplayEntries
		p.verifier.Store(v)
		p.log.Info("decision public keys reloaded", "kids", v.KeyIDs(), "previous", old.KeyIDs())
	}
	if rl.secretPath == "" {
		return
	}
	secret, err := readSecretFile(rl.secretPath, "m2m app secret")
	switch {
	case err != nil:
		p.log.Error("m2m app secret not reloaded: keeping the last good one", "err", err)
	case secret != rl.secret:
		rl.secret = secret
		p.tokens.setSecret(secret)
		p.log.Info("m2m app secret reloaded: new tokens are fetched with it")
	}
}

func sameKeys(a, b []string) bool {
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}
