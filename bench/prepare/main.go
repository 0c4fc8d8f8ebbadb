// Command prepare serves the upstream for bench/run.sh (the demo member site,
// plus a tiny /bench/ page) and, once the gateway is up, signs a member in,
// enrols an authenticator and writes the resulting Cookie header to a file,
// so that wrk can replay a verified member's requests: the hot path.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"html"
	"io"
	"log"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/signal"
	"regexp"
	"strings"
	"syscall"
	"time"

	"github.com/pquerna/otp/totp"

	"github.com/caddy-twofactor/twofactor/examples/membersite"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:19080", "address for the upstream")
	gateway := flag.String("gateway", "http://127.0.0.1:19082", "the gateway with two_factor")
	out := flag.String("cookie-file", "cookie.txt", "where to write the Cookie header")
	flag.Parse()

	site := membersite.New(membersite.DemoMembers())
	mux := http.NewServeMux()
	mux.HandleFunc("/bench/", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok") })
	mux.Handle("/", site)
	srv := &http.Server{Addr: *listen, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Fatal(err)
		}
	}()

	cookie, err := verifiedMember(*gateway)
	if err != nil {
		log.Fatal(err)
	}
	if err := os.WriteFile(*out, []byte(cookie), 0o600); err != nil {
		log.Fatal(err)
	}

	stop := make(chan os.Signal, 1)
	signal.Notify(stop, os.Interrupt, syscall.SIGTERM)
	<-stop
	_ = srv.Shutdown(context.Background())
}

var (
	csrfField  = regexp.MustCompile(`name="csrf" value="([^"]+)"`)
	otpauthURI = regexp.MustCompile(`href="(otpauth://[^"]+)"`)
)

// verifiedMember signs alice in through the gateway, enrols her and returns
// the Cookie header of her verified session.
func verifiedMember(gateway string) (string, error) {
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, Timeout: 10 * time.Second}
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := c.Get(gateway + "/")
		if err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("gateway %s not reachable: %w", gateway, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	post := func(path string, form url.Values) (string, error) {
		req, _ := http.NewRequest(http.MethodPost, gateway+path, strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		resp, err := c.Do(req)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return string(b), err
	}
	if _, err := post("/login", url.Values{"id": {"alice"}, "password": {"alice-password"}}); err != nil {
		return "", err
	}
	resp, err := c.Get(gateway + "/.2fa/enrol?return_to=%2Fbench%2F")
	if err != nil {
		return "", err
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	m := csrfField.FindStringSubmatch(string(page))
	if m == nil {
		return "", errors.New("no enrolment form (is alice already enrolled in this store?)")
	}
	qr, err := post("/.2fa/enrol", url.Values{"csrf": {m[1]}, "return_to": {"/bench/"}})
	if err != nil {
		return "", err
	}
	link := otpauthURI.FindStringSubmatch(qr)
	if link == nil {
		return "", errors.New("no otpauth link on the enrolment page")
	}
	u, err := url.Parse(html.UnescapeString(link[1]))
	if err != nil {
		return "", err
	}
	code, err := totp.GenerateCode(u.Query().Get("secret"), time.Now())
	if err != nil {
		return "", err
	}
	form := url.Values{"csrf": {csrfField.FindStringSubmatch(qr)[1]}, "return_to": {"/bench/"}, "code": {code}}
	if _, err := post("/.2fa/enrol/confirm", form); err != nil {
		return "", err
	}
	g, _ := url.Parse(gateway)
	var parts []string
	for _, ck := range jar.Cookies(g) {
		parts = append(parts, ck.Name+"="+ck.Value)
	}
	header := strings.Join(parts, "; ")
	if !strings.Contains(header, "2fa_session=") {
		return "", errors.New("enrolment did not produce a session")
	}
	return header, nil
}
