package audit

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
	bolt "go.etcd.io/bbolt"

	"github.com/caddy-twofactor/twofactor/clock"
	"github.com/caddy-twofactor/twofactor/internal/testredis"
	"github.com/caddy-twofactor/twofactor/store"
	"github.com/caddy-twofactor/twofactor/store/embedded"
	redisstore "github.com/caddy-twofactor/twofactor/store/redis"
)

var (
	epoch = time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	key   = bytes.Repeat([]byte{7}, MinKeyLen)
)

// backend is a store under test plus a way to rewrite a log behind the
// store's back, as someone with access to the database would.
type backend struct {
	st store.Store
	// clk drives the embedded store's clock; Redis keeps its own.
	clk *clock.Fake
	// rewrite replaces the entries of log by edit's result, IDs included.
	rewrite func(t *testing.T, log string, edit func([]store.LogEntry) []store.LogEntry)
}

// eachBackend runs test on bbolt in a temp dir and on a real redis-server.
func eachBackend(t *testing.T, test func(t *testing.T, b *backend)) {
	t.Run("bbolt", func(t *testing.T) { test(t, openBolt(t)) })
	t.Run("redis", func(t *testing.T) { test(t, openRedis(t)) })
}

func openBolt(t testing.TB) *backend {
	clk := clock.NewFake(epoch)
	path := filepath.Join(t.TempDir(), "twofactor.db")
	opts := embedded.Options{Now: clk.Now, SweepInterval: -1}
	open := func() *embedded.Store {
		s, err := embedded.Open(path, opts)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	b := &backend{st: open(), clk: clk}
	b.rewrite = func(t *testing.T, log string, edit func([]store.LogEntry) []store.LogEntry) {
		t.Helper()
		entries := readAll(t, b.st, log)
		b.st.(*embedded.Store).Close()
		db, err := bolt.Open(path, 0o600, nil)
		if err != nil {
			t.Fatal(err)
		}
		err = db.Update(func(tx *bolt.Tx) error {
			logs := tx.Bucket([]byte("logs"))
			if err := logs.DeleteBucket([]byte(log)); err != nil {
				return err
			}
			bk, err := logs.CreateBucket([]byte(log))
			if err != nil {
				return err
			}
			for _, e := range edit(entries) {
				ms, seq, err := store.ParseLogID(e.ID)
				if err != nil {
					return err
				}
				k := binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint64(nil, ms), seq)
				if err := bk.Put(k, e.Value); err != nil {
					return err
				}
			}
			return nil
		})
		if cerr := db.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			t.Fatal(err)
		}
		b.st = open()
	}
	return b
}

func openRedis(t testing.TB) *backend {
	srv := testredis.Start(t)
	client := goredis.NewClient(&goredis.Options{Addr: srv.Addr})
	t.Cleanup(func() { client.Close() })
	const prefix = "tf:"
	b := &backend{st: redisstore.New(client, prefix)}
	b.rewrite = func(t *testing.T, log string, edit func([]store.LogEntry) []store.LogEntry) {
		t.Helper()
		ctx := t.Context()
		entries := readAll(t, b.st, log)
		stream := prefix + "\x00log:" + log
		if err := client.Del(ctx, stream).Err(); err != nil {
			t.Fatal(err)
		}
		for _, e := range edit(entries) {
			if err := client.XAdd(ctx, &goredis.XAddArgs{Stream: stream, ID: e.ID, Values: []any{"v", e.Value}}).Err(); err != nil {
				t.Fatal(err)
			}
		}
	}
	return b
}

