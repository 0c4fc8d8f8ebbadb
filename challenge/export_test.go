package challenge

import (
	"bytes"
	"encoding/base32"
	"encoding/base64"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/caddy-twofactor/twofactor/keyring"
)

// exported is a store with members of every kind, and its backup.
type exported struct {
	src      *fixture
	secret   string   // alice's authenticator app
	recovery []string // alice's recovery codes
	device   [16]byte // alice's remembered device
	backup   []byte
}

func exportFixture(t *testing.T) *exported {
	t.Helper()
	f := newFixture(t, Config{})
	if _, err := f.e.CheckKey(ctx, ""); err != nil {
		t.Fatal(err)
	}
	x := &exported{src: f, device: [16]byte{7, 7}}
	x.secret = f.enrol("alice")
	a := Actor{User: "alice", IP: "192.0.2.1", UserAgent: "phone"}
	var err error
	if x.recovery, err = f.e.GenerateRecoveryCodes(ctx, a); err != nil {
		t.Fatal(err)
	}
	if _, err := f.e.updateUser(ctx, "alice", func(u *User) error {
		u.Email = &CodeMethod{Destination: f.e.dests.Seal(nil, []byte("alice@club.example"), destAAD(MethodEmail, u.ID)), Added: f.clk.Now()}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.e.RememberDevice(ctx, a, x.device, 30*24*time.Hour, MethodTOTP); err != nil {
		t.Fatal(err)
	}
	// A device remembered for an hour has expired by the import.
	if _, err := f.e.RememberDevice(ctx, a, [16]byte{8}, time.Hour, MethodTOTP); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"alice", "bob"} {
		if err := f.e.RecordSeen(ctx, id, "", f.clk.Now()); err != nil {
			t.Fatal(err)
		}
	}
	var buf bytes.Buffer
	res, err := f.e.Export(ctx, &buf, "admin endpoint", "moving to Redis")
	if err != nil {
		t.Fatal(err)
	}
	if want := (BackupCounts{Users: 1, Devices: 2, Activity: 1, Seen: 2}); res.BackupCounts != want || res.Unreadable != 0 {
		t.Fatalf("export counts %+v, want %+v", res, want)
	}
	if f.count("admin_export", "actor", "admin endpoint") != 1 || f.count("admin_export", "admin_reason", "moving to Redis") != 1 {
		t.Fatalf("no admin_export audit entry with actor and reason: %v", f.audit.All())
	}
	x.backup = buf.Bytes()
	return x
}

// target is an empty store a gateway with keys has accepted, its clock at
// the source's plus an hour and a half.
func (x *exported) target(t *testing.T, keys ...[]byte) *fixture {
	t.Helper()
	f := newFixture(t, Config{})
	if len(keys) > 0 {
		f.e = f.engine(Config{}, keys...)
	}
	f.clk.Set(x.src.clk.Now().Add(90 * time.Minute))
	if _, err := f.e.CheckKey(ctx, ""); err != nil {
		t.Fatal(err)
	}
	return f
}

// The backup holds every record sealed as stored: neither the
// authenticator's secret nor the email address is in it, in any form.
func TestExportHoldsNoPlaintext(t *testing.T) {
	x := exportFixture(t)
	raw, err := base32.StdEncoding.WithPadding(base32.NoPadding).DecodeString(x.secret)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(x.backup)), "\n")
	var h BackupHeader
	if err := json.Unmarshal([]byte(lines[0]), &h); err != nil || h.Format != BackupFormat || h.Version != 1 ||
		len(h.Keys) != 1 || h.Store == "" || !h.Time.Equal(x.src.clk.Now()) {
		t.Fatalf("header %s: %+v %v", lines[0], h, err)
	}
	if id := keyring.KeyID(x.src.e.secret.Seal(nil, nil, nil)); h.Keys[0] != id {
		t.Fatalf("header keys %v, want [%s]", h.Keys, id)
	}
	if !strings.HasPrefix(lines[len(lines)-1], `{"kind":"end","records":6,`) {
		t.Fatalf("last line %s", lines[len(lines)-1])
	}
	everything := string(x.backup)
	for _, l := range lines[1:] {
		var bl backupLine
		if err := json.Unmarshal([]byte(l), &bl); err != nil {
			t.Fatal(err)
		}
		v, _ := base64.StdEncoding.DecodeString(bl.Value)
		everything += string(v)
	}
	for _, plain := range []string{x.secret, string(raw), "alice@club.example", strings.ReplaceAll(x.recovery[0], "-", "")} {
		if strings.Contains(everything, plain) {
			t.Fatalf("the backup holds %q in plaintext", plain)
		}
	}
}

