package twofactor

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"github.com/caddyserver/caddy/v2"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"

	"github.com/caddy-twofactor/twofactor/challenge"
)

// Backups on the admin API and the CLI: GET /two-factor/export streams a
// backup of the store (challenge.Export: sealed records only), POST
// /two-factor/import restores one into the store of the running gateway.

// maxImportBody bounds a backup posted to /two-factor/import (1 GiB):
// millions of members at a few hundred bytes each, with devices and
// activity. A variable so a test can lower it.
var maxImportBody int64 = 1 << 30

// importTimeout is how long an import may take to arrive: longer than the
// admin endpoint's own read timeout, which is for small JSON bodies.
const importTimeout = time.Hour

// handleExport streams the backup (?reason= goes to the audit trail). An
// error once the backup has begun ends it with an error line in place of
// the end line, which import refuses and the CLI reports.
func (a *AdminAPI) handleExport(w http.ResponseWriter, r *http.Request, app *App, engine *challenge.Engine) error {
	app.seen.flush(r.Context()) // members seen a moment ago go in too
	out := &backupStream{w: w}
	_, err := engine.Export(r.Context(), out, adminActor, r.URL.Query().Get("reason"))
	switch {
	case err == nil:
		return nil
	case !out.started:
		return apiError(fmt.Errorf("export: %w", err))
	}
	_ = json.NewEncoder(w).Encode(map[string]string{"error": "export failed: " + err.Error()})
	return nil
}

// backupStream sets the answer's headers when the backup's first bytes
// are written, so an error before then is answered as an API error.
type backupStream struct {
	w       http.ResponseWriter
	started bool
}

func (s *backupStream) Write(p []byte) (int, error) {
	if !s.started {
		s.started = true
		h := s.w.Header()
		h.Set("Content-Type", "application/jsonl")
		h.Set("Content-Disposition", `attachment; filename="two-factor-backup.jsonl"`)
		h.Set("Cache-Control", "no-store")
	}
	return s.w.Write(p)
}

// handleImport restores the posted backup (?merge=true to import into a
// store that holds members, ?reason= for the audit trail). The body goes
// to a temporary file (mode 0600, removed after) first: the engine reads
// a backup twice, checking every line before it writes any.
func (a *AdminAPI) handleImport(w http.ResponseWriter, r *http.Request, app *App, engine *challenge.Engine) error {
	q := r.URL.Query()
	merge := false
	switch q.Get("merge") {
	case "", "false":
	case "true":
		merge = true
	default:
		return badField("merge", "true or false")
	}
	_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(importTimeout))
	f, err := os.CreateTemp("", "two-factor-import-*.jsonl")
	if err != nil {
		return caddy.APIError{HTTPStatus: http.StatusInternalServerError, Err: fmt.Errorf("import: a temporary file: %v", err)}
	}
	defer os.Remove(f.Name())
	defer f.Close()
	if _, err := io.Copy(f, http.MaxBytesReader(w, r.Body, maxImportBody)); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return caddy.APIError{HTTPStatus: http.StatusRequestEntityTooLarge,
				Err: &challenge.InputError{Field: "body", Problem: fmt.Sprintf("larger than %d bytes", maxImportBody)}}
		}
		return caddy.APIError{HTTPStatus: http.StatusBadRequest, Err: fmt.Errorf("body: reading the backup: %v", err)}
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return caddy.APIError{HTTPStatus: http.StatusInternalServerError, Err: fmt.Errorf("import: the temporary file: %v", err)}
	}
	// Members noted before the import are in the store when it looks.
	app.seen.flush(r.Context())
	res, err := engine.Import(r.Context(), f, challenge.ImportOptions{Merge: merge, Actor: adminActor, Reason: q.Get("reason")})
	if err != nil {
		var be *challenge.BackupError
		if errors.As(err, &be) {
			return caddy.APIError{HTTPStatus: http.StatusBadRequest, Err: err}
		}
		return apiError(err)
	}
	app.noteStale(engine)
	return writeJSON(w, res)
}

