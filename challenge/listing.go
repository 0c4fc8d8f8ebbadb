package challenge

import (
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/caddy-twofactor/twofactor/keyring"
	"github.com/caddy-twofactor/twofactor/notify"
)

// The member list's indexes. Each filter and order of the list, and each
// count at its top, is a range of one ordered index, so a page of 50 reads
// one index range and the records of the members it shows, and a count is
// the size of a range (Redis: ZCARD, ZLEXCOUNT), however many members
// there are.
//
// Entries are kept where the facts change: updateUser compares the
// record's listed facts before and after each successful compare-and-swap
// and writes the difference (enrolled, methods, enrolled address);
// RecordSeen moves the last-seen entry and the seen address; a lockout,
// a right code after one and an admin's unlock move the lock entry. Those
// writes follow the record's, so a crash or a store error in between
// leaves an entry missing or stale. Two things repair that:
//   - the listing checks every entry it reads against the member's records
//     (it reads them anyway to show the line): a stale entry is dropped,
//     the member's right entries are written (relist), and the member is
//     listed only if the records say so;
//   - the survey (BuildListing) writes every member's entries from the
//     records and drops the entries no record backs. It runs in the
//     background once per store, again when the listing's layout or the
//     address key changes, and on demand.
//
// Counts come from the indexes alone, so an entry a crash left stale
// counts until one of those repairs reaches it.
//
// Entries whose order is not the ID's start with a fixed-width field, so
// byte order is that field's order and then the ID's: a range of the
// field is a range of entries, with no separator to escape.
const (
	// membersIndex lists every member listed: seen, or with a record.
	membersIndex = "members"
	// enrolledIndex and unenrolledIndex split membersIndex.
	enrolledIndex   = "enrolled"
	unenrolledIndex = "unenrolled"
	// methodIndexPrefix begins one index per method ("method:totp").
	methodIndexPrefix = "method:"
	// lastSeenIndex: 16 hex digits of MaxInt64 minus the last-seen Unix
	// second, then the ID, so the most recent come first. A member with a
	// record but never seen is listed at time 0, last.
	lastSeenIndex = "last_seen"
	// lockedIndex: 16 hex digits of the lockout's end (Unix ms), then the
	// ID; "locked now" is the range from now on. An entry whose end has
	// passed falls out of that range by itself.
	lockedIndex = "locked"
	// emailIndex: 64 hex digits of an HMAC of the enrolled address, then
	// the ID. seenEmailIndex: the same of the identity's address when the
	// member was last noted. No address is ever stored in the clear.
	emailIndex     = "email"
	seenEmailIndex = "seen_email"
)

// listedMethods are the methods the list filters by, in the order of
// MemberCounts.ByMethod.
var listedMethods = [...]string{MethodWebAuthn, MethodTOTP, MethodEmail, MethodSMS}

func methodIndex(m string) string { return methodIndexPrefix + m }

// timeWidth is the width of the time fields that begin entries.
const timeWidth = 16

func lastSeenEntry(id string, last time.Time) string {
	s := int64(0)
	if !last.IsZero() {
		s = max(last.Unix(), 0)
	}
	return fmt.Sprintf("%016x", uint64(math.MaxInt64-s)) + id
}

func lockedEntry(id string, until time.Time) string {
	return lockedFrom(until) + id
}

// lockedFrom begins the range of lockouts ending at or after t.
func lockedFrom(t time.Time) string {
	return fmt.Sprintf("%016x", uint64(max(t.UnixMilli(), 0)))
}

// macWidth is the width of an address's HMAC in hex.
const macWidth = 64

// emailMAC names an address in the email indexes: an HMAC under a key of
// its own, of the address as ParseEmail spells it, lowercased, so a search
// finds it however the member or the admin typed it. "" for none.
func (e *Engine) emailMAC(addr string) string {
	addr = strings.TrimSpace(addr)
	if addr == "" {
		return ""
	}
	if a, err := notify.ParseEmail(addr); err == nil {
		addr = a
	}
	return hex.EncodeToString(keyring.Sum(e.emailID, []byte(strings.ToLower(addr))))
}

// destMAC is the emailMAC of a sealed enrolled address, "" when there is
// none (none enrolled, or the method follows the identity's address) or it
// cannot be opened.
func (e *Engine) destMAC(id string, sealed []byte) string {
	if len(sealed) == 0 {
		return ""
	}
	plain, err := e.dests.Open(nil, sealed, destAAD(MethodEmail, id))
	if err != nil {
		return ""
	}
	return e.emailMAC(string(plain))
}

