// Command demo runs the demo member site and, in front of it, Caddy with the
// two_factor plugin configured by Caddyfile.example. Run it from the
// repository root:
//
//	go run ./examples/demo
package main

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	_ "github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	_ "github.com/caddyserver/caddy/v2/modules/standard"

	_ "github.com/caddy-twofactor/twofactor"
	"github.com/caddy-twofactor/twofactor/examples/membersite"
)

const (
	memberAddr  = "127.0.0.1:9080"
	gatewayURL  = "http://localhost:8080/"
	caddyfile   = "Caddyfile.example"
	startupWait = 10 * time.Second
)

func main() {
	if err := run(); err != nil {
		log.Fatal(err)
	}
}

func run() error {
	body, err := os.ReadFile(caddyfile)
	if err != nil {
		return fmt.Errorf("%w (run the demo from the repository root)", err)
	}

	members := membersite.DemoMembers()
	ln, err := net.Listen("tcp", memberAddr)
	if err != nil {
		return fmt.Errorf("member site: %w", err)
	}
	site := &http.Server{Handler: membersite.New(members), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := site.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Fatal(err)
		}
	}()
	defer site.Close()

	cfg, warnings, err := caddyconfig.GetAdapter("caddyfile").Adapt(body, map[string]any{"filename": caddyfile})
	if err != nil {
		return err
	}
	for _, w := range warnings {
		log.Printf("%s:%d: %s", w.File, w.Line, w.Message)
	}
	if err := caddy.Load(cfg, true); err != nil {
		return err
	}
	defer caddy.Stop() //nolint:errcheck

	ctx, cancel := context.WithTimeout(context.Background(), startupWait)
	defer cancel()
	if err := waitFor(ctx, gatewayURL); err != nil {
		return err
	}

	fmt.Printf("\nDemo member site behind caddy-twofactor: %s\n\n", gatewayURL)
	fmt.Println("Sign in with one of these accounts, then open the members area:")
	for _, m := range members {
		fmt.Printf("  ID %-8s password %s\n", m.ID, m.Password)
	}
	fmt.Println("\nUse an authenticator app (Google Authenticator, Microsoft Authenticator, 1Password, ...),")
	fmt.Println("or codes by email or SMS: this demo writes them to ./demo-mailbox and to the log.")
	fmt.Println("Press Ctrl+C to stop.")

	stop := make(chan os.Signal, 1)
	signal.Notify(stop, os.Interrupt, syscall.SIGTERM)
	<-stop
	return nil
}

func waitFor(ctx context.Context, url string) error {
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("caddy did not start serving %s: %w", url, err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}
