package pages

import (
	"fmt"
	"html"
	"html/template"
	"time"
)

// Times on the member's pages. The server does not know the member's time
// zone, so it writes UTC with its offset, and static/localtime.js, where
// it runs, rewrites each <time class="when"> into the browser's zone in
// the same form. A date, and a time of day with its zone, each read as one
// value and must not wrap inside: browsers break lines after a hyphen, so
// the date's hyphens are non-breaking hyphens (U+2011), and a time is
// joined to its zone with a no-break space; between the date and the time
// a narrow column may break. The datetime attribute keeps the plain value
// for machines.

// nbsp joins the parts of one value; nbhy separates a date's parts. The
// stamps given to messages keep together with the same (wait.go).
const (
	nbsp = "\u00a0"
	nbhy = "\u2011"
)

// Moment styles: a date and time, a date alone, or a time of day (a
// lockout's end, hours away at most).
const (
	styleDateTime = "datetime"
	styleDate     = "date"
	styleClock    = "time"
)

// When is t as a date and time for a page: "2026-12-05 07:46 UTC+00:00"
// in a <time> element the script can turn into the member's zone.
func When(t time.Time) template.HTML { return moment(t, styleDateTime) }

// Day is t's date, "2026-12-05", in a <time> element like When's.
func Day(t time.Time) template.HTML { return moment(t, styleDate) }

// Clock is t's time of day, "07:46 UTC+00:00", in a <time> element like
// When's: for a moment within the day, said beside how long until it.
func Clock(t time.Time) template.HTML { return moment(t, styleClock) }

func moment(t time.Time, style string) template.HTML {
	if t.IsZero() {
		return ""
	}
	t = t.UTC()
	date := t.Format("2006" + nbhy + "01" + nbhy + "02")
	var text string
	switch style {
	case styleDate:
		text = date
	case styleClock:
		text = t.Format("15:04") + nbsp + "UTC+00:00"
	default:
		// A plain space between the date and the time: a narrow
		// column may put the time on a line of its own, but neither
		// breaks inside.
		text = date + " " + t.Format("15:04") + nbsp + "UTC+00:00"
	}
	// Every part is digits, dashes, colons and the fixed words: nothing
	// to escape.
	return template.HTML(fmt.Sprintf(`<time class="when" datetime="%s" data-show="%s">%s</time>`,
		t.Format(time.RFC3339), style, text))
}

// TH is T for texts whose arguments may be markup made here, such as
// When's <time> elements: the catalog text and every other argument are
// escaped, the template.HTML arguments are not.
func (p *Page) TH(key string, args ...any) template.HTML {
	lang := "en"
	if p != nil {
		lang = p.Lang
	}
	text, ok := lookup(lang, key)
	if !ok {
		return template.HTML(html.EscapeString(key))
	}
	// The verbs survive escaping: it touches only & < > ' ".
	text = html.EscapeString(text)
	if len(args) == 0 {
		return template.HTML(text)
	}
	args = localize(lang, args)
	safe := make([]any, len(args))
	for i, a := range args {
		switch v := a.(type) {
		case template.HTML:
			safe[i] = string(v)
		case string:
			safe[i] = html.EscapeString(v)
		case int, int64, uint, uint64, float64:
			safe[i] = v
		default:
			safe[i] = html.EscapeString(fmt.Sprint(v))
		}
	}
	return template.HTML(fmt.Sprintf(text, safe...)) //nolint:gosec // escaped above
}
