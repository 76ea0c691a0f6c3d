// Command nullproxy is mgmtproxy's floor in the benchmarks: a Go reverse proxy that sends every
// request to one upstream with a fixed Authorization header and does nothing else. Run beside
// mgmtproxy on the same core, it shows what one more HTTP hop costs on the host, so that what
// mgmtproxy's own work adds can be told apart from it. It is a benchmark helper, not a product.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/orgauthz/orgauthz/mgmtproxy"
)

func main() {
	addr := flag.String("listen-addr", "127.0.0.1:8081", "HTTP listen address")
	upstream := flag.String("upstream", "", "base URL every request is sent to (required)")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: nullproxy --upstream URL [--listen-addr ADDR]\n"+
			"The Authorization header sent upstream is $NULLPROXY_AUTHORIZATION.\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	if err := run(*addr, *upstream, os.Getenv("NULLPROXY_AUTHORIZATION")); err != nil {
		fmt.Fprintln(os.Stderr, "nullproxy:", err)
		os.Exit(1)
	}
}

func run(addr, upstream, authorization string) error {
	u, err := url.Parse(upstream)
	if err != nil || u.Scheme == "" || u.Host == "" {
		return fmt.Errorf("--upstream %q: want an absolute URL", upstream)
	}
	proxy := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(u)
			r.Out.Header.Set("Authorization", authorization)
		},
		Transport: mgmtproxy.UpstreamTransport(mgmtproxy.DefaultConfig().UpstreamTimeout),
	}
	srv := &http.Server{Addr: addr, Handler: proxy, ReadHeaderTimeout: 5 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		srv.Close()
	}()
	if err := srv.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