func readAll(t *testing.T, st store.Store, log string) []store.LogEntry {
	t.Helper()
	got, err := st.LogRange(t.Context(), log, "", "", store.MaxLogRange, false)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func newTrail(t testing.TB, b *backend, instance string) *Trail {
	t.Helper()
	now := time.Now
	if b.clk != nil {
		now = b.clk.Now
	}
	tr, err := New(b.st, [][]byte{key}, instance, now)
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

func appendN(t *testing.T, tr *Trail, n int, at func(i int) Record) {
	t.Helper()
	for i := range n {
		if err := tr.Append(t.Context(), at(i)); err != nil {
			t.Fatalf("Append %d: %v", i, err)
		}
	}
}

func members(i int) Record {
	return Record{Time: epoch.Add(time.Duration(i) * time.Minute), Event: "verify", Result: "ok", Member: fmt.Sprintf("m%d", i), IP: "192.0.2.1", Method: "totp"}
}

func wantVerify(t *testing.T, tr *Trail, instance string, want VerifyResult) {
	t.Helper()
	got, err := tr.Verify(t.Context(), instance)
	if err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Fatalf("Verify(%s) = %+v, want %+v", instance, got, want)
	}
}

// twoInstances appends n records to instances a (even) and b (odd), for
// alice, bob and carol in turn, each changed by vary, and returns a.
func twoInstances(t *testing.T, b *backend, n int, vary func(i int, r *Record)) *Trail {
	t.Helper()
	a, c := newTrail(t, b, "a"), newTrail(t, b, "b")
	for i := range n {
		r := members(i)
		r.Member = []string{"alice", "bob", "carol"}[i%3]
		vary(i, &r)
		tr := a
		if i%2 == 1 {
			tr = c
		}
		if err := tr.Append(t.Context(), r); err != nil {
			t.Fatal(err)
		}
	}
	return a
}

// Two instances' records come back newest first by record time, merged,
// filtered and paged; the pages together hold each match once.
func TestQuery(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *backend) {
		ctx := t.Context()
		a := twoInstances(t, b, 30, func(i int, r *Record) {
			if i%5 == 0 {
				r.Result = "wrong"
			}
		})
		collect := func(f Filter, limit int) []Entry {
			var all []Entry
			after := ""
			for range 100 {
				p, err := a.Query(ctx, f, after, limit)
				if err != nil {
					t.Fatal(err)
				}
				if len(p.Records) > limit {
					t.Fatalf("page of %d records, limit %d", len(p.Records), limit)
				}
				all = append(all, p.Records...)
				if p.Next == "" {
					return all
				}
				after = p.Next
			}
			t.Fatal("paging never ended")
			return nil
		}
		minutes := func(es []Entry) []int {
			var out []int
			for _, e := range es {
				out = append(out, int(e.Record.Time.Sub(epoch)/time.Minute))
			}
			return out
		}
		p, err := a.Query(ctx, Filter{}, "", 3)
		if err != nil {
			t.Fatal(err)
		}
		if got := minutes(p.Records); fmt.Sprint(got) != "[29 28 27]" || p.Next == "" {
			t.Fatalf("first page = %v next %q, want [29 28 27] and a next", got, p.Next)
		}
		if p.Records[0].Record.Instance != "b" || p.Records[1].Record.Instance != "a" {
			t.Fatalf("instances %s, %s; want b then a", p.Records[0].Record.Instance, p.Records[1].Record.Instance)
		}
		all := minutes(collect(Filter{}, 4))
		if len(all) != 30 || all[0] != 29 || all[29] != 0 {
			t.Fatalf("all pages = %v, want 29 down to 0", all)
		}
		for i := 1; i < len(all); i++ {
			if all[i] != all[i-1]-1 {
				t.Fatalf("all pages = %v, want 29 down to 0 each once", all)
			}
		}
		cases := []struct {
			f    Filter
			want string
		}{
			{Filter{Member: "bob"}, "[28 25 22 19 16 13 10 7 4 1]"},
			{Filter{Result: "wrong"}, "[25 20 15 10 5 0]"},
			{Filter{Member: "alice", Result: "wrong"}, "[15 0]"},
			{Filter{Since: epoch.Add(10 * time.Minute), Until: epoch.Add(13 * time.Minute)}, "[12 11 10]"},
			{Filter{Event: "verify", IP: "192.0.2.1", Member: "carol"}, "[29 26 23 20 17 14 11 8 5 2]"},
			{Filter{Event: "reset"}, "[]"},
			{Filter{IP: "192.0.2.1", Actor: "root"}, "[]"},
		}
		for _, tc := range cases {
			if got := fmt.Sprint(minutes(collect(tc.f, 2))); got != tc.want {
				t.Errorf("Query(%+v) = %s, want %s", tc.f, got, tc.want)
			}
		}
	})
}

