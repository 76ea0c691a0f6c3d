package envoy_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// The repository's Dockerfile, read from this package's folder.
const dockerfilePath = "../Dockerfile"

// imageTargets are the Dockerfile targets that ship, named as the manifests name their images.
var imageTargets = []string{"sidecar", "mgmtproxy"}

// instruction is one Dockerfile instruction, continuations joined.
type instruction struct {
	cmd  string // upper-case keyword
	args string
}

// stage is one FROM and what follows it.
type stage struct {
	from, name string
	ins        []instruction
}

func (s stage) all(cmd string) []string {
	var out []string
	for _, in := range s.ins {
		if in.cmd == cmd {
			out = append(out, in.args)
		}
	}
	return out
}

var (
	fromLine      = regexp.MustCompile(`^(?i)(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+([a-z0-9][a-z0-9._-]*))?$`)
	dockerKeyword = regexp.MustCompile(`^[A-Za-z]+$`)
)

// parseDockerfile splits a Dockerfile into stages: comments and blank lines dropped, lines ending
// in "\" joined, ARG allowed before the first FROM, anything else there an error.
func parseDockerfile(data []byte) ([]stage, error) {
	if len(data) > maxConfigBytes {
		return nil, fmt.Errorf("Dockerfile is %d bytes, over %d", len(data), maxConfigBytes)
	}
	var stages []stage
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, maxConfigBytes)
	var pending strings.Builder
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(line, "#") || (line == "" && pending.Len() == 0) {
			continue
		}
		if cont, ok := strings.CutSuffix(line, `\`); ok {
			pending.WriteString(cont + " ")
			continue
		}
		pending.WriteString(line)
		full := pending.String()
		pending.Reset()
		cmd, args, _ := strings.Cut(full, " ")
		if !dockerKeyword.MatchString(cmd) {
			return nil, fmt.Errorf("not an instruction: %.60q", full)
		}
		in := instruction{cmd: strings.ToUpper(cmd), args: strings.Join(strings.Fields(args), " ")}
		switch {
		case in.cmd == "FROM":
			m := fromLine.FindStringSubmatch(in.args)
			if m == nil {
				return nil, fmt.Errorf("FROM %.60q: want IMAGE [AS name]", in.args)
			}
			stages = append(stages, stage{from: m[1], name: m[2]})
		case len(stages) == 0 && in.cmd != "ARG":
			return nil, fmt.Errorf("%s before the first FROM", in.cmd)
		case len(stages) > 0:
			stages[len(stages)-1].ins = append(stages[len(stages)-1].ins, in)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if pending.Len() > 0 {
		return nil, errors.New("the last instruction ends in a line continuation")
	}
	if len(stages) == 0 {
		return nil, errors.New("no FROM")
	}
	return stages, nil
}

var pinned = regexp.MustCompile(`^[a-z0-9./_-]+:[A-Za-z0-9._-]+@sha256:[0-9a-f]{64}$`)

// checkDockerfile: pinned bases; each shipped target a distroless/static stage without a shell,
// as a non-root USER, running only its own static, version-stamped binary.
func checkDockerfile(stages []stage, module string) error {
	var errs []error
	byName := map[string]stage{}
	for _, s := range stages {
		if s.name != "" {
			byName[s.name] = s
		}
	}
	for _, s := range stages {
		if _, internal := byName[s.from]; !internal && !pinned.MatchString(s.from) {
			errs = append(errs, fmt.Errorf("FROM %s is not pinned to a tag and a sha256 digest", s.from))
		}
	}
	build, ok := byName["build"]
	if !ok {
		return errors.Join(append(errs, errors.New("no stage named build"))...)
	}
	runs := strings.Join(build.all("RUN"), "\n")
	stamp := "-X " + module + "/internal/version.Version=$VERSION"
	for _, want := range []string{"CGO_ENABLED=0", stamp, "./cmd/sidecar", "./cmd/mgmtproxy"} {
		if !strings.Contains(runs, want) {
			errs = append(errs, fmt.Errorf("the build stage's RUN lacks %q", want))
		}
	}
	for _, name := range imageTargets {
		s, ok := byName[name]
		if !ok {
			errs = append(errs, fmt.Errorf("no target %s", name))
			continue
		}
		if !strings.HasPrefix(s.from, "gcr.io/distroless/static") && s.from != "scratch" {
			errs = append(errs, fmt.Errorf("target %s is FROM %s, want distroless/static or scratch (no shell)", name, s.from))
		}
		for _, cmd := range []string{"RUN", "SHELL"} {
			if len(s.all(cmd)) > 0 {
				errs = append(errs, fmt.Errorf("target %s has %s: the final stage has no shell", name, cmd))
			}
		}
		users := s.all("USER")
		if len(users) == 0 {
			errs = append(errs, fmt.Errorf("target %s sets no USER", name))
		} else if u, _, _ := strings.Cut(users[len(users)-1], ":"); u == "0" || u == "root" || u == "" {
			errs = append(errs, fmt.Errorf("target %s runs as USER %s", name, users[len(users)-1]))
		}
		var ep []string
		if e := s.all("ENTRYPOINT"); len(e) != 1 || json.Unmarshal([]byte(e[0]), &ep) != nil || !slices.Equal(ep, []string{"/" + name}) {
			errs = append(errs, fmt.Errorf("target %s ENTRYPOINT = %q, want exec form [\"/%s\"]", name, e, name))
		}
		if !slices.Contains(s.all("COPY"), "--from=build /out/"+name+" /"+name) {
			errs = append(errs, fmt.Errorf("target %s does not copy /out/%s from the build stage", name, name))
		}
	}
	return errors.Join(errs...)
}

func modulePath(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile("../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^module\s+(\S+)`).FindSubmatch(data)
	if m == nil {
		t.Fatal("go.mod has no module line")
	}
	return string(m[1])
}

