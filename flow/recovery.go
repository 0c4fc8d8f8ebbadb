package flow

import (
	"encoding/base64"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/caddy-twofactor/twofactor/challenge"
	"github.com/caddy-twofactor/twofactor/clock"
	"github.com/caddy-twofactor/twofactor/notify"
)

// Recovery codes: signing in with one, the new set that must follow, and
// a new set from the methods page.

// verifyRecovery passes the challenge with a recovery code, then asks for
// a new set before anything else: protected paths lead back there until
// the member has one (RenewalDue, on the hot path). The set is made by a
// post of its own, not with this answer: if this answer is lost the rest
// of the old set still works, and if that post's answer is lost the
// member still has this session to make another.
func (f *Flow) verifyRecovery(p *request, st *challenge.User) error {
	ctx, cancel := withTimeout(p.r)
	defer cancel()
	a := f.actor(p.r, p.id.ID)
	browser := f.withBrowser(p, &a)
	u, err := p.e.UseRecoveryCode(ctx, a, p.r.PostForm.Get("code"))
	if err != nil {
		if handled, err := f.engineError(p, err); handled {
			return err
		}
		status, msg := codeError(err, challenge.MethodTOTP)
		if errors.Is(err, challenge.ErrMalformed) {
			msg = "recovery_malformed"
		}
		p.page.Error = msg
		return f.showChallenge(p, st, challenge.MethodRecovery, status)
	}
	f.verified(p, u, challenge.MethodRecovery, clock.Now())
	f.notice(p, u, notify.NoticeData{Kind: "recovery_used", Left: u.Recovery.Left})
	f.seenBrowser(p, u, challenge.MethodRecovery, false, browser)
	return seeOther(p, f.pageURL(p, "recovery"))
}

// renewRecoveryPage asks a member who used a recovery code for a new set,
// or one enrolled without a set yet (a first passkey, registered by a
// script that cannot show codes) for their first; otherwise it goes on to
// where the member was going.
func (f *Flow) renewRecoveryPage(p *request) error {
	if !p.user.MustRenewRecovery() && p.user.Recovery != nil {
		return seeOther(p, p.page.ReturnTo)
	}
	if p.user.Recovery == nil {
		p.page.FirstCodes = true
		if passkeyFirst(p.user) {
			p.page.Notice, p.page.NoticeDone = addedNotice(challenge.MethodWebAuthn), true
		}
	}
	return f.render(p, http.StatusOK, "recovery_renew")
}

// passkeyFirst reports whether a passkey or security key is the member's
// only method and they have no recovery codes yet: the codes about to be
// made are the first, after it.
func passkeyFirst(u *challenge.User) bool {
	m := u.Methods()
	return u.Recovery == nil && len(m) == 1 && m[0] == challenge.MethodWebAuthn
}

// newRecoveryCodes replaces the member's recovery codes, from the methods
// page or the renewal step, all at once: the old set stops working.
func (f *Flow) newRecoveryCodes(p *request) error {
	ctx, cancel := withTimeout(p.r)
	defer cancel()
	codes, err := p.e.GenerateRecoveryCodes(ctx, f.actor(p.r, p.id.ID))
	if err != nil {
		return f.unavailable(p, "recovery", err)
	}
	if p.user.Recovery != nil {
		p.page.Notice = "recovery_replaced"
	}
	if passkeyFirst(p.user) {
		// The codes stand in for the passkey: say so, and offer a second
		// way in as after any first method.
		p.page.Method = challenge.MethodWebAuthn
		p.page.Notice, p.page.NoticeDone = addedNotice(challenge.MethodWebAuthn), true
		f.suggestSecond(p, p.user)
	}
	f.notice(p, p.user, notify.NoticeData{Kind: "recovery_generated"})
	return f.showRecoveryCodes(p, codes)
}

// showRecoveryCodes shows a new set of codes, with a text file of them to
// download. The page is no-store like every gateway page; the codes are
// never shown again.
func (f *Flow) showRecoveryCodes(p *request, codes []string) error {
	var b strings.Builder
	fmt.Fprintf(&b, "%s\n%s\n\n", p.page.SiteName, p.id.ID)
	for _, c := range codes {
		b.WriteString(c)
		b.WriteByte('\n')
	}
	p.page.RecoveryCodes = codes
	p.page.RecoveryFile = recoveryFileName(p.page.SiteName)
	p.page.RecoveryDownload = template.URL("data:text/plain;charset=utf-8;base64," + base64.StdEncoding.EncodeToString([]byte(b.String())))
	return f.render(p, http.StatusOK, "recovery")
}

// recoveryFileName names the recovery codes' download after the site, so
// that a member with codes for several sites can tell the files apart:
// "example.com-recovery-codes.txt". Only letters, digits, dots, hyphens
// and underscores are kept, the rest become hyphens, never leading with a
// dot or hyphen; at most 60 characters of the site's name.
func recoveryFileName(site string) string {
	const suffix = "recovery-codes.txt"
	var b strings.Builder
	dash := false
	for _, r := range site {
		ok := unicode.IsLetter(r) || unicode.IsDigit(r) || r == '.' || r == '_' || r == '-'
		switch {
		case ok:
			b.WriteRune(r)
			dash = r == '-'
		case !dash && b.Len() > 0:
			b.WriteByte('-')
			dash = true
		}
		if utf8.RuneCountInString(b.String()) >= 60 {
			break
		}
	}
	name := strings.Trim(b.String(), ".-_ ")
	if name == "" {
		return suffix
	}
	return name + "-" + suffix
}
