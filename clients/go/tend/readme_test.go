package tend_test

// The complete program in clients/go/README.md, built and run against the real daemon, so the
// README cannot drift from the client.

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/tend-dev/tend/clients/go/tend"
)

// readmeProgram is the README's first ```go block that is a whole program.
func readmeProgram(t *testing.T) string {
	t.Helper()
	text, err := os.ReadFile(filepath.Join("..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range regexp.MustCompile("(?s)```go\n(.*?)```").FindAllStringSubmatch(string(text), -1) {
		if strings.Contains(m[1], "\npackage main\n") {
			return m[1]
		}
	}
	t.Fatal("clients/go/README.md has no complete program (a ```go block with package main)")
	return ""
}

func TestReadmeProgramBuildsAndRuns(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("go is not on PATH")
	}
	d := startDaemon(t)
	// Inside the first GOPATH entry in GOPATH mode (scripts/test-go), beside the module.
	gopath := filepath.SplitList(os.Getenv("GOPATH"))
	base := t.TempDir()
	if os.Getenv("GO111MODULE") == "off" && len(gopath) > 0 && gopath[0] != "" {
		base = filepath.Join(gopath[0], "src")
	}
	dir, err := os.MkdirTemp(base, "readmeexample")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte(readmeProgram(t)), 0o644); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "runexample")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Dir = dir
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build of the README program: %v\n%s", err, out)
	}
	var stdout, stderr bytes.Buffer
	run := exec.Command(bin)
	run.Env = append(cleanEnv(), tend.EnvAddr+"="+d.addr())
	run.Stdout, run.Stderr = &stdout, &stderr
	if err := run.Run(); err != nil {
		t.Fatalf("the README program failed: %v\n%s%s", err, stdout.String(), stderr.String())
	}
	if got, want := stdout.String(), "hello\nexit code: 3\n"; got != want {
		t.Errorf("stdout = %q, want %q", got, want)
	}
	if got, want := stderr.String(), "oops\n"; got != want {
		t.Errorf("stderr = %q, want %q", got, want)
	}
}
