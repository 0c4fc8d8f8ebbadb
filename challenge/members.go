package challenge

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/caddy-twofactor/twofactor/store"
)

// Members, enrolled or not. The gateway notes every member it sees on a
// protected path in a small "seen" record of its own rather than in the
// user record: that record is cached on every instance and each write of it
// is announced to all of them, so a daily visit of every member would
// churn every cache; and enrolment, rekey and the stale count would count
// records that hold nothing sealed. Members enrolled before seen records
// existed are listed through the users index, so listing merges both.

// seenIndex lists, by ID, every member with a seen record.
const seenIndex = "seen"

// seenPrefix begins the key of every seen record.
const seenPrefix = "seen:"

func seenKey(id string) string { return seenPrefix + tag(id) }

// Seen is when the gateway first and last saw a member on a protected
// path, to the day at most (each instance notes a member once a day).
type Seen struct {
	First time.Time `json:"first"`
	Last  time.Time `json:"last"`
	// EmailMAC names the identity's address at the last note, as the
	// search index holds it (emailMAC); never the address itself.
	EmailMAC string `json:"email_mac,omitempty"`
}

// RecordSeen notes that the member was seen at at with the identity's
// address email ("" when the identity has none). It never moves First
// later nor Last earlier, so notes arriving out of order from several
// instances are harmless; the address is the latest note's.
func (e *Engine) RecordSeen(ctx context.Context, id, email string, at time.Time) error {
	if id == "" {
		return nil
	}
	at = at.UTC().Truncate(time.Second)
	mac := e.emailMAC(email)
	key := seenKey(id)
	for range 10 {
		raw, err := e.store.Get(ctx, key)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
		var was *Seen
		if raw != nil {
			was = &Seen{}
			if json.Unmarshal(raw, was) != nil {
				*was = Seen{}
			}
		}
		var s Seen
		if was != nil {
			s = *was
		}
		if s.First.IsZero() || at.Before(s.First) {
			s.First = at
		}
		if at.After(s.Last) {
			s.Last = at
		}
		s.EmailMAC = mac
		next, err := json.Marshal(s)
		if err != nil {
			return err
		}
		ok, err := e.store.CompareAndSwap(ctx, key, raw, next, 0)
		if err != nil {
			return err
		}
		if ok {
			e.listSeen(ctx, id, was, s)
			return nil
		}
	}
	return fmt.Errorf("%w: seen record %q kept changing", store.ErrUnavailable, id)
}

func (e *Engine) seen(ctx context.Context, id string) (*Seen, error) {
	raw, err := e.store.Get(ctx, seenKey(id))
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var s Seen
	if json.Unmarshal(raw, &s) != nil {
		return nil, nil
	}
	return &s, nil
}

// record reads a member's user record as listing needs it: nil when there
// is none or it cannot be trusted (it is refused whenever it is read).
func (e *Engine) record(ctx context.Context, id string) (*User, error) {
	raw, err := e.store.Get(ctx, userKey(id))
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	u, err := decodeUser(raw, id)
	if err != nil {
		return nil, nil
	}
	return u, nil
}

// MemberSummary is one line of the member list.
type MemberSummary struct {
	ID           string     `json:"id"`
	Enrolled     bool       `json:"enrolled"`
	Methods      []string   `json:"methods"`
	RecoveryLeft int        `json:"recovery_left"`
	Devices      int        `json:"devices"`
	LockedUntil  *time.Time `json:"locked_until,omitempty"`
	FirstSeen    *time.Time `json:"first_seen,omitempty"`
	LastSeen     *time.Time `json:"last_seen,omitempty"`
	// AppUnproven reports an app or a passkey that the admin pages refuse
	// until an admin confirms it (ConfirmApp).
	AppUnproven bool `json:"app_unproven,omitempty"`
	// Deadlines are, for a member without a second factor, when each
	// rule with an enrolment deadline requires one (a grace rule only
	// once it has seen them), earliest first; EnrolmentDeadline is the
	// earliest.
	EnrolmentDeadline *time.Time       `json:"enrolment_deadline,omitempty"`
	Deadlines         []MemberDeadline `json:"deadlines,omitempty"`
}

