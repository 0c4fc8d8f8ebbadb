// Package audit keeps the durable, tamper-evident audit trail: every
// security event and admin action as a record in the store's append-only
// log, each chained to the one before it by a keyed hash, so that an edit,
// an insertion or a deletion made directly in the store shows up when the
// chain is verified. It knows nothing of HTTP or Caddy; the gateway builds
// records from its audit events and appends them here.
package audit

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/caddy-twofactor/twofactor/store"
)

// Record is one audit record. Its JSON form (snake_case) is what the
// trail stores and what exports show.
type Record struct {
	// Time is when it happened by the gateway's clock, not the store's:
	// on Redis the log's IDs count Redis's time.
	Time time.Time `json:"time"`
	// Event names what happened, such as "verify" or "admin.reset".
	Event string `json:"event"`
	// Result is how it ended, such as "ok" or "wrong".
	Result string `json:"result,omitempty"`
	// Member is the member the event is about.
	Member string `json:"member,omitempty"`
	// Actor is who acted: the admin of an admin action, else empty (the
	// member acted).
	Actor string `json:"actor,omitempty"`
	// IP is the client address.
	IP string `json:"ip,omitempty"`
	// Browser is a summary of the user agent ("Firefox on Linux"), never
	// the whole header.
	Browser string `json:"browser,omitempty"`
	// Method is the second factor involved ("totp", "email", ...).
	Method string `json:"method,omitempty"`
	// Instance is the gateway instance that wrote the record; the trail
	// sets it.
	Instance string `json:"instance"`
	// Details holds the other fields of the event, such as an admin's
	// reason or a masked destination.
	Details map[string]string `json:"details,omitempty"`
}

// secretWords are the words a details key may not have as one of its
// parts ("code", "otp_code"; a count such as "recovery_codes_left" is
// fine). The trail is read by every admin and exported to files, so it
// must never hold a code, secret, token or password. Refusing such keys catches the obvious
// mistake; the real guard is that callers build records from fields known
// to be safe (masked destinations, never a code), as the audit logger's
// callers already do.
var secretWords = []string{"code", "secret", "token", "password"}

// Check reports a record the trail refuses: one without an event or time,
// or with a details key that could hold a secret.
func (r Record) Check() error {
	if r.Event == "" {
		return errors.New("audit: record: event is empty")
	}
	if r.Time.IsZero() {
		return errors.New("audit: record: time is zero")
	}
	for k := range r.Details {
		if k == "" {
			return errors.New("audit: record: details: empty key")
		}
		for _, part := range strings.FieldsFunc(strings.ToLower(k), func(r rune) bool { return r == '_' || r == '-' || r == '.' }) {
			for _, w := range secretWords {
				if part == w {
					return fmt.Errorf("audit: record: details: key %q could hold a secret (%s); pass only safe fields", k, w)
				}
			}
		}
	}
	return nil
}

// Entry is a record as read back from the trail, with the ID of its log
// entry (unique within its instance's log).
type Entry struct {
	ID     string `json:"id"`
	Record Record `json:"record"`
}

// stored is the value of a log entry: the record's JSON, its sequence
// number within the instance's log, the MAC of the entry before it and its
// own MAC over those three. Record stays raw so the bytes verified are the
// bytes signed.
type stored struct {
	N      uint64          `json:"n"`
	Prev   []byte          `json:"prev"`
	Record json.RawMessage `json:"record"`
	MAC    []byte          `json:"mac"`
}

// mac is HMAC-SHA256(key, prev || n || record): the chain link. n is in
// it so that deleting entries and renumbering cannot hide a gap.
func mac(key, prev []byte, n uint64, record []byte) []byte {
	h := hmac.New(sha256.New, key)
	h.Write(prev)
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], n)
	h.Write(b[:])
	h.Write(record)
	return h.Sum(nil)
}

// genesis is the prevMAC of an instance's first entry: fixed by key and
// instance, so a log cannot be replaced by one started under another
// instance's name.
func genesis(key []byte, instance string) []byte {
	h := hmac.New(sha256.New, key)
	h.Write([]byte("twofactor audit genesis\x00"))
	h.Write([]byte(instance))
	return h.Sum(nil)
}