// A filter that matches nothing reads at most 20*limit entries a page and
// says where to go on.
func TestQueryReadBudget(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *backend) {
		tr := newTrail(t, b, "a")
		appendN(t, tr, 50, members)
		p, err := tr.Query(t.Context(), Filter{Member: "nobody"}, "", 1)
		if err != nil {
			t.Fatal(err)
		}
		if len(p.Records) != 0 || p.Next == "" {
			t.Fatalf("page = %d records, next %q; want none and a next", len(p.Records), p.Next)
		}
		// 46 entries are newer than m3: the third page reaches it.
		pages := 0
		for after := ""; ; {
			p, err = tr.Query(t.Context(), Filter{Member: "m3"}, after, 1)
			if err != nil {
				t.Fatal(err)
			}
			pages++
			if len(p.Records) > 0 {
				break
			}
			after = p.Next
		}
		if len(p.Records) != 1 || p.Records[0].Record.Member != "m3" || pages != 3 {
			t.Fatalf("page %d = %+v, want m3 on page 3", pages, p.Records)
		}
	})
}

func TestQueryBadInput(t *testing.T) {
	b := openBolt(t)
	tr := newTrail(t, b, "a")
	appendN(t, tr, 1, members)
	cases := []struct {
		f     Filter
		after string
		limit int
		want  string
	}{
		{Filter{}, "", 0, "limit 0"},
		{Filter{}, "", MaxLimit + 1, "limit 1001"},
		{Filter{Event: "Sign In"}, "", 10, "event"},
		{Filter{Result: "OK!"}, "", 10, "result"},
		{Filter{IP: "nope"}, "", 10, "ip"},
		{Filter{Since: epoch, Until: epoch}, "", 10, "since"},
		{Filter{}, "garbage", 10, "after"},
		{Filter{}, "eyJ0byI6eyJhIjoieCJ9fQ", 10, "after"}, // {"to":{"a":"x"}}
	}
	for _, tc := range cases {
		_, err := tr.Query(t.Context(), tc.f, tc.after, tc.limit)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Query(%+v, %q, %d) = %v, want an error naming %q", tc.f, tc.after, tc.limit, err, tc.want)
		}
	}
}

func TestBadRecordsAndOptions(t *testing.T) {
	b := openBolt(t)
	tr := newTrail(t, b, "a")
	for _, tc := range []struct {
		r    Record
		want string
	}{
		{Record{Time: epoch}, "event"},
		{Record{Event: "verify", Details: map[string]string{"recovery_Code": "x"}}, "recovery_Code"},
		{Record{Event: "verify", Details: map[string]string{"otp_secret": "x"}}, "otp_secret"},
		{Record{Event: "verify", Details: map[string]string{"Code": "x"}}, "Code"},
		{Record{Event: "verify", Details: map[string]string{"Token": "x"}}, "Token"},
		{Record{Event: "verify", Details: map[string]string{"new_password": "x"}}, "new_password"},
		{Record{Event: "verify", Details: map[string]string{"": "x"}}, "empty key"},
	} {
		if err := tr.Append(t.Context(), tc.r); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Append(%+v) = %v, want an error naming %q", tc.r, err, tc.want)
		}
	}
	if got := readAll(t, b.st, "audit:a"); len(got) != 0 {
		t.Fatalf("refused records left %d entries", len(got))
	}
	// A count of codes is not a code.
	if err := tr.Append(t.Context(), Record{Event: "verify", Details: map[string]string{"recovery_codes_left": "3"}}); err != nil {
		t.Errorf("Append with recovery_codes_left: %v", err)
	}
	if _, err := New(b.st, [][]byte{key, key[:16]}, "a", nil); err == nil || !strings.Contains(err.Error(), "key") {
		t.Errorf("New with a 16-byte key = %v, want an error naming the key", err)
	}
	for _, inst := range []string{"", "a\x00b", strings.Repeat("i", MaxInstanceLen+1)} {
		if _, err := New(b.st, [][]byte{key}, inst, nil); err == nil || !strings.Contains(err.Error(), "instance") {
			t.Errorf("New with instance %q = %v, want an error naming the instance", inst, err)
		}
	}
	if _, err := New(nil, [][]byte{key}, "a", nil); err == nil || !strings.Contains(err.Error(), "store") {
		t.Errorf("New with no store = %v, want an error naming the store", err)
	}
}

