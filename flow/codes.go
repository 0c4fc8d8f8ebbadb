package flow

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-twofactor/twofactor/challenge"
	"github.com/caddy-twofactor/twofactor/clock"
	"github.com/caddy-twofactor/twofactor/notify"
	"github.com/caddy-twofactor/twofactor/pages"
)

// Codes sent by email and SMS, and the limits on sending and guessing.

// sendTimeout bounds a request that sends a code: the senders' own
// timeouts (10s by default) plus the store work around them.
const sendTimeout = 30 * time.Second

// deliver composes a code message in the member's language and hands it
// to the configured sender.
func (f *Flow) deliver(p *request) challenge.Deliver {
	lang, site := p.page.Lang, p.page.SiteName
	return func(ctx context.Context, d challenge.Delivery) error {
		data := notify.CodeData{Site: site, Code: d.Code, TTL: d.TTL, Purpose: d.Purpose}
		var (
			msg    notify.Message
			sender notify.Sender
			err    error
		)
		if d.Method == challenge.MethodSMS {
			msg, err = notify.CodeSMS(lang, data)
			sender = f.cfg.SMS
		} else {
			msg, err = notify.CodeEmail(lang, data)
			sender = f.cfg.Email
		}
		if err != nil {
			return err
		}
		if sender == nil {
			return &notify.Error{Class: notify.ClassOther, Err: errors.New("no sender configured for " + d.Method)}
		}
		msg.To = d.To
		err = sender.Send(ctx, msg)
		if err != nil {
			// The class only: providers' error texts name the recipient.
			f.logger.Warn("sending a code failed", zap.String("method", d.Method),
				zap.String("class", notify.Class(err)))
		}
		return err
	}
}

// locked shows the lockout page. The same page is shown whether or not the
// code would have been right, so a locked-out guesser learns nothing.
func (f *Flow) locked(p *request, until time.Time) error {
	wait := retryAfter(p.w, until)
	if time.Duration(wait) < time.Minute || !wantsPage(p.r) {
		// A script's refusal carries the reason "locked", which an
		// operator's handle_errors matches, however long the wait.
		return f.message(p.w, p.r, http.StatusTooManyRequests, "title_locked", "locked", []any{wait}, "")
	}
	// How long, and when: the end as a time in the member's zone (UTC
	// without the script), rounded up to the minute shown.
	end := until.Truncate(time.Minute)
	if end.Before(until) {
		end = end.Add(time.Minute)
	}
	at := pages.Clock(end)
	if time.Duration(wait) >= 12*time.Hour {
		at = pages.When(end)
	}
	return f.message(p.w, p.r, http.StatusTooManyRequests, "title_locked", "locked_until", []any{wait, at}, "")
}

// retryAfter sets Retry-After for a wait until the given time and returns
// the wait for the page, which says the same.
func retryAfter(w http.ResponseWriter, until time.Time) pages.Wait {
	wait := max(until.Sub(clock.Now()), time.Second)
	seconds := (wait + time.Second - 1) / time.Second
	w.Header().Set("Retry-After", strconv.FormatInt(int64(seconds), 10))
	return pages.Wait(seconds * time.Second)
}

// limited shows the page for a send or enrolment limit, saying when to
// try again.
func (f *Flow) limited(p *request, l *challenge.LimitedError) error {
	wait := retryAfter(p.w, l.Until)
	back := strings.TrimPrefix(p.r.URL.Path, f.cfg.Prefix)
	back, _, _ = strings.Cut(back, "/") // challenge/send → challenge, enrol/sms → enrol
	link := f.pageURL(p, back)
	switch l.Limit {
	case challenge.LimitCooldown:
		if m := p.r.PostForm.Get("method"); m != "" && back == "challenge" {
			link += "&method=" + url.QueryEscape(m)
		} else if back == "enrol" {
			link = f.pageURL(p, "enrol/code")
		}
		return f.message(p.w, p.r, http.StatusTooManyRequests, "title_wait", "resend_wait", []any{wait}, link)
	case challenge.LimitSMSSite:
		return f.message(p.w, p.r, http.StatusTooManyRequests, "title_too_many", "sms_unavailable", []any{wait}, link)
	case challenge.LimitEnrolStarts:
		return f.message(p.w, p.r, http.StatusTooManyRequests, "title_too_many", "too_many_attempts", []any{wait}, "")
	}
	return f.message(p.w, p.r, http.StatusTooManyRequests, "title_too_many", "too_many_codes", []any{wait}, link)
}

// sendChallengeCode sends a sign-in code by email or SMS, then shows the
// page that asks for it (post, redirect, get).
func (f *Flow) sendChallengeCode(p *request) error {
	ctx, cancel := context.WithTimeout(p.r.Context(), sendTimeout)
	defer cancel()
	u := p.user
	method, err := f.postedCodeMethod(p)
	if method == "" {
		return err
	}
	req := challenge.CodeRequest{Method: method, Purpose: challenge.PurposeVerify, Flow: p.csrf, To: identityEmail(p)}
	_, err = p.e.SendCode(ctx, f.actor(p.r, p.id.ID), req, f.deliver(p))
	if err != nil {
		if status, msg, ok := sendError(err); ok {
			p.page.Error = msg
			return f.showChallenge(p, u, method, status)
		}
		if errors.Is(err, challenge.ErrNotEnrolled) {
			return seeOther(p, f.pageURL(p, "challenge"))
		}
		_, err = f.engineError(p, err)
		return err
	}
	return seeOther(p, f.pageURL(p, "challenge")+"&method="+method)
}

// postedCodeMethod is the form's method when it is email or SMS and one
// the member may use here. Otherwise it answers with the challenge and an
// error, and returns "".
func (f *Flow) postedCodeMethod(p *request) (string, error) {
	method := p.r.PostForm.Get("method")
	if (method == challenge.MethodEmail || method == challenge.MethodSMS) && slices.Contains(f.offeredMethods(p, p.user), method) {
		return method, nil
	}
	p.page.Error = "method_unavailable"
	return "", f.showChallenge(p, p.user, "", http.StatusBadRequest)
}

// sendError maps a failed send that the page explains itself.
func sendError(err error) (int, string, bool) {
	var delivery *challenge.DeliveryError
	switch {
	case errors.As(err, &delivery):
		return http.StatusServiceUnavailable, "send_failed", true
	case errors.Is(err, challenge.ErrNoDestination):
		return http.StatusBadRequest, "no_email_address", true
	}
	return 0, "", false
}

// reportNotArrived records the member's "still nothing" about the code
// this browser was sent, then shows the challenge again with thanks and
// the other ways first. It sends nothing: the resend button, with its
// limits, is the only way to another code.
func (f *Flow) reportNotArrived(p *request) error {
	ctx, cancel := withTimeout(p.r)
	defer cancel()
	u := p.user
	method, err := f.postedCodeMethod(p)
	if method == "" {
		return err
	}
	_, err = p.e.ReportNotArrived(ctx, f.actor(p.r, p.id.ID), p.csrf, method)
	switch {
	case errors.Is(err, challenge.ErrNothingToReport):
		p.page.Error = "not_arrived_nothing"
		return f.showChallenge(p, u, method, http.StatusConflict)
	case err != nil:
		_, err = f.engineError(p, err)
		return err
	}
	// A repeated report is thanked the same way: it was noted the first
	// time.
	p.page.Reported = true
	return f.showChallenge(p, u, method, http.StatusOK)
}
