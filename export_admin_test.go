package twofactor

import (
	"io"
	"strings"
	"testing"
)

// The CLI knows a backup is complete by its end line, however large the
// backup and however the stream was cut into writes; the error line the
// API sends when an export fails midway is reported as the error; a
// stream that just stops is incomplete.
func TestExportCompleteness(t *testing.T) {
	header := `{"format":"caddy-twofactor-backup","version":1,"time":"2026-12-05T12:00:00Z","keys":[]}` + "\n"
	record := `{"kind":"seen","member":"m","value":"` + strings.Repeat("A", 1000) + `"}` + "\n"
	body := header + strings.Repeat(record, 50)
	for _, c := range []struct {
		name, stream, err string
		records           int
	}{
		{"complete", body + `{"kind":"end","records":50,"counts":{"users":0,"devices":0,"activity":0,"seen":50}}` + "\n", "", 50},
		{"failed midway", body + `{"error":"export failed: store: unavailable"}` + "\n", "export failed: store: unavailable", 0},
		{"cut short", body[:len(body)-300], "incomplete", 0},
		{"cut at a line", body, "incomplete", 0},
		{"empty", "", "incomplete", 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			var l lastLines
			// Writes of an odd size, as a network read gives them.
			r := strings.NewReader(c.stream)
			buf := make([]byte, 777)
			for {
				n, err := r.Read(buf)
				_, _ = l.Write(buf[:n])
				if err == io.EOF {
					break
				}
			}
			end, err := l.end()
			switch {
			case c.err == "" && (err != nil || end.Records != c.records || end.Counts.Seen != c.records):
				t.Fatalf("end %+v, %v; want %d records", end, err, c.records)
			case c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)):
				t.Fatalf("error %v, want one saying %q", err, c.err)
			}
			if len(l.buf) > 2*lastLinesKept {
				t.Fatalf("kept %d bytes, want at most %d", len(l.buf), 2*lastLinesKept)
			}
		})
	}
}
