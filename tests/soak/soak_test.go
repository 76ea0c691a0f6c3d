//go:build e2e

package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"
)

// TestShortSoak runs the soak for 20 s at the full rates: no error, the rates met, heap,
// goroutines and file descriptors flat from the first to the last quarter. On a machine too
// busy to hold the rate, the rate verdicts fail: the report says so, with the load average.
func TestShortSoak(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cfg := defaultConfig()
	cfg.Duration, cfg.Warmup = 20*time.Second, 5*time.Second
	var out bytes.Buffer
	ok, err := run(ctx, cfg, &out)
	t.Log("\n" + out.String())
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(out.String(), "PASS  "); n != 11 {
		t.Errorf("%d verdicts passed, want all 11", n)
	}
	if !ok {
		t.Error("the soak failed a criterion (see the report above)")
	}
}
