package testkit

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
)

// maxMetricsPage bounds a /metrics page.
const maxMetricsPage = 4 << 20

// ScrapeMetrics reads the unlabelled samples ("name value", no labels, no timestamp) of the
// Prometheus text page at url; every other line is skipped.
func ScrapeMetrics(ctx context.Context, url string) (map[string]float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: %s", url, resp.Status)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxMetricsPage+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxMetricsPage {
		return nil, fmt.Errorf("%s: over %d bytes", url, maxMetricsPage)
	}
	return ParseMetrics(b), nil
}

// ParseMetrics keeps the samples of a Prometheus text page written as "name value".
func ParseMetrics(b []byte) map[string]float64 {
	m := map[string]float64{}
	for line := range strings.Lines(string(b)) {
		f := strings.Fields(line)
		if len(f) != 2 || strings.HasPrefix(f[0], "#") || strings.ContainsAny(f[0], "{}") {
			continue
		}
		if v, err := strconv.ParseFloat(f[1], 64); err == nil {
			m[f[0]] = v
		}
	}
	return m
}
