package twofactor

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"

	"github.com/caddy-twofactor/twofactor/challenge"
)

// caddy two-factor <command>: the admin API from the command line, talking
// to the running Caddy's admin endpoint as `caddy reload` does.

// Exit codes scripts can rely on.
const (
	exitOK       = 0
	exitFailed   = 1 // the instance could not be reached or the action failed
	exitInvalid  = 2 // the request was refused as invalid (bad arguments)
	exitTampered = 3 // audit verify found a broken chain: records altered, inserted or missing
)

func init() {
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:  "two-factor",
		Usage: "members list|show|reset|unlock|forget-devices|end-sessions|reconcile | approvals list|approve|withdraw | stats | figures | rekey | export | import | audit query|export|verify [--address <admin>] [--json] ...",
		Short: "Administers the two_factor app of a running Caddy",
		Long: `
Talks to the two_factor admin API (routes under /two-factor/) of the running
Caddy instance. The admin endpoint is --address if given, else the one in
--config, else Caddy's default (localhost:2019).

With --json the answer is printed as the API's JSON, for scripts; errors too,
as {"error": "..."}. Exit status: 0 done (including a reset left pending for
approval under reset_approval), 1 failed (instance unreachable, store
unavailable, member or request not found, refused by the four-eyes rules), 2
refused as invalid (the message names the field), 3 audit verify found
records altered, inserted or missing.
`,
		CobraFunc: func(cmd *cobra.Command) {
			cmd.AddCommand(adminCommand(&cobra.Command{
				Use:   "stats",
				Short: "Shows how many member records are under an older key",
				Args:  cobra.NoArgs,
			}, cmdStats))
			cmd.AddCommand(adminCommand(&cobra.Command{
				Use:   "rekey",
				Short: "Re-seals every member record under the current key",
				Long: `
Re-seals under the first key in keys every member record still holding data
under an older one, and reports how many remain under older keys. When 0
remain, the older keys can be removed from keys (sessions and remembered
devices sealed under them end with them). It reads every record: on a large
store it takes a while.
`,
				Args: cobra.NoArgs,
			}, cmdRekey))
			members := membersCommand()
			members.Short = "Lists, shows and reconciles members; resets, unlocks, forgets devices, ends sessions"
			addMemberCommands(members, false)
			cmd.AddCommand(members)
			cmd.AddCommand(approvalsCommand())
			// The actions were top-level commands before members
			// grouped them: kept, hidden, for one release.
			addMemberCommands(cmd, true)
			addBackupCommands(cmd)
			cmd.AddCommand(figuresCommand())
			cmd.AddCommand(auditCommand())
		},
	})
}

// adminCommand adds the flags every command shares to c and runs f.
func adminCommand(c *cobra.Command, f caddycmd.CommandFunc) *cobra.Command {
	c.Flags().String("address", "", "Address of the administration endpoint (default: from --config, else localhost:2019)")
	c.Flags().StringP("config", "c", "", "Configuration file, to find the administration endpoint")
	c.Flags().StringP("adapter", "a", "", "Name of config adapter to apply to --config")
	c.Flags().Bool("json", false, "Print the API's JSON answer, for scripts")
	c.RunE = caddycmd.WrapCommandFuncForCobra(f)
	return c
}

func cmdStats(fl caddycmd.Flags) (int, error) {
	var s StatsResponse
	if code, err := callAdmin(fl, http.MethodGet, "/two-factor/stats", nil, &s); err != nil || fl.Bool("json") {
		return code, err
	}
	complete := "so far: counting at start has not finished"
	if s.StaleCountComplete {
		complete = "every record counted"
	}
	fmt.Printf("Member records under an older key:  %d (%s)\n", s.StaleRecords, complete)
	fmt.Printf("  under a key no longer configured: %d\n", s.UnreadableRecords)
	fmt.Printf("Keys configured:                    %d\n", s.Keys)
	return exitOK, nil
}

func cmdRekey(fl caddycmd.Flags) (int, error) {
	var res challenge.RekeyResult
	if code, err := callAdmin(fl, http.MethodPost, "/two-factor/rekey", struct{}{}, &res); err != nil || fl.Bool("json") {
		return code, err
	}
	fmt.Printf("Read %d member records; re-sealed %d under the current key; %d remain under older keys.\n",
		res.Records, res.Resealed, res.Remaining)
	if res.Unreadable > 0 {
		fmt.Printf("%d are sealed under a key no longer configured: put it back in keys, after the current one, "+
			"reload, and run caddy two-factor rekey again.\n", res.Unreadable)
	} else if res.Remaining == 0 {
		fmt.Println("The older keys can now be removed from keys.")
	}
	return exitOK, nil
}