// A record without a time takes the gateway's clock, and the stored JSON
// has the documented snake_case fields.
func TestRecordFormat(t *testing.T) {
	b := openBolt(t)
	tr := newTrail(t, b, "gw1")
	b.clk.Set(epoch.Add(time.Hour))
	if err := tr.Append(t.Context(), Record{Event: "admin.reset", Result: "ok", Member: "alice", Actor: "root", IP: "2001:db8::1", Browser: "Firefox on Linux", Method: "totp", Details: map[string]string{"reason": "lost phone"}}); err != nil {
		t.Fatal(err)
	}
	var s struct {
		Record map[string]any `json:"record"`
	}
	if err := json.Unmarshal(readAll(t, b.st, "audit:gw1")[0].Value, &s); err != nil {
		t.Fatal(err)
	}
	want := `map[actor:root browser:Firefox on Linux details:map[reason:lost phone] event:admin.reset instance:gw1 ip:2001:db8::1 member:alice method:totp result:ok time:2026-03-01T10:00:00Z]`
	if got := fmt.Sprint(s.Record); got != want {
		t.Fatalf("stored record = %s\nwant %s", got, want)
	}
}

func TestVerifyIntactAndRestart(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *backend) {
		tr := newTrail(t, b, "a")
		wantVerify(t, tr, "a", VerifyResult{})
		appendN(t, tr, 3, members)
		wantVerify(t, tr, "a", VerifyResult{Checked: 3})
		// A new Trail on the same store (a restart) continues the chain.
		again := newTrail(t, b, "a")
		appendN(t, again, 2, members)
		wantVerify(t, again, "a", VerifyResult{Checked: 5})
		// The key is part of the chain: another key sees the first entry
		// as not its own.
		other, err := New(b.st, [][]byte{bytes.Repeat([]byte{8}, MinKeyLen)}, "a", nil)
		if err != nil {
			t.Fatal(err)
		}
		first := readAll(t, b.st, "audit:a")[0].ID
		wantVerify(t, other, "a", VerifyResult{FirstBad: first, Problem: Altered})
		// After a key rotation the chain goes on under the new key, and
		// the old entries verify while the old key is still in the ring.
		newKey := bytes.Repeat([]byte{9}, MinKeyLen)
		rotated, err := New(b.st, [][]byte{newKey, key}, "a", nil)
		if err != nil {
			t.Fatal(err)
		}
		appendN(t, rotated, 2, members)
		wantVerify(t, rotated, "a", VerifyResult{Checked: 7})
		newOnly, err := New(b.st, [][]byte{newKey}, "a", nil)
		if err != nil {
			t.Fatal(err)
		}
		wantVerify(t, newOnly, "a", VerifyResult{FirstBad: first, Problem: Altered})
	})
}

// renumber gives entries IDs of their own, 10 ms apart, so that an entry
// can be put between two others.
func renumber(es []store.LogEntry) []store.LogEntry {
	for i := range es {
		es[i].ID = store.FormatLogID(uint64(epoch.UnixMilli())+uint64(i)*10, 0)
	}
	return es
}