// MembersFilter narrows and orders a listing; the zero value lists
// everyone in ID order. Filters combine (all must hold).
type MembersFilter struct {
	// Enrolled, when set, keeps only those enrolled (true) or not (false).
	Enrolled *bool
	// Locked keeps only members locked out now. Without a search they are
	// listed by the end of their lockout, soonest first.
	Locked bool
	// Method keeps only members enrolled with this method ("totp",
	// "email", "sms").
	Method string
	// Search keeps members whose ID starts with it, or, when it holds an
	// @, the member enrolled with or last seen with that email address
	// (any case; found through an HMAC of it, never stored in the clear).
	Search string
	// Order is "id" (the default) or "last_seen" (most recent first;
	// members never seen on a protected path come last). A search lists
	// in ID order.
	Order string
}

// Orders of the member list.
const (
	OrderID       = "id"
	OrderLastSeen = "last_seen"
)

// check refuses a filter that names no method or order, naming the field.
func (f *MembersFilter) check() error {
	switch f.Order {
	case "", OrderID, OrderLastSeen:
	default:
		return &InputError{"order", "id or last_seen"}
	}
	switch f.Method {
	case "", MethodWebAuthn, MethodTOTP, MethodEmail, MethodSMS:
	default:
		return &InputError{"method", "webauthn, totp, email or sms"}
	}
	if len(f.Search) > MaxSearch {
		return &InputError{"search", fmt.Sprintf("at most %d bytes", MaxSearch)}
	}
	return nil
}

// MaxSearch bounds a search, in bytes: an ID prefix or an address.
const MaxSearch = 512

// byEmail reports whether the search is an address.
func (f *MembersFilter) byEmail() bool { return strings.Contains(f.Search, "@") }

// keeps reports whether the member passes the filter.
func (f *MembersFilter) keeps(st *memberState, now time.Time) bool {
	switch {
	case f.Enrolled != nil && st.u.Enrolled() != *f.Enrolled,
		f.Locked && !st.lock.until.After(now),
		f.Method != "" && !st.u.Has(f.Method),
		f.Search != "" && !f.byEmail() && !strings.HasPrefix(st.id, f.Search):
		return false
	}
	return true
}

// MembersPage is one page of the member list.
type MembersPage struct {
	Members []MemberSummary `json:"members"`
	// Next is the after of the next page; "" at the end. It is the last
	// entry read from the index the listing walks: an ID, or with
	// order last_seen or the locked filter, a time and an ID.
	Next string `json:"next,omitempty"`
}

// readBudget bounds the index entries one page reads, per member asked
// for (at least ten pages' worth of the smallest): past it the page ends
// short, with Next to go on.
const readBudget = 20

// MaxMembersPage bounds a page of the member list.
const MaxMembersPage = 1000

