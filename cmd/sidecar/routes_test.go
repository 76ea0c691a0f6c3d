package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// copyPolicies copies the shipped policies/ to a temporary directory and returns it.
func copyPolicies(t *testing.T) string {
	t.Helper()
	dst := t.TempDir()
	err := os.CopyFS(dst, os.DirFS("../../policies"))
	if err != nil {
		t.Fatal(err)
	}
	return dst
}

// editData decodes dir's orgauthz/data.json, lets edit change it and writes it back.
func editData(t *testing.T, dir string, edit func(data map[string]any)) {
	t.Helper()
	p := filepath.Join(dir, "orgauthz", "data.json")
	raw, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	var data map[string]any
	if err := json.Unmarshal(raw, &data); err != nil {
		t.Fatal(err)
	}
	edit(data)
	if raw, err = json.MarshalIndent(data, "", "  "); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, raw, 0o644); err != nil {
		t.Fatal(err)
	}
}

// checkPolicies runs `sidecar --check --check-offline` on dir and returns its output and error.
func checkPolicies(t *testing.T, dir string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errOut bytes.Buffer
	err = run(t.Context(), []string{"--check", "--check-offline", "--issuer", "http://127.0.0.1:1/oidc",
		"--api-resource", "https://api.example.com", "--admin-resource", "https://admin.example.com",
		"--decision-key", keypair(t), "--policies", dir}, noEnv, &out, &errOut)
	return out.String(), errOut.String(), err
}

// --check warns, without failing, of each policy route mgmtproxy would not carry out; the shipped
// policy has none.
func TestCheckWarnsOfRoutesMgmtproxyDoesNotPerform(t *testing.T) {
	stdout, stderr, err := checkPolicies(t, "../../policies")
	if err != nil || stderr != "" || stdout != "sidecar: configuration ok\n" {
		t.Fatalf("--check on the shipped policies = %v, stdout %q, stderr %q; want ok and no warning", err, stdout, stderr)
	}
	dir := copyPolicies(t)
	editData(t, dir, func(data map[string]any) {
		routes := data["routes"].([]any)
		data["routes"] = append(routes,
			map[string]any{"method": "GET", "path": "/api/organizations/{orgId}/applications",
				"org_token": map[string]any{"scope": "org:read"}},
			map[string]any{"method": "DELETE", "path": "/api/organizations/{id}",
				"admin": map[string]any{"scope": "admin:org:write"}})
	})
	stdout, stderr, err = checkPolicies(t, dir)
	if err != nil || stdout != "sidecar: configuration ok\n" {
		t.Fatalf("--check with extra rows = %v, stdout %q; want ok (warnings are not failures)", err, stdout)
	}
	want := []string{
		`sidecar: WARNING: policy route "GET /api/organizations/{orgId}/applications" (data.orgauthz.routes[15]): mgmtproxy does not perform it`,
		`sidecar: WARNING: policy route "DELETE /api/organizations/{id}" (data.orgauthz.routes[16]): mgmtproxy performs it as "DELETE /api/organizations/{orgId}"`,
	}
	lines := strings.Split(strings.TrimSuffix(stderr, "\n"), "\n")
	if len(lines) != len(want) {
		t.Fatalf("--check stderr:\n%s\nwant %d warnings", stderr, len(want))
	}
	for i := range want {
		if !strings.HasPrefix(lines[i], want[i]) {
			t.Errorf("warning %d = %s\nwant it to start %s", i, lines[i], want[i])
		}
	}
}

// exampleMarker introduces a block of policies/README.md that TestPolicyReadmeExamples applies:
// <!-- example NAME: ACTION [FILE] --> right before a fenced block.
var exampleMarker = regexp.MustCompile("(?m)^<!-- example ([a-z-]+): ([a-z-]+)(?: (\\S+))? -->\n```[a-z]*\n((?s:.*?))```\n")

// TestPolicyReadmeExamples applies the examples of policies/README.md, as written, each to its own
// copy of policies/, and requires of the result what CI requires of the shipped policy: opa fmt,
// opa test, and the sidecar's own load rules (--check), printing what the README shows it prints.
func TestPolicyReadmeExamples(t *testing.T) {
	readme, err := os.ReadFile("../../policies/README.md")
	if err != nil {
		t.Fatal(err)
	}
	examples := map[string][][]string{}
	var names []string
	for _, m := range exampleMarker.FindAllStringSubmatch(string(readme), -1) {
		if examples[m[1]] == nil {
			names = append(names, m[1])
		}
		examples[m[1]] = append(examples[m[1]], m[2:])
	}
	if strings.Count(string(readme), "<!-- example ") != len(exampleMarker.FindAllString(string(readme), -1)) {
		t.Fatal("an <!-- example … --> marker is not right before a fenced block")
	}
	if len(names) != 2 {
		t.Fatalf("examples %q, want add-route and grant-role", names)
	}
	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			dir := copyPolicies(t)
			var wantOutput []string
			for _, step := range examples[name] {
				action, file, block := step[0], step[1], step[2]
				switch action {
				case "append-row", "set":
					if action == "set" {
						block = "{" + block + "}"
					}
					var v any
					if err := json.Unmarshal([]byte(block), &v); err != nil {
						t.Fatalf("%s %s: the block is not JSON: %v", action, file, err)
					}
					if file != "orgauthz/data.json" {
						t.Fatalf("%s %s: only orgauthz/data.json is data", action, file)
					}
					editData(t, dir, func(data map[string]any) {
						if action == "append-row" {
							data["routes"] = append(data["routes"].([]any), v)
							return
						}
						for k, x := range v.(map[string]any) {
							data[k] = x
						}
					})
				case "append":
					p := filepath.Join(dir, file)
					old, err := os.ReadFile(p)
					if err != nil {
						t.Fatal(err)
					}
					if err := os.WriteFile(p, append(append(old, '\n'), block...), 0o644); err != nil {
						t.Fatal(err)
					}
				case "check-output":
					for line := range strings.Lines(block) {
						if !strings.HasPrefix(line, "$ ") {
							wantOutput = append(wantOutput, line)
						}
					}
				default:
					t.Fatalf("unknown example action %q", action)
				}
			}
			for _, args := range [][]string{{"fmt", "--list", "--fail"}, {"test"}} {
				cmd := exec.CommandContext(t.Context(), "go", append(append([]string{"tool", "opa"}, args...), dir)...)
				cmd.Dir = "../.."
				if out, err := cmd.CombinedOutput(); err != nil {
					t.Errorf("opa %s on the %s example: %v\n%s", strings.Join(args, " "), name, err, out)
				}
			}
			stdout, stderr, err := checkPolicies(t, dir)
			if err != nil {
				t.Fatalf("--check on the %s example = %v", name, err)
			}
			// An example without a check-output block must check clean.
			want := strings.Join(wantOutput, "")
			if wantOutput == nil {
				want = "sidecar: configuration ok\n"
			}
			if got := stderr + stdout; got != want {
				t.Errorf("--check on the %s example printed:\n%s\nwant (the README):\n%s", name, got, want)
			}
		})
	}
}