func TestVerifyTampering(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *backend) {
		tr := newTrail(t, b, "a")
		appendN(t, tr, 6, members)
		log := "audit:a"
		intact := readAll(t, b.st, log)
		restore := func() {
			b.rewrite(t, log, func([]store.LogEntry) []store.LogEntry { return append([]store.LogEntry{}, intact...) })
		}
		cases := []struct {
			name string
			edit func(es []store.LogEntry) []store.LogEntry
			// the entries found sound, the index of the first bad one in
			// the edited log, and what is wrong with it
			checked, bad int
			problem      string
		}{
			{"record edited", func(es []store.LogEntry) []store.LogEntry {
				es[2].Value = bytes.Replace(es[2].Value, []byte(`"m2"`), []byte(`"mx"`), 1)
				return es
			}, 2, 2, Altered},
			{"number edited", func(es []store.LogEntry) []store.LogEntry {
				es[3].Value = bytes.Replace(es[3].Value, []byte(`"n":4`), []byte(`"n":9`), 1)
				return es
			}, 3, 3, Altered},
			{"garbage value", func(es []store.LogEntry) []store.LogEntry {
				es[1].Value = []byte("not json")
				return es
			}, 1, 1, Altered},
			{"middle deleted", func(es []store.LogEntry) []store.LogEntry {
				return append(es[:3:3], es[4:]...)
			}, 3, 3, Missing},
			{"forged inserted", func(es []store.LogEntry) []store.LogEntry {
				es = renumber(es)
				forged := store.LogEntry{ID: store.FormatLogID(uint64(epoch.UnixMilli())+25, 0)}
				forged.Value = bytes.Replace(es[3].Value, []byte(`"m3"`), []byte(`"mallory"`), 1)
				return append(es[:3:3], append([]store.LogEntry{forged}, es[3:]...)...)
			}, 3, 3, Inserted},
			{"copy appended", func(es []store.LogEntry) []store.LogEntry {
				es = renumber(es)
				dup := es[1]
				dup.ID = store.FormatLogID(uint64(epoch.UnixMilli())+1000, 0)
				return append(es, dup)
			}, 6, 6, Inserted},
			{"deleted, forged one added at the end", func(es []store.LogEntry) []store.LogEntry {
				es = renumber(es)
				forged := es[5]
				forged.ID = store.FormatLogID(uint64(epoch.UnixMilli())+1000, 0)
				forged.Value = bytes.Replace(forged.Value, []byte(`"n":6`), []byte(`"n":7`), 1)
				return append(append(es[:1:1], es[2:]...), forged)
			}, 1, 1, Missing},
			{"foreign entry", func(es []store.LogEntry) []store.LogEntry {
				es = renumber(es)
				return append(es, store.LogEntry{ID: store.FormatLogID(uint64(epoch.UnixMilli())+1000, 0), Value: []byte(`{"n":7}`)})
			}, 6, 6, Altered},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				var edited []store.LogEntry
				b.rewrite(t, log, func(es []store.LogEntry) []store.LogEntry {
					edited = tc.edit(es)
					return edited
				})
				t.Cleanup(restore)
				// A fresh Trail, as `audit verify` would run: no memory
				// of the last number.
				wantVerify(t, newTrail(t, b, "b"), "a", VerifyResult{Checked: tc.checked, FirstBad: edited[tc.bad].ID, Problem: tc.problem})
			})
		}
		wantVerify(t, newTrail(t, b, "b"), "a", VerifyResult{Checked: 6})
	})
}

// Removing the newest entries is seen only by the trail that appended
// them, which knows the last number.
func TestVerifyTruncated(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *backend) {
		tr := newTrail(t, b, "a")
		appendN(t, tr, 5, members)
		b.rewrite(t, "audit:a", func(es []store.LogEntry) []store.LogEntry { return es[:3] })
		tr.st = b.st // bbolt reopened the file
		wantVerify(t, tr, "a", VerifyResult{Checked: 3, Problem: Missing})
		wantVerify(t, newTrail(t, b, "a"), "a", VerifyResult{Checked: 3})
	})
}

// Trimming the oldest entries leaves a chain that still verifies and a
// trail that goes on appending to it.
func TestTrim(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *backend) {
		ctx := t.Context()
		a, c := newTrail(t, b, "a"), newTrail(t, b, "b")
		appendN(t, a, 3, members)
		appendN(t, c, 2, members)
		var cut time.Time
		if b.clk != nil {
			b.clk.Advance(time.Hour)
			cut = b.clk.Now()
		} else {
			// Redis numbers entries by its own clock: wait until the
			// next millisecond has begun (no fixed sleep), then cut there.
			last := readAll(t, b.st, "audit:b")[1].Time // the newest entry to trim
			for !time.Now().After(last.Add(2 * time.Millisecond)) {
				time.Sleep(100 * time.Microsecond)
			}
			cut = time.Now()
			for !time.Now().After(cut.Add(2 * time.Millisecond)) {
				time.Sleep(100 * time.Microsecond)
			}
		}
		appendN(t, a, 2, members)
		n, err := a.Trim(ctx, cut)
		if err != nil {
			t.Fatal(err)
		}
		if n != 5 {
			t.Fatalf("Trim removed %d, want 5 (3 of a, 2 of b)", n)
		}
		wantVerify(t, newTrail(t, b, "x"), "a", VerifyResult{Checked: 2})
		wantVerify(t, newTrail(t, b, "x"), "b", VerifyResult{})
		appendN(t, a, 1, members)
		appendN(t, c, 1, members)
		wantVerify(t, a, "a", VerifyResult{Checked: 3})
		wantVerify(t, c, "b", VerifyResult{Checked: 1})
		// A log trimmed whole, then restarted, begins again from genesis.
		if _, err := a.Trim(ctx, time.Now().Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		restarted := newTrail(t, b, "b")
		appendN(t, restarted, 2, members)
		wantVerify(t, restarted, "b", VerifyResult{Checked: 2})
	})
}

