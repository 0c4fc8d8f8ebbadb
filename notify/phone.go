package notify

import (
	"errors"
	"net/mail"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/nyaruka/phonenumbers"
	"golang.org/x/net/idna"
)

// Errors for addresses and numbers members enter.
var (
	ErrPhoneInvalid   = errors.New("notify: not a valid phone number")
	ErrPhoneNotMobile = errors.New("notify: phone number cannot receive SMS")
	ErrEmailInvalid   = errors.New("notify: not a valid email address")
)

// PhoneCountryError reports a valid number from a region not in the
// allow-list.
type PhoneCountryError struct {
	Region string
}

func (e *PhoneCountryError) Error() string {
	return "phone number from region " + e.Region + " is not allowed"
}

// maxPhoneInput bounds what is handed to the parser; real numbers with
// generous formatting fit easily.
const maxPhoneInput = 64

// ParsePhone validates a number a member entered and returns it in E.164.
// defaultRegion applies to numbers written without a +country code; allowed
// lists the regions accepted (empty: any). Only numbers that can be mobile
// are accepted: premium-rate, toll-free, shared-cost and similar numbers are
// where SMS pumping fraud sends its traffic.
func ParsePhone(input, defaultRegion string, allowed []string) (string, error) {
	input = strings.TrimSpace(input)
	if input == "" || len(input) > maxPhoneInput {
		return "", ErrPhoneInvalid
	}
	// The parser reads letters as vanity digits (1-800-FLOWERS) and "ext"
	// as an extension; neither belongs in a number that receives codes.
	if strings.IndexFunc(input, unicode.IsLetter) >= 0 {
		return "", ErrPhoneInvalid
	}
	n, err := phonenumbers.Parse(input, strings.ToUpper(defaultRegion))
	if err != nil || n.GetExtension() != "" || !phonenumbers.IsValidNumber(n) {
		return "", ErrPhoneInvalid
	}
	region := phonenumbers.GetRegionCodeForNumber(n)
	if len(allowed) > 0 && !regionAllowed(region, allowed) {
		return "", &PhoneCountryError{Region: region}
	}
	switch phonenumbers.GetNumberType(n) {
	case phonenumbers.MOBILE, phonenumbers.FIXED_LINE_OR_MOBILE:
	default:
		return "", ErrPhoneNotMobile
	}
	return phonenumbers.Format(n, phonenumbers.E164), nil
}

func regionAllowed(region string, allowed []string) bool {
	for _, a := range allowed {
		if strings.EqualFold(strings.TrimSpace(a), region) {
			return true
		}
	}
	return false
}

// ValidRegion reports whether code is a two-letter region the phone number
// metadata knows, such as "JP", "US" or "GB".
func ValidRegion(code string) bool {
	return len(code) == 2 && phonenumbers.GetSupportedRegions()[strings.ToUpper(code)]
}

// MaskPhone shows enough of a number for a member to recognise it:
// "+819012345678" becomes "+81 •• •••• 5678".
func MaskPhone(e164 string) string {
	n, err := phonenumbers.Parse(e164, "")
	if err != nil || !phonenumbers.IsValidNumber(n) {
		return maskDigits(e164)
	}
	intl := phonenumbers.Format(n, phonenumbers.INTERNATIONAL)
	cc, rest, ok := strings.Cut(intl, " ")
	if !ok {
		return maskDigits(e164)
	}
	digits := 0
	for _, r := range rest {
		if isASCIIDigit(r) {
			digits++
		}
	}
	var b strings.Builder
	b.WriteString(cc)
	sep := true // a space follows the country code
	for _, r := range rest {
		if !isASCIIDigit(r) {
			sep = true
			continue
		}
		if sep {
			b.WriteByte(' ')
			sep = false
		}
		if digits > 4 {
			b.WriteString("•")
		} else {
			b.WriteRune(r)
		}
		digits--
	}
	return b.String()
}

// maskDigits is the fallback for something that does not parse: only the
// last four digits, and only when there are enough others to hide.
func maskDigits(s string) string {
	var d []rune
	for _, r := range s {
		if isASCIIDigit(r) {
			d = append(d, r)
		}
	}
	if len(d) < 8 {
		return "•••"
	}
	return "••• " + string(d[len(d)-4:])
}

func isASCIIDigit(r rune) bool { return r >= '0' && r <= '9' }

// MaskEmail shows the first character of the local part and the domain:
// "alice@example.com" becomes "a•••@example.com".
func MaskEmail(addr string) string {
	i := strings.LastIndexByte(addr, '@')
	if i <= 0 || i == len(addr)-1 {
		return "•••"
	}
	r, _ := utf8.DecodeRuneInString(addr)
	if r == utf8.RuneError || unicode.IsSpace(r) || r == '@' {
		return "•••"
	}
	return string(r) + "•••@" + addr[i+1:]
}

// ParseEmail validates an address a member entered and returns it with the
// domain lowercased. Only a bare address is accepted: no display name, no
// angle brackets, no comments.
func ParseEmail(input string) (string, error) {
	s := strings.TrimSpace(input)
	if s == "" || len(s) > 254 {
		return "", ErrEmailInvalid
	}
	a, err := mail.ParseAddress(s)
	if err != nil || a.Name != "" || a.Address != s {
		return "", ErrEmailInvalid
	}
	i := strings.LastIndexByte(s, '@')
	if i <= 0 {
		return "", ErrEmailInvalid
	}
	local, domain := s[:i], s[i+1:]
	if len(local) > 64 || !strings.Contains(domain, ".") ||
		strings.ContainsAny(domain, " \t[]") ||
		strings.HasPrefix(domain, ".") || strings.HasSuffix(domain, ".") {
		return "", ErrEmailInvalid
	}
	// One spelling per domain, so "ＥＸＡＭＰＬＥ.com", "Example.com" and
	// "example.com" are one destination to the send limits, and SMTP gets
	// the ASCII form.
	ascii, err := idna.Lookup.ToASCII(domain)
	if err != nil || !strings.Contains(ascii, ".") {
		return "", ErrEmailInvalid
	}
	return local + "@" + ascii, nil
}
