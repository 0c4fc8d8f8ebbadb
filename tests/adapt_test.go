package tests

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddytest"

	twofactor "github.com/caddy-twofactor/twofactor"
)

// The adapt corpus, as Caddy's own: each caddyfile_adapt/*.caddyfiletest
// holds a Caddyfile, a line of dashes, and the JSON it must adapt to (or a
// part of the error it must fail with).

type adaptCase struct {
	name, caddyfile, expected string
}

func adaptCorpus(t *testing.T) []adaptCase {
	t.Helper()
	files, err := filepath.Glob("caddyfile_adapt/*.caddyfiletest")
	if err != nil || len(files) == 0 {
		t.Fatalf("no adapt corpus: %v", err)
	}
	var out []adaptCase
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		parts := strings.Split(string(b), "----------")
		if len(parts) != 2 {
			t.Fatalf("%s: want a Caddyfile, a line of dashes and the expected output", f)
		}
		out = append(out, adaptCase{filepath.Base(f), strings.TrimSpace(parts[0]) + "\n", strings.TrimSpace(parts[1])})
	}
	return out
}

func TestCaddyfileAdaptCorpus(t *testing.T) {
	for _, c := range adaptCorpus(t) {
		t.Run(c.name, func(t *testing.T) {
			if strings.HasPrefix(c.expected, "{") {
				if !caddytest.CompareAdapt(t, c.name, c.caddyfile, "caddyfile", c.expected) {
					t.Errorf("%s does not adapt to the JSON given", c.name)
				}
				return
			}
			_, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(c.caddyfile), nil)
			if err == nil || !strings.Contains(err.Error(), c.expected) {
				t.Errorf("want an error containing %q, got %v", c.expected, err)
			}
		})
	}
}

// Every option of the plugin, in every module, appears in the corpus's
// adapted JSON: each has a Caddyfile form that is tested.
func TestAdaptCorpusCoversEveryOption(t *testing.T) {
	seen := map[string]bool{}
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, x := range v {
				seen[k] = true
				walk(x)
			}
		case []any:
			for _, x := range v {
				walk(x)
			}
		}
	}
	for _, c := range adaptCorpus(t) {
		if strings.HasPrefix(c.expected, "{") {
			var v any
			if err := json.Unmarshal([]byte(c.expected), &v); err != nil {
				t.Fatalf("%s: %v", c.name, err)
			}
			walk(v)
		}
	}
	for _, v := range []any{
		twofactor.App{}, twofactor.Handler{}, twofactor.Rule{}, twofactor.NetworkPolicy{}, twofactor.Identity{}, twofactor.WebAuthn{},
		twofactor.EmbeddedStore{}, twofactor.RedisStore{},
		twofactor.SMTPSender{}, twofactor.SNSSender{}, twofactor.MailboxSender{},
	} {
		typ := reflect.TypeOf(v)
		for i := range typ.NumField() {
			f := typ.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			if !f.IsExported() || name == "" || name == "-" {
				continue
			}
			if !seen[name] {
				t.Errorf("%s.%s (%q) appears in no adapt test", typ.Name(), f.Name, name)
			}
		}
	}
}

// Every complete Caddyfile example in the README is in the corpus, so the
// README shows only configurations that adapt to what it says.
func TestReadmeExamplesInCorpus(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	corpus := map[string]bool{}
	for _, c := range adaptCorpus(t) {
		corpus[c.caddyfile] = true
	}
	blocks := regexp.MustCompile("(?s)```caddyfile\n(.*?)```").FindAllStringSubmatch(string(readme), -1)
	syntax := regexp.MustCompile(`<[a-z][a-z _.]*>|\.\.\.`)
	examples := 0
	for _, b := range blocks {
		text := strings.TrimSpace(b[1]) + "\n"
		if syntax.MatchString(text) {
			continue // a syntax summary, not a configuration
		}
		examples++
		if !corpus[text] {
			t.Errorf("README example not in caddyfile_adapt/:\n%s", text)
		}
	}
	if examples < 4 {
		t.Fatalf("%d complete examples in the README", examples)
	}
}

// xcaddy.md lists every module the plugin registers, as `caddy
// list-modules` prints them.
func TestXcaddyListsEveryModule(t *testing.T) {
	doc, err := os.ReadFile("../xcaddy.md")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile("(?s)Expected modules:\n\n```\n(.*?)```").FindSubmatch(doc)
	if m == nil {
		t.Fatal("xcaddy.md has no list of expected modules")
	}
	listed := strings.Fields(string(m[1]))
	// The plugin's modules, not those the tests register.
	plugin := reflect.TypeOf(twofactor.App{}).PkgPath()
	var registered []string
	for _, id := range caddy.Modules() {
		info, err := caddy.GetModule(id)
		if err != nil {
			t.Fatal(err)
		}
		typ := reflect.TypeOf(info.New())
		if typ.Kind() == reflect.Pointer {
			typ = typ.Elem()
		}
		if typ.PkgPath() == plugin {
			registered = append(registered, id)
		}
	}
	if !reflect.DeepEqual(listed, registered) {
		t.Fatalf("xcaddy.md lists %q; the plugin registers %q", listed, registered)
	}
}