// Members lists, after after, up to limit members that the gateway has
// seen or that have a record, with what filter keeps. It walks the index
// that holds the filter's members in the order asked (see listing.go), so
// a page reads the records of about the members it lists; filters beyond
// the first that index serves are checked on each member's records, so a
// rare one combined with another (locked and sms, say) may read more.
func (e *Engine) Members(ctx context.Context, after string, limit int, filter MembersFilter) (MembersPage, error) {
	if limit < 1 || limit > MaxMembersPage {
		return MembersPage{}, &InputError{"limit", fmt.Sprintf("from 1 to %d", MaxMembersPage)}
	}
	if err := filter.check(); err != nil {
		return MembersPage{}, err
	}
	if filter.byEmail() {
		return e.membersByEmail(ctx, after, limit, filter)
	}
	now := e.now()
	index, from, to := e.listingRange(filter, now)
	if after != "" && after+"\x00" > from {
		from = after + "\x00"
	}
	page := MembersPage{Members: []MemberSummary{}}
	batch := min(limit+1, MaxMembersPage)
	budget := max(readBudget*limit, readBudget*10)
	last := ""
	for {
		entries, err := e.store.IndexRange(ctx, index, from, to, batch)
		if err != nil {
			return page, err
		}
		for i, entry := range entries {
			if budget--; budget < 0 {
				// A rare filter in an order that another index serves
				// (sms by last seen): the page ends short, and the next
				// goes on from here, so no page reads every member.
				page.Next = last
				return page, nil
			}
			last = entry
			st, err := e.memberState(ctx, entryID(index, entry))
			if err != nil {
				return page, err
			}
			if !e.fresh(index, entry, st) {
				e.repair(ctx, index, entry, st)
				continue
			}
			if !filter.keeps(st, now) {
				continue
			}
			page.Members = append(page.Members, e.summary(st))
			if len(page.Members) == limit {
				if i < len(entries)-1 || len(entries) == batch {
					page.Next = entry
				}
				return page, nil
			}
		}
		if len(entries) < batch {
			return page, nil
		}
		from = entries[len(entries)-1] + "\x00"
	}
}

// listingRange picks the index a listing walks and its range: the lock
// index for those locked now, the last-seen index for that order (unless
// a search narrows the list, which is then in ID order), else
// the narrowest index by ID (a method's, the enrolled or not, or every
// member), with an ID search as its range.
func (e *Engine) listingRange(f MembersFilter, now time.Time) (index, from, to string) {
	switch {
	case f.Locked:
		return lockedIndex, lockedFrom(now.Add(time.Millisecond)), ""
	case f.Order == OrderLastSeen && f.Search == "":
		return lastSeenIndex, "", ""
	}
	index = membersIndex
	switch {
	case f.Method != "":
		index = methodIndex(f.Method)
	case f.Enrolled != nil && *f.Enrolled:
		index = enrolledIndex
	case f.Enrolled != nil:
		index = unenrolledIndex
	}
	if f.Search != "" {
		return index, f.Search, prefixEnd(f.Search)
	}
	return index, "", ""
}

// membersByEmail lists, in ID order, the members enrolled with the
// searched address or last seen with it: a handful at most, found in the
// two address indexes.
func (e *Engine) membersByEmail(ctx context.Context, after string, limit int, filter MembersFilter) (MembersPage, error) {
	page := MembersPage{Members: []MemberSummary{}}
	mac := e.emailMAC(filter.Search)
	type found struct{ index, entry string }
	byID := map[string][]found{}
	var ids []string
	for _, index := range []string{emailIndex, seenEmailIndex} {
		entries, err := e.store.IndexRange(ctx, index, mac, prefixEnd(mac), MaxMembersPage)
		if err != nil {
			return page, err
		}
		for _, entry := range entries {
			id := entryID(index, entry)
			if id <= after {
				continue
			}
			if byID[id] == nil {
				ids = append(ids, id)
			}
			byID[id] = append(byID[id], found{index, entry})
		}
	}
	slices.Sort(ids)
	now := e.now()
	for i, id := range ids {
		st, err := e.memberState(ctx, id)
		if err != nil {
			return page, err
		}
		backed := false
		for _, f := range byID[id] {
			if e.fresh(f.index, f.entry, st) {
				backed = true
			} else {
				e.repair(ctx, f.index, f.entry, st)
			}
		}
		if !backed || !filter.keeps(st, now) {
			continue
		}
		page.Members = append(page.Members, e.summary(st))
		if len(page.Members) == limit {
			if i < len(ids)-1 {
				page.Next = id
			}
			return page, nil
		}
	}
	return page, nil
}

