package challenge

import (
	"testing"

	"github.com/caddy-twofactor/twofactor/internal/testwebauthn"
)

// invisibleFormats are names that read as something else: a direction
// override or isolate, a zero-width space, joiner or mark, a byte order
// mark. Each is refused naming the field, as a control character is.
var invisibleFormats = map[string]string{
	"RLO U+202E":              "My \u202eenohP",
	"LRO U+202D":              "\u202dKey",
	"LRE U+202A":              "\u202aKey",
	"PDF U+202C":              "Key\u202c",
	"LRI U+2066":              "\u2066Key",
	"RLI U+2067":              "\u2067Key",
	"FSI U+2068":              "\u2068Key",
	"PDI U+2069":              "Key\u2069",
	"ZWSP U+200B":             "Yubi\u200bKey",
	"ZWNJ U+200C":             "Yubi\u200cKey",
	"ZWJ U+200D":              "Yubi\u200dKey",
	"LRM U+200E":              "Key\u200e",
	"RLM U+200F":              "Key\u200f",
	"BOM U+FEFF":              "\ufeffKey",
	"soft hyphen U+00AD":      "Yubi\u00adKey",
	"word joiner U+2060":      "Yubi\u2060Key",
	"emoji ZWJ sequence":      "👩\u200d💻 仕事用",
	"ALM U+061C":              "مفتاح\u061c",
	"tag character U+E0067":   "🏴\U000e0067\U000e0062\U000e007f",
	"Hangul filler U+3164":    "Phone\u3164",
	"halfwidth filler U+FFA0": "Phone\uffa0",
	"CGJ U+034F":              "Pho\u034fne",
	"Braille blank U+2800":    "Phone\u2800",
}

// Names are people's names for their keys: Japanese, emoji (a single one,
// with a skin tone, a variation selector or a flag) are kept as typed;
// invisible formatting characters are refused on registration and on
// rename, before anything is used up or changed.
func TestCredentialNamesRefuseInvisibleFormatting(t *testing.T) {
	for _, good := range []string{"仕事用のiPhone", "鍵 (予備)", "🔑 YubiKey", "📱 スマホ", "👍🏽 Pixel", "❤️ 家のMac", "🇯🇵 セキュリティキー", "Ключ", "مفتاح"} {
		if got, err := CheckCredentialName(good); err != nil || got != good {
			t.Errorf("CheckCredentialName(%q) = %q, %v; want it kept", good, got, err)
		}
	}
	for what, bad := range invisibleFormats {
		if _, err := CheckCredentialName(bad); !isField(err, "name") {
			t.Errorf("%s: CheckCredentialName(%q) = %v, want an error naming the field name", what, bad, err)
		}
	}

	f := newFixture(t, waConfig())
	r := &waRig{t: t, a: f.e, b: f.e, clk: f.clk, audit: f.audit}
	auth := testwebauthn.New(waOrigin)
	opts, _ := f.e.BeginRegistration(ctx, alice, flowToken("f"), "")
	body, _ := auth.Create(opts)
	if _, _, err := f.e.FinishRegistration(ctx, alice, flowToken("f"), invisibleFormats["RLO U+202E"], body); !isField(err, "name") {
		t.Fatalf("registering with a direction override: %v", err)
	}
	_, c, err := f.e.FinishRegistration(ctx, alice, flowToken("f"), "📱 スマホ", body)
	if err != nil || c.Name != "📱 スマホ" {
		t.Fatalf("the same ceremony with an ordinary name: %+v, %v", c, err)
	}
	for what, bad := range invisibleFormats {
		if _, err := f.e.RenameCredential(ctx, alice, c.ID, bad); !isField(err, "name") {
			t.Errorf("%s: renaming to %q: %v, want an error naming the field name", what, bad, err)
		}
	}
	if _, err := f.e.RenameCredential(ctx, alice, c.ID, "鍵 (予備)"); err != nil {
		t.Fatalf("renaming to a Japanese name: %v", err)
	}
	if d, err := r.a.Member(ctx, alice.User); err != nil || len(d.Credentials) != 1 || d.Credentials[0].Name != "鍵 (予備)" {
		t.Fatalf("after the renames: %+v, %v", d.Credentials, err)
	}
}
