package tests

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
	_ "go.etcd.io/bbolt"

	"github.com/caddy-twofactor/twofactor/internal/testredis"
	"github.com/caddy-twofactor/twofactor/internal/testsmtp"
	"github.com/caddy-twofactor/twofactor/internal/testsns"
)

// The durable audit trail through the admin API and `caddy two-factor
// audit`, on the embedded store and on Redis: a scripted sequence comes
// back as records with the right fields, filters narrow it, exports by
// API and CLI agree and hold no code or full address, and records edited,
// forged or deleted in the store are reported by audit verify.

// auditRecord is a record as the API and the JSONL export show it.
type auditRecord struct {
	ID       string            `json:"id"`
	Time     time.Time         `json:"time"`
	Event    string            `json:"event"`
	Result   string            `json:"result"`
	Member   string            `json:"member"`
	Actor    string            `json:"actor"`
	IP       string            `json:"ip"`
	Browser  string            `json:"browser"`
	Method   string            `json:"method"`
	Instance string            `json:"instance"`
	Details  map[string]string `json:"details"`
}

// trailEnv is a gateway with its admin endpoint, an SMTP sender and the
// trail on one of the stores.
type trailEnv struct {
	*codeEnv
	setup setup
	redis *goredis.Client // nil on the embedded store
}

// restart stops Caddy, runs edit (nil: nothing) with Caddy stopped, and
// starts it again on the same store and clock.
func (te *trailEnv) restart(t *testing.T, edit func()) {
	t.Helper()
	te.stop()
	if edit != nil {
		edit()
	}
	s := te.setup
	s.clock = te.clock
	te.env = start(t, s)
}

const trailInstance = "gw-1"

// trailStores runs test on the embedded store and on a real Redis.
func trailStores(t *testing.T, test func(t *testing.T, te *trailEnv)) {
	t.Run("embedded", func(t *testing.T) { test(t, startTrail(t, "")) })
	t.Run("redis", func(t *testing.T) {
		srv := testredis.Start(t)
		client := goredis.NewClient(&goredis.Options{Addr: srv.Addr})
		t.Cleanup(func() { client.Close() })
		te := startTrail(t, fmt.Sprintf("store redis {\n\t\t\taddress %s\n\t\t\tkey_prefix tf:\n\t\t}", srv.Addr))
		te.redis = client
		test(t, te)
	})
}

// startTrail runs the gateway on storeLine ("": the embedded store).
func startTrail(t *testing.T, storeLine string, extra ...string) *trailEnv {
	t.Helper()
	mail := testsmtp.Start(t, testsmtp.Options{TLS: "starttls", RequireTLS: true, Username: "mailer", Password: "mailer-password"})
	sns := testsns.Start(t)
	db := filepath.Join(t.TempDir(), "twofactor.db")
	if storeLine == "" {
		storeLine = fmt.Sprintf("store embedded %q", db)
	}
	global := fmt.Sprintf("keys %q\n\t\t%s\n\t\tinstance_name %s\n\t\t%s", testKey, storeLine, trailInstance, strings.Join(extra, "\n\t\t")) +
		senders(mail, sns, "")
	s := setup{admin: true, dbPath: db, global: global, policy: codePolicy}
	return &trailEnv{codeEnv: &codeEnv{env: start(t, s), mail: mail, sns: sns}, setup: s}
}

// adminGet gets an admin route and returns the status, the body and the
// response's headers.
func adminGet(t *testing.T, e *env, route string) (int, string, http.Header) {
	t.Helper()
	resp, err := http.Get("http://" + e.admin + route)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	h := resp.Header.Clone()
	for k, v := range resp.Trailer {
		h[k] = v
	}
	return resp.StatusCode, string(raw), h
}

// auditQuery asks GET /two-factor/audit with q and returns the records.
func auditQuery(t *testing.T, e *env, q url.Values) []auditRecord {
	t.Helper()
	status, body, _ := adminGet(t, e, "/two-factor/audit?"+q.Encode())
	if status != http.StatusOK {
		t.Fatalf("audit query %s: %d %s", q.Encode(), status, body)
	}
	var res struct {
		Records []struct {
			ID     string      `json:"id"`
			Record auditRecord `json:"record"`
		} `json:"records"`
		Next string `json:"next"`
	}
	if err := json.Unmarshal([]byte(body), &res); err != nil {
		t.Fatal(err)
	}
	out := make([]auditRecord, len(res.Records))
	for i, r := range res.Records {
		out[i] = r.Record
		out[i].ID = r.ID
	}
	return out
}

