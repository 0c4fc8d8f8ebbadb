package pages

import (
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Wait is a time to wait, as a message argument: T writes it in the page's
// language with the right unit and plural ("20 seconds", "1 minute",
// "1 hour 30 minutes"; 「20秒」「1分」「1時間30分」). It rounds up, so the
// member is never told a time that passes before the wait is over.
type Wait time.Duration

// unitWords gives a unit's singular and plural, or one form in Japanese.
type unitWords struct{ one, many string }

var waitUnits = map[string][3]unitWords{
	"en": {{" second", " seconds"}, {" minute", " minutes"}, {" hour", " hours"}},
	"ja": {{"秒", "秒"}, {"分", "分"}, {"時間", "時間"}},
}

// format writes w in lang: seconds under a minute, minutes under an hour,
// then hours and minutes.
func (w Wait) format(lang string) string {
	units, ok := waitUnits[lang]
	if !ok {
		units = waitUnits["en"]
	}
	sep := " "
	if lang == "ja" {
		sep = ""
	}
	part := func(n int64, u unitWords) string {
		if n == 1 {
			return "1" + u.one
		}
		return strconv.FormatInt(n, 10) + u.many
	}
	s := int64((time.Duration(w) + time.Second - 1) / time.Second)
	if s < 1 {
		s = 1
	}
	if s < 60 {
		return part(s, units[0])
	}
	m := (s + 59) / 60
	if m < 60 {
		return part(m, units[1])
	}
	var b strings.Builder
	b.WriteString(part(m/60, units[2]))
	if m%60 != 0 {
		b.WriteString(sep)
		b.WriteString(part(m%60, units[1]))
	}
	return b.String()
}

// localize replaces Wait arguments by their text in lang, and keeps the
// values a reader takes in at a glance on one line (see keepTogether).
func localize(lang string, args []any) []any {
	var out []any
	for i, a := range args {
		var v string
		switch a := a.(type) {
		case Wait:
			v = a.format(lang)
		case string:
			if v = keepTogether(a); v == a {
				continue
			}
		default:
			continue
		}
		if out == nil {
			out = append([]any(nil), args...)
		}
		out[i] = v
	}
	if out == nil {
		return args
	}
	return out
}

// unbreakable are the values that read wrong when a line breaks inside
// them: a date with its time and zone ("2026-12-05 07:46 UTC",
// "2026-12-05T07:46:09Z").
var unbreakable = regexp.MustCompile(`^\d{4}-\d{2}-\d{2}(?:[ T]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?)?(?: UTC|Z)?$`)

// keepTogether joins such a value with no-break spaces and non-breaking
// hyphens, so that a narrow screen moves it to the next line whole
// instead of leaving "2026-12-" at a line's end.
func keepTogether(s string) string {
	if !unbreakable.MatchString(s) {
		return s
	}
	return stampJoiner.Replace(s)
}

var stampJoiner = strings.NewReplacer(" ", nbsp, "-", nbhy)

// KeepTogether is keepTogether for a time stamp a page shows outside a
// message, such as in a list of details.
func KeepTogether(stamp string) string { return keepTogether(stamp) }
