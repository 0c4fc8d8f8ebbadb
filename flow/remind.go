package flow

import (
	"net/http"
	"time"

	"github.com/caddy-twofactor/twofactor/challenge"
	"github.com/caddy-twofactor/twofactor/clock"
	"github.com/caddy-twofactor/twofactor/session"
)

// The set-up reminder on optional paths, shown at most once per interval.

// defaultReminder is the interval where no rule names one.
const defaultReminder = 7 * 24 * time.Hour

// DefaultDeadlineReminder is the interval on a rule with an enrolment
// deadline that names none: a deadline is worth a daily word.
const DefaultDeadlineReminder = 24 * time.Hour

// ReminderDue reports whether a member without a second factor should see
// the set-up reminder now.
func (f *Flow) ReminderDue(r *http.Request, b *Backend, user string, now time.Time) bool {
	var rem session.Reminder
	return !b.Jar.Reminder(r, user, &rem) || now.Unix() >= rem.Until
}

// remindPage shows the set-up reminder and starts its interval at once, so
// the member sees it at most once per interval whatever they click.
func (f *Flow) remindPage(p *request) error {
	u, err := p.e.State(p.r.Context(), p.id.ID)
	if err != nil {
		return f.unavailable(p, "state", err)
	}
	if u.Enrolled() {
		return seeOther(p, p.page.ReturnTo)
	}
	if !p.required() {
		f.snoozeReminder(p)
	}
	if p.policy != nil {
		now := clock.Now()
		if en := p.policy.EnrolmentState(u, now); en.State == challenge.EnrolmentGrace && !en.Deadline.IsZero() {
			p.page.Deadline, p.page.DeadlineDays = en.Deadline, DaysLeft(en.Deadline, now)
		}
	}
	return f.render(p, http.StatusOK, "remind")
}

func (f *Flow) snoozeReminder(p *request) {
	interval := defaultReminder
	if p.policy != nil {
		interval = p.policy.Reminder
	}
	rem := session.Reminder{User: p.id.ID, Until: clock.Now().Add(interval).Unix()}
	p.jar.SetReminder(p.w, p.r, &rem, interval)
}

// remindLater is the reminder's "later" button.
func (f *Flow) remindLater(p *request) error {
	if p.required() && p.policy != nil {
		// Required paths cannot be put off.
		return seeOther(p, f.pageURL(p, "enrol"))
	}
	f.snoozeReminder(p)
	p.e.Audit(f.actor(p.r, p.id.ID), "enrol_reminder", "later")
	return seeOther(p, p.page.ReturnTo)
}