// Export from one embedded store, import into another with the same key:
// the member passes with the same authenticator, a recovery code and the
// remembered device; the lists show them; expired records stay behind.
func TestExportImportRoundTrip(t *testing.T) {
	x := exportFixture(t)
	dst := x.target(t)
	// As at a start on the empty store: the member list's indexes built,
	// so only the import can list the members it brings.
	if err := dst.e.BuildListing(ctx); err != nil {
		t.Fatal(err)
	}
	res, err := dst.e.Import(ctx, bytes.NewReader(x.backup), ImportOptions{Actor: "admin endpoint", Reason: "moving"})
	if err != nil {
		t.Fatal(err)
	}
	if want := (BackupCounts{Users: 1, Devices: 1, Activity: 1, Seen: 2}); res.Written != want || res.Expired != 1 ||
		res.Kept != (BackupCounts{}) || res.From == "" || res.From != *x.src.e.storeID.Load() {
		t.Fatalf("import %+v, want %+v written and the hour-long device expired", res, want)
	}
	if dst.count("admin_import", "actor", "admin endpoint") != 1 || dst.count("admin_import", "admin_reason", "moving") != 1 {
		t.Fatalf("no admin_import audit entry: %v", dst.audit.All())
	}
	// The store keeps its own ID: the import did not bring the source's.
	if err := dst.e.Intact(ctx); err != nil {
		t.Fatal(err)
	}
	if id, err := dst.e.CheckKey(ctx, ""); err != nil || id == res.From {
		t.Fatalf("store ID after import %q (%v), the source's was %q", id, err, res.From)
	}

	a := Actor{User: "alice", IP: "192.0.2.9"}
	if _, _, err := dst.e.UseDevice(ctx, a, x.device, 400*24*time.Hour); err != nil {
		t.Fatalf("remembered device after import: %v", err)
	}
	if _, _, err := dst.e.UseDevice(ctx, a, [16]byte{8}, 400*24*time.Hour); !errors.Is(err, ErrDeviceUnknown) {
		t.Fatalf("expired device after import: %v", err)
	}
	if _, err := dst.e.VerifyTOTP(ctx, a, dst.code(x.secret, 0)); err != nil {
		t.Fatalf("same authenticator after import: %v", err)
	}
	u, err := dst.e.UseRecoveryCode(ctx, a, x.recovery[3])
	if err != nil || u.Recovery.Left != RecoveryCodeCount-1 {
		t.Fatalf("recovery code after import: %v", err)
	}
	// Both indexes list the members imported, as the member list reads them.
	if got := dump(t, dst); !strings.HasSuffix(got, "\nusers:alice") || !strings.Contains(got, "\nseen:alice,bob\n") {
		t.Fatalf("indexes after import:\n%s", got)
	}
	enrolled := true
	if p, err := dst.e.Members(ctx, "", 10, MembersFilter{Enrolled: &enrolled, Method: MethodTOTP}); err != nil ||
		len(p.Members) != 1 || p.Members[0].ID != "alice" {
		t.Fatalf("enrolled with the app after import: %+v %v", p, err)
	}
	if c, err := dst.e.CountMembers(ctx); err != nil || c.Members != 2 || c.Enrolled != 1 || c.ByMethod[MethodTOTP] != 1 {
		t.Fatalf("counts after import: %+v %v", c, err)
	}
	if s := seenRecord(t, dst, "bob"); !s.First.Equal(x.src.clk.Now().UTC().Truncate(time.Second)) {
		t.Fatalf("bob's seen record after import: %+v", s)
	}
	if events, err := dst.e.RecentActivity(ctx, "alice"); err != nil || len(events) < 2 {
		t.Fatalf("recent activity after import: %+v %v", events, err)
	}
	// The email destination still opens: the same key, bound to alice.
	if _, err := dst.e.rekey(ctx); err != nil {
		t.Fatal(err)
	}
	if s := dst.e.StaleRecords(); s.Count != 0 || s.Missing != 0 {
		t.Fatalf("stale records after import: %+v", s)
	}
}

