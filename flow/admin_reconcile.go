package flow

import (
	"context"
	"encoding/csv"
	"errors"
	"io"
	"net/http"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-twofactor/twofactor/audit"
	"github.com/caddy-twofactor/twofactor/challenge"
	"github.com/caddy-twofactor/twofactor/pages"
)

// Reconcile on the admin pages: the member site's list of IDs, uploaded
// as a file (one ID a line, or a CSV whose first column is the ID) or
// pasted, sorted into enrolled, seen but not enrolled, and never seen;
// the result shown with counts, or downloaded as CSV.

// maxReconcileForm bounds a reconcile post: challenge.MaxReconcile IDs of
// some 150 bytes. More IDs than MaxReconcile in a smaller post are
// refused by count.
const maxReconcileForm = 16 << 20

// reconcileTimeout bounds the store work of one reconciliation.
const reconcileTimeout = 2 * time.Minute

// largeForms are the routes whose posts may exceed maxFormBytes, with
// their bound.
var largeForms = map[string]int64{"admin/reconcile": maxReconcileForm}

func (f *Flow) adminReconcilePage(p *request) error {
	f.adminPage(p).MaxIDs = challenge.MaxReconcile
	return f.render(p, http.StatusOK, "admin_reconcile")
}

// adminReconcile sorts the posted IDs and shows the result, or with
// format=csv answers it as a CSV file.
func (f *Flow) adminReconcile(p *request) error {
	a := f.adminPage(p)
	a.MaxIDs = challenge.MaxReconcile
	ids, msg := reconcileInput(p.r)
	if msg == "" && len(ids) == 0 {
		msg = "admin_reconcile_empty"
	}
	if msg != "" {
		p.page.Error, p.page.ErrorArgs = msg, nil
		if msg == "admin_reconcile_too_many" {
			p.page.ErrorArgs = []any{challenge.MaxReconcile}
		}
		return f.render(p, http.StatusBadRequest, "admin_reconcile")
	}
	// A long list reads a record or two per ID: more than a page's time.
	ctx, cancel := context.WithTimeout(p.r.Context(), reconcileTimeout)
	defer cancel()
	if f.cfg.FlushSeen != nil {
		f.cfg.FlushSeen(ctx)
	}
	res, err := p.e.Reconcile(ctx, ids, f.cfg.FoldID)
	if err != nil {
		var in *challenge.InputError
		if errors.As(err, &in) {
			p.page.Error, p.page.ErrorArgs = "admin_bad_field", []any{in.Field}
			return f.render(p, http.StatusBadRequest, "admin_reconcile")
		}
		return f.unavailable(p, "reconcile", err)
	}
	p.e.AuditRead(ctx, p.adminActor(), "admin_reconcile", "", zap.Int("ids", len(ids)),
		zap.Int("enrolled", len(res.Enrolled)), zap.Int("seen_not_enrolled", len(res.SeenNotEnrolled)), zap.Int("never_seen", len(res.NeverSeen)))
	if p.r.PostForm.Get("format") == "csv" {
		return writeReconcileCSV(p.w, res)
	}
	a.Reconciled = &pages.AdminReconciled{Enrolled: res.Enrolled, SeenNotEnrolled: res.SeenNotEnrolled,
		NeverSeen: res.NeverSeen, IDs: strings.Join(ids, "\n")}
	return f.render(p, http.StatusOK, "admin_reconcile")
}

// reconcileInput reads the IDs of the uploaded file, or else of the
// pasted text, and says what is wrong with them (a catalog key).
func reconcileInput(r *http.Request) ([]string, string) {
	var src io.Reader = strings.NewReader(r.PostForm.Get("ids"))
	if r.MultipartForm != nil {
		if files := r.MultipartForm.File["file"]; len(files) > 0 && files[0].Size > 0 {
			fh, err := files[0].Open()
			if err != nil {
				return nil, "bad_request"
			}
			defer fh.Close()
			src = fh
		}
	}
	return readIDs(src)
}

// readIDs reads one ID a line, or the first column of CSV rows, skipping
// blank lines and surrounding spaces; at most challenge.MaxReconcile.
func readIDs(src io.Reader) ([]string, string) {
	cr := csv.NewReader(src)
	cr.FieldsPerRecord = -1
	cr.LazyQuotes = true
	cr.ReuseRecord = true
	var ids []string
	for {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			return ids, ""
		}
		if err != nil {
			return nil, "admin_reconcile_unreadable"
		}
		id := strings.TrimPrefix(strings.TrimSpace(rec[0]), "\ufeff")
		if id == "" {
			continue
		}
		if len(ids) == challenge.MaxReconcile {
			return nil, "admin_reconcile_too_many"
		}
		ids = append(ids, id)
	}
}

// writeReconcileCSV answers a reconciliation as a CSV file: one row per
// ID, its group in the second column.
func writeReconcileCSV(w http.ResponseWriter, res challenge.Reconciliation) error {
	h := w.Header()
	h.Set("Content-Type", "text/csv; charset=utf-8")
	h.Set("Content-Disposition", `attachment; filename="reconcile.csv"`)
	cw := csv.NewWriter(w)
	_ = cw.Write([]string{"id", "status"})
	for _, g := range []struct {
		name string
		ids  []string
	}{{"enrolled", res.Enrolled}, {"seen_not_enrolled", res.SeenNotEnrolled}, {"never_seen", res.NeverSeen}} {
		for _, id := range g.ids {
			_ = cw.Write([]string{audit.CSVSafe(id), g.name})
		}
	}
	cw.Flush()
	return nil
}
