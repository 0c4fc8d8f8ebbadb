package twofactor

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddy-twofactor/twofactor/challenge"
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

// A backup over the limit is refused with 413 naming the body, before
// anything reaches the engine; a bad merge value with 400 naming merge.
func TestImportBodyLimit(t *testing.T) {
	defer func(n int64) { maxImportBody = n }(maxImportBody)
	maxImportBody = 1 << 10
	api := &AdminAPI{}
	for _, c := range []struct {
		uri, body, field string
		status           int
	}{
		{"/two-factor/import", strings.Repeat("x", 1<<10+1), "body", http.StatusRequestEntityTooLarge},
		{"/two-factor/import?merge=yes", "", "merge", http.StatusBadRequest},
	} {
		r := httptest.NewRequest(http.MethodPost, c.uri, strings.NewReader(c.body))
		err := api.handleImport(httptest.NewRecorder(), r, nil, nil)
		var apiErr caddy.APIError
		var in *challenge.InputError
		if !errors.As(err, &apiErr) || apiErr.HTTPStatus != c.status || !errors.As(apiErr.Err, &in) || in.Field != c.field {
			t.Errorf("%s: %v, want %d naming %s", c.uri, err, c.status, c.field)
		}
	}
}