// addBackupCommands adds `caddy two-factor export` and `import`.
func addBackupCommands(cmd *cobra.Command) {
	export := adminCommand(&cobra.Command{
		Use:   "export [--output FILE] [--reason <text>]",
		Short: "Writes a backup of the store: sealed records only",
		Long: `
Writes a backup of the running gateway's store: every member record (its
secrets sealed as stored, never in plaintext), remembered device, recent
activity and seen record, as JSON lines. Codes in flight, failure counts
and lockouts are left out. Restore it with caddy two-factor import, into
the same store or another kind (embedded to Redis); the importing gateway
needs the keys. The backup is sensitive: with the keys, it is every
member's authenticator.

To standard output by default; --output writes FILE (mode 0600) only once
the backup is complete. An incomplete backup exits 1.
`,
		Args: cobra.NoArgs,
	}, cmdExport)
	export.Flags().StringP("output", "o", "", "Write the backup to this file (mode 0600) instead of standard output")
	export.Flags().String("reason", "", "Why, for the audit trail")
	cmd.AddCommand(export)

	imp := adminCommand(&cobra.Command{
		Use:   "import [--merge] [--reason <text>] FILE",
		Short: "Restores a backup into the store",
		Long: `
Restores a backup made by caddy two-factor export into the running
gateway's store. Every line is checked first (with the configured keys);
a bad file is refused naming the line, and nothing is written.

A store that already holds members is refused unless --merge is given.
With --merge, every record the store holds is kept as it is (a member's
record with their devices and activity), the backup's other records are
added, and seen dates are merged. An import stopped midway completes when
run again with --merge.
`,
		Args: cobra.MaximumNArgs(1),
	}, cmdImport)
	imp.Flags().Bool("merge", false, "Import into a store that holds members, keeping its records")
	imp.Flags().String("reason", "", "Why, for the audit trail")
	cmd.AddCommand(imp)
}

// ExportSummary is what caddy two-factor export --json prints when the
// backup goes to a file.
type ExportSummary struct {
	File    string                 `json:"file"`
	Records int                    `json:"records"`
	Counts  challenge.BackupCounts `json:"counts"`
}

func cmdExport(fl caddycmd.Flags) (int, error) {
	q := url.Values{}
	if r := fl.String("reason"); r != "" {
		q.Set("reason", r)
	}
	path := fl.String("output")
	resp, out, code, err := download(fl, "/two-factor/export?"+q.Encode(), path, ".two-factor-backup-*")
	if err != nil {
		return failed(fl, code, err)
	}
	defer resp.Body.Close()
	defer out.discard()
	tail := &lastLines{}
	if _, err := io.Copy(io.MultiWriter(out, tail), resp.Body); err != nil {
		return failed(fl, exitFailed, fmt.Errorf("export: reading the backup: %v", err))
	}
	end, err := tail.end()
	if err != nil {
		return failed(fl, exitFailed, err)
	}
	sum := ExportSummary{File: path, Records: end.Records, Counts: end.Counts}
	if path == "" {
		fmt.Fprintf(os.Stderr, "Exported %s.\n", describeCounts(sum.Counts))
		return exitOK, nil
	}
	if err := out.commit(); err != nil {
		return failed(fl, exitFailed, err)
	}
	if fl.Bool("json") {
		return exitOK, json.NewEncoder(os.Stdout).Encode(sum)
	}
	fmt.Printf("Exported %s to %s.\nKeep it as safe as the keys: it holds every member's factors, sealed under them.\n",
		describeCounts(sum.Counts), path)
	return exitOK, nil
}

// output is where a download goes: standard output, or with a path a
// temporary file beside it (mode 0600) that commit renames into place
// once the download is complete, so a failed one leaves no file that
// looks whole.
type output struct {
	io.Writer
	path string
	tmp  *os.File
}

