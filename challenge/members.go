package challenge

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
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

func seenKey(id string) string { return "seen:" + tag(id) }

// Seen is when the gateway first and last saw a member on a protected
// path, to the day at most (each instance notes a member once a day).
type Seen struct {
	First time.Time `json:"first"`
	Last  time.Time `json:"last"`
}

// RecordSeen notes that the member was seen at at. It never moves First
// later nor Last earlier, so notes arriving out of order from several
// instances are harmless.
func (e *Engine) RecordSeen(ctx context.Context, id string, at time.Time) error {
	if id == "" {
		return nil
	}
	at = at.UTC().Truncate(time.Second)
	key := seenKey(id)
	for range 10 {
		raw, err := e.store.Get(ctx, key)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
		var s Seen
		if raw != nil && json.Unmarshal(raw, &s) != nil {
			s = Seen{}
		}
		if s.First.IsZero() || at.Before(s.First) {
			s.First = at
		}
		if at.After(s.Last) {
			s.Last = at
		}
		next, err := json.Marshal(s)
		if err != nil {
			return err
		}
		ok, err := e.store.CompareAndSwap(ctx, key, raw, next, 0)
		if err != nil {
			return err
		}
		if ok {
			if raw == nil {
				return e.store.IndexPut(ctx, seenIndex, id)
			}
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
}

// MembersFilter narrows and orders a listing; the zero value lists
// everyone in ID order.
type MembersFilter struct {
	// Enrolled, when set, keeps only those enrolled (true) or not (false).
	Enrolled *bool
	// Locked keeps only members locked out now.
	Locked bool
	// Method keeps only members enrolled with this method ("totp",
	// "email", "sms").
	Method string
	// Search keeps members whose ID starts with it, or, when it holds an
	// @, the member enrolled with or last seen with that email address.
	Search string
	// Order is "id" (the default) or "last_seen" (most recent first).
	Order string
}

// MembersPage is one page of the member list.
type MembersPage struct {
	Members []MemberSummary `json:"members"`
	// Next is the after of the next page; "" at the end.
	Next string `json:"next,omitempty"`
}

// maxMembersPage bounds a page of the member list.
const maxMembersPage = 1000

// Members lists, in ID order after after, up to limit members that the
// gateway has seen or that have a record, with what filter keeps. Each
// page reads a record or three per member listed or skipped.
func (e *Engine) Members(ctx context.Context, after string, limit int, filter MembersFilter) (MembersPage, error) {
	if limit < 1 || limit > maxMembersPage {
		return MembersPage{}, &InputError{"limit", fmt.Sprintf("from 1 to %d", maxMembersPage)}
	}
	page := MembersPage{Members: []MemberSummary{}}
	for {
		ids, more, err := e.memberIDs(ctx, after, limit)
		if err != nil {
			return page, err
		}
		for _, id := range ids {
			after = id
			m, err := e.summary(ctx, id)
			if err != nil {
				return page, err
			}
			if m == nil || (filter.Enrolled != nil && m.Enrolled != *filter.Enrolled) {
				continue
			}
			page.Members = append(page.Members, *m)
			if len(page.Members) == limit {
				if more || id != ids[len(ids)-1] {
					page.Next = id
				}
				return page, nil
			}
		}
		if !more {
			return page, nil
		}
	}
}

// memberIDs merges a page of the users index with one of the seen index:
// up to limit IDs after after, in byte order, each once, and whether more
// may follow.
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

// summary is a member's line, or nil when they have neither a record nor a
// seen record (listed, but gone).
func (e *Engine) summary(ctx context.Context, id string) (*MemberSummary, error) {
	u, err := e.record(ctx, id)
	if err != nil {
		return nil, err
	}
	s, err := e.seen(ctx, id)
	if err != nil {
		return nil, err
	}
	if u == nil && s == nil {
		return nil, nil
	}
	m := &MemberSummary{ID: id, Methods: []string{}}
	if u != nil {
		m.Enrolled = u.Enrolled()
		m.Methods = append(m.Methods, u.Methods()...)
		if u.Recovery != nil {
			m.RecoveryLeft = u.Recovery.Left
		}
		for _, until := range u.Devices {
			if until > e.now().Unix() {
				m.Devices++
			}
		}
	}
	if s != nil {
		m.FirstSeen, m.LastSeen = &s.First, &s.Last
	}
	l, err := e.readLock(ctx, lockKey(id))
	if err != nil {
		return nil, err
	}
	if l.until.After(e.now()) {
		until := l.until.UTC()
		m.LockedUntil = &until
	}
	return m, nil
}

// MemberCounts are the counts at the top of the member list.
type MemberCounts struct {
	// Members is how many are listed: seen, or with a record.
	Members  int            `json:"members"`
	Seen     int            `json:"seen"`
	Enrolled int            `json:"enrolled"`
	Locked   int            `json:"locked"`
	ByMethod map[string]int `json:"by_method"`
}

// CountMembers reads every member's records to count them: fine for tens
// of thousands, not for a million (kept counters are later work).
func (e *Engine) CountMembers(ctx context.Context) (MemberCounts, error) {
	c := MemberCounts{ByMethod: map[string]int{}}
	after := ""
	for {
		p, err := e.Members(ctx, after, maxMembersPage, MembersFilter{})
		if err != nil {
			return c, err
		}
		for _, m := range p.Members {
			c.Members++
			if m.LastSeen != nil {
				c.Seen++
			}
			if m.Enrolled {
				c.Enrolled++
			}
			if m.LockedUntil != nil {
				c.Locked++
			}
			for _, method := range m.Methods {
				c.ByMethod[method]++
			}
		}
		if p.Next == "" {
			return c, nil
		}
		after = p.Next
	}
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
	DeviceList    []Device       `json:"device_list"`
	Activity      []Activity     `json:"activity"`
}

// ErrNoMember reports a member the gateway has neither seen nor recorded.
var ErrNoMember = errors.New("challenge: no such member")

// Member returns what the gateway knows of one member, or ErrNoMember.
func (e *Engine) Member(ctx context.Context, id string) (*MemberDetail, error) {
	if id == "" {
		return nil, &InputError{"id", "required: the member's ID"}
	}
	m, err := e.summary(ctx, id)
	if err != nil {
		return nil, err
	}
	if m == nil {
		return nil, ErrNoMember
	}
	d := &MemberDetail{MemberSummary: *m, MethodDetails: []MethodDetail{}, DeviceList: []Device{}, Activity: []Activity{}}
	if u, err := e.record(ctx, id); err != nil {
		return nil, err
	} else if u != nil {
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
// and never seen. It reads one or two records per ID.
func (e *Engine) Reconcile(ctx context.Context, ids []string) (Reconciliation, error) {
	r := Reconciliation{Enrolled: []string{}, SeenNotEnrolled: []string{}, NeverSeen: []string{}}
	if len(ids) > MaxReconcile {
		return r, &InputError{"members", fmt.Sprintf("at most %d IDs at a time", MaxReconcile)}
	}
	done := make(map[string]bool, len(ids))
	for _, id := range ids {
		if id == "" {
			return r, &InputError{"members", "an ID is empty"}
		}
		if done[id] {
			continue
		}
		done[id] = true
		u, err := e.record(ctx, id)
		if err != nil {
			return r, err
		}
		if u.Enrolled() {
			r.Enrolled = append(r.Enrolled, id)
			continue
		}
		s, err := e.seen(ctx, id)
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