func readDockerfile(t *testing.T) []stage {
	t.Helper()
	data, err := os.ReadFile(dockerfilePath)
	if err != nil {
		t.Fatal(err)
	}
	stages, err := parseDockerfile(data)
	if err != nil {
		t.Fatalf("%s: %v", dockerfilePath, err)
	}
	return stages
}

func TestDockerfile(t *testing.T) {
	if err := checkDockerfile(readDockerfile(t), modulePath(t)); err != nil {
		t.Errorf("%s:\n%v", dockerfilePath, err)
	}
}

// TestImagesAgree: the Dockerfile, `make image`, the Kubernetes base, the compose file and the
// README name the same images, ports and paths.
func TestImagesAgree(t *testing.T) {
	stages := readDockerfile(t)
	exposed := map[string][]string{}
	for _, s := range stages {
		for _, e := range s.all("EXPOSE") {
			exposed[s.name] = append(exposed[s.name], strings.Fields(e)...)
		}
	}

	// Kubernetes: each container runs its own target's image, and every port it declares is one
	// the image exposes.
	deps := byKind(kustomize(t, baseDir), "Deployment")
	if len(deps) != 1 {
		t.Fatalf("%d Deployments, want 1", len(deps))
	}
	for _, c := range list(get(deps[0], "spec", "template", "spec", "containers")) {
		name := str(get(c, "name"))
		if got, want := get(c, "image"), "orgauthz/"+name+":dev"; got != want {
			t.Errorf("container %s image = %v, want %s (`make image`)", name, got, want)
		}
		for _, p := range list(get(c, "ports")) {
			if port := fmt.Sprint(get(p, "containerPort")); !slices.Contains(exposed[name], port) {
				t.Errorf("container %s declares port %s, which target %s does not EXPOSE (%v)", name, port, name, exposed[name])
			}
		}
	}

	// Compose: the same images, built from the same targets, with the same ports.
	compose := docs(t, "docker-compose.yaml")[0]
	for _, name := range append([]string{"fakelogto"}, imageTargets...) {
		s := get(compose, "services", name)
		if got, want := get(s, "image"), "orgauthz/"+name+":dev"; got != want {
			t.Errorf("compose service %s image = %v, want %s", name, got, want)
		}
		if !slices.ContainsFunc(stages, func(st stage) bool { return st.name == name }) {
			t.Errorf("compose builds target %s, which the Dockerfile lacks", name)
		}
		for _, a := range list(get(s, "command")) {
			if _, v, ok := strings.Cut(str(a), "-addr="); ok {
				if _, port, err := net.SplitHostPort(v); err == nil && port != "9191" && !slices.Contains(exposed[name], port) {
					t.Errorf("compose service %s listens on %s, which target %s does not EXPOSE (%v)", name, v, name, exposed[name])
				}
			}
		}
	}

	// The sidecar image ships the default policy where compose points --policies.
	var sidecarCopies []string
	for _, s := range stages {
		if s.name == "sidecar" {
			sidecarCopies = s.all("COPY")
		}
	}
	if !slices.Contains(sidecarCopies, "--from=build /src/policies /policies") ||
		!slices.Contains(list(get(compose, "services", "sidecar", "command")), "--policies=/policies") {
		t.Error("the sidecar image's /policies and compose's --policies=/policies disagree")
	}

	// make image tags what the manifests run.
	mk, err := os.ReadFile("../Makefile")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"IMAGE_TAG ?= dev", "for t in " + strings.Join(imageTargets, " ") + ";", "--target $$t", "-t orgauthz/$$t:$(IMAGE_TAG)"} {
		if !bytes.Contains(mk, []byte(want)) {
			t.Errorf("Makefile image target lacks %q", want)
		}
	}

	// The README documents the same names.
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"orgauthz/sidecar:dev", "orgauthz/mgmtproxy:dev", "make image", baseDir, exampleDir,
		"--metrics-addr", sidecarMetricsPort, proxyMetricsPort, "decision_id", "orgauthz-m2m", "orgauthz-decision-key", "orgauthz-policies"} {
		if !bytes.Contains(readme, []byte(want)) {
			t.Errorf("envoy/README.md does not mention %s", want)
		}
	}
}

