package pages

import (
	"strconv"
	"time"
)

var monthsLongEN = [...]string{"January", "February", "March", "April", "May", "June", "July",
	"August", "September", "October", "November", "December"}

// LongDate writes a day in full, in UTC, in the page's language: "15
// January 2027", 「2027年1月15日」. For an enrolment deadline, which the
// remind and enrolment pages name.
func (p *Page) LongDate(t time.Time) string {
	if t.IsZero() {
		return "–"
	}
	t = t.UTC()
	if p.Lang == "ja" {
		return p.Date(t)
	}
	return strconv.Itoa(t.Day()) + " " + monthsLongEN[t.Month()-1] + " " + strconv.Itoa(t.Year())
}
