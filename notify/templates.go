package notify

import (
	"embed"
	"fmt"
	htemplate "html/template"
	"strings"
	ttemplate "text/template"
	"time"
	"unicode"
	"unicode/utf8"
)

// CodeData fills the one-time-code messages.
type CodeData struct {
	Site    string        // site name shown to the user
	Code    string        // the one-time code
	TTL     time.Duration // shown in whole minutes, rounded up
	Purpose string        // "verify" (sign-in) or "enrol" (confirming a new address/number)
}

const (
	purposeVerify = "verify"
	purposeEnrol  = "enrol"
)

// The messages live in files so that operators and translators can read
// them. They carry no links: a code message with a link teaches members to
// follow links in code messages, which is what phishing needs.
//
//go:embed templates
var templateFiles embed.FS

type langTemplates struct {
	text *ttemplate.Template // "subject", "text" and the SMS
	html *htemplate.Template // "html"
	sms  string
}

var languages = map[string]langTemplates{
	"en": loadLanguage("en"),
	"ja": loadLanguage("ja"),
}

func loadLanguage(lang string) langTemplates {
	return langTemplates{
		text: ttemplate.Must(ttemplate.New(lang).Option("missingkey=error").
			ParseFS(templateFiles, "templates/email_"+lang+".txt", "templates/sms_"+lang+".txt", "templates/notice_"+lang+".txt")),
		html: htemplate.Must(htemplate.New(lang).Option("missingkey=error").
			ParseFS(templateFiles, "templates/email_"+lang+".html")),
		sms: "sms_" + lang + ".txt",
	}
}

// smsSiteRunes bounds the site name in an SMS so that a Japanese message
// stays within one 70-character UCS-2 segment.
const smsSiteRunes = 20

type codeView struct {
	Site    string
	Code    string
	Minutes int
	Enrol   bool
	Subject string
}

func newView(d CodeData) (codeView, error) {
	v := codeView{Site: cleanSite(d.Site), Code: d.Code}
	switch d.Purpose {
	case purposeVerify, "": // verify unless told otherwise
	case purposeEnrol:
		v.Enrol = true
	default:
		return v, fmt.Errorf("notify: message purpose %q: must be verify or enrol", d.Purpose)
	}
	if v.Code == "" || strings.ContainsFunc(v.Code, unicode.IsSpace) {
		return v, fmt.Errorf("notify: message code: required, without spaces")
	}
	if d.TTL <= 0 {
		return v, fmt.Errorf("notify: message ttl %s: must be positive", d.TTL)
	}
	v.Minutes = int((d.TTL + time.Minute - 1) / time.Minute)
	return v, nil
}

// cleanSite keeps a site name on one line: it ends up in a header and in
// an SMS.
func cleanSite(s string) string {
	return strings.Join(strings.FieldsFunc(s, func(r rune) bool {
		return unicode.IsSpace(r) || unicode.IsControl(r)
	}), " ")
}

func language(lang string) langTemplates {
	l := strings.ToLower(lang)
	if l == "ja" || strings.HasPrefix(l, "ja-") {
		return languages["ja"]
	}
	return languages["en"]
}

// CodeEmail renders the email carrying a one-time code in lang ("ja" or
// "en"; anything else is English). To is left empty.
func CodeEmail(lang string, d CodeData) (Message, error) {
	v, err := newView(d)
	if err != nil {
		return Message{}, err
	}
	t := language(lang)
	var subject, text, html strings.Builder
	if err := t.text.ExecuteTemplate(&subject, "subject", v); err != nil {
		return Message{}, err
	}
	v.Subject = strings.TrimSpace(subject.String())
	if err := t.text.ExecuteTemplate(&text, "text", v); err != nil {
		return Message{}, err
	}
	if err := t.html.ExecuteTemplate(&html, "html", v); err != nil {
		return Message{}, err
	}
	return Message{Subject: v.Subject, Text: strings.TrimSpace(text.String()) + "\n", HTML: html.String()}, nil
}

// CodeSMS renders the SMS carrying a one-time code in lang: the code comes
// first so that it shows in notifications, and long site names are cut.
func CodeSMS(lang string, d CodeData) (Message, error) {
	v, err := newView(d)
	if err != nil {
		return Message{}, err
	}
	if utf8.RuneCountInString(v.Site) > smsSiteRunes {
		v.Site = string([]rune(v.Site)[:smsSiteRunes-1]) + "…"
	}
	t := language(lang)
	var text strings.Builder
	if err := t.text.ExecuteTemplate(&text, t.sms, v); err != nil {
		return Message{}, err
	}
	return Message{Text: strings.TrimSpace(text.String())}, nil
}

// NoticeData fills a security notice: an email telling the member about a
// change to their second factors, so a change they did not make stands
// out.
type NoticeData struct {
	Site string
	// Kind is one of method_added, method_removed, passkey_added,
	// passkey_removed, recovery_used, recovery_generated,
	// device_remembered, lockout, new_device, or an admin's admin_reset,
	// admin_reset_requested, admin_devices, admin_sessions,
	// admin_passkey_removed (with no IP or Browser: no member's request
	// made them).
	Kind    string
	When    string // formatted time
	IP      string
	Browser string // browser and system, "" when unknown
	Method  string // method_added, method_removed: the method's name
	// Name is the passkey's or security key's name as its member gave it
	// (passkey_added, passkey_removed, admin_passkey_removed): it tells
	// which one, where a member may have several.
	Name string
	Left int // recovery_used: codes left
	// SettingsURL is the absolute URL of the settings page, only from
	// configuration (never from a request's Host header); without it the
	// message names SettingsPath.
	SettingsURL  string
	SettingsPath string
}

var noticeKinds = map[string]bool{
	"method_added": true, "method_removed": true, "recovery_used": true, "recovery_generated": true,
	"device_remembered": true, "lockout": true, "new_device": true,
	"admin_reset": true, "admin_reset_requested": true, "admin_devices": true, "admin_sessions": true, "admin_unlock": true, "admin_app_confirmed": true,
	"passkey_added": true, "passkey_removed": true, "admin_passkey_removed": true,
}

// Notice renders a security notice in lang ("ja" or "en"). To is left
// empty.
func Notice(lang string, d NoticeData) (Message, error) {
	if !noticeKinds[d.Kind] {
		return Message{}, fmt.Errorf("notify: notice kind %q: unknown", d.Kind)
	}
	d.Site = cleanSite(d.Site)
	t := language(lang)
	var subject, text strings.Builder
	if err := t.text.ExecuteTemplate(&subject, "notice_subject", d); err != nil {
		return Message{}, err
	}
	if err := t.text.ExecuteTemplate(&text, "notice_text", d); err != nil {
		return Message{}, err
	}
	return Message{Subject: strings.TrimSpace(subject.String()), Text: strings.TrimSpace(text.String()) + "\n"}, nil
}