// TestDockerfileCheckerCatches proves checkDockerfile fails on the mistakes it exists for.
func TestDockerfileCheckerCatches(t *testing.T) {
	data, err := os.ReadFile(dockerfilePath)
	if err != nil {
		t.Fatal(err)
	}
	good := string(data)
	for _, tc := range []struct{ name, old, new string }{
		{"unpinned base", "golang:1.26@sha256:", "golang:1.26@x"},
		{"tag without digest", "static-debian12:nonroot@sha256:afa5c872c891853ca7fcf1f12c3edb23f7eeef36189728842dd51042ff57f7ab AS mgmtproxy", "static-debian12:nonroot AS mgmtproxy"},
		{"cgo on", "CGO_ENABLED=0 GOOS", "CGO_ENABLED=1 GOOS"},
		{"version not stamped", "internal/version.Version=$VERSION", "main.version=$VERSION"},
		{"root user", "USER 65532:65532\nEXPOSE 8081", "USER root\nEXPOSE 8081"},
		{"no user", "USER 65532:65532\nEXPOSE 9191", "EXPOSE 9191"},
		{"a shell in the final stage", "gcr.io/distroless/static-debian12:nonroot@sha256:afa5c872c891853ca7fcf1f12c3edb23f7eeef36189728842dd51042ff57f7ab AS sidecar",
			"debian:12@sha256:0000000000000000000000000000000000000000000000000000000000000000 AS sidecar"},
		{"RUN in the final stage", "ENTRYPOINT [\"/mgmtproxy\"]", "RUN true\nENTRYPOINT [\"/mgmtproxy\"]"},
		{"shell-form entrypoint", "ENTRYPOINT [\"/sidecar\"]", "ENTRYPOINT /sidecar"},
		{"target renamed", " AS mgmtproxy", " AS proxy"},
		{"binary not built", "./cmd/mgmtproxy ", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if !strings.Contains(good, tc.old) {
				t.Fatalf("the Dockerfile no longer contains %q", tc.old)
			}
			stages, err := parseDockerfile([]byte(strings.Replace(good, tc.old, tc.new, 1)))
			if err == nil {
				err = checkDockerfile(stages, "github.com/orgauthz/orgauthz")
			}
			if err == nil {
				t.Error("the broken Dockerfile passed")
			}
			t.Logf("caught: %.200v", err)
		})
	}
}

func TestParseDockerfileHostileInput(t *testing.T) {
	for _, tc := range []struct{ name, in string }{
		{"empty", ""},
		{"comments only", "# a\n# b\n"},
		{"instruction before FROM", "RUN rm -rf /\nFROM scratch\n"},
		{"dangling continuation", "FROM scratch\nRUN a \\"},
		{"not an instruction", "FROM scratch\n\x00\x01 junk\n"},
		{"FROM without image", "FROM\n"},
		{"oversized", "FROM scratch\nLABEL a=" + strings.Repeat("x", maxConfigBytes) + "\n"},
		{"endless continuation", "FROM scratch\n" + strings.Repeat("RUN \\\n", 200000)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if stages, err := parseDockerfile([]byte(tc.in)); err == nil {
				t.Errorf("parseDockerfile = %d stages, want an error", len(stages))
			}
		})
	}
}