// signedBy reports whether m is a MAC of prev, n and record under one of
// the trail's keys.
func (t *Trail) signedBy(m, prev []byte, n uint64, record []byte) bool {
	for _, k := range t.keys {
		if hmac.Equal(m, mac(k, prev, n, record)) {
			return true
		}
	}
	return false
}

// isGenesis reports whether prev starts instance's chain under one of the
// trail's keys.
func (t *Trail) isGenesis(prev []byte, instance string) bool {
	for _, k := range t.keys {
		if hmac.Equal(prev, genesis(k, instance)) {
			return true
		}
	}
	return false
}

// instancesIndex lists every instance that has a log, for Query and Trim.
const instancesIndex = "audit_instances"

// logName is the log of an instance.
func logName(instance string) string { return "audit:" + instance }

// MinKeyLen is the shortest chain key New accepts.
const MinKeyLen = 32

// MaxInstanceLen is the longest instance name New accepts, well within
// what a store takes as a log name.
const MaxInstanceLen = 200

// Trail appends to one instance's log and reads every instance's.
//
// The chain is per instance, not global: several gateway instances append
// to a shared store at once, and one chain across them would need a global
// lock (or a compare-and-swap loop) around every append, on the hot path
// of sign-ins. Within an instance, appends are serialised by a mutex so
// the chain is well defined. Two processes must therefore never share an
// instance name: their appends would fork the chain and Verify would
// report it.
type Trail struct {
	st       store.Store
	key      []byte   // signs new entries
	keys     [][]byte // check entries: key, then keys before a rotation
	instance string
	now      func() time.Time
	c        *chain
	shared   string // the key of the shared chain; "" for t's own
}

// chain is where a log's chain stands, as its appender knows it.
type chain struct {
	mu     sync.Mutex
	loaded bool      // n and prev hold the log's last entry
	n      uint64    // sequence number of the last entry appended
	prev   []byte    // its MAC
	listed time.Time // when the instance was last put on the list
}

// relistEvery is how often an appending trail reads its log's head again
// and puts its instance back on the instance list (load).
const relistEvery = 10 * time.Minute

// chains are the chains of this process that Trails share (ShareChain),
// by scope and instance.
var chains sync.Map

// ShareChain makes t append through the chain state that every Trail of
// this process with the same scope and instance shares, rather than its
// own. scope names the data the store reaches (its identity): a config
// reload makes a new Trail over the same log while the old one still
// appends its last records, and two states for one log would fork its
// chain. Call it before the first Append; "" keeps t's own state.
func (t *Trail) ShareChain(scope string) {
	if scope == "" {
		return
	}
	t.shared = scope + "\x00" + t.instance
	c, _ := chains.LoadOrStore(t.shared, &chain{})
	t.c = c.(*chain)
}

// New returns the trail of instance on st. keys key the chain's MACs:
// the first signs new entries, and every one is tried when checking, so
// entries written before a key rotation still verify. Each must be at
// least MinKeyLen bytes and used for nothing else (derive them from the
// keyring). now is the gateway's clock, for records without a time.
func New(st store.Store, keys [][]byte, instance string, now func() time.Time) (*Trail, error) {
	if st == nil {
		return nil, errors.New("audit: store is nil")
	}
	if len(keys) == 0 {
		return nil, errors.New("audit: no key")
	}
	for i, k := range keys {
		if len(k) < MinKeyLen {
			return nil, fmt.Errorf("audit: key %d: %d bytes, want at least %d", i, len(k), MinKeyLen)
		}
	}
	if instance == "" || len(instance) > MaxInstanceLen || strings.ContainsAny(instance, "\x00\n") {
		return nil, fmt.Errorf("audit: instance: %q, want 1 to %d bytes without a NUL or newline", instance, MaxInstanceLen)
	}
	if now == nil {
		now = time.Now
	}
	t := &Trail{st: st, instance: instance, now: now}
	for _, k := range keys {
		t.keys = append(t.keys, append([]byte{}, k...))
	}
	t.key = t.keys[0]
	t.c = &chain{}
	return t, nil
}