// download asks the admin endpoint for uri and opens the output for
// path. An error comes with its exit code.
func download(fl caddycmd.Flags, uri, path, pattern string) (*http.Response, *output, int, error) {
	resp, code, err := adminRequest(fl, http.MethodGet, uri, nil)
	if err != nil {
		return nil, nil, code, err
	}
	out, err := openOutput(path, pattern)
	if err != nil {
		resp.Body.Close()
		return nil, nil, exitFailed, err
	}
	return resp, out, exitOK, nil
}

// openOutput opens the output for path ("": standard output), its
// temporary file named after pattern.
func openOutput(path, pattern string) (*output, error) {
	if path == "" {
		return &output{Writer: os.Stdout}, nil
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), pattern)
	if err != nil {
		return nil, err
	}
	return &output{Writer: tmp, path: path, tmp: tmp}, nil
}

// commit puts the complete file in place.
func (o *output) commit() error {
	if o.tmp == nil {
		return nil
	}
	if err := o.tmp.Sync(); err != nil {
		return err
	}
	if err := o.tmp.Close(); err != nil {
		return err
	}
	return os.Rename(o.tmp.Name(), o.path)
}

// discard removes the temporary file unless commit put it in place.
func (o *output) discard() {
	if o.tmp != nil {
		o.tmp.Close()
		os.Remove(o.tmp.Name())
	}
}

// lastLines keeps the end of what is written to it: enough for the
// backup's end line, or the error line that replaces it.
type lastLines struct{ buf []byte }

const lastLinesKept = 4 << 10

func (l *lastLines) Write(p []byte) (int, error) {
	l.buf = append(l.buf, p...)
	if len(l.buf) > 2*lastLinesKept {
		l.buf = append(l.buf[:0], l.buf[len(l.buf)-lastLinesKept:]...)
	}
	return len(p), nil
}

// backupEnd is the end line of a backup, or the error line in its place.
type backupEnd struct {
	Kind    string                 `json:"kind"`
	Records int                    `json:"records"`
	Counts  challenge.BackupCounts `json:"counts"`
	Error   string                 `json:"error"`
}

func (l *lastLines) end() (backupEnd, error) {
	var e backupEnd
	b := bytes.TrimRight(l.buf, "\n")
	if i := bytes.LastIndexByte(b, '\n'); i >= 0 {
		b = b[i+1:]
	}
	switch {
	case json.Unmarshal(b, &e) != nil:
	case e.Error != "":
		return e, errors.New(e.Error)
	case e.Kind == "end":
		return e, nil
	}
	return e, errors.New("export: the backup is incomplete (it has no end line): the connection ended early")
}

func describeCounts(c challenge.BackupCounts) string {
	return fmt.Sprintf("%d member records, %d remembered devices, %d activity lists and %d seen records",
		c.Users, c.Devices, c.Activity, c.Seen)
}

func cmdImport(fl caddycmd.Flags) (int, error) {
	path := fl.Arg(0)
	if path == "" {
		return failed(fl, exitInvalid, errors.New("file: required: the backup to import (caddy two-factor import [--merge] FILE)"))
	}
	f, err := os.Open(path)
	if err != nil {
		return failed(fl, exitInvalid, fmt.Errorf("file: %v", err))
	}
	defer f.Close()
	q := url.Values{}
	if fl.Bool("merge") {
		q.Set("merge", "true")
	}
	if r := fl.String("reason"); r != "" {
		q.Set("reason", r)
	}
	var res challenge.ImportResult
	if code, err := callAdminWith(fl, http.MethodPost, "/two-factor/import?"+q.Encode(), f, &res); err != nil || fl.Bool("json") {
		return code, err
	}
	fmt.Printf("Imported the backup of store %s taken %s.\n", res.From, res.Taken.UTC().Format("2006-01-02 15:04 UTC"))
	fmt.Printf("Written: %s.\n", describeCounts(res.Written))
	if k := res.Kept; k != (challenge.BackupCounts{}) {
		fmt.Printf("Kept as the store held them (its records stay): %s.\n", describeCounts(k))
	}
	if res.Expired > 0 {
		fmt.Printf("Expired since the backup, left out: %d.\n", res.Expired)
	}
	return exitOK, nil
}