// listedFacts are what a user record says for the list's indexes.
type listedFacts struct {
	enrolled  bool
	methods   [len(listedMethods)]bool
	emailDest []byte // sealed; nil when none is stored
}

func factsOf(u *User) listedFacts {
	f := listedFacts{enrolled: u.Enrolled()}
	for i, m := range listedMethods {
		f.methods[i] = u.Has(m)
	}
	if u.Email != nil && len(u.Email.Destination) > 0 {
		f.emailDest = bytes.Clone(u.Email.Destination)
	}
	return f
}

// listChange writes the difference between a record's facts before and
// after a write that succeeded; created: the write made the record. Best
// effort, like the change notice: a failed write leaves the listing to
// repair (see above), never the member without a sign-in.
func (e *Engine) listChange(ctx context.Context, id string, before, after listedFacts, created bool) {
	ctx = context.WithoutCancel(ctx)
	if created {
		_ = e.store.IndexPut(ctx, usersIndex, id)
		_ = e.store.IndexPut(ctx, membersIndex, id)
		if s, err := e.seen(ctx, id); err == nil && s == nil {
			_ = e.store.IndexPut(ctx, lastSeenIndex, lastSeenEntry(id, time.Time{}))
		}
	}
	if created || before.enrolled != after.enrolled {
		e.putEnrolled(ctx, id, after.enrolled)
	}
	for i, m := range listedMethods {
		switch {
		case after.methods[i] && !before.methods[i]:
			_ = e.store.IndexPut(ctx, methodIndex(m), id)
		case before.methods[i] && !after.methods[i]:
			_ = e.store.IndexDelete(ctx, methodIndex(m), id)
		}
	}
	if !bytes.Equal(before.emailDest, after.emailDest) {
		// A rekey re-seals the same address: same MAC, nothing to move.
		if was, is := e.destMAC(id, before.emailDest), e.destMAC(id, after.emailDest); was != is {
			if was != "" {
				_ = e.store.IndexDelete(ctx, emailIndex, was+id)
			}
			if is != "" {
				_ = e.store.IndexPut(ctx, emailIndex, is+id)
			}
		}
	}
}

func (e *Engine) putEnrolled(ctx context.Context, id string, enrolled bool) {
	in, out := unenrolledIndex, enrolledIndex
	if enrolled {
		in, out = out, in
	}
	_ = e.store.IndexPut(ctx, in, id)
	_ = e.store.IndexDelete(ctx, out, id)
}

// listSeen moves a member's last-seen and seen-address entries after their
// seen record changed from was (nil: the first note) to is.
func (e *Engine) listSeen(ctx context.Context, id string, was *Seen, is Seen) {
	ctx = context.WithoutCancel(ctx)
	var last time.Time
	var mac string
	if was == nil {
		_ = e.store.IndexPut(ctx, seenIndex, id)
		_ = e.store.IndexPut(ctx, membersIndex, id)
		u, err := e.record(ctx, id)
		if err == nil && !u.Enrolled() {
			_ = e.store.IndexPut(ctx, unenrolledIndex, id)
		}
	} else {
		last, mac = was.Last, was.EmailMAC
	}
	if was == nil || !last.Equal(is.Last) {
		_ = e.store.IndexDelete(ctx, lastSeenIndex, lastSeenEntry(id, last))
		_ = e.store.IndexPut(ctx, lastSeenIndex, lastSeenEntry(id, is.Last))
	}
	if mac != is.EmailMAC {
		if mac != "" {
			_ = e.store.IndexDelete(ctx, seenEmailIndex, mac+id)
		}
		if is.EmailMAC != "" {
			_ = e.store.IndexPut(ctx, seenEmailIndex, is.EmailMAC+id)
		}
	}
}

// listLock moves a member's lock entry from the lockout that ended or ends
// at was (zero: none) to the one ending at is (zero: none).
func (e *Engine) listLock(ctx context.Context, id string, was, is time.Time) {
	ctx = context.WithoutCancel(ctx)
	if !was.IsZero() && was.UnixMilli() != is.UnixMilli() {
		_ = e.store.IndexDelete(ctx, lockedIndex, lockedEntry(id, was))
	}
	if !is.IsZero() {
		_ = e.store.IndexPut(ctx, lockedIndex, lockedEntry(id, is))
	}
}

