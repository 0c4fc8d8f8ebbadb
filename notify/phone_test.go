package notify

import (
	"errors"
	"strings"
	"testing"
)

func TestParsePhone(t *testing.T) {
	for _, tc := range []struct {
		in, region string
		allowed    []string
		want       string
	}{
		{"090-1234-5678", "JP", nil, "+819012345678"},
		{"+81 90 1234 5678", "", nil, "+819012345678"},
		{"  +81-90-1234-5678  ", "US", nil, "+819012345678"},
		{"０９０－１２３４－５６７８", "JP", nil, "+819012345678"}, // full-width, as Japanese keyboards type it
		{"090-1234-5678", "jp", []string{"jp"}, "+819012345678"},
		// The library cannot tell US mobile from fixed lines: FIXED_LINE_OR_MOBILE.
		{"+1 202-555-0123", "", nil, "+12025550123"},
		{"(202) 555-0123", "US", []string{"JP", "us"}, "+12025550123"},
		{"07400 123456", "GB", nil, "+447400123456"},
		{"+44 7400 123456", "JP", []string{"GB"}, "+447400123456"},
		// Surrounding space is trimmed before the length limit applies.
		{"+81 90 1234 5678" + strings.Repeat(" ", 60), "JP", nil, "+819012345678"},
	} {
		got, err := ParsePhone(tc.in, tc.region, tc.allowed)
		if err != nil || got != tc.want {
			t.Errorf("ParsePhone(%q, %q, %v) = %q, %v; want %q", tc.in, tc.region, tc.allowed, got, err, tc.want)
		}
	}
}

func TestParsePhoneRefuses(t *testing.T) {
	for _, tc := range []struct {
		in, region string
		want       error
	}{
		{"", "JP", ErrPhoneInvalid},
		{"123", "JP", ErrPhoneInvalid},
		{"090-1234-ABCD", "JP", ErrPhoneInvalid},
		{"1-800-FLOWERS", "US", ErrPhoneInvalid},
		{"090-1234-5678 ext. 12", "JP", ErrPhoneInvalid},
		{"090-1234-5678", "", ErrPhoneInvalid},                    // no country code and no default region
		{"+81" + strings.Repeat("-9", 40), "JP", ErrPhoneInvalid}, // over 64 bytes
		{"+999 1234 5678", "", ErrPhoneInvalid},
		// Numbers that cannot receive SMS, or that cost the sender money.
		{"0990-123-456", "JP", ErrPhoneNotMobile},     // premium rate
		{"0120-123-456", "JP", ErrPhoneNotMobile},     // toll free
		{"0570-000-000", "JP", ErrPhoneNotMobile},     // navi dial (UAN)
		{"050-1234-5678", "JP", ErrPhoneNotMobile},    // VoIP
		{"03-1234-5678", "JP", ErrPhoneNotMobile},     // fixed line
		{"+1 900 234 5678", "", ErrPhoneNotMobile},    // premium rate
		{"+1 800 234 5678", "", ErrPhoneNotMobile},    // toll free
		{"+44 909 876 5432", "", ErrPhoneNotMobile},   // premium rate
		{"+44 800 123 4567", "", ErrPhoneNotMobile},   // toll free
		{"+44 121 234 5678", "GB", ErrPhoneNotMobile}, // fixed line
	} {
		got, err := ParsePhone(tc.in, tc.region, nil)
		if !errors.Is(err, tc.want) || got != "" {
			t.Errorf("ParsePhone(%q, %q) = %q, %v; want %v", tc.in, tc.region, got, err, tc.want)
		}
	}
}

func TestParsePhoneRegionNotAllowed(t *testing.T) {
	_, err := ParsePhone("+1 202-555-0123", "JP", []string{"JP", "GB"})
	var ce *PhoneCountryError
	if !errors.As(err, &ce) || ce.Region != "US" {
		t.Fatalf("err = %v, want a PhoneCountryError for US", err)
	}
	if got, want := err.Error(), "phone number from region US is not allowed"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	// An invalid number is reported as invalid, whatever the allow-list.
	if _, err := ParsePhone("123", "JP", []string{"GB"}); !errors.Is(err, ErrPhoneInvalid) {
		t.Errorf("invalid number with allow-list: %v", err)
	}
}

func TestValidRegion(t *testing.T) {
	for code, want := range map[string]bool{
		"JP": true, "US": true, "GB": true, "jp": true,
		"": false, "J": false, "JPN": false, "XX": false, "UK": false, "001": false,
	} {
		if got := ValidRegion(code); got != want {
			t.Errorf("ValidRegion(%q) = %v, want %v", code, got, want)
		}
	}
}

func TestMaskPhone(t *testing.T) {
	for in, want := range map[string]string{
		"+819012345678": "+81 •• •••• 5678",
		"+12025550123":  "+1 ••• ••• 0123",
		"+447400123456": "+44 •••• ••3456",
		"not a number":  "•••",
		"+1234":         "•••",
	} {
		if got := MaskPhone(in); got != want {
			t.Errorf("MaskPhone(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestMaskEmail(t *testing.T) {
	for in, want := range map[string]string{
		"alice@example.com":     "a•••@example.com",
		"a@example.com":         "a•••@example.com",
		"éric@example.fr":       "é•••@example.fr",
		"山田@example.jp":         "山•••@example.jp",
		"a@b@example.com":       "a•••@example.com",
		"":                      "•••",
		"alice":                 "•••",
		"@example.com":          "•••",
		"alice@":                "•••",
		"\xffalice@example.com": "•••",
	} {
		if got := MaskEmail(in); got != want {
			t.Errorf("MaskEmail(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestParseEmail(t *testing.T) {
	for in, want := range map[string]string{
		"alice@example.com":                      "alice@example.com",
		"  Alice@Example.COM \n":                 "Alice@example.com",
		"a.b+tag@mail.example.co.jp":             "a.b+tag@mail.example.co.jp",
		strings.Repeat("a", 64) + "@example.com": strings.Repeat("a", 64) + "@example.com",
		"alice@ＥＸＡＭＰＬＥ.com":                      "alice@example.com",
		"taro@例え.jp":                             "taro@xn--r8jz45g.jp",
	} {
		got, err := ParseEmail(in)
		if err != nil || got != want {
			t.Errorf("ParseEmail(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{
		"",
		"alice",
		"Alice <alice@example.com>",
		"<alice@example.com>",
		"alice@example.com (Alice)",
		"alice@example.com, bob@example.com",
		"alice@localhost",
		"alice@[127.0.0.1]",
		"alice@exa mple.com",
		"alice@example.com.",
		"@example.com",
		"alice@",
		strings.Repeat("a", 65) + "@example.com",
		"a@" + strings.Repeat("b", 250) + ".com",
		"alice@exa_mple.com",
	} {
		if got, err := ParseEmail(in); !errors.Is(err, ErrEmailInvalid) {
			t.Errorf("ParseEmail(%q) = %q, %v; want ErrEmailInvalid", in, got, err)
		}
	}
}
