// Command demo runs the demo member site and, in front of it, Caddy with the
// two_factor plugin configured by Caddyfile.example. Run it from the
// repository root:
//
//	go run ./examples/demo          # state kept in ./demo-state between runs
//	go run ./examples/demo -reset   # start over: delete ./demo-state first
//
// Everything the demo keeps lives in ./demo-state: Caddy's data directory
// (the generated key and the database), Caddy's log (caddy.log) and the
// development mailbox, whose codes the demo also prints as they arrive.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
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
	stateDir    = "demo-state"
	startupWait = 10 * time.Second
)

func main() {
	reset := flag.Bool("reset", false, "delete "+stateDir+" first, to start over")
	flag.Parse()
	if err := run(*reset); err != nil {
		// Not the log package: Caddy sends it to its own log.
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

func run(reset bool) error {
	body, err := os.ReadFile(caddyfile)
	if err != nil {
		return fmt.Errorf("%w (run the demo from the repository root)", err)
	}
	if reset {
		if err := os.RemoveAll(stateDir); err != nil {
			return err
		}
	}
	// Caddy's data and config directories inside the demo's folder, so a
	// run never touches the user's own Caddy, and -reset starts over.
	for env, dir := range map[string]string{"XDG_DATA_HOME": "data", "XDG_CONFIG_HOME": "config"} {
		abs, err := filepath.Abs(filepath.Join(stateDir, dir))
		if err != nil {
			return err
		}
		os.Setenv(env, abs)
	}
	if err := os.MkdirAll(stateDir, 0o700); err != nil {
		return err
	}

	members := membersite.DemoMembers()
	ln, err := net.Listen("tcp", memberAddr)
	if err != nil {
		return fmt.Errorf("member site: %w", err)
	}
	site := &http.Server{Handler: membersite.New(members), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := site.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			fmt.Fprintln(os.Stderr, "demo: member site:", err)
			os.Exit(1)
		}
	}()
	defer site.Close()

	cfg, warnings, err := caddyconfig.GetAdapter("caddyfile").Adapt(body, map[string]any{"filename": caddyfile})
	if err != nil {
		return err
	}
	for _, w := range warnings {
		fmt.Fprintf(os.Stderr, "%s:%d: %s\n", w.File, w.Line, w.Message)
	}
	logPath := filepath.Join(stateDir, "caddy.log")
	if cfg, err = logToFile(cfg, logPath); err != nil {
		return err
	}
	if err := caddy.Load(cfg, false); err != nil {
		return fmt.Errorf("%w (Caddy's log: %s)", err, logPath)
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
	fmt.Printf("\nThe account admin may also use the admin pages, %s.2fa/admin/ (with an authenticator app).\n", gatewayURL)
	fmt.Println("\nUse an authenticator app (Google Authenticator, Microsoft Authenticator, 1Password, ...),")
	fmt.Println("or codes by email or SMS: they are not sent, but printed here as they arrive.")
	fmt.Printf("\nThe demo keeps its state in ./%s (Caddy's log: %s); start over with:\n", stateDir, logPath)
	fmt.Println("  go run ./examples/demo -reset")
	fmt.Println("\nPress Ctrl+C to stop.")

	stop := make(chan os.Signal, 1)
	signal.Notify(stop, os.Interrupt, syscall.SIGTERM)
	printCodes(filepath.Join(stateDir, "mailbox"), stop)
	return nil
}

// logToFile sends Caddy's log to path, in its console format, so that the
// terminal shows the demo's own lines.
func logToFile(cfg []byte, path string) ([]byte, error) {
	var c map[string]any
	if err := json.Unmarshal(cfg, &c); err != nil {
		return nil, err
	}
	c["logging"] = map[string]any{"logs": map[string]any{"default": map[string]any{
		"writer":  map[string]any{"output": "file", "filename": path},
		"encoder": map[string]any{"format": "console", "level_format": "upper"},
	}}}
	return json.Marshal(c)
}

var codePattern = regexp.MustCompile(`\b[0-9]{6}\b`)

// printCodes prints each message the development mailbox writes, with its
// code, until stop.
func printCodes(dir string, stop <-chan os.Signal) {
	seen := map[string]bool{}
	if entries, err := os.ReadDir(dir); err == nil {
		for _, e := range entries {
			seen[e.Name()] = true // from an earlier run
		}
	}
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return
		case <-tick.C:
		}
		entries, err := os.ReadDir(dir)
		if err != nil {
			continue
		}
		var fresh []string
		for _, e := range entries {
			if !seen[e.Name()] && !strings.HasPrefix(e.Name(), ".") {
				seen[e.Name()] = true
				fresh = append(fresh, e.Name())
			}
		}
		sort.Strings(fresh)
		for _, name := range fresh {
			b, err := os.ReadFile(filepath.Join(dir, name))
			if err != nil {
				continue
			}
			to, code := "", codePattern.FindString(string(b))
			for _, line := range strings.Split(string(b), "\n") {
				if v, ok := strings.CutPrefix(line, "To: "); ok {
					to = v
					break
				}
			}
			if code == "" {
				fmt.Printf("[mailbox] a notice to %s (%s)\n", to, filepath.Join(dir, name))
				continue
			}
			fmt.Printf("[mailbox] code for %s: %s\n", to, code)
		}
	}
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