func events(rs []auditRecord) string {
	var out []string
	for _, r := range rs {
		out = append(out, r.Event+"/"+r.Result)
	}
	return strings.Join(out, " ")
}

// firefox is the browser the members use: the trail keeps its summary.
const firefox = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"

// signIn returns a browser of user signed in at the member site.
func signIn(e *env, user string) *browser {
	b := e.browser()
	b.header.Set("User-Agent", firefox)
	b.login(user)
	return b
}

// exportJSONL parses a JSONL export.
func exportJSONL(t *testing.T, body string) []auditRecord {
	t.Helper()
	var out []auditRecord
	dec := json.NewDecoder(strings.NewReader(body))
	dec.DisallowUnknownFields()
	for dec.More() {
		var r auditRecord
		if err := dec.Decode(&r); err != nil {
			t.Fatalf("export line %d: %v\n%s", len(out)+1, err, body)
		}
		out = append(out, r)
	}
	if body != "" && !strings.HasSuffix(body, "}\n") {
		t.Fatalf("export does not end with a whole line: %q", body[max(0, len(body)-40):])
	}
	return out
}

func reverse(rs []auditRecord) []auditRecord {
	out := make([]auditRecord, len(rs))
	for i, r := range rs {
		out[len(rs)-1-i] = r
	}
	return out
}

