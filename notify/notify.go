// Package notify delivers one-time codes: email through SMTP, SMS through
// Amazon SNS, and a development mailbox that only writes them down. It also
// renders the code messages in Japanese and English and validates and masks
// the addresses and numbers codes go to. It does not import Caddy; the Caddy
// layer turns its configuration into these senders.
package notify

import (
	"context"
	"errors"
)

// Message is one message to one recipient.
type Message struct {
	To      string // email address, or an E.164 phone number for SMS
	Subject string // email only
	Text    string // plain-text body (the whole SMS)
	HTML    string // email only; optional HTML alternative
}

// Sender delivers messages. Implementations are safe for concurrent use.
type Sender interface {
	Send(ctx context.Context, m Message) error
}

// Channels a sender may carry.
const (
	ChannelEmail = "email"
	ChannelSMS   = "sms"
)

// Carrier is implemented by senders that carry some channels only, so a
// sender configured for the wrong one (SMTP for SMS) is refused at start
// rather than failing every message. A sender without it is trusted to
// carry what it is configured for.
type Carrier interface {
	Carries(channel string) bool
}

// Sourced is implemented by email senders that know the address their
// messages come from, so the pages can tell members which sender to allow
// in their spam filter.
type Sourced interface {
	FromAddress() string
}

// Delivery error classes. They go to the audit log and decide what the
// member is told, so they describe the cause, not the library that saw it.
const (
	ClassRefused   = "refused"           // could not connect: connection refused, no route, DNS
	ClassTimeout   = "timeout"           // dial, read or write timeout, or the context's deadline
	ClassTLS       = "tls"               // STARTTLS not offered when required, handshake or certificate failure
	ClassAuth      = "auth"              // authentication failed, credentials missing or invalid, signature errors
	ClassRejected  = "rejected"          // permanent refusal by the SMTP server (5xx)
	ClassTemporary = "temporary"         // temporary refusal by the SMTP server (4xx)
	ClassThrottled = "throttled"         // SNS throttling
	ClassInvalid   = "invalid_parameter" // SNS InvalidParameter, or a recipient that is not an address or number
	ClassOptedOut  = "opted_out"         // the phone number opted out of SMS
	ClassOther     = "other"
)

// Error is the error every Send returns. Its text never contains the
// message body, which holds a one-time code.
type Error struct {
	Class string
	Err   error
}

func (e *Error) Error() string {
	return "notify: " + e.Class + ": " + e.Err.Error()
}

func (e *Error) Unwrap() error { return e.Err }

// Class returns the class of a Send error: "" for nil, ClassOther for an
// error that is not a *Error.
func Class(err error) string {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Class
	}
	return ClassOther
}

func classed(class string, err error) *Error {
	return &Error{Class: class, Err: err}
}