// memberIDs merges a page of the users index with one of the seen index:
// up to limit IDs after after, in byte order, each once, and whether more
// may follow. The survey walks it: the members index may miss some.
func (e *Engine) memberIDs(ctx context.Context, after string, limit int) ([]string, bool, error) {
	users, err := e.store.IndexPage(ctx, usersIndex, after, limit)
	if err != nil {
		return nil, false, err
	}
	seen, err := e.store.IndexPage(ctx, seenIndex, after, limit)
	if err != nil {
		return nil, false, err
	}
	more := len(users) == limit || len(seen) == limit
	out := make([]string, 0, limit)
	for len(out) < limit && (len(users) > 0 || len(seen) > 0) {
		switch {
		case len(seen) == 0 || len(users) > 0 && users[0] < seen[0]:
			out, users = append(out, users[0]), users[1:]
		case len(users) == 0 || seen[0] < users[0]:
			out, seen = append(out, seen[0]), seen[1:]
		default:
			out, users, seen = append(out, users[0]), users[1:], seen[1:]
		}
	}
	// Those left over come again on the next page, which starts after the
	// last one returned.
	return out, more || len(users) > 0 || len(seen) > 0, nil
}

// summary is a member's line.
func (e *Engine) summary(st *memberState) MemberSummary {
	m := MemberSummary{ID: st.id, Methods: []string{}}
	if u := st.u; u != nil {
		m.Enrolled = u.Enrolled()
		m.Methods = append(m.Methods, u.Methods()...)
		m.AppUnproven = u.FactorUnproven()
		if u.Recovery != nil {
			m.RecoveryLeft = u.Recovery.Left
		}
		for _, until := range u.Devices {
			if until > e.now().Unix() {
				m.Devices++
			}
		}
	}
	if s := st.seen; s != nil {
		m.FirstSeen, m.LastSeen = &s.First, &s.Last
	}
	if st.lock.until.After(e.now()) {
		until := st.lock.until.UTC()
		m.LockedUntil = &until
	}
	if m.Deadlines = e.deadlines(st.u); len(m.Deadlines) > 0 {
		m.EnrolmentDeadline = &m.Deadlines[0].At
	}
	return m
}

// MemberCounts are the counts at the top of the member list, each the
// size of an index (see listing.go): no record is read.
type MemberCounts struct {
	// Members is how many are listed: seen, or with a record.
	Members int `json:"members"`
	// Seen is how many were seen on a protected path (each instance
	// notes a member once a day).
	Seen int `json:"seen"`
	// Enrolled is how many have a second factor; NotEnrolled the others.
	Enrolled    int `json:"enrolled"`
	NotEnrolled int `json:"not_enrolled"`
	// Locked is how many are locked out now.
	Locked int `json:"locked"`
	// ByMethod is how many have each method (a member may have several).
	ByMethod map[string]int `json:"by_method"`
}

// CountMembers returns the counts from the sizes of the indexes: a few
// store round trips, whatever the number of members.
func (e *Engine) CountMembers(ctx context.Context) (MemberCounts, error) {
	c := MemberCounts{ByMethod: map[string]int{}}
	for _, n := range []struct {
		to          *int
		index, from string
	}{
		{&c.Members, membersIndex, ""},
		{&c.Seen, seenIndex, ""},
		{&c.Enrolled, enrolledIndex, ""},
		{&c.Locked, lockedIndex, lockedFrom(e.now().Add(time.Millisecond))},
	} {
		v, err := e.store.IndexCount(ctx, n.index, n.from, "")
		if err != nil {
			return c, err
		}
		*n.to = v
	}
	for _, m := range listedMethods {
		v, err := e.store.IndexCount(ctx, methodIndex(m), "", "")
		if err != nil {
			return c, err
		}
		c.ByMethod[m] = v
	}
	c.NotEnrolled = max(c.Members-c.Enrolled, 0)
	return c, nil
}

// MethodDetail is one enrolled method on a member's page.
type MethodDetail struct {
	Method string `json:"method"`
	// Destination is the masked address or number; "" for the app, and
	// for email that follows the member site's address.
	Destination string     `json:"destination,omitempty"`
	Added       time.Time  `json:"added"`
	LastUsed    *time.Time `json:"last_used,omitempty"`
}