func cmdUnlock(fl caddycmd.Flags) (int, error) {
	req := UnlockRequest{Reason: fl.String("reason"), Address: fl.String("ip"), Member: fl.Arg(0)}
	var res challenge.UnlockResult
	if code, err := callAdmin(fl, http.MethodPost, "/two-factor/members/unlock", req, &res); err != nil || fl.Bool("json") {
		return code, err
	}
	who := req.Member
	if who == "" {
		who = "address " + req.Address
	}
	if res.WasLocked {
		// A lockout starts a fresh count, so there is nothing to report
		// but the tries given back.
		fmt.Printf("%s: unlocked; every try is back.\n", who)
	} else {
		fmt.Printf("%s: was not locked; %d wrong codes in a row cleared.\n", who, res.Failures)
	}
	return exitOK, nil
}

// resetDone is what a reset says when done.
const resetDone = "reset: every method, recovery code and remembered device removed, every session ended; they enrol again at their next visit."

// memberCommands are the actions on one member's factors: the route under
// /two-factor/members/ and command name, what it does, and what it says
// when done.
var memberCommands = []struct {
	name, short, long, done string
}{
	{"reset", "Removes all of a member's second factors; they enrol again",
		`Removes all of the member's methods, recovery codes and remembered devices,
and ends all their sessions, on every instance at once. The member enrols
again at their next visit: where enrolment is required, whoever holds the
member's password next can enrol, so confirm the member's identity first.
With reset_approval on, nothing changes yet: the reset is a pending request
(its ID is printed) that an approver on the admin page must approve.`,
		resetDone},
	{"forget-devices", "Forgets every remembered device of a member",
		`Forgets every remembered device of the member, on every instance at once:
each asks for a code again. Methods and other sessions stay.`,
		"%d remembered devices forgotten; each asks for a code again."},
	{"end-sessions", "Ends every second-factor session of a member",
		`Ends every second-factor session of the member, in every browser and on
every instance at once: they verify again at their next request. Methods and
remembered devices stay (a remembered device still skips the code).`,
		"every session ended; they verify again at their next request."},
	{"confirm-app", "Confirms a member's authenticator app for the admin pages",
		`Confirms the member's authenticator app for the admin pages. An app added
after an email, SMS or recovery code, or after a reset, opens them only once
another admin confirms it (what a stolen password with a mailbox can do, it
cannot do alone). Confirm only after checking with the member, by a channel
other than their password, that they added it. An admin with no other
approver to confirm them is confirmed this way.`,
		"authenticator app confirmed; it opens the admin pages."},
}

// addMemberCommands adds the actions on one member to cmd: reset, unlock,
// forget-devices, end-sessions, confirm-app; hidden for the top-level
// aliases.
func addMemberCommands(cmd *cobra.Command, hidden bool) {
	for _, mc := range memberCommands {
		c := adminCommand(&cobra.Command{
			Use:   mc.name + " <member> --reason <text>",
			Short: mc.short,
			Long:  "\n" + mc.long + "\n--reason is required and goes to the audit trail.\n",
			// A missing member is refused by the API, naming the field.
			Args:   cobra.MaximumNArgs(1),
			Hidden: hidden,
		}, func(fl caddycmd.Flags) (int, error) { return cmdMember(fl, mc.name, mc.done) })
		c.Flags().String("reason", "", "Why, for the audit trail (required)")
		cmd.AddCommand(c)
	}
	remove := adminCommand(&cobra.Command{
		Use:   "remove-passkey <member> <credential> --reason <text>",
		Short: "Removes one of a member's passkeys or security keys",
		Long: `
Removes one of the member's passkeys or security keys (a lost or stolen one;
<credential> is its ID as "members show" lists it), on every instance at
once: it no longer verifies, and every session and remembered device of the
member ends. If it was the member's only way to verify, they set up 2-step
verification again at their next visit; with reset_approval on, that is
refused (request a reset instead). The member is told by email, where
an address is known. --reason is required and goes to the audit trail.
`,
		// A missing member or credential is refused by the API, naming
		// the field.
		Args:   cobra.MaximumNArgs(2),
		Hidden: hidden,
	}, cmdRemovePasskey)
	remove.Flags().String("reason", "", "Why, for the audit trail (required)")
	cmd.AddCommand(remove)
	unlock := adminCommand(&cobra.Command{
		Use:   "unlock <member> --reason <text> | unlock --ip <address> --reason <text>",
		Short: "Lifts a member's or a client address's lockout at once",
		Long: `
Lifts the lockout of a member (by ID) or of a client address (--ip; IPv6 by
its /64) at once and clears its count of wrong codes, so the member has every
try again. --reason is required and goes to the audit trail.
`,
		Args:   cobra.MaximumNArgs(1),
		Hidden: hidden,
	}, cmdUnlock)
	unlock.Flags().String("reason", "", "Why, for the audit trail (required)")
	unlock.Flags().String("ip", "", "Unlock this client address instead of a member")
	cmd.AddCommand(unlock)
}

