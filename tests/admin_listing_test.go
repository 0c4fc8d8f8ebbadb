package tests

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/caddy-twofactor/twofactor/challenge"
)

type membersAnswer struct {
	Members []struct {
		ID          string  `json:"id"`
		LockedUntil *string `json:"locked_until"`
	} `json:"members"`
	Next   string                  `json:"next"`
	Counts *challenge.MemberCounts `json:"counts"`
}

func (a membersAnswer) ids() []string {
	ids := []string{}
	for _, m := range a.Members {
		ids = append(ids, m.ID)
	}
	return ids
}

// listMembers asks GET /two-factor/members with query and returns the
// status and the answer.
func listMembers(t *testing.T, e *env, query url.Values) (int, membersAnswer, string) {
	t.Helper()
	resp, err := http.Get("http://" + e.admin + "/two-factor/members?" + query.Encode())
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var a membersAnswer
	if resp.StatusCode == http.StatusOK {
		if err := json.Unmarshal(raw, &a); err != nil {
			t.Fatalf("members %s: %v\n%s", query.Encode(), err, raw)
		}
	}
	return resp.StatusCode, a, string(raw)
}

// The member list's filters, search and order through the admin API and
// the CLI, with the identity's address (passed on by the gateway when it
// notes a member) found by search, and every bad value refused by name.
func TestAdminMembersFiltersThroughAPIAndCLI(t *testing.T) {
	db := filepath.Join(t.TempDir(), "twofactor.db")
	e := start(t, adminSetup(db, []string{testKey}))
	ab, _ := enrolled(e, "alice")
	ab.get("/members/") // seen on a protected path, with the identity's address
	e.clock.Advance(time.Hour)
	b := e.browser()
	b.login("bob")
	b.get("/members/")

	for q, want := range map[string][]string{
		"":                          {"alice", "bob"},
		"enrolled=true":             {"alice"},
		"enrolled=false":            {"bob"},
		"method=totp":               {"alice"},
		"method=sms":                {},
		"locked=true":               {},
		"q=b":                       {"bob"},
		"q=BOB%40example.com":       {"bob"}, // the identity's address, any case
		"q=alice%40example.com":     {"alice"},
		"q=carol%40example.com":     {},
		"order=last_seen":           {"bob", "alice"},
		"order=last_seen&limit=1":   {"bob"},
		"order=id&enrolled=false":   {"bob"},
		"method=totp&enrolled=true": {"alice"},
	} {
		query, _ := url.ParseQuery(q)
		status, a, raw := listMembers(t, e, query)
		if status != http.StatusOK || !slices.Equal(a.ids(), want) {
			t.Errorf("members?%s: %d %v, want %v\n%s", q, status, a.ids(), want, raw)
			continue
		}
		if a.Counts == nil || a.Counts.Members != 2 || a.Counts.Seen != 2 || a.Counts.Enrolled != 1 ||
			a.Counts.NotEnrolled != 1 || a.Counts.Locked != 0 || a.Counts.ByMethod["totp"] != 1 {
			t.Errorf("members?%s: counts %+v", q, a.Counts)
		}
	}
	// The next page of the last-seen order carries on after its cursor,
	// without counts.
	_, first, _ := listMembers(t, e, url.Values{"order": {"last_seen"}, "limit": {"1"}})
	status, next, raw := listMembers(t, e, url.Values{"order": {"last_seen"}, "limit": {"1"}, "after": {first.Next}})
	if first.Next == "" || status != http.StatusOK || !slices.Equal(next.ids(), []string{"alice"}) || next.Counts != nil || next.Next != "" {
		t.Fatalf("the next page: %d %+v\n%s", status, next, raw)
	}

	for q, field := range map[string]string{
		"enrolled=yes":                   "enrolled",
		"locked=false":                   "locked",
		"locked=1":                       "locked",
		"method=push":                    "method",
		"order=name":                     "order",
		"limit=ten":                      "limit",
		"limit=0":                        "limit",
		"limit=1001":                     "limit",
		"q=" + strings.Repeat("a", 513):  "q",
		"method=totp&order=seen_last":    "order",
		"enrolled=true&method=telephone": "method",
	} {
		query, _ := url.ParseQuery(q)
		status, _, raw := listMembers(t, e, query)
		var apiErr struct {
			Error string `json:"error"`
		}
		if status != http.StatusBadRequest || json.Unmarshal([]byte(raw), &apiErr) != nil || !strings.HasPrefix(apiErr.Error, field+": ") {
			t.Errorf("members?%.60s: %d %s, want 400 naming %s", q, status, raw, field)
		}
	}

	out, code := twoFactorCLI(t, "members", "list", "--address", e.admin, "--method", "totp")
	if code != 0 || !strings.Contains(out, "\nalice ") || strings.Contains(out, "\nbob ") ||
		!strings.Contains(out, "not enrolled: 1; locked: 0; by method: totp 1") {
		t.Fatalf("members list --method totp: exit %d\n%s", code, out)
	}
	out, code = twoFactorCLI(t, "members", "list", "--address", e.admin, "--search", "bob@example.com", "--json")
	var a membersAnswer
	if code != 0 || json.Unmarshal([]byte(out), &a) != nil || !slices.Equal(a.ids(), []string{"bob"}) {
		t.Fatalf("members list --search bob@example.com --json: exit %d\n%s", code, out)
	}
	out, code = twoFactorCLI(t, "members", "list", "--address", e.admin, "--order", "last_seen", "--limit", "1")
	if code != 0 || !strings.Contains(out, "\nbob ") || !strings.Contains(out, "More: --after ") {
		t.Fatalf("members list --order last_seen --limit 1: exit %d\n%s", code, out)
	}
	out, code = twoFactorCLI(t, "members", "list", "--address", e.admin, "--locked")
	if code != 0 || strings.Contains(out, "\nalice ") || strings.Contains(out, "\nbob ") {
		t.Fatalf("members list --locked: exit %d\n%s", code, out)
	}
	if out, code = twoFactorCLI(t, "members", "list", "--address", e.admin, "--order", "name"); code != 2 || !strings.Contains(out, "order: ") {
		t.Fatalf("members list --order name: exit %d\n%s", code, out)
	}
}
