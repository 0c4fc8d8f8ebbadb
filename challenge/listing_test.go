package challenge

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/caddy-twofactor/twofactor/internal/testredis"
	"github.com/caddy-twofactor/twofactor/keyring"
	"github.com/caddy-twofactor/twofactor/store/embedded"
	"github.com/caddy-twofactor/twofactor/store/redis"
)

var listingConfig = Config{MaxFailures: 3, Lockout: time.Minute, MaxAddressFailures: 1000}

// onRedis moves the fixture's engine to a real redis-server of its own.
func onRedis(f *fixture, cfg Config) {
	f.t.Helper()
	srv := testredis.Start(f.t)
	client := goredis.NewClient(&goredis.Options{Addr: srv.Addr})
	f.t.Cleanup(func() { client.Close() })
	kr, err := keyring.New(testKey)
	if err != nil {
		f.t.Fatal(err)
	}
	if f.e, err = New(redis.New(client, "2fa:"), kr, cfg, f.clk.Now, zap.NewNop()); err != nil {
		f.t.Fatal(err)
	}
}

// listIDs pages through the whole list, limit at a time, and returns the
// IDs in the order listed.
func listIDs(t *testing.T, e *Engine, limit int, filter MembersFilter) []string {
	t.Helper()
	ids := []string{}
	after := ""
	for range 100 {
		p, err := e.Members(ctx, after, limit, filter)
		if err != nil {
			t.Fatalf("Members(%+v): %v", filter, err)
		}
		for _, m := range p.Members {
			ids = append(ids, m.ID)
		}
		if p.Next == "" {
			return ids
		}
		after = p.Next
	}
	t.Fatalf("Members(%+v) kept going", filter)
	return nil
}

// wantList checks the list under filter, paged 1, 2 and 50 at a time.
func wantList(t *testing.T, e *Engine, filter MembersFilter, want ...string) {
	t.Helper()
	if want == nil {
		want = []string{}
	}
	for _, limit := range []int{1, 2, 50} {
		if got := listIDs(t, e, limit, filter); !slices.Equal(got, want) {
			t.Fatalf("Members(%+v) %d at a time = %q, want %q", filter, limit, got, want)
		}
	}
}