// Appends from many goroutines, on two instances at once, keep both
// chains whole.
func TestConcurrentAppends(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *backend) {
		trails := []*Trail{newTrail(t, b, "a"), newTrail(t, b, "b")}
		var wg sync.WaitGroup
		errs := make(chan error, 8*25)
		for g := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range 25 {
					if err := trails[g%2].Append(t.Context(), members(i)); err != nil {
						errs <- err
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		wantVerify(t, trails[0], "a", VerifyResult{Checked: 100})
		wantVerify(t, trails[0], "b", VerifyResult{Checked: 100})
	})
}

func BenchmarkAppend(b *testing.B) {
	for name, open := range map[string]func(testing.TB) *backend{"bbolt": openBolt, "redis": openRedis} {
		b.Run(name, func(b *testing.B) {
			tr := newTrail(b, open(b), "bench")
			r := members(1)
			r.Details = map[string]string{"reason": "benchmark"}
			for b.Loop() {
				if err := tr.Append(b.Context(), r); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// Two Trails over one log, as a config reload makes (the new one starts
// while the old one appends its last records): sharing the chain state
// they keep one chain; each with its own, they fork it.
func TestSharedChainAcrossReloads(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *backend) {
		old, cur := newTrail(t, b, "a"), newTrail(t, b, "a")
		scope := t.TempDir() // chains live as long as the process: one of this run's own
		old.ShareChain(scope)
		cur.ShareChain(scope)
		appendN(t, old, 1, members)
		appendN(t, cur, 1, members) // the new trail loads the log here
		appendN(t, old, 1, members) // the old one's last record
		appendN(t, cur, 2, members)
		wantVerify(t, cur, "a", VerifyResult{Checked: 5})

		// Each with its own state, the old trail's record after the new
		// one loaded takes a number the new one takes too.
		forkA, forkB := newTrail(t, b, "b"), newTrail(t, b, "b")
		appendN(t, forkA, 1, members)
		appendN(t, forkB, 1, members)
		appendN(t, forkA, 1, members)
		if res, err := forkB.Verify(t.Context(), "b"); err != nil || res.Problem == "" {
			t.Fatalf("a forked chain verified: %+v, %v", res, err)
		}
		// A scope names the store: the same instance on another store is
		// another chain.
		other := newTrail(t, b, "a")
		other.ShareChain(scope + " 2")
		if other.c == cur.c {
			t.Fatal("two scopes share a chain")
		}
	})
}

// A sound chain copied whole into another instance's log reads as
// inserted there: each record names its instance, under its MAC.
func TestVerifyCopiedLog(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *backend) {
		tr := newTrail(t, b, "a")
		appendN(t, tr, 3, members)
		appendN(t, newTrail(t, b, "b"), 1, members)
		entries := readAll(t, b.st, "audit:a")
		b.rewrite(t, "audit:b", func([]store.LogEntry) []store.LogEntry { return entries })
		res, err := newTrail(t, b, "x").Verify(t.Context(), "b")
		if err != nil || res.Problem != Inserted || res.FirstBad != entries[0].ID {
			t.Fatalf("Verify of a copy = %+v, %v; want the first entry inserted", res, err)
		}
	})
}

// An instance taken off the instance list is put back by its next
// appends, so Query and Trim see it again.
func TestInstanceRelisted(t *testing.T) {
	b := openBolt(t)
	tr := newTrail(t, b, "a")
	appendN(t, tr, 1, members)
	if err := b.st.IndexDelete(t.Context(), instancesIndex, "a"); err != nil {
		t.Fatal(err)
	}
	b.clk.Advance(relistEvery)
	appendN(t, tr, 1, members)
	names, err := tr.Instances(t.Context())
	if err != nil || len(names) != 1 || names[0] != "a" {
		t.Fatalf("instances = %v, %v; want a listed again", names, err)
	}
}
