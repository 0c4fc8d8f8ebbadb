package audit

import (
	"bufio"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"
)

// Format is an export's file format.
type Format string

// The export formats.
const (
	// JSONL is JSON Lines: one record per line, as the trail stores it
	// plus its entry's "id".
	JSONL Format = "jsonl"
	// CSV has a header row and one record per row, for spreadsheets.
	CSV Format = "csv"
)

// ParseFormat reads a format's name; "" is JSONL.
func ParseFormat(s string) (Format, error) {
	switch f := Format(s); f {
	case "":
		return JSONL, nil
	case JSONL, CSV:
		return f, nil
	}
	return "", fieldError("format", "%q: want jsonl or csv", s)
}

// ContentType is the media type of an export in f.
func (f Format) ContentType() string {
	if f == CSV {
		return "text/csv; charset=utf-8"
	}
	return "application/jsonl; charset=utf-8"
}

// FileName is the name an export in f taken at now goes by, such as
// two-factor-audit-20261205T1500Z.jsonl.
func (f Format) FileName(now time.Time) string {
	ext := string(f)
	if f != CSV {
		ext = string(JSONL)
	}
	return "two-factor-audit-" + now.UTC().Format("20060102T1504Z") + "." + ext
}

// CSVColumns are the columns of a CSV export, its header row.
var CSVColumns = []string{"time", "instance", "id", "event", "result", "member", "actor", "ip", "browser", "method", "details"}

// Export writes every record matching f to w in format, oldest first by
// record time across every instance's log, and returns how many it wrote.
// It streams: it holds a chunk of each instance's log at a time, whatever
// the size of the trail, and reads the whole of it (the log's IDs count
// the store's clock, so they cannot bound a filter by record time). A
// refused filter or format is a *FieldError, returned before anything is
// written.
func (t *Trail) Export(ctx context.Context, f Filter, format Format, w io.Writer) (int, error) {
	if format != JSONL && format != CSV {
		return 0, fieldError("format", "%q: want jsonl or csv", string(format))
	}
	if err := f.check(); err != nil {
		return 0, err
	}
	insts, err := t.Instances(ctx)
	if err != nil {
		return 0, err
	}
	var enc recordWriter
	if format == CSV {
		enc = newCSVWriter(w)
	} else {
		enc = newJSONLWriter(w)
	}
	heads := make([]*exportSource, 0, len(insts))
	for _, inst := range insts {
		heads = append(heads, &exportSource{inst: inst, w: &walker{st: t.st, log: logName(inst)}})
	}
	n := 0
	for {
		var oldest *exportSource
		for _, s := range heads {
			if err := s.fill(ctx); err != nil {
				return n, err
			}
			if s.head != nil && (oldest == nil || s.head.Record.Time.Before(oldest.head.Record.Time)) {
				oldest = s
			}
		}
		if oldest == nil {
			break
		}
		e := *oldest.head
		oldest.head = nil
		if !f.match(e.Record) {
			continue
		}
		if err := enc.write(e); err != nil {
			return n, fmt.Errorf("audit: export: %w", err)
		}
		n++
	}
	if err := enc.flush(); err != nil {
		return n, fmt.Errorf("audit: export: %w", err)
	}
	return n, nil
}

// exportSource is one instance's log read oldest first, its next record
// decoded.
type exportSource struct {
	inst string
	w    *walker
	head *Entry
}

func (s *exportSource) fill(ctx context.Context) error {
	if s.head != nil {
		return nil
	}
	e, err := s.w.next(ctx)
	if err != nil {
		return fmt.Errorf("audit: export %s: %w", s.inst, err)
	}
	if e != nil {
		d := decodeEntry(*e, s.inst)
		s.head = &d
	}
	return nil
}

type recordWriter interface {
	write(Entry) error
	flush() error
}

type jsonlWriter struct {
	bw  *bufio.Writer
	enc *json.Encoder
}

func newJSONLWriter(w io.Writer) *jsonlWriter {
	bw := bufio.NewWriter(w)
	enc := json.NewEncoder(bw)
	enc.SetEscapeHTML(false)
	return &jsonlWriter{bw: bw, enc: enc}
}

// jsonlRecord is a JSONL line: the record's own fields and its entry's
// ID. encoding/json writes invalid UTF-8 as U+FFFD and escapes line
// breaks, so a line stays one line.
type jsonlRecord struct {
	ID string `json:"id"`
	Record
}

func (j *jsonlWriter) write(e Entry) error {
	return j.enc.Encode(jsonlRecord{ID: e.ID, Record: e.Record})
}

func (j *jsonlWriter) flush() error { return j.bw.Flush() }

type csvWriter struct {
	cw     *csv.Writer
	header bool
	row    []string
}

func newCSVWriter(w io.Writer) *csvWriter {
	return &csvWriter{cw: csv.NewWriter(w), row: make([]string, len(CSVColumns))}
}

func (c *csvWriter) writeHeader() error {
	if c.header {
		return nil
	}
	c.header = true
	return c.cw.Write(CSVColumns)
}

func (c *csvWriter) write(e Entry) error {
	if err := c.writeHeader(); err != nil {
		return err
	}
	r := e.Record
	cells := [...]string{r.Time.UTC().Format(time.RFC3339Nano), r.Instance, e.ID, r.Event, r.Result, r.Member, r.Actor,
		r.IP, r.Browser, r.Method, DetailsJSON(r.Details)}
	for i, v := range cells {
		c.row[i] = CSVSafe(strings.ToValidUTF8(v, "\uFFFD"))
	}
	return c.cw.Write(c.row)
}

func (c *csvWriter) flush() error {
	if err := c.writeHeader(); err != nil { // no record: the header alone
		return err
	}
	c.cw.Flush()
	return c.cw.Error()
}

// DetailsJSON writes a record's details as a JSON object, keys sorted:
// the CSV export's details cell, which a value holding ";", "=" or a
// quote cannot make ambiguous. No details is an empty cell.
func DetailsJSON(d map[string]string) string {
	if len(d) == 0 {
		return ""
	}
	var b strings.Builder
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false) // a file for people and tools, not a page
	_ = enc.Encode(d)        // a map of strings always encodes; invalid UTF-8 becomes U+FFFD
	return strings.TrimSuffix(b.String(), "\n")
}

// DetailsText writes a record's details as k=v pairs sorted by key and
// joined by sep, for people to read (the CLI's table, the admin pages). A
// value holding sep or "=" makes it ambiguous: files use DetailsJSON.
func DetailsText(d map[string]string, sep string) string {
	keys := make([]string, 0, len(d))
	for k := range d {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + d[k]
	}
	return strings.Join(parts, sep)
}

// CSVSafe keeps a CSV cell from being read as a formula by a spreadsheet:
// one that starts with = + - @, a tab or a carriage return gets a leading
// apostrophe, which spreadsheets show as text. Every CSV the gateway
// writes for people to open passes its cells through it.
func CSVSafe(cell string) string {
	if cell != "" && strings.ContainsRune("=+-@\t\r", rune(cell[0])) {
		return "'" + cell
	}
	return cell
}
