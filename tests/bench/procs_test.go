package main

import (
	"strings"
	"testing"
	"time"
)

type parseStatTest struct {
	name    string
	stat    string
	want    time.Duration
	wantErr bool
}

func (tc parseStatTest) run(t *testing.T) {
	got, err := parseStat([]byte(tc.stat))
	if tc.wantErr {
		if err == nil {
			t.Errorf("parseStat(%q) = %v, want an error", tc.stat, got)
		}
		return
	}
	if err != nil || got != tc.want {
		t.Errorf("parseStat(%q) = %v, %v; want %v", tc.stat, got, err, tc.want)
	}
}

// A real /proc/<pid>/stat line, utime 250 and stime 31 ticks.
const statLine = "4242 (sidecar) S 1 4242 4242 0 -1 4194560 2530 0 0 0 250 31 0 0 20 0 9 0 3051 1283756032 10315 18446744073709551615 1 1 0 0 0 0 0 0 2143420159 0 0 0 17 0 0 0 0 0 0 0 0 0 0 0 0 0 0\n"

func TestParseStat(t *testing.T) {
	for _, tc := range []parseStatTest{
		{name: "real line", stat: statLine, want: 281 * clockTick},
		{name: "command with spaces and parentheses", stat: strings.Replace(statLine, "(sidecar)", "(a) b (c))", 1), want: 281 * clockTick},
		{name: "empty", stat: "", wantErr: true},
		{name: "no command", stat: "4242 sidecar S 1", wantErr: true},
		{name: "truncated", stat: "4242 (sidecar) S 1 4242 4242 0 -1 4194560 2530 0 0 0 250", wantErr: true},
		{name: "negative time", stat: strings.Replace(statLine, " 250 31 ", " -250 31 ", 1), wantErr: true},
		{name: "not a number", stat: strings.Replace(statLine, " 250 31 ", " 250 x1 ", 1), wantErr: true},
		{name: "overflow", stat: strings.Replace(statLine, " 250 31 ", " 99999999999999999999 31 ", 1), wantErr: true},
		{name: "only a parenthesis", stat: ")", wantErr: true},
	} {
		t.Run(tc.name, tc.run)
	}
}

func TestParseStatus(t *testing.T) {
	const status = "Name:\tsidecar\nVmPeak:\t 1283756 kB\nVmHWM:\t   61234 kB\nVmRSS:\t   41260 kB\nThreads:\t9\n"
	for _, tc := range []struct {
		status, field string
		want          int64
		wantErr       bool
	}{
		{status: status, field: "VmRSS", want: 41260 << 10},
		{status: status, field: "VmHWM", want: 61234 << 10},
		{status: status, field: "VmSwap", wantErr: true},
		{status: "VmRSS:\t 12 MB\n", field: "VmRSS", wantErr: true},
		{status: "VmRSS:\t -12 kB\n", field: "VmRSS", wantErr: true},
		{status: "VmRSS:\t kB\n", field: "VmRSS", wantErr: true},
		{status: "VmRSS:\t 99999999999999999 kB\n", field: "VmRSS", wantErr: true},
		{status: "VmRSSX:\t 12 kB\n", field: "VmRSS", wantErr: true},
		{status: "", field: "VmRSS", wantErr: true},
	} {
		got, err := parseStatus([]byte(tc.status), tc.field)
		if tc.wantErr {
			if err == nil {
				t.Errorf("parseStatus(%q, %s) = %d, want an error", tc.status, tc.field, got)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("parseStatus(%q, %s) = %d, %v; want %d", tc.status, tc.field, got, err, tc.want)
		}
	}
}

func TestParseCoreTime(t *testing.T) {
	const stat = "cpu  500 10 200 9000 5 1 2 3 0 0\n" +
		"cpu0 300 5 100 4000 3 1 1 2 0 0\n" +
		"cpu1 200 5 100 5000 2 0 1 1 0 0\n" +
		"intr 12345 0 0\n"
	for _, tc := range []struct {
		stat    string
		core    int
		want    time.Duration
		wantErr bool
	}{
		{stat: stat, core: 0, want: (300 + 5 + 100 + 1 + 1 + 2) * clockTick},
		{stat: stat, core: 1, want: (200 + 5 + 100 + 0 + 1 + 1) * clockTick},
		{stat: stat, core: 2, wantErr: true},
		{stat: "cpu0 1 2 3\n", core: 0, wantErr: true},
		{stat: "cpu0 1 2 x 4 5 6 7 8\n", core: 0, wantErr: true},
		{stat: "cpu0 1 2 -3 4 5 6 7 8\n", core: 0, wantErr: true},
		{stat: "cpu0 1 2 99999999999999999999 4 5 6 7 8\n", core: 0, wantErr: true},
		{stat: "cpu00 1 2 3 4 5 6 7 8\n", core: 0, wantErr: true},
		{stat: "", core: 0, wantErr: true},
	} {
		got, err := parseCoreTime([]byte(tc.stat), tc.core)
		if tc.wantErr {
			if err == nil {
				t.Errorf("parseCoreTime(%q, %d) = %v, want an error", tc.stat, tc.core, got)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("parseCoreTime(%q, %d) = %v, %v; want %v", tc.stat, tc.core, got, err, tc.want)
		}
	}
}