// A scripted sequence, queried, filtered and exported through the API and
// the CLI, with nothing secret in the exports.
func TestAuditTrailThroughAPIAndCLI(t *testing.T) {
	trailStores(t, func(t *testing.T, te *trailEnv) {
		e := te.env
		enrolling := signIn(e, "alice")
		secret := enrolling.enrol("/members/")
		e.nextStep()
		since := e.clock.Now().UTC()
		b := signIn(e, "alice")
		if r := b.verify(wrongCode(e.code(secret, 0)), "/members/", false); r.status != http.StatusUnauthorized {
			t.Fatalf("wrong code: %d", r.status)
		}
		if r := b.verify(e.code(secret, 0), "/members/", false); r.status != http.StatusSeeOther {
			t.Fatalf("right code: %d %s", r.status, r.body)
		}
		if status, msg := adminPost(t, e, "/two-factor/members/unlock", `{"member":"alice","reason":"called support, ID checked"}`); status != http.StatusOK {
			t.Fatalf("unlock: %d %s", status, msg)
		}

		// Exactly those records, newest first, with their fields.
		sinceQ := url.Values{"since": {since.Format(time.RFC3339)}}
		got := auditQuery(t, e, sinceQ)
		if ev := events(got); ev != "admin_unlock/success new_browser/success verify/success verify/failure" {
			t.Fatalf("records since the sequence began: %s", ev)
		}
		for _, r := range got {
			if r.Member != "alice" || r.Instance != trailInstance || !r.Time.Equal(since) || r.ID == "" {
				t.Errorf("record %+v: want alice's, from %s, at %s", r, trailInstance, since)
			}
		}
		unlock, ok, wrong := got[0], got[2], got[3]
		if unlock.Actor != "admin endpoint" || unlock.Details["admin_reason"] != "called support, ID checked" || unlock.IP != "" || unlock.Browser != "" {
			t.Errorf("unlock record: %+v", unlock)
		}
		for _, r := range []auditRecord{ok, wrong} {
			if r.Method != "totp" || r.IP != "127.0.0.1" || r.Browser != "Firefox · Linux" || r.Actor != "" {
				t.Errorf("verify record: %+v", r)
			}
		}
		if wrong.Details["reason"] != "incorrect" {
			t.Errorf("wrong code's record: %+v", wrong)
		}
		// Filters narrow them.
		for q, want := range map[string]string{
			"event=verify":                "verify/success verify/failure",
			"result=failure":              "verify/failure",
			"actor=admin+endpoint":        "admin_unlock/success",
			"ip=127.0.0.1&event=verify":   "verify/success verify/failure",
			"member=alice&result=success": "admin_unlock/success new_browser/success verify/success",
			"member=bob":                  "",
			"until=" + url.QueryEscape(since.Add(time.Second).Format(time.RFC3339)): "admin_unlock/success new_browser/success verify/success verify/failure",
		} {
			v, _ := url.ParseQuery(q)
			v.Set("since", since.Format(time.RFC3339))
			if ev := events(auditQuery(t, e, v)); ev != want {
				t.Errorf("query %s: %s, want %s", q, ev, want)
			}
		}
		// Pages of one, followed by the cursor, hold the same.
		var paged []auditRecord
		q := url.Values{"since": {since.Format(time.RFC3339)}, "limit": {"1"}}
		for range 10 {
			status, body, _ := adminGet(t, e, "/two-factor/audit?"+q.Encode())
			var page struct {
				Records []struct {
					ID     string      `json:"id"`
					Record auditRecord `json:"record"`
				} `json:"records"`
				Next string `json:"next"`
			}
			if status != http.StatusOK || json.Unmarshal([]byte(body), &page) != nil {
				t.Fatalf("page: %d %s", status, body)
			}
			for _, r := range page.Records {
				r.Record.ID = r.ID
				paged = append(paged, r.Record)
			}
			if page.Next == "" {
				break
			}
			q.Set("after", page.Next)
		}
		if fmt.Sprint(paged) != fmt.Sprint(got) {
			t.Errorf("paged one by one: %s, want %s", events(paged), events(got))
		}

		// An email code, to enrol and to sign in: neither code nor the
		// whole address reaches the trail.
		te.enrolEmail(b, "/members/", 1)
		_, enrolCode := te.mailCode(1)
		m := signIn(e, "alice")
		if r := m.send("email", "/members/"); r.status != http.StatusSeeOther {
			t.Fatalf("sending an email code: %d %s", r.status, r.body)
		}
		_, signInCode := te.mailCode(2)
		if r := m.verifyCode("email", signInCode, "/members/"); r.status != http.StatusSeeOther {
			t.Fatalf("email code: %d %s", r.status, r.body)
		}
		end := e.clock.Now().UTC()
		// The exports below are audited a minute later, outside until.
		e.clock.Advance(time.Minute)
		window := url.Values{"since": {since.Format(time.RFC3339)}, "until": {end.Add(time.Second).Format(time.RFC3339)}}
		all := auditQuery(t, e, url.Values{"since": window["since"], "until": window["until"], "limit": {"1000"}})
		if events(all) != "new_browser/success verify/success code_send/success enrol_confirm/success code_send/success "+events(got) ||
			all[1].Method != "email" || all[2].Method != "email" {
			t.Fatalf("records of the email sign-in: %s", events(all))
		}

		window.Set("format", "jsonl")
		status, jsonl, h := adminGet(t, e, "/two-factor/audit/export?"+window.Encode())
		if status != http.StatusOK {
			t.Fatalf("export: %d %s", status, jsonl)
		}
		wantName := fmt.Sprintf(`attachment; filename="two-factor-audit-%s.jsonl"`, e.clock.Now().UTC().Format("20060102T1504Z"))
		if h.Get("Content-Type") != "application/jsonl; charset=utf-8" || h.Get("Content-Disposition") != wantName ||
			h.Get("Two-Factor-Records") != fmt.Sprint(len(all)) || h.Get("Cache-Control") != "no-store" {
			t.Errorf("export headers: %v", h)
		}
		if exported := exportJSONL(t, jsonl); fmt.Sprint(exported) != fmt.Sprint(reverse(all)) {
			t.Errorf("JSONL export, oldest first:\n%v\nwant the query's records reversed:\n%v", exported, reverse(all))
		}
		window.Set("format", "csv")
		status, csvBody, h := adminGet(t, e, "/two-factor/audit/export?"+window.Encode())
		if status != http.StatusOK || h.Get("Content-Type") != "text/csv; charset=utf-8" || !strings.HasSuffix(h.Get("Content-Disposition"), `.csv"`) {
			t.Fatalf("CSV export: %d %v", status, h)
		}
		rows, err := csv.NewReader(strings.NewReader(csvBody)).ReadAll()
		if err != nil || len(rows) != len(all)+1 || strings.Join(rows[0], ",") != "time,instance,id,event,result,member,actor,ip,browser,method,details" {
			t.Fatalf("CSV export: %v, %d rows for %d records:\n%s", err, len(rows), len(all), csvBody)
		}
		for i, row := range rows[1:] {
			r := all[len(all)-1-i]
			if row[2] != r.ID || row[3] != r.Event || row[5] != r.Member || row[6] != r.Actor || row[8] != r.Browser {
				t.Errorf("CSV row %d = %q, want %+v", i, row, r)
			}
		}
		for _, export := range []string{jsonl, csvBody} {
			for _, secretText := range []string{enrolCode, signInCode, "alice@example.com", secret} {
				if strings.Contains(export, secretText) {
					t.Errorf("an export holds %q", secretText)
				}
			}
		}

		// The CLI writes the same files.
		dir := t.TempDir()
		for format, body := range map[string]string{"jsonl": jsonl, "csv": csvBody} {
			file := filepath.Join(dir, "trail."+format)
			out, code := twoFactorCLI(t, "audit", "export", "--address", e.admin, "--since", window.Get("since"),
				"--until", window.Get("until"), "--format", format, "--output", file)
			if code != 0 || !strings.Contains(out, fmt.Sprintf("Exported %d audit records to %s.", len(all), file)) {
				t.Fatalf("audit export --format %s: exit %d\n%s", format, code, out)
			}
			written, err := os.ReadFile(file)
			if err != nil || string(written) != body {
				t.Errorf("audit export --format %s wrote other bytes than the API (%v):\n%s\nwant\n%s", format, err, written, body)
			}
			if info, err := os.Stat(file); err != nil || info.Mode().Perm() != 0o600 {
				t.Errorf("export file mode: %v %v", info.Mode(), err)
			}
		}
		out, code := twoFactorCLI(t, "audit", "export", "--address", e.admin, "--since", window.Get("since"), "--until", window.Get("until"))
		if code != 0 || !strings.HasPrefix(out, jsonl) || !strings.Contains(out, fmt.Sprintf("Exported %d audit records.", len(all))) {
			t.Errorf("audit export to standard output: exit %d\n%s", code, out)
		}
		// Each export is in the trail: who, the filter, the count.
		exports := auditQuery(t, e, url.Values{"event": {"admin_audit_export"}})
		if len(exports) != 5 {
			t.Fatalf("%d admin_audit_export records, want 5", len(exports))
		}
		for _, r := range exports {
			if r.Actor != "admin endpoint" || r.Result != "success" || r.Details["records"] != fmt.Sprint(len(all)) ||
				r.Details["filter_since"] != window.Get("since") || r.Details["filter_until"] != window.Get("until") {
				t.Errorf("export record: %+v", r)
			}
		}

		// The CLI's table, newest first, follows the pages to --limit.
		out, code = twoFactorCLI(t, "audit", "query", "--address", e.admin, "--since", window.Get("since"), "--until", window.Get("until"),
			"--event", "verify", "--limit", "3")
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if code != 0 || len(lines) != 4 || !strings.HasPrefix(lines[0], "TIME") ||
			!regexp.MustCompile(`verify +success +alice +- +127\.0\.0\.1 +email +Firefox · Linux +gw-1`).MatchString(lines[1]) ||
			!strings.Contains(lines[3], "totp") {
			t.Errorf("audit query: exit %d\n%s", code, out)
		}

		// Bad values are refused naming the field, by the API and the
		// CLI (exit 2).
		for q, field := range map[string]string{
			"since=yesterday": "since", "until=2026-13-01": "until", "limit=0": "limit", "limit=1001": "limit",
			"ip=nope": "ip", "event=Sign+In": "event", "after=garbage": "after", "evnt=verify": "evnt",
			"since=2026-12-05&until=2026-12-04": "since",
		} {
			status, body, _ := adminGet(t, e, "/two-factor/audit?"+q)
			if status != http.StatusBadRequest || !strings.Contains(body, `"error":"`+field) {
				t.Errorf("query %s: %d %s, want 400 naming %s", q, status, body, field)
			}
		}
		for q, field := range map[string]string{"format=xlsx": "format", "result=OK": "result", "limit=5": "limit"} {
			status, body, h := adminGet(t, e, "/two-factor/audit/export?"+q)
			if status != http.StatusBadRequest || !strings.Contains(body, `"error":"`+field) || h.Get("Content-Disposition") != "" {
				t.Errorf("export %s: %d %s %v, want 400 naming %s", q, status, body, h, field)
			}
		}
		if out, code := twoFactorCLI(t, "audit", "export", "--address", e.admin, "--format", "pdf"); code != 2 || !strings.Contains(out, "format") {
			t.Errorf("audit export --format pdf: exit %d\n%s", code, out)
		}
		if out, code := twoFactorCLI(t, "audit", "query", "--address", e.admin, "--since", "last week"); code != 2 || !strings.Contains(out, "since") {
			t.Errorf("audit query --since 'last week': exit %d\n%s", code, out)
		}

		out, code = twoFactorCLI(t, "audit", "verify", "--address", e.admin)
		if code != 0 || !regexp.MustCompile(`^gw-1: intact, \d+ records checked\.\n$`).MatchString(out) {
			t.Errorf("audit verify: exit %d\n%s", code, out)
		}
		if out, code := twoFactorCLI(t, "audit", "verify", "--address", e.admin, "--instance", "gw-9"); code != 1 || !strings.Contains(out, "instance") {
			t.Errorf("audit verify --instance gw-9: exit %d\n%s", code, out)
		}
	})
}