// memberState is what the records say of one member.
type memberState struct {
	id   string
	u    *User // nil: no record, or one refused whenever it is read
	seen *Seen
	lock lockState
}

func (s *memberState) exists() bool { return s.u != nil || s.seen != nil }

func (s *memberState) lastSeen() time.Time {
	if s.seen == nil {
		return time.Time{}
	}
	return s.seen.Last
}

func (e *Engine) memberState(ctx context.Context, id string) (*memberState, error) {
	st := &memberState{id: id}
	var err error
	if st.u, err = e.record(ctx, id); err != nil {
		return nil, err
	}
	if st.seen, err = e.seen(ctx, id); err != nil {
		return nil, err
	}
	if st.lock, err = e.readLock(ctx, lockKey(id)); err != nil {
		return nil, err
	}
	return st, nil
}

// fresh reports whether the records back entry of index.
func (e *Engine) fresh(index, entry string, st *memberState) bool {
	switch index {
	case membersIndex:
		return st.exists()
	case enrolledIndex:
		return st.u.Enrolled()
	case unenrolledIndex:
		return st.exists() && !st.u.Enrolled()
	case lastSeenIndex:
		return st.exists() && entry == lastSeenEntry(st.id, st.lastSeen())
	case lockedIndex:
		return !st.lock.until.IsZero() && entry == lockedEntry(st.id, st.lock.until)
	case emailIndex:
		return st.u != nil && st.u.Email != nil && entry == e.destMAC(st.id, st.u.Email.Destination)+st.id
	case seenEmailIndex:
		return st.seen != nil && st.seen.EmailMAC != "" && entry == st.seen.EmailMAC+st.id
	}
	if m, ok := strings.CutPrefix(index, methodIndexPrefix); ok {
		return st.u.Has(m)
	}
	return true
}

// repair drops an entry the records do not back and writes the member's
// right entries.
func (e *Engine) repair(ctx context.Context, index, entry string, st *memberState) {
	_ = e.store.IndexDelete(context.WithoutCancel(ctx), index, entry)
	e.relist(ctx, st)
}

// relist writes every entry the records back for one member, and removes
// the member from the indexes keyed by ID that the records contradict.
// Entries of the indexes keyed by a value (a time, an address) that the
// records no longer name are found by reading those indexes (fresh).
func (e *Engine) relist(ctx context.Context, st *memberState) {
	ctx = context.WithoutCancel(ctx)
	id := st.id
	if !st.exists() {
		for _, index := range []string{membersIndex, enrolledIndex, unenrolledIndex, usersIndex, seenIndex} {
			_ = e.store.IndexDelete(ctx, index, id)
		}
		for _, m := range listedMethods {
			_ = e.store.IndexDelete(ctx, methodIndex(m), id)
		}
		return
	}
	_ = e.store.IndexPut(ctx, membersIndex, id)
	if st.u != nil {
		_ = e.store.IndexPut(ctx, usersIndex, id)
	}
	e.putEnrolled(ctx, id, st.u.Enrolled())
	for _, m := range listedMethods {
		if st.u.Has(m) {
			_ = e.store.IndexPut(ctx, methodIndex(m), id)
		} else {
			_ = e.store.IndexDelete(ctx, methodIndex(m), id)
		}
	}
	if st.u != nil && st.u.Email != nil {
		if mac := e.destMAC(id, st.u.Email.Destination); mac != "" {
			_ = e.store.IndexPut(ctx, emailIndex, mac+id)
		}
	}
	if st.seen != nil {
		_ = e.store.IndexPut(ctx, seenIndex, id)
		if st.seen.EmailMAC != "" {
			_ = e.store.IndexPut(ctx, seenEmailIndex, st.seen.EmailMAC+id)
		}
	}
	_ = e.store.IndexPut(ctx, lastSeenIndex, lastSeenEntry(id, st.lastSeen()))
	if !st.lock.until.IsZero() {
		_ = e.store.IndexPut(ctx, lockedIndex, lockedEntry(id, st.lock.until))
	}
}

// metaIndex holds the marks of surveys done: "listing <version> <key>"
// once the listing's indexes are built, "keys_surveyed <keys>" once a
// count found no record under an older key. Marks are index entries, not
// keys, so that an export (which reads keys) never carries them to
// another store, whose indexes are then built afresh.
const metaIndex = "meta"

// listingVersion changes when the indexes' layout does, so the next start
// builds them again.
const listingVersion = "2" // 2: the webauthn method index

