package tests

import (
	"bytes"
	"encoding/binary"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
	bolt "go.etcd.io/bbolt"

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

// auditPage is the answer of GET /two-factor/audit.
type auditPage struct {
	Records []struct {
		ID     string      `json:"id"`
		Record auditRecord `json:"record"`
	} `json:"records"`
	Next string `json:"next"`
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
func trailStores(t *testing.T, extra []string, test func(t *testing.T, te *trailEnv)) {
	t.Run("embedded", func(t *testing.T) { test(t, startTrail(t, "", extra...)) })
	t.Run("redis", func(t *testing.T) {
		srv := testredis.Start(t)
		client := goredis.NewClient(&goredis.Options{Addr: srv.Addr})
		t.Cleanup(func() { client.Close() })
		te := startTrail(t, fmt.Sprintf("store redis {\n\t\t\taddress %s\n\t\t\tkey_prefix tf:\n\t\t}", srv.Addr), extra...)
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
	var res auditPage
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

// A scripted sequence, queried, filtered and exported through the API and
// the CLI, with nothing secret in the exports.
func TestAuditTrailThroughAPIAndCLI(t *testing.T) {
	trailStores(t, nil, func(t *testing.T, te *trailEnv) {
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
			var page auditPage
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
		oldestFirst := slices.Clone(all)
		slices.Reverse(oldestFirst)
		if exported := exportJSONL(t, jsonl); fmt.Sprint(exported) != fmt.Sprint(oldestFirst) {
			t.Errorf("JSONL export, oldest first:\n%v\nwant the query's records reversed:\n%v", exported, oldestFirst)
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
			// The details cell is a JSON object of the record's details.
			var details map[string]string
			if row[10] != "" {
				if err := json.Unmarshal([]byte(row[10]), &details); err != nil {
					t.Errorf("CSV row %d details %q: %v", i, row[10], err)
				}
			}
			if fmt.Sprint(details) != fmt.Sprint(r.Details) {
				t.Errorf("CSV row %d details = %v, want %v", i, details, r.Details)
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
			t.Fatalf("%d admin_audit_export records want 5", len(exports))
		}
		for _, r := range exports {
			if r.Actor != "admin endpoint" || r.Result != "success" || r.Details["records"] != fmt.Sprint(len(all)) ||
				r.Details["filter_since"] != window.Get("since") || r.Details["filter_until"] != window.Get("until") {
				t.Errorf("export record: %+v", r)
			}
		}

		// Nothing matches: an empty JSONL, a CSV of its header, still complete.
		out, code = twoFactorCLI(t, "audit", "export", "--address", e.admin, "--member", "nobody", "--until", window.Get("until"))
		if code != 0 || out != "Exported 0 audit records.\n" {
			t.Errorf("audit export of nothing: exit %d\n%q", code, out)
		}
		out, code = twoFactorCLI(t, "audit", "export", "--address", e.admin, "--member", "nobody", "--until", window.Get("until"), "--format", "csv")
		if code != 0 || out != "time,instance,id,event,result,member,actor,ip,browser,method,details\nExported 0 audit records.\n" {
			t.Errorf("audit export of nothing as CSV: exit %d\n%q", code, out)
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

		out, code = twoFactorCLI(t, "audit", "query", "--address", e.admin, "--since", window.Get("since"), "--until", window.Get("until"),
			"--limit", "2", "--json")
		var page auditPage
		if code != 0 || json.Unmarshal([]byte(out), &page) != nil || len(page.Records) != 2 || page.Next == "" ||
			page.Records[0].ID != all[0].ID || page.Records[1].ID != all[1].ID {
			t.Errorf("audit query --json --limit 2: exit %d\n%s", code, out)
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

// auditVerify runs caddy two-factor audit verify and checks its exit
// code and that its output matches want.
func auditVerify(t *testing.T, e *env, code int, want string) {
	t.Helper()
	out, got := twoFactorCLI(t, "audit", "verify", "--address", e.admin)
	if got != code || !regexp.MustCompile(want).MatchString(out) {
		t.Fatalf("audit verify: exit %d, want %d, output matching %s:\n%s", got, code, want, out)
	}
}

// someRecords makes alice enrol, get a code wrong and right, and be
// unlocked through the API: about ten records.
func someRecords(t *testing.T, e *env) {
	t.Helper()
	_, secret := enrolled(e, "alice")
	e.nextStep()
	b := signIn(e, "alice")
	b.verify(wrongCode(e.code(secret, 0)), "/members/", false)
	if r := b.verify(e.code(secret, 0), "/members/", false); r.status != http.StatusSeeOther {
		t.Fatalf("right code: %d", r.status)
	}
	unlock(t, e)
}

func unlock(t *testing.T, e *env) {
	t.Helper()
	if status, msg := adminPost(t, e, "/two-factor/members/unlock", `{"member":"alice","reason":"support call"}`); status != http.StatusOK {
		t.Fatalf("unlock: %d %s", status, msg)
	}
}

// Records forged, altered or deleted in the store behind the gateway's
// back: Redis's stream edited with a raw client while Caddy runs, the
// bbolt file edited while Caddy is stopped. audit verify names the first
// bad record and exits 3; it exits 0 again once the chain is whole.
func TestAuditTrailTampering(t *testing.T) {
	trailStores(t, nil, func(t *testing.T, te *trailEnv) {
		someRecords(t, te.env)
		auditVerify(t, te.env, 0, `^gw-1: intact, \d+ records checked\.\n$`)
		if te.redis != nil {
			tamperRedis(t, te)
		} else {
			tamperBolt(t, te)
		}
		out, code := twoFactorCLI(t, "audit", "verify", "--address", te.admin, "--json")
		var res struct {
			Intact    bool `json:"intact"`
			Instances []struct {
				Instance, Problem, FirstBad string
			} `json:"instances"`
		}
		if code != 3 || json.Unmarshal([]byte(out[:strings.IndexByte(out, '\n')+1]), &res) != nil || res.Intact || len(res.Instances) != 1 {
			t.Fatalf("audit verify --json of a broken chain: exit %d\n%s", code, out)
		}
		verifies := auditQuery(t, te.env, url.Values{"event": {"admin_audit_verify"}})
		if len(verifies) < 2 || verifies[0].Result != "failure" || verifies[0].Actor != "admin endpoint" ||
			!strings.HasPrefix(verifies[0].Details["broken"], "gw-1: missing at ") || verifies[len(verifies)-1].Result != "success" {
			t.Fatalf("admin_audit_verify records: %+v", verifies)
		}
	})
}

func tamperRedis(t *testing.T, te *trailEnv) {
	ctx := t.Context()
	stream := "tf:\x00log:audit:" + trailInstance
	entries, err := te.redis.XRange(ctx, stream, "-", "+").Result()
	if err != nil || len(entries) < 6 {
		t.Fatalf("the trail's stream: %d entries, %v", len(entries), err)
	}
	// A copy of a sound entry added at the end; the gateway appends past
	// it.
	forged, err := te.redis.XAdd(ctx, &goredis.XAddArgs{Stream: stream, Values: entries[1].Values}).Result()
	if err != nil {
		t.Fatal(err)
	}
	unlock(t, te.env)
	auditVerify(t, te.env, 3, `^gw-1: BROKEN: inserted record at `+forged+`, after \d+ sound ones\.\n`)
	// Without it the chain is whole again.
	if err := te.redis.XDel(ctx, stream, forged).Err(); err != nil {
		t.Fatal(err)
	}
	auditVerify(t, te.env, 0, `^gw-1: intact`)
	// A record deleted from the middle.
	if err := te.redis.XDel(ctx, stream, entries[2].ID).Err(); err != nil {
		t.Fatal(err)
	}
	auditVerify(t, te.env, 3, `^gw-1: BROKEN: missing record at `+entries[3].ID+`, after 2 sound ones\.\n`)
}

// boltEntry is one entry of the trail's bucket.
type boltEntry struct{ key, value []byte }

func (b boltEntry) id() string {
	return fmt.Sprintf("%d-%d", binary.BigEndian.Uint64(b.key[:8]), binary.BigEndian.Uint64(b.key[8:]))
}

// editBolt lets edit change the trail's bucket in the stopped gateway's
// file, and returns its entries as they were.
func editBolt(t *testing.T, path string, edit func(b *bolt.Bucket, entries []boltEntry) error) []boltEntry {
	t.Helper()
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var entries []boltEntry
	err = db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte("logs")).Bucket([]byte("audit:" + trailInstance))
		if err := b.ForEach(func(k, v []byte) error {
			entries = append(entries, boltEntry{bytes.Clone(k), bytes.Clone(v)})
			return nil
		}); err != nil {
			return err
		}
		return edit(b, entries)
	})
	if err != nil {
		t.Fatal(err)
	}
	return entries
}

func tamperBolt(t *testing.T, te *trailEnv) {
	// alice becomes mallo in a record: same length, same JSON, wrong MAC.
	var entries []boltEntry
	te.restart(t, func() {
		entries = editBolt(t, te.dbPath, func(b *bolt.Bucket, entries []boltEntry) error {
			v := bytes.Replace(entries[1].value, []byte(`"member":"alice"`), []byte(`"member":"mallo"`), 1)
			if bytes.Equal(v, entries[1].value) {
				return fmt.Errorf("no member in %s", entries[1].value)
			}
			return b.Put(entries[1].key, v)
		})
	})
	auditVerify(t, te.env, 3, `^gw-1: BROKEN: altered record at `+entries[1].id()+`, after 1 sound ones\.\n`)
	// Put back, and one deleted from the middle instead.
	te.restart(t, func() {
		editBolt(t, te.dbPath, func(b *bolt.Bucket, _ []boltEntry) error {
			if err := b.Put(entries[1].key, entries[1].value); err != nil {
				return err
			}
			return b.Delete(entries[2].key)
		})
	})
	auditVerify(t, te.env, 3, `^gw-1: BROKEN: missing record at `+entries[3].id()+`, after 2 sound ones\.\n`)
}

// audit_retention: once the clock passes it, the trim at start removes
// the old records; the chain of what is left still verifies.
func TestAuditRetention(t *testing.T) {
	trailStores(t, []string{"audit_retention 1d"}, func(t *testing.T, te *trailEnv) {
		someRecords(t, te.env)
		before := auditQuery(t, te.env, url.Values{"limit": {"1000"}})
		if len(before) < 5 {
			t.Fatalf("%d records before", len(before))
		}
		restarted := te.clock.Now().Add(49 * time.Hour)
		te.restart(t, func() { te.clock.Advance(49 * time.Hour) })
		waitLog(t, te.env, "audit trail: old records trimmed")
		unlock(t, te.env)
		after := auditQuery(t, te.env, url.Values{"limit": {"1000"}})
		if len(after) == 0 || after[0].Event != "admin_unlock" || after[0].Time.Before(restarted) {
			t.Fatalf("records after the restart: %s", events(after))
		}
		for _, r := range after {
			if r.Time.Before(restarted) {
				t.Errorf("a record older than the retention is still there: %+v", r)
			}
		}
		auditVerify(t, te.env, 0, `^gw-1: intact`)
	})
}

// waitLog waits for msg in Caddy's log, which a background task writes
// when done.
func waitLog(t *testing.T, e *env, msg string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if b, err := os.ReadFile(e.logPath); err == nil && bytes.Contains(b, []byte(`"msg":"`+msg+`"`)) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("Caddy's log never said %q", msg)
}

// The CLI takes an export as complete only with its count in the trailer:
// an answer cut off (the API aborts when the export fails midway) or
// ending without the count exits 1 and leaves no --output file.
func TestAuditExportCutShortThroughCLI(t *testing.T) {
	line := `{"id":"1-0","time":"2026-12-05T15:00:00Z","event":"verify","instance":"gw-1"}` + "\n"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Trailer", "Two-Factor-Records")
		switch r.URL.Query().Get("since") {
		case "2026-12-01": // complete
			_, _ = io.WriteString(w, line)
			w.Header().Set("Two-Factor-Records", "1")
		case "2026-12-02": // the count missing
			_, _ = io.WriteString(w, line)
		default: // cut off
			_, _ = io.WriteString(w, strings.Repeat(line, 100))
			w.(http.Flusher).Flush()
			panic(http.ErrAbortHandler)
		}
	}))
	t.Cleanup(srv.Close)
	addr := strings.TrimPrefix(srv.URL, "http://")
	dir := t.TempDir()
	for since, want := range map[string]string{"2026-12-01": "", "2026-12-02": "no count at its end", "2026-12-03": "incomplete"} {
		file := filepath.Join(dir, since+".jsonl")
		out, code := twoFactorCLI(t, "audit", "export", "--address", addr, "--since", since, "--output", file)
		_, statErr := os.Stat(file)
		if want == "" {
			if code != 0 || statErr != nil || !strings.Contains(out, "Exported 1 audit records to ") {
				t.Errorf("complete export: exit %d, file %v\n%s", code, statErr, out)
			}
			continue
		}
		if code != 1 || !strings.Contains(out, want) || !os.IsNotExist(statErr) {
			t.Errorf("since %s: exit %d, file %v, want exit 1 naming %q and no file\n%s", since, code, statErr, want, out)
		}
		if leftovers, _ := filepath.Glob(filepath.Join(dir, ".two-factor-audit-*")); len(leftovers) != 0 {
			t.Errorf("temporary files left: %v", leftovers)
		}
	}
}