// MemberDetail is a member's page.
type MemberDetail struct {
	MemberSummary
	MethodDetails []MethodDetail `json:"method_details"`
	// Credentials are the member's passkeys and security keys, without
	// the credentials themselves.
	Credentials []CredentialDetail `json:"credentials"`
	DeviceList  []Device           `json:"device_list"`
	// Networks are the ranges the member passed the second factor from,
	// the most recent first: where a rule rechecks remembered devices
	// (recheck_new_network), a device used from another range asks for
	// a code once.
	Networks []KnownNetwork `json:"networks"`
	Activity []Activity     `json:"activity"`
}

// ErrNoMember reports a member the gateway has neither seen nor recorded.
var ErrNoMember = errors.New("challenge: no such member")

// Member returns what the gateway knows of one member, or ErrNoMember.
func (e *Engine) Member(ctx context.Context, id string) (*MemberDetail, error) {
	if id == "" {
		return nil, &InputError{"id", "required: the member's ID"}
	}
	st, err := e.memberState(ctx, id)
	if err != nil {
		return nil, err
	}
	if !st.exists() {
		return nil, ErrNoMember
	}
	d := &MemberDetail{MemberSummary: e.summary(st), MethodDetails: []MethodDetail{}, Credentials: []CredentialDetail{},
		DeviceList: []Device{}, Networks: []KnownNetwork{}, Activity: []Activity{}}
	if u := st.u; u != nil {
		d.Credentials = credentialDetails(u)
		d.Networks = append(d.Networks, u.KnownNetworks()...)
		for _, method := range u.Methods() {
			added, used, _ := u.MethodDates(method)
			md := MethodDetail{Method: method, Added: added, Destination: e.Destination(u, method, "")}
			if !used.IsZero() {
				md.LastUsed = &used
			}
			d.MethodDetails = append(d.MethodDetails, md)
		}
		devices, err := e.Devices(ctx, id)
		if err != nil {
			return nil, err
		}
		d.DeviceList = append(d.DeviceList, devices...)
	}
	activity, err := e.RecentActivity(ctx, id)
	if err != nil {
		return nil, err
	}
	d.Activity = append(d.Activity, activity...)
	return d, nil
}

// Reconciliation sorts a member site's list of IDs by what the gateway
// knows of each.
type Reconciliation struct {
	Enrolled        []string `json:"enrolled"`
	SeenNotEnrolled []string `json:"seen_not_enrolled"`
	NeverSeen       []string `json:"never_seen"`
}

// MaxReconcile bounds the IDs one reconciliation takes.
const MaxReconcile = 100_000

// Reconcile sorts ids (duplicates count once, in their first place):
// enrolled; seen on a protected path, or with a record, but not enrolled;
// and never seen. It reads one or two records per ID. With fold, each ID
// is looked up as fold gives it (the identity's id_case) and answered as
// given; spellings fold makes one count once.
func (e *Engine) Reconcile(ctx context.Context, ids []string, fold func(string) string) (Reconciliation, error) {
	r := Reconciliation{Enrolled: []string{}, SeenNotEnrolled: []string{}, NeverSeen: []string{}}
	if len(ids) > MaxReconcile {
		return r, &InputError{"members", fmt.Sprintf("at most %d IDs at a time", MaxReconcile)}
	}
	done := make(map[string]bool, len(ids))
	for _, id := range ids {
		if id == "" {
			return r, &InputError{"members", "an ID is empty"}
		}
		key := id
		if fold != nil {
			key = fold(id)
		}
		if done[key] {
			continue
		}
		done[key] = true
		u, err := e.record(ctx, key)
		if err != nil {
			return r, err
		}
		if u.Enrolled() {
			r.Enrolled = append(r.Enrolled, id)
			continue
		}
		s, err := e.seen(ctx, key)
		if err != nil {
			return r, err
		}
		if u != nil || s != nil {
			r.SeenNotEnrolled = append(r.SeenNotEnrolled, id)
		} else {
			r.NeverSeen = append(r.NeverSeen, id)
		}
	}
	return r, nil
}