// A store that holds members is refused without merge, naming merge, and
// nothing is written. With merge, the store's record of a member is kept
// with its devices and activity; the backup's other members are added and
// seen records merged; run again, nothing changes.
func TestImportIntoStoreWithMembers(t *testing.T) {
	x := exportFixture(t)
	dst := x.target(t)
	b := Actor{User: "bob", IP: "192.0.2.2"}
	carolSecret := dst.enrol("carol")
	aliceThere := dst.enrol("alice")
	if err := dst.e.RecordSeen(ctx, "bob", "", dst.clk.Now()); err != nil {
		t.Fatal(err)
	}
	before := dump(t, dst)
	_, err := dst.e.Import(ctx, bytes.NewReader(x.backup), ImportOptions{Actor: "admin endpoint"})
	if !isInput(err, "merge") {
		t.Fatalf("import into a store with members: %v, want an error naming merge", err)
	}
	if after := dump(t, dst); after != before {
		t.Fatalf("a refused import changed the store:\n%s\n%s", before, after)
	}

	res, err := dst.e.Import(ctx, bytes.NewReader(x.backup), ImportOptions{Merge: true, Actor: "admin endpoint"})
	if err != nil {
		t.Fatal(err)
	}
	if res.Written != (BackupCounts{Seen: 2}) || res.Kept != (BackupCounts{Users: 1, Devices: 1, Activity: 1}) {
		t.Fatalf("merge %+v: want alice's record, device and activity kept, seen merged", res)
	}
	a := Actor{User: "alice", IP: "192.0.2.9"}
	dst.clk.Advance(30 * time.Second)
	if _, err := dst.e.VerifyTOTP(ctx, a, dst.code(x.secret, 0)); !errors.Is(err, ErrCodeInvalid) {
		t.Fatalf("the backup's authenticator after merge: %v, want the store's record kept", err)
	}
	if _, err := dst.e.VerifyTOTP(ctx, a, dst.code(aliceThere, 0)); err != nil {
		t.Fatalf("the store's authenticator after merge: %v", err)
	}
	if _, err := dst.e.VerifyTOTP(ctx, Actor{User: "carol"}, dst.code(carolSecret, 0)); err != nil {
		t.Fatalf("carol after merge: %v", err)
	}
	if _, _, err := dst.e.UseDevice(ctx, a, x.device, 400*24*time.Hour); !errors.Is(err, ErrDeviceUnknown) {
		t.Fatalf("the backup's device of a kept record: %v", err)
	}
	s := seenRecord(t, dst, b.User)
	if !s.First.Equal(x.src.clk.Now().UTC().Truncate(time.Second)) || !s.Last.Equal(dst.clk.Now().Add(-30*time.Second).UTC().Truncate(time.Second)) {
		t.Fatalf("bob's seen record merged: %+v", s)
	}
	before = dump(t, dst)
	res, err = dst.e.Import(ctx, bytes.NewReader(x.backup), ImportOptions{Merge: true})
	if err != nil || res.Written != (BackupCounts{}) {
		t.Fatalf("merge again: %+v %v, want nothing written", res, err)
	}
	if after := dump(t, dst); after != before {
		t.Fatalf("merging again changed the store")
	}
}