// listingMark is the mark of indexes built for this engine's layout and
// address key: after a key rotation the addresses are indexed again under
// the new one.
func (e *Engine) listingMark() string {
	return "listing " + listingVersion + " " + hex.EncodeToString(keyring.Sum(e.emailID, []byte("fingerprint"))[:8])
}

// marked reports whether metaIndex holds mark.
func (e *Engine) marked(ctx context.Context, mark string) (bool, error) {
	got, err := e.store.IndexRange(ctx, metaIndex, mark, mark+"\x00", 1)
	return len(got) == 1, err
}

// setMark replaces the marks of mark's kind (its first word) with mark.
func (e *Engine) setMark(ctx context.Context, mark string) error {
	kind, _, _ := strings.Cut(mark, " ")
	old, err := e.store.IndexRange(ctx, metaIndex, kind+" ", prefixEnd(kind+" "), 100)
	if err != nil {
		return err
	}
	if err := e.store.IndexPut(ctx, metaIndex, mark); err != nil {
		return err
	}
	old = slices.DeleteFunc(old, func(m string) bool { return m == mark })
	return e.store.IndexDelete(ctx, metaIndex, old...)
}

// ListingBuilt reports whether the listing's indexes were built for this
// layout and key, so a start or a reload need not read any record.
func (e *Engine) ListingBuilt(ctx context.Context) (bool, error) {
	return e.marked(ctx, e.listingMark())
}

// BuildListing is the survey: it lists in the users and seen indexes every
// record there is (those from before the indexes, those whose listing
// failed), writes every member's entries from their records, drops the
// entries no record backs, and marks the indexes built. It reads every
// record: a background task, which Start runs only when ListingBuilt is
// false. Writes meanwhile are listed as they happen; an entry the survey
// wrote from a record read just before a change is stale, and repaired
// like any other.
func (e *Engine) BuildListing(ctx context.Context) error {
	if err := e.IndexUsers(ctx); err != nil {
		return err
	}
	err := e.store.ScanKeys(ctx, seenPrefix, func(keys []string) error {
		ids := make([]string, 0, len(keys))
		for _, k := range keys {
			if id, ok := keyID(seenPrefix, k); ok {
				ids = append(ids, id)
			}
		}
		return e.store.IndexPut(ctx, seenIndex, ids...)
	})
	if err != nil {
		return err
	}
	after := ""
	for {
		ids, more, err := e.memberIDs(ctx, after, indexPage)
		if err != nil {
			return err
		}
		for _, id := range ids {
			st, err := e.memberState(ctx, id)
			if err != nil {
				return err
			}
			e.relist(ctx, st)
			after = id
		}
		if !more || len(ids) == 0 {
			break
		}
	}
	indexes := []string{membersIndex, enrolledIndex, unenrolledIndex, lastSeenIndex, lockedIndex, emailIndex, seenEmailIndex}
	for _, m := range listedMethods {
		indexes = append(indexes, methodIndex(m))
	}
	for _, index := range indexes {
		if err := e.dropStale(ctx, index); err != nil {
			return err
		}
	}
	return e.setMark(ctx, e.listingMark())
}

// dropStale reads a whole index and drops the entries no record backs.
func (e *Engine) dropStale(ctx context.Context, index string) error {
	from := ""
	for {
		entries, err := e.store.IndexRange(ctx, index, from, "", indexPage)
		if err != nil {
			return err
		}
		for _, entry := range entries {
			st, err := e.memberState(ctx, entryID(index, entry))
			if err != nil {
				return err
			}
			if !e.fresh(index, entry, st) {
				if err := e.store.IndexDelete(ctx, index, entry); err != nil {
					return err
				}
			}
		}
		if len(entries) < indexPage {
			return nil
		}
		from = entries[len(entries)-1] + "\x00"
	}
}

// entryID is the member ID in an entry of index.
func entryID(index, entry string) string {
	switch index {
	case lastSeenIndex, lockedIndex:
		if len(entry) >= timeWidth {
			return entry[timeWidth:]
		}
	case emailIndex, seenEmailIndex:
		if len(entry) >= macWidth {
			return entry[macWidth:]
		}
	}
	return entry
}

// prefixEnd is the first string after every string that begins with p,
// "" when there is none (p is all 0xff bytes).
func prefixEnd(p string) string {
	b := []byte(p)
	for i := len(b) - 1; i >= 0; i-- {
		if b[i] < 0xff {
			b[i]++
			return string(b[:i+1])
		}
	}
	return ""
}