func cmdMember(fl caddycmd.Flags, name, done string) (int, error) {
	req := MemberRequest{Member: fl.Arg(0), Reason: fl.String("reason")}
	// A reset under reset_approval answers with the pending request.
	var res struct {
		challenge.MemberResult
		PendingReset
	}
	if code, err := callAdmin(fl, http.MethodPost, "/two-factor/members/"+name, req, &res); err != nil || fl.Bool("json") {
		return code, err
	}
	if res.Pending {
		printPendingReset(res.PendingReset)
		return exitOK, nil
	}
	if strings.Contains(done, "%d") {
		done = fmt.Sprintf(done, res.Devices)
	}
	fmt.Printf("%s: %s\n", req.Member, done)
	return exitOK, nil
}

func cmdRemovePasskey(fl caddycmd.Flags) (int, error) {
	req := PasskeyRequest{Member: fl.Arg(0), Credential: fl.Arg(1), Reason: fl.String("reason")}
	var res challenge.MemberResult
	if code, err := callAdmin(fl, http.MethodPost, "/two-factor/members/remove-passkey", req, &res); err != nil || fl.Bool("json") {
		return code, err
	}
	fmt.Printf("%s: %q removed; every session and remembered device ended.\n", req.Member, res.Passkey)
	if slices.Contains(res.Methods, challenge.MethodWebAuthn) && len(res.Methods) == 1 {
		fmt.Printf("%s: that was their last passkey or security key.\n", req.Member)
	}
	return exitOK, nil
}

// maxAnswer bounds an answer read from the admin API.
const maxAnswer = 64 << 20

// callAdmin sends body (nil: none) to the admin endpoint and decodes the
// answer into out. With --json it prints the answer, or the error as
// {"error": ...}; the caller prints for people only without it.
func callAdmin(fl caddycmd.Flags, method, uri string, body, out any) (int, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return failed(fl, exitFailed, err)
		}
		rd = bytes.NewReader(b)
	}
	return callAdminWith(fl, method, uri, rd, out)
}

// callAdminWith is callAdmin with the body as it is sent.
func callAdminWith(fl caddycmd.Flags, method, uri string, body io.Reader, out any) (int, error) {
	resp, code, err := adminRequest(fl, method, uri, body)
	if err != nil {
		return failed(fl, code, err)
	}
	defer resp.Body.Close()
	// A reconciliation of 100,000 IDs answers with all of them.
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	if err != nil {
		return failed(fl, exitFailed, fmt.Errorf("reading the answer: %v", err))
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return failed(fl, exitFailed, fmt.Errorf("the answer is not what this command expects (is the instance the same version?): %v", err))
	}
	if fl.Bool("json") {
		os.Stdout.Write(raw)
	}
	return exitOK, nil
}

// adminRequest sends body (nil: none) to the admin endpoint the flags
// name. An error comes with its exit code.
func adminRequest(fl caddycmd.Flags, method, uri string, body io.Reader) (*http.Response, int, error) {
	addr, err := caddycmd.DetermineAdminAPIAddress(fl.String("address"), nil, fl.String("config"), fl.String("adapter"))
	if err != nil {
		return nil, exitFailed, fmt.Errorf("finding the admin endpoint: %v", err)
	}
	resp, err := caddycmd.AdminAPIRequest(addr, method, uri, nil, body)
	if err != nil {
		code, err := apiFailure(err)
		return nil, code, err
	}
	return resp, exitOK, nil
}

// failed returns code and err, printing err as {"error": ...} with
// --json.
func failed(fl caddycmd.Flags, code int, err error) (int, error) {
	if fl.Bool("json") {
		_ = json.NewEncoder(os.Stdout).Encode(map[string]string{"error": err.Error()})
	}
	return code, err
}

// apiFailure turns AdminAPIRequest's error, which carries the status and
// the API's JSON error, into an exit code and the API's message.
func apiFailure(err error) (int, error) {
	_, rest, ok := strings.Cut(err.Error(), "caddy responded with error: HTTP ")
	if !ok {
		return exitFailed, err
	}
	status, body, _ := strings.Cut(rest, ": ")
	var apiErr caddy.APIError
	if json.Unmarshal([]byte(body), &apiErr) != nil || apiErr.Message == "" {
		return exitFailed, err
	}
	code := exitFailed
	if n, _ := strconv.Atoi(status); n == http.StatusBadRequest {
		code = exitInvalid
	}
	return code, errors.New(apiErr.Message)
}