// Every bad backup is refused with the line and the field, and nothing is
// written.
func TestImportRefusesBadBackups(t *testing.T) {
	x := exportFixture(t)
	lines := strings.Split(strings.TrimSuffix(string(x.backup), "\n"), "\n")
	join := func(ls []string) string { return strings.Join(ls, "\n") + "\n" }
	with := func(i int, change func(string) string) string {
		ls := append([]string(nil), lines...)
		ls[i] = change(ls[i])
		return join(ls)
	}
	userLine := lines[1]
	var user backupLine
	if err := json.Unmarshal([]byte(userLine), &user); err != nil || user.Kind != KindUser {
		t.Fatalf("line 2 is not alice's record: %s", userLine)
	}
	raw, _ := base64.StdEncoding.DecodeString(user.Value)
	var u User
	if err := json.Unmarshal(raw, &u); err != nil {
		t.Fatal(err)
	}
	u.TOTP.Secret[len(u.TOTP.Secret)-1] ^= 1
	tampered, _ := json.Marshal(u)
	u.TOTP.Secret[len(u.TOTP.Secret)-1] ^= 1
	u.ID = "mallory"
	renamed, _ := json.Marshal(u)
	value := func(v []byte) func(string) string {
		return func(string) string {
			l := user
			l.Value = base64.StdEncoding.EncodeToString(v)
			b, _ := json.Marshal(l)
			return string(b)
		}
	}
	// Alice's sealed values in a record of mallory's own: bound to alice.
	mallory := user
	mallory.Member = "mallory"
	mallory.Value = base64.StdEncoding.EncodeToString(renamed)
	malloryLine, _ := json.Marshal(mallory)

	for _, c := range []struct {
		name, backup string
		line         int
		field, says  string
	}{
		{"empty", "", 1, "", "empty"},
		{"not JSON", "PK\x03\x04 a zip file\n", 1, "", "not a backup header"},
		{"wrong format", with(0, func(s string) string { return strings.Replace(s, BackupFormat, "other-backup", 1) }), 1, "format", `"other-backup"`},
		{"newer version", with(0, func(s string) string { return strings.Replace(s, `"version":1`, `"version":2`, 1) }), 1, "version", "reads version 1"},
		{"unknown header field", with(0, func(s string) string { return strings.Replace(s, `{`, `{"compressed":true,`, 1) }), 1, "", `unknown field "compressed"`},
		{"truncated line", join(lines[:len(lines)-1])[:len(join(lines[:len(lines)-1]))-20], len(lines) - 1, "", "not a backup line"},
		{"no end line", join(lines[:len(lines)-1]), len(lines), "", "without its end line"},
		{"line after the end", join(append(append([]string(nil), lines...), userLine)), len(lines) + 1, "", "after the end line"},
		{"bad base64", with(1, func(s string) string { return strings.Replace(s, `"value":"`, `"value":"*`, 1) }), 2, "value", "not base64"},
		{"unknown kind", with(1, func(s string) string { return strings.Replace(s, `"kind":"user"`, `"kind":"codes"`, 1) }), 2, "kind", `"codes": unknown`},
		{"unknown field", with(1, func(s string) string { return strings.Replace(s, `{`, `{"ttl":5,`, 1) }), 2, "", `unknown field "ttl"`},
		{"member ID with a control character", with(1, func(s string) string { return strings.Replace(s, `"member":"alice"`, `"member":"ali\u0000ce"`, 1) }), 2, "member", "not a member ID the gateway takes"},
		{"member ID too long", with(1, func(s string) string {
			return strings.Replace(s, `"member":"alice"`, `"member":"`+strings.Repeat("a", 257)+`"`, 1)
		}), 2, "member", "at most 256 bytes"},
		{"no member", with(1, func(s string) string { return strings.Replace(s, `"member":"alice"`, `"member":""`, 1) }), 2, "member", "required"},
		{"sealed value altered", with(1, value(tampered)), 2, "value", "its totp secret does not open"},
		{"record of another member", with(1, value(renamed)), 2, "value", `names "mallory"`},
		{"sealed for another member", join(append([]string{lines[0], string(malloryLine)}, lines[1:]...)), 2, "value", "its totp secret does not open"},
		{"key not in the header", with(0, func(s string) string {
			var h BackupHeader
			_ = json.Unmarshal([]byte(s), &h)
			h.Keys = []string{}
			b, _ := json.Marshal(h)
			return string(b)
		}), 2, "value", "which the header does not list"},
		{"twice", join(append([]string{lines[0], userLine}, lines[1:]...)), 3, "member", `"alice" has a second user record`},
		{"device before its member", join(append([]string{lines[0], lines[2], lines[1]}, lines[3:]...)), 2, "member", "comes before the member's user record"},
		{"a record removed", join(append([]string{lines[0]}, lines[2:]...)), 2, "member", "comes before"},
		{"end counts wrong", with(len(lines)-1, func(s string) string { return strings.Replace(s, `"records":6`, `"records":7`, 1) }), len(lines), "records", "records are missing or added"},
	} {
		t.Run(c.name, func(t *testing.T) {
			dst := x.target(t)
			before := dump(t, dst)
			_, err := dst.e.Import(ctx, strings.NewReader(c.backup), ImportOptions{Actor: "admin endpoint"})
			var be *BackupError
			if !errors.As(err, &be) || be.Line != c.line || be.Field != c.field || !strings.Contains(be.Problem, c.says) {
				t.Fatalf("import: %v\nwant line %d, field %q, saying %q", err, c.line, c.field, c.says)
			}
			if after := dump(t, dst); after != before {
				t.Fatalf("a refused import wrote to the store:\n%s", after)
			}
			if dst.count("admin_import", "result", "error") != 1 {
				t.Fatalf("no admin_import error in the audit trail")
			}
		})
	}

	// A gateway without the key the records are sealed under refuses the
	// backup by its header, saying which key to add.
	dst := x.target(t, otherKey)
	_, err := dst.e.Import(ctx, bytes.NewReader(x.backup), ImportOptions{})
	var be *BackupError
	if !errors.As(err, &be) || be.Line != 1 || be.Field != "keys" || !strings.Contains(be.Problem, "add that key to keys") {
		t.Fatalf("import without the key: %v", err)
	}
	// With it, after the current key, the import passes.
	dst = x.target(t, otherKey, testKey)
	if _, err := dst.e.Import(ctx, bytes.NewReader(x.backup), ImportOptions{}); err != nil {
		t.Fatalf("import with the key listed second: %v", err)
	}
}

