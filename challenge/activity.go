package challenge

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-twofactor/twofactor/store"
)

// Each member's recent security events, kept beside the user record so
// the settings page can show them and the member can spot a sign-in they
// did not make. The full trail is the audit log; this is the member's own
// short view of it.

// Activity is one recorded security event.
type Activity struct {
	Time   time.Time `json:"time"`
	Event  string    `json:"event"`
	Result string    `json:"result"`
	Method string    `json:"method,omitempty"`
	// Count is how many times the event repeated (same event, result,
	// method and address within activityMerge); 0 means once.
	Count     int    `json:"count,omitempty"`
	IP        string `json:"ip,omitempty"`
	UserAgent string `json:"user_agent,omitempty"`
	// Replaced: recovery codes made in place of an earlier set, not the
	// first; false for lists kept before it was recorded.
	Replaced bool `json:"replaced,omitempty"`
}

// activityKept is how many events a member's list keeps, newest first.
const activityKept = 30

// activityMerge folds repeats of the newest event into it, so a run of
// wrong codes cannot push everything else off the list.
const activityMerge = 15 * time.Minute

// activityTTL lets the list of a member who stops coming vanish.
const activityTTL = 400 * 24 * time.Hour

// activityEvents are the audit events a member's list records.
var activityEvents = map[string]bool{
	"verify": true, "enrol_confirm": true, "method_removed": true, "recovery_codes_generated": true,
	"device_remembered": true, "device_forgotten": true, "lockout": true, "session_revoked": true,
	"new_browser": true, "network_skip": true, "default_method": true, "admin_unlock": true,
	"admin_reset": true, "admin_devices": true, "admin_sessions": true, "admin_app_confirmed": true,
	"admin_reset_requested": true, "admin_reset_withdrawn": true, "admin_passkey_removed": true,
	"webauthn_registered": true, "webauthn_removed": true, "webauthn_renamed": true, "webauthn_counter_regressed": true,
}

// ActivityEvents are the events a member's activity list may hold, sorted:
// the settings page names each.
func ActivityEvents() []string {
	events := make([]string, 0, len(activityEvents))
	for ev := range activityEvents {
		events = append(events, ev)
	}
	slices.Sort(events)
	return events
}

func activityKey(user string) string { return "activity:" + tag(user) }

// recordActivity adds an event to the member's list. It is best effort:
// the audit log has the event whatever happens here.
func (e *Engine) recordActivity(a Actor, name, result string, fields []zap.Field) {
	entry, ok := activityEntry(a, name, result, fields, e.now())
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	e.addActivity(ctx, a.User, entry, nil)
}

// addActivity adds entry to the list with compare-and-swap, starting
// from read (a Get of the list already made, in a sign-in's first round
// trip) when there is one, and reading afresh when the list changed.
func (e *Engine) addActivity(ctx context.Context, user string, entry Activity, read *store.Op) {
	for range 10 {
		if read == nil {
			read = store.GetOp(activityKey(user))
			if store.RunBatch(ctx, e.store, read) != nil {
				return
			}
		}
		cas := activityOp(user, read, entry)
		if cas == nil {
			return
		}
		if err := store.RunBatch(ctx, e.store, cas); err != nil || cas.Swapped {
			return
		}
		read = nil
	}
}

// activityEntry is the list's entry for an audit event, or false when
// the list does not record it.
func activityEntry(a Actor, name, result string, fields []zap.Field, now time.Time) (Activity, bool) {
	if a.User == "" || !activityEvents[name] {
		return Activity{}, false
	}
	if strings.HasPrefix(name, "admin_") && result != "success" {
		return Activity{}, false // an admin's action that changed nothing is not the member's news
	}
	entry := Activity{Time: now.UTC(), Event: name, Result: result, IP: a.IP, UserAgent: a.UserAgent}
	if len(entry.UserAgent) > maxUserAgent {
		entry.UserAgent = entry.UserAgent[:maxUserAgent]
	}
	for _, f := range fields {
		switch {
		case f.Key == "method":
			entry.Method = f.String
		case f.Key == "reason" && f.String == "locked":
			return Activity{}, false // refused unseen while locked: the lockout is on the list
		case f.Key == "replaced":
			entry.Replaced = f.Integer == 1
		}
	}
	return entry, true
}

// activityOp is the compare-and-swap that adds entries, in order, to the
// list read (a Get that has run), or nil if the list cannot be written.
func activityOp(user string, read *store.Op, entries ...Activity) *store.Op {
	var raw []byte
	var list []Activity
	if read.Found {
		raw = read.Value
		_ = json.Unmarshal(raw, &list)
	}
	for _, entry := range entries {
		if n := len(list); n > 0 && list[0].Event == entry.Event && list[0].Result == entry.Result &&
			list[0].Method == entry.Method && list[0].IP == entry.IP && entry.Time.Sub(list[0].Time) < activityMerge {
			list[0].Count = max(list[0].Count, 1) + 1
			list[0].Time = entry.Time
		} else {
			list = append([]Activity{entry}, list...)
		}
	}
	if len(list) > activityKept {
		list = list[:activityKept]
	}
	next, err := json.Marshal(list)
	if err != nil {
		return nil
	}
	return store.CompareAndSwapOp(activityKey(user), raw, next, activityTTL)
}

// RecentActivity returns the member's recent security events, newest
// first.
func (e *Engine) RecentActivity(ctx context.Context, user string) ([]Activity, error) {
	raw, err := e.store.Get(ctx, activityKey(user))
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var list []Activity
	if err := json.Unmarshal(raw, &list); err != nil {
		return nil, nil
	}
	return list, nil
}
