package twofactor

import (
	"testing"
	"time"
)

// since and until take RFC 3339 or a UTC date; a date as until takes in
// the whole day.
func TestAuditTime(t *testing.T) {
	day := time.Date(2026, 12, 5, 0, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		in   string
		end  bool
		want time.Time
	}{
		{"", false, time.Time{}},
		{"", true, time.Time{}},
		{"2026-12-05", false, day},
		{"2026-12-05", true, day.AddDate(0, 0, 1)},
		{"2026-12-31", true, time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)},
		{"2026-12-05T15:04:05Z", true, day.Add(15*time.Hour + 4*time.Minute + 5*time.Second)},
		{"2026-12-05T09:00:00+09:00", false, day},
	} {
		got, err := auditTime(c.in, c.end)
		if err != nil || !got.Equal(c.want) || got.Location() != time.UTC {
			t.Errorf("auditTime(%q, %v) = %v, %v; want %v UTC", c.in, c.end, got, err, c.want)
		}
	}
	for _, in := range []string{"yesterday", "2026-13-01", "2026-12-05 15:00", "1733400000"} {
		if _, err := auditTime(in, false); err == nil {
			t.Errorf("auditTime(%q) accepted", in)
		}
	}
}
