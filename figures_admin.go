package twofactor

import (
	"fmt"
	"net/http"
	"net/url"
	"os"
	"text/tabwriter"
	"time"

	"github.com/caddyserver/caddy/v2"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"

	"github.com/caddy-twofactor/twofactor/audit"
	"github.com/caddy-twofactor/twofactor/challenge"
	"github.com/caddy-twofactor/twofactor/clock"
)

// The daily figures on the admin API and the CLI.

// defaultFiguresDays is the range of GET /two-factor/figures without from:
// the week up to to.
const defaultFiguresDays = 7

// FiguresResponse is the answer of GET /two-factor/figures.
type FiguresResponse struct {
	// Days holds one entry per UTC day from from to to, oldest first.
	Days []audit.Day `json:"days"`
}

// handleFigures answers the site's figures for the UTC days from= to to=
// (YYYY-MM-DD, both included): to defaults to today, from to six days
// before to, and the range is at most audit.MaxFiguresRange days. The
// figures hold counts only, no member, so reading them is not audited.
func (a *AdminAPI) handleFigures(w http.ResponseWriter, r *http.Request, app *App, _ *challenge.Engine) error {
	from, to, err := figuresRange(r.URL.Query(), clock.Now())
	if err != nil {
		return err
	}
	days, err := app.readFigures(r.Context(), from, to)
	if err != nil {
		return caddy.APIError{HTTPStatus: http.StatusServiceUnavailable, Err: fmt.Errorf("figures: %w", err)}
	}
	return writeJSON(w, FiguresResponse{Days: days})
}

// figuresRange reads from= and to= of a figures query.
func figuresRange(q url.Values, now time.Time) (from, to time.Time, err error) {
	to = now.UTC().Truncate(24 * time.Hour)
	if v := q.Get("to"); v != "" {
		if to, err = time.Parse(time.DateOnly, v); err != nil {
			return from, to, badField("to", fmt.Sprintf("%q: must be a date, YYYY-MM-DD", v))
		}
	}
	from = to.AddDate(0, 0, 1-defaultFiguresDays)
	if v := q.Get("from"); v != "" {
		if from, err = time.Parse(time.DateOnly, v); err != nil {
			return from, to, badField("from", fmt.Sprintf("%q: must be a date, YYYY-MM-DD", v))
		}
	}
	switch n := int(to.Sub(from)/(24*time.Hour)) + 1; {
	case n < 1:
		return from, to, badField("from", fmt.Sprintf("%s: must not be after to (%s)", from.Format(time.DateOnly), to.Format(time.DateOnly)))
	case n > audit.MaxFiguresRange:
		return from, to, badField("from", fmt.Sprintf("%s to %s is %d days; at most %d at once",
			from.Format(time.DateOnly), to.Format(time.DateOnly), n, audit.MaxFiguresRange))
	}
	return from, to, nil
}

func figuresCommand() *cobra.Command {
	c := adminCommand(&cobra.Command{
		Use:   "figures [--from YYYY-MM-DD] [--to YYYY-MM-DD]",
		Short: "Shows the site's figures day by day: members, verifications, codes sent, lockouts, admin actions",
		Long: `
Shows the figures of each UTC day from --from to --to (both included; --to
defaults to today, --from to six days before it; at most 400 days): members
seen and enrolled (- where no count was taken that day), verifications that
passed and failed, codes sent and not delivered, lockouts begun, admins'
actions, and members back in after a lockout or a recovery code. Every
instance's counts are added up; another instance's last few seconds may be
missing. --json prints every count, by method, channel and result.
`,
		Args: cobra.NoArgs,
	}, cmdFigures)
	c.Flags().String("from", "", "First day, YYYY-MM-DD (default: six days before --to)")
	c.Flags().String("to", "", "Last day, YYYY-MM-DD (default: today, UTC)")
	return c
}

func cmdFigures(fl caddycmd.Flags) (int, error) {
	q := url.Values{}
	for _, name := range []string{"from", "to"} {
		if v := fl.String(name); v != "" {
			q.Set(name, v)
		}
	}
	var res FiguresResponse
	if code, err := callAdmin(fl, http.MethodGet, "/two-factor/figures?"+q.Encode(), nil, &res); err != nil || fl.Bool("json") {
		return code, err
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "Day\tSeen\tEnrolled\tVerified\tFailed\tSent\tNot delivered\tLockouts\tAdmin actions\tRecovered\t")
	for _, d := range res.Days {
		t := d.Totals()
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t\n", d.Date.Format(time.DateOnly), count(d.Seen), count(d.Enrolled),
			t.Verified, t.Failed, t.Sent, t.NotDelivered, t.Lockouts, t.AdminActions, d.Recovered.Count)
	}
	return exitOK, tw.Flush()
}

// count is n, or "-" for a count not taken (-1).
func count(n int64) string {
	if n < 0 {
		return "-"
	}
	return fmt.Sprint(n)
}