// load reads the instance's last entry to continue its chain, and lists
// the instance for Query and Trim. A log that is empty (new, or trimmed
// whole) starts from the genesis value. It does so again every
// relistEvery: an instance taken off the list would go unseen by Query,
// Export and Trim while it still appends, and a log that lost its data
// under a running gateway is started afresh rather than continued from a
// head it no longer has. Called with mu held.
func (t *Trail) load(ctx context.Context) error {
	now := t.now()
	if t.c.loaded && now.Sub(t.c.listed) < relistEvery {
		return nil
	}
	if err := t.st.IndexPut(ctx, instancesIndex, t.instance); err != nil {
		return fmt.Errorf("audit: listing instance: %w", err)
	}
	last, err := t.st.LogRange(ctx, logName(t.instance), "", "", 1, true)
	if err != nil {
		return fmt.Errorf("audit: reading the last entry: %w", err)
	}
	t.c.n, t.c.prev = 0, genesis(t.key, t.instance)
	if len(last) == 1 {
		var s stored
		if err := json.Unmarshal(last[0].Value, &s); err != nil {
			return fmt.Errorf("audit: last entry %s is unreadable, cannot continue the chain: %w", last[0].ID, err)
		}
		t.c.n, t.c.prev = s.N, s.MAC
	}
	t.c.loaded, t.c.listed = true, now
	return nil
}

// Append stores records, in order and all in one store transaction,
// each with the trail's instance and, if it has none, the gateway's time.
// It refuses them all if Check refuses one, or if there are more than
// store.MaxLogAppend. If the store fails, the records may or may not have
// landed (a Redis timeout after the write): the trail reads its log again
// before the next append, so the chain never forks, but a caller that
// tries again may store them twice.
func (t *Trail) Append(ctx context.Context, records ...Record) error {
	if len(records) == 0 {
		return nil
	}
	if len(records) > store.MaxLogAppend {
		return fmt.Errorf("audit: %d records at once, want at most %d", len(records), store.MaxLogAppend)
	}
	recs := make([][]byte, len(records))
	for i, r := range records {
		r.Instance = t.instance
		if r.Time.IsZero() {
			r.Time = t.now()
		}
		if err := r.Check(); err != nil {
			return err
		}
		rec, err := json.Marshal(r)
		if err != nil {
			return fmt.Errorf("audit: record: %w", err)
		}
		recs[i] = rec
	}
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	if err := t.load(ctx); err != nil {
		return err
	}
	n, prev := t.c.n, t.c.prev
	vals := make([][]byte, len(recs))
	for i, rec := range recs {
		s := stored{N: n + 1, Prev: prev, Record: rec}
		s.MAC = mac(t.key, s.Prev, s.N, rec)
		val, err := json.Marshal(s)
		if err != nil {
			return fmt.Errorf("audit: entry: %w", err)
		}
		vals[i], n, prev = val, s.N, s.MAC
	}
	if _, err := t.st.LogAppend(ctx, logName(t.instance), vals...); err != nil {
		t.c.loaded = false
		return fmt.Errorf("audit: append: %w", err)
	}

	t.c.n, t.c.prev = n, prev
	return nil
}

// Instances lists every instance with a log in the trail, in name order:
// the chains Verify checks one by one.
func (t *Trail) Instances(ctx context.Context) ([]string, error) {
	var out []string
	after := ""
	for {
		page, err := t.st.IndexPage(ctx, instancesIndex, after, 1000)
		if err != nil {
			return nil, fmt.Errorf("audit: listing instances: %w", err)
		}
		out = append(out, page...)
		if len(page) < 1000 {
			return out, nil
		}
		after = page[len(page)-1]
	}
}

// Trim removes the entries of every instance's log appended before before
// (by the store's clock), oldest first, and returns how many. The chain
// still verifies afterwards: each entry carries its predecessor's MAC.
func (t *Trail) Trim(ctx context.Context, before time.Time) (int, error) {
	insts, err := t.Instances(ctx)
	if err != nil {
		return 0, err
	}
	total := 0
	for _, inst := range insts {
		n, err := t.st.LogTrim(ctx, logName(inst), before)
		total += n
		if err != nil {
			return total, fmt.Errorf("audit: trimming %s: %w", inst, err)
		}
	}
	return total, nil
}