func counts(t *testing.T, e *Engine) MemberCounts {
	t.Helper()
	c, err := e.CountMembers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// wantCounts checks members, seen, enrolled, not enrolled, locked, and by
// method totp, email, sms.
func wantCounts(t *testing.T, e *Engine, want ...int) {
	t.Helper()
	c := counts(t, e)
	got := []int{c.Members, c.Seen, c.Enrolled, c.NotEnrolled, c.Locked,
		c.ByMethod[MethodTOTP], c.ByMethod[MethodEmail], c.ByMethod[MethodSMS]}
	if !slices.Equal(got, want) {
		t.Fatalf("counts (members seen enrolled not-enrolled locked totp email sms) = %v, want %v", got, want)
	}
}

func yes() *bool { b := true; return &b }
func no() *bool  { b := false; return &b }

func TestListingFiltersOrderSearchAndCounts(t *testing.T) {
	for _, onStore := range []string{"bbolt", "redis"} {
		t.Run(onStore, func(t *testing.T) {
			f := newCodeFixture(t, listingConfig)
			if onStore == "redis" {
				onRedis(f.fixture, listingConfig)
			}
			listingScenario(t, f)
		})
	}
}

func listingScenario(t *testing.T, f *codeFixture) {
	e := f.e
	alice := Actor{User: "alice", IP: "192.0.2.1"}
	bob := Actor{User: "bob", IP: "192.0.2.2"}
	carol := Actor{User: "carol", IP: "192.0.2.3"}
	erin := Actor{User: "erin", IP: "192.0.2.4"}
	aliceSecret := f.enrol("alice")
	f.enrolCode(bob, MethodEmail, "Bob@Example.COM", false)
	f.enrolCode(carol, MethodSMS, "+819012345678", false)
	f.enrol("erin")
	f.enrolCode(erin, MethodEmail, "erin@example.org", true) // follows the identity: no address stored
	t0 := f.clk.Now()
	for i, n := range []struct{ id, email string }{
		{"alice", "alice@example.com"}, {"bob", "bob@example.com"}, {"dave", "Dave@Example.com"}, {"erin", "erin@example.org"},
	} {
		if err := e.RecordSeen(ctx, n.id, n.email, t0.Add(time.Duration(i)*time.Hour)); err != nil {
			t.Fatal(err)
		}
	}

	wantCounts(t, e, 5, 4, 4, 1, 0, 2, 2, 1)
	wantList(t, e, MembersFilter{}, "alice", "bob", "carol", "dave", "erin")
	wantList(t, e, MembersFilter{Enrolled: yes()}, "alice", "bob", "carol", "erin")
	wantList(t, e, MembersFilter{Enrolled: no()}, "dave")
	wantList(t, e, MembersFilter{Method: MethodEmail}, "bob", "erin")
	wantList(t, e, MembersFilter{Method: MethodSMS}, "carol")
	wantList(t, e, MembersFilter{Method: MethodSMS, Enrolled: no()})
	wantList(t, e, MembersFilter{Method: MethodTOTP, Search: "e"}, "erin")
	wantList(t, e, MembersFilter{Search: "a"}, "alice")
	wantList(t, e, MembersFilter{Search: "c", Enrolled: yes()}, "carol")
	wantList(t, e, MembersFilter{Search: "z"})
	// Addresses: the enrolled one and the one last seen, any case.
	wantList(t, e, MembersFilter{Search: "BOB@example.com"}, "bob")
	wantList(t, e, MembersFilter{Search: " dave@EXAMPLE.com"}, "dave")
	wantList(t, e, MembersFilter{Search: "erin@example.org"}, "erin")
	wantList(t, e, MembersFilter{Search: "erin@example.org", Enrolled: no()})
	wantList(t, e, MembersFilter{Search: "nobody@example.com"})
	// Most recently seen first; carol, never seen, last.
	wantList(t, e, MembersFilter{Order: OrderLastSeen}, "erin", "dave", "bob", "alice", "carol")
	wantList(t, e, MembersFilter{Order: OrderLastSeen, Enrolled: yes()}, "erin", "bob", "alice", "carol")
	// Seen again: moves to the top, listed once.
	f.clk.Advance(24 * time.Hour)
	if err := e.RecordSeen(ctx, "alice", "alice@example.com", f.clk.Now()); err != nil {
		t.Fatal(err)
	}
	wantList(t, e, MembersFilter{Order: OrderLastSeen}, "alice", "erin", "dave", "bob", "carol")
	// An address changed at the member site: found by the new one only.
	if err := e.RecordSeen(ctx, "dave", "dave@example.net", f.clk.Now()); err != nil {
		t.Fatal(err)
	}
	wantList(t, e, MembersFilter{Search: "dave@example.com"})
	wantList(t, e, MembersFilter{Search: "dave@example.net"}, "dave")
	wantCounts(t, e, 5, 4, 4, 1, 0, 2, 2, 1)

	// A lockout: counted and listed while it runs, not after it ends.
	lockOut := func() {
		t.Helper()
		for range 3 {
			if _, err := e.VerifyTOTP(ctx, alice, wrong(f.code(aliceSecret, 0))); err == nil {
				t.Fatal("a wrong code passed")
			}
		}
		if err := e.Locked(ctx, alice); !isLocked(err) {
			t.Fatalf("not locked after 3 wrong codes: %v", err)
		}
	}
	lockOut()
	wantCounts(t, e, 5, 4, 4, 1, 1, 2, 2, 1)
	wantList(t, e, MembersFilter{Locked: true}, "alice")
	wantList(t, e, MembersFilter{Locked: true, Method: MethodEmail})
	wantList(t, e, MembersFilter{Locked: true, Search: "alice@example.com"}, "alice")
	p, err := e.Members(ctx, "", 10, MembersFilter{Locked: true})
	if err != nil || len(p.Members) != 1 || p.Members[0].LockedUntil == nil || !p.Members[0].LockedUntil.Equal(f.clk.Now().Add(time.Minute).Truncate(time.Millisecond)) {
		t.Fatalf("locked list: %+v %v", p, err)
	}
	f.clk.Advance(time.Minute) // the lockout ends: nothing written
	wantCounts(t, e, 5, 4, 4, 1, 0, 2, 2, 1)
	wantList(t, e, MembersFilter{Locked: true})

	// Locked again (the lockout doubles), then unlocked by an admin.
	lockOut()
	wantCounts(t, e, 5, 4, 4, 1, 1, 2, 2, 1)
	if _, err := e.Unlock(ctx, "admin endpoint", "called the help desk", "alice"); err != nil {
		t.Fatal(err)
	}
	wantCounts(t, e, 5, 4, 4, 1, 0, 2, 2, 1)
	wantList(t, e, MembersFilter{Locked: true})
	// Locked again, and a right code once it ends forgets it.
	lockOut()
	f.clk.Advance(time.Hour)
	if _, err := e.VerifyTOTP(ctx, alice, f.code(aliceSecret, 0)); err != nil {
		t.Fatal(err)
	}
	if n, err := e.store.IndexCount(ctx, lockedIndex, "", ""); err != nil || n != 0 {
		t.Fatalf("lock entries left after an unlock and a right code: %d %v", n, err)
	}

	// Removing the last method: not enrolled any more, the address gone.
	if _, err := e.RemoveMethod(ctx, bob, MethodEmail, true); err != nil {
		t.Fatal(err)
	}
	wantCounts(t, e, 5, 4, 3, 2, 0, 2, 1, 1)
	wantList(t, e, MembersFilter{Enrolled: no()}, "bob", "dave")
	wantList(t, e, MembersFilter{Method: MethodEmail}, "erin")
	wantList(t, e, MembersFilter{Search: "bob@example.com"}, "bob") // still seen with it
	if err := e.RecordSeen(ctx, "bob", "", f.clk.Now()); err != nil {
		t.Fatal(err)
	}
	wantList(t, e, MembersFilter{Search: "bob@example.com"})
	// Enrolled again with another address.
	f.clk.Advance(time.Hour)
	f.enrolCode(bob, MethodEmail, "robert@example.com", false)
	wantList(t, e, MembersFilter{Search: "Robert@example.com"}, "bob")
	wantCounts(t, e, 5, 4, 4, 1, 0, 2, 2, 1)

	// An admin's reset: every method goes.
	if _, err := e.Reset(ctx, "admin endpoint", "erin", "lost her phone"); err != nil {
		t.Fatal(err)
	}
	wantCounts(t, e, 5, 4, 3, 2, 0, 1, 1, 1)
	wantList(t, e, MembersFilter{Enrolled: no()}, "dave", "erin")
	wantList(t, e, MembersFilter{Method: MethodTOTP}, "alice")
	wantList(t, e, MembersFilter{Search: "erin@example.org"}, "erin") // the identity's address stays
}

// Entries a crash left stale are dropped when listed, and the member's
// right entries written; the survey repairs every index, counts included.
func TestListingRepairsStaleEntries(t *testing.T) {
	f := newCodeFixture(t, listingConfig)
	e := f.e
	f.enrol("alice")
	f.enrolCode(Actor{User: "bob", IP: "192.0.2.2"}, MethodEmail, "bob@example.com", false)
	f.enrol("dave")
	if err := e.RecordSeen(ctx, "carol", "carol@example.com", f.clk.Now()); err != nil {
		t.Fatal(err)
	}
	wantCounts(t, e, 4, 1, 3, 1, 0, 2, 1, 0)
	future := f.clk.Now().Add(time.Hour)
	mac := e.emailMAC("ghost@example.com")
	st := e.store
	for index, entries := range map[string][]string{
		enrolledIndex:           {"ghost"}, // no record at all
		methodIndex(MethodSMS):  {"alice"}, // alice has no SMS
		lastSeenIndex:           {lastSeenEntry("alice", future)},
		lockedIndex:             {lockedEntry("bob", future)}, // bob is not locked
		emailIndex:              {mac + "alice"},
		seenEmailIndex:          {mac + "carol"},
		unenrolledIndex:         {"alice"},
		methodIndex(MethodTOTP): {"carol"},
	} {
		if err := st.IndexPut(ctx, index, entries...); err != nil {
			t.Fatal(err)
		}
	}
	// And entries missing: bob and dave out of the enrolled index, bob out
	// of the email method's, dave out of the app's.
	for index, id := range map[string]string{enrolledIndex: "bob", methodIndex(MethodEmail): "bob", methodIndex(MethodTOTP): "dave"} {
		if err := st.IndexDelete(ctx, index, id); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.IndexDelete(ctx, enrolledIndex, "dave"); err != nil {
		t.Fatal(err)
	}
	wantCounts(t, e, 4, 1, 2, 2, 1, 2, 0, 1) // wrong, as the indexes are

	// Each listing shows what the records say, whatever the index held.
	wantList(t, e, MembersFilter{Method: MethodSMS})
	wantList(t, e, MembersFilter{Search: "ghost@example.com"})
	wantList(t, e, MembersFilter{Enrolled: no()}, "carol")
	wantList(t, e, MembersFilter{Method: MethodTOTP}, "alice")
	wantList(t, e, MembersFilter{Order: OrderLastSeen}, "carol", "alice", "bob", "dave")
	wantList(t, e, MembersFilter{Enrolled: yes()}, "alice")
	// A stale entry of bob's, listed, writes his right entries: he is back
	// in the enrolled index. dave's are missing, none stale: the survey
	// finds them.
	wantList(t, e, MembersFilter{Locked: true})
	wantList(t, e, MembersFilter{Enrolled: yes()}, "alice", "bob")
	if err := e.BuildListing(ctx); err != nil {
		t.Fatal(err)
	}
	wantCounts(t, e, 4, 1, 3, 1, 0, 2, 1, 0)
	wantList(t, e, MembersFilter{Enrolled: yes()}, "alice", "bob", "dave")
	wantList(t, e, MembersFilter{Method: MethodTOTP}, "alice", "dave")
	wantList(t, e, MembersFilter{Method: MethodEmail}, "bob")
	wantList(t, e, MembersFilter{Search: "bob@example.com"}, "bob")
	for _, index := range []string{enrolledIndex, lastSeenIndex, lockedIndex, emailIndex, seenEmailIndex} {
		entries, err := st.IndexRange(ctx, index, "", "", 100)
		if err != nil {
			t.Fatal(err)
		}
		for _, entry := range entries {
			if strings.Contains(entry, "ghost") || strings.HasPrefix(entry, mac) || entry == lockedEntry("bob", future) {
				t.Errorf("index %s kept the stale entry %q", index, entry)
			}
		}
	}
}

// The survey runs once per store and key: records written before the
// indexes existed are listed by it, a start after it reads nothing, and a
// rotation indexes the addresses again under the new key.
func TestListingSurveyOnce(t *testing.T) {
	f := newCodeFixture(t, listingConfig)
	e := f.e
	f.enrol("alice")
	f.enrolCode(Actor{User: "bob", IP: "192.0.2.2"}, MethodEmail, "bob@example.com", false)
	if err := e.RecordSeen(ctx, "carol", "", f.clk.Now()); err != nil {
		t.Fatal(err)
	}
	// As a store from before the member list's indexes: only the users
	// and seen indexes, and not even all of those.
	for _, index := range []string{membersIndex, enrolledIndex, unenrolledIndex, lastSeenIndex, emailIndex,
		methodIndex(MethodTOTP), methodIndex(MethodEmail), usersIndex, seenIndex} {
		entries, err := e.store.IndexRange(ctx, index, "", "", 100)
		if err != nil {
			t.Fatal(err)
		}
		if err := e.store.IndexDelete(ctx, index, entries...); err != nil {
			t.Fatal(err)
		}
	}
	if built, err := e.ListingBuilt(ctx); err != nil || built {
		t.Fatalf("ListingBuilt before the survey: %t %v", built, err)
	}
	wantCounts(t, e, 0, 0, 0, 0, 0, 0, 0, 0)
	if err := e.BuildListing(ctx); err != nil {
		t.Fatal(err)
	}
	if built, err := e.ListingBuilt(ctx); err != nil || !built {
		t.Fatalf("ListingBuilt after the survey: %t %v", built, err)
	}
	wantCounts(t, e, 3, 1, 2, 1, 0, 1, 1, 0)
	wantList(t, e, MembersFilter{Order: OrderLastSeen}, "carol", "alice", "bob")
	wantList(t, e, MembersFilter{Search: "bob@example.com"}, "bob")

	// A new current key: the addresses are indexed under a key of its own.
	rotated := f.engine(listingConfig, []byte("a second key of at least 32 bytes!!"), testKey)
	if built, err := rotated.ListingBuilt(ctx); err != nil || built {
		t.Fatalf("ListingBuilt after a rotation: %t %v", built, err)
	}
	wantList(t, rotated, MembersFilter{Search: "bob@example.com"})
	if err := rotated.BuildListing(ctx); err != nil {
		t.Fatal(err)
	}
	wantList(t, rotated, MembersFilter{Search: "bob@example.com"}, "bob")
	wantCounts(t, rotated, 3, 1, 2, 1, 0, 1, 1, 0)

	// Every key copied to another store, as an export and an import do:
	// the marks do not travel, so the indexes are built there too.
	other, err := embedded.Open(filepath.Join(t.TempDir(), "other.db"), embedded.Options{Now: f.clk.Now, SweepInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { other.Close() })
	err = e.store.ScanKeys(ctx, "", func(keys []string) error {
		for _, k := range keys {
			v, err := e.store.Get(ctx, k)
			if err != nil {
				return err
			}
			if err := other.Set(ctx, k, v, 0); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	kr, err := keyring.New(testKey)
	if err != nil {
		t.Fatal(err)
	}
	copied, err := New(other, kr, listingConfig, f.clk.Now, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	if built, err := copied.ListingBuilt(ctx); err != nil || built {
		t.Fatalf("ListingBuilt on a copy of the keys: %t %v", built, err)
	}
	if err := copied.BuildListing(ctx); err != nil {
		t.Fatal(err)
	}
	wantCounts(t, copied, 3, 1, 2, 1, 0, 1, 1, 0)
	wantList(t, copied, MembersFilter{Search: "bob@example.com"}, "bob")
}

// The count of records under an older key is not repeated for the keys
// with which it found none: a reload reads no record.
func TestStaleKnownForTheSameKeys(t *testing.T) {
	f := newFixture(t, Config{})
	f.enrol("alice")
	if known, err := f.e.StaleKnown(ctx); err != nil || known {
		t.Fatalf("StaleKnown before any count: %t %v", known, err)
	}
	if s, err := f.e.CountStale(ctx); err != nil || s.Count != 0 {
		t.Fatalf("CountStale: %+v %v", s, err)
	}
	again := f.engine(Config{}, testKey)
	if known, err := again.StaleKnown(ctx); err != nil || !known || !again.StaleRecords().Complete {
		t.Fatalf("StaleKnown for the same key: %t %v %+v", known, err, again.StaleRecords())
	}
	rotated := f.engine(Config{}, []byte("a second key of at least 32 bytes!!"), testKey)
	if known, err := rotated.StaleKnown(ctx); err != nil || known {
		t.Fatalf("StaleKnown after a rotation: %t %v", known, err)
	}
	// alice is under the older key: no mark, so the next start counts again.
	if s, err := rotated.CountStale(ctx); err != nil || s.Count != 1 {
		t.Fatalf("CountStale after a rotation: %+v %v", s, err)
	}
	if known, err := f.engine(Config{}, []byte("a second key of at least 32 bytes!!"), testKey).StaleKnown(ctx); err != nil || known {
		t.Fatalf("StaleKnown with a record left under the older key: %t %v", known, err)
	}
}

func TestListingRefusesBadFilters(t *testing.T) {
	f := newFixture(t, Config{})
	for field, filter := range map[string]MembersFilter{
		"order":  {Order: "name"},
		"method": {Method: "push"},
		"search": {Search: strings.Repeat("a", MaxSearch+1)},
	} {
		if _, err := f.e.Members(ctx, "", 10, filter); !isInput(err, field) {
			t.Errorf("Members(%+v): %v, want an error naming %s", filter, err, field)
		}
	}
	for _, limit := range []int{0, MaxMembersPage + 1} {
		if _, err := f.e.Members(ctx, "", limit, MembersFilter{}); !isInput(err, "limit") {
			t.Errorf("Members with limit %d: %v", limit, err)
		}
	}
}

func TestPrefixEnd(t *testing.T) {
	for p, want := range map[string]string{"ab": "ac", "a\xff": "b", "\xff\xff": "", "": "", "a\x00": "a\x01"} {
		if got := prefixEnd(p); got != want {
			t.Errorf("prefixEnd(%q) = %q, want %q", p, got, want)
		}
	}
}

// A rare filter in an order another index serves (enrolled, by last seen,
// with one member enrolled among many seen) ends pages short rather than
// reading every member for one page; following Next still finds them all.
func TestListingReadBudget(t *testing.T) {
	f := newCodeFixture(t, listingConfig)
	e := f.e
	f.enrol("zed")
	t0 := f.clk.Now()
	const seen = 600
	for i := range seen {
		if err := e.RecordSeen(ctx, fmt.Sprintf("m%04d", i), "", t0.Add(time.Duration(i+1)*time.Minute)); err != nil {
			t.Fatal(err)
		}
	}
	filter := MembersFilter{Enrolled: yes(), Order: OrderLastSeen}
	var found []string
	pages, after := 0, ""
	for {
		p, err := e.Members(ctx, after, 1, filter)
		if err != nil {
			t.Fatal(err)
		}
		pages++
		for _, m := range p.Members {
			found = append(found, m.ID)
		}
		if p.Next == "" {
			break
		}
		if pages > seen {
			t.Fatal("the pages never end")
		}
		after = p.Next
	}
	// 601 entries at 200 a page: zed, never seen, comes last, on the fourth.
	if len(found) != 1 || found[0] != "zed" || pages != 4 {
		t.Fatalf("found %v in %d pages, want zed on page 4", found, pages)
	}
}