func seenRecord(t *testing.T, f *fixture, id string) Seen {
	t.Helper()
	var s Seen
	raw, err := f.st.Get(ctx, seenKey(id))
	if err != nil || json.Unmarshal(raw, &s) != nil {
		t.Fatalf("seen record of %s: %s %v", id, raw, err)
	}
	return s
}

// dump lists every live key of the fixture's store with its value.
func dump(t *testing.T, f *fixture) string {
	t.Helper()
	var out []string
	err := f.st.ScanKeys(ctx, "", func(keys []string) error {
		for _, k := range keys {
			v, err := f.st.Get(ctx, k)
			if err != nil {
				return err
			}
			out = append(out, k+"="+string(v))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, index := range []string{usersIndex, seenIndex} {
		ids, err := f.st.IndexPage(ctx, index, "", 1000)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, index+":"+strings.Join(ids, ","))
	}
	slices.Sort(out)
	return strings.Join(out, "\n")
}

// A store that lost its data (its key check value is gone) is not filled
// from a backup behind the gateway's back: the import is refused and
// writes nothing, so the loss stays detected until the operator accepts
// the empty store.
func TestImportRefusedIntoLostStore(t *testing.T) {
	x := exportFixture(t)
	dst := x.target(t)
	if err := dst.st.Delete(ctx, keyCheckKey); err != nil {
		t.Fatal(err)
	}
	_, err := dst.e.Import(ctx, bytes.NewReader(x.backup), ImportOptions{Merge: true})
	if !errors.Is(err, ErrStoreLost) {
		t.Fatalf("import into a store that lost its data: %v, want ErrStoreLost", err)
	}
	if got := dump(t, dst); got != "seen:\nusers:" {
		t.Fatalf("the refused import wrote:\n%s", got)
	}
	if err := dst.e.Intact(ctx); !errors.Is(err, ErrStoreLost) {
		t.Fatalf("after the refused import: %v, want the loss still detected", err)
	}
}

// Records the gateway refuses whenever it reads them are left out of a
// backup and counted, so one damaged record does not make the whole
// backup refused on import.
func TestExportLeavesOutUnreadableRecords(t *testing.T) {
	f := newFixture(t, Config{})
	if _, err := f.e.CheckKey(ctx, ""); err != nil {
		t.Fatal(err)
	}
	f.enrol("alice")
	damaged, _ := json.Marshal(User{ID: "dave", TOTP: &TOTPMethod{Secret: []byte("not sealed")}})
	misnamed, _ := json.Marshal(User{ID: "eve"})
	for id, raw := range map[string][]byte{"dave": damaged, "mallory": misnamed} {
		if err := f.st.Set(ctx, userKey(id), raw, 0); err != nil {
			t.Fatal(err)
		}
	}
	var buf bytes.Buffer
	res, err := f.e.Export(ctx, &buf, "admin endpoint", "")
	if err != nil || res.Users != 1 || res.Unreadable != 2 {
		t.Fatalf("export: %+v %v, want alice and 2 unreadable left out", res, err)
	}
	dst := newFixture(t, Config{})
	dst.clk.Set(f.clk.Now())
	if _, err := dst.e.CheckKey(ctx, ""); err != nil {
		t.Fatal(err)
	}
	if r, err := dst.e.Import(ctx, bytes.NewReader(buf.Bytes()), ImportOptions{}); err != nil || r.Written.Users != 1 {
		t.Fatalf("import: %+v %v", r, err)
	}
}

// From the embedded store into Redis shared by two instances: instance B
// held alice as never enrolled; the import through A reaches B's
// per-request view by the change notice, the clock standing still, and
// alice passes on B with her authenticator and remembered device.
func TestImportIntoRedisReachesEveryInstance(t *testing.T) {
	x := exportFixture(t)
	a, b, clk := twoInstances(t, Config{})
	clk.Set(x.src.clk.Now().Add(90 * time.Minute))
	id, err := a.CheckKey(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.CheckKey(ctx, id); err != nil {
		t.Fatal(err)
	}
	followAll(t, a, b)
	if u, err := b.State(ctx, "alice"); err != nil || u.Enrolled() {
		t.Fatalf("B before the import: %+v %v", u, err)
	}
	res, err := a.Import(ctx, bytes.NewReader(x.backup), ImportOptions{Actor: "admin endpoint"})
	if err != nil || res.Written.Users != 1 || res.Written.Devices != 1 {
		t.Fatalf("import into Redis: %+v %v", res, err)
	}
	start := time.Now()
	for {
		u, err := b.State(ctx, "alice")
		if err != nil {
			t.Fatal(err)
		}
		if u.Enrolled() {
			break
		}
		if time.Since(start) > 5*time.Second {
			t.Fatal("B still holds alice as never enrolled 5s after the import")
		}
		time.Sleep(time.Millisecond)
	}
	alice := Actor{User: "alice", IP: "192.0.2.9"}
	if _, _, err := b.UseDevice(ctx, alice, x.device, 400*24*time.Hour); err != nil {
		t.Fatalf("remembered device on B: %v", err)
	}
	f := &fixture{t: t, clk: clk}
	if _, err := b.VerifyTOTP(ctx, alice, f.code(x.secret, 0)); err != nil {
		t.Fatalf("authenticator on B: %v", err)
	}
}
