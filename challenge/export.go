package challenge

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"go.uber.org/zap"

	"github.com/caddy-twofactor/twofactor/keyring"
	"github.com/caddy-twofactor/twofactor/store"
)

// Backups: every durable record a member needs, as a stream of JSON lines
// that another store, of the same kind or another, can be filled from.
// Values are copied as stored: what the store holds sealed stays sealed,
// and nothing is opened on the way out, so a backup holds no plaintext
// secret. It is still sensitive: whoever has it and the keys has every
// member's authenticator.
//
// A backup is a header line, one line per record, and an end line that
// counts them, so a file cut short is refused instead of restored in
// part:
//
//	{"format":"caddy-twofactor-backup","version":1,"time":"…","store":"<ID>","keys":["1a2b3c4d"]}
//	{"kind":"user","member":"alice","value":"<base64>"}
//	{"kind":"device","member":"alice","device":"<hex>","value":"<base64>","expires":"…"}
//	{"kind":"activity","member":"alice","value":"<base64>","expires":"…"}
//	{"kind":"seen","member":"alice","value":"<base64>"}
//	{"kind":"end","records":4,"counts":{"users":1,"devices":1,"activity":1,"seen":1}}
//
// Left out, as ephemeral: codes in flight and pending enrolments, failure
// counters, lock records, sending limits and cooldowns, and the marks of
// events audited once (AuditOnce). A member locked out when the backup
// is taken is not locked after a restore.
// The store's key check value is left out too: it names the store, not
// its members, and each store keeps its own (see Import).

// BackupFormat and BackupVersion name the backup format on its header
// line.
const (
	BackupFormat  = "caddy-twofactor-backup"
	BackupVersion = 1
)

// Kinds of record in a backup.
const (
	KindUser     = "user"     // the member's factors, sealed as stored
	KindDevice   = "device"   // a remembered device
	KindActivity = "activity" // the member's recent security events
	KindSeen     = "seen"     // when the member was first and last seen
	kindEnd      = "end"
)

// maxBackupLine bounds one line of a backup: a member record is a few
// kilobytes.
const maxBackupLine = 4 << 20

// BackupHeader is the first line of a backup.
type BackupHeader struct {
	Format  string    `json:"format"`
	Version int       `json:"version"`
	Time    time.Time `json:"time"`
	// Store is the ID of the store exported (its key check value's).
	Store string `json:"store,omitempty"`
	// Keys lists the IDs (keyring.KeyID) of the keys the records are
	// sealed under: the importing gateway needs every one of them.
	Keys []string `json:"keys"`
}

// backupLine is a record line or the end line.
type backupLine struct {
	Kind   string `json:"kind"`
	Member string `json:"member,omitempty"`
	Device string `json:"device,omitempty"`
	// Value is the record as stored, base64 (standard, padded).
	Value   string     `json:"value,omitempty"`
	Expires *time.Time `json:"expires,omitempty"`
	// Records and Counts are the end line's.
	Records *int          `json:"records,omitempty"`
	Counts  *BackupCounts `json:"counts,omitempty"`
}

// BackupCounts counts records by kind.
type BackupCounts struct {
	Users    int `json:"users"`
	Devices  int `json:"devices"`
	Activity int `json:"activity"`
	Seen     int `json:"seen"`
}

func (c BackupCounts) total() int { return c.Users + c.Devices + c.Activity + c.Seen }

func (c *BackupCounts) add(kind string) {
	switch kind {
	case KindUser:
		c.Users++
	case KindDevice:
		c.Devices++
	case KindActivity:
		c.Activity++
	case KindSeen:
		c.Seen++
	}
}

// ExportResult counts what an export wrote.
type ExportResult struct {
	BackupCounts
	// Unreadable counts member records left out because they cannot be
	// trusted (not JSON, naming another member, or holding a damaged
	// sealed value): the gateway refuses them whenever they are read.
	Unreadable int `json:"unreadable"`
}

// Export writes a backup of the store to w. It lists first, in the users
// index, any member record written before the index existed, then reads
// every record twice: once to name the keys they are sealed under in the
// header, once to copy them. Records written meanwhile may or may not be
// in it: stop the gateway's traffic during an export that must be
// complete. An error after the header leaves the backup without its end
// line, which import refuses.
func (e *Engine) Export(ctx context.Context, w io.Writer, actor, why string) (ExportResult, error) {
	res, err := e.export(ctx, w)
	fields := []zap.Field{zap.String("actor", actor), zap.String("admin_reason", strings.TrimSpace(why)),
		zap.Int("users", res.Users), zap.Int("devices", res.Devices), zap.Int("activity", res.Activity),
		zap.Int("seen", res.Seen), zap.Int("unreadable", res.Unreadable)}
	if err != nil {
		e.Audit(Actor{}, "admin_export", "error", append(fields, zap.String("reason", reason(err)))...)
		return res, err
	}
	e.Audit(Actor{}, "admin_export", "success", fields...)
	return res, nil
}

func (e *Engine) export(ctx context.Context, w io.Writer) (ExportResult, error) {
	var res ExportResult
	if err := e.IndexUsers(ctx); err != nil {
		return res, err
	}
	keys := map[string]bool{}
	err := e.eachIndexed(ctx, usersIndex, func(id string) error {
		_, u, err := e.rawUser(ctx, id)
		if u != nil {
			for _, f := range e.sealedFields(u) {
				if k := keyring.KeyID(*f.value); k != "" { // "": left out below
					keys[k] = true
				}
			}
		}
		return err
	})
	if err != nil {
		return res, err
	}
	h := BackupHeader{Format: BackupFormat, Version: BackupVersion, Time: e.now().UTC(), Keys: []string{}}
	if id := e.storeID.Load(); id != nil {
		h.Store = *id
	}
	for k := range keys {
		h.Keys = append(h.Keys, k)
	}
	slices.Sort(h.Keys)

	bw := bufio.NewWriter(w)
	enc := json.NewEncoder(bw)
	if err := enc.Encode(h); err != nil {
		return res, err
	}
	put := func(kind, member, device string, raw []byte, expires time.Time) error {
		l := backupLine{Kind: kind, Member: member, Device: device, Value: base64.StdEncoding.EncodeToString(raw)}
		if !expires.IsZero() {
			l.Expires = &expires
		}
		res.add(kind)
		return enc.Encode(l)
	}
	now := e.now()
	err = e.eachIndexed(ctx, usersIndex, func(id string) error {
		raw, u, err := e.rawUser(ctx, id)
		if err != nil || raw == nil {
			return err
		}
		if u == nil || !sealedData(e.sealedFields(u)) {
			res.Unreadable++
			return nil
		}
		for _, f := range e.sealedFields(u) {
			if k := keyring.KeyID(*f.value); !keys[k] {
				return fmt.Errorf("%w: member %q was sealed under key %q after the export began (a rotation?); export again",
					store.ErrUnavailable, id, k)
			}
		}
		if err := put(KindUser, id, "", raw, time.Time{}); err != nil {
			return err
		}
		for _, hexID := range slices.Sorted(mapKeys(u.Devices)) {
			raw, d, err := e.rawDevice(ctx, id, hexID)
			if err != nil {
				return err
			}
			if d == nil || d.Epoch != u.Epoch || !now.Before(d.Expires) {
				continue // gone, expired, or from before a reset
			}
			if err := put(KindDevice, id, hexID, raw, d.Expires.UTC()); err != nil {
				return err
			}
		}
		return e.exportActivity(ctx, id, now, put)
	})
	if err != nil {
		return res, err
	}
	err = e.eachIndexed(ctx, seenIndex, func(id string) error {
		raw, err := e.store.Get(ctx, seenKey(id))
		if errors.Is(err, store.ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		if err := put(KindSeen, id, "", raw, time.Time{}); err != nil {
			return err
		}
		// The activity of a member with a user record went with it.
		if _, err := e.store.Get(ctx, userKey(id)); !errors.Is(err, store.ErrNotFound) {
			return err
		}
		return e.exportActivity(ctx, id, now, put)
	})
	if err != nil {
		return res, err
	}
	total := res.total()
	if err := enc.Encode(backupLine{Kind: kindEnd, Records: &total, Counts: &res.BackupCounts}); err != nil {
		return res, err
	}
	return res, bw.Flush()
}

// exportActivity puts the member's recent activity, if any. Its expiry is
// activityTTL after its newest event, when it was last written.
func (e *Engine) exportActivity(ctx context.Context, id string, now time.Time, put func(kind, member, device string, raw []byte, expires time.Time) error) error {
	raw, err := e.store.Get(ctx, activityKey(id))
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	var list []Activity
	if json.Unmarshal(raw, &list) != nil || len(list) == 0 {
		return nil
	}
	expires := list[0].Time.Add(activityTTL).UTC()
	if !now.Before(expires) {
		return nil
	}
	return put(KindActivity, id, "", raw, expires)
}

// sealedData reports whether every sealed field holds sealed data (under
// whichever key): a record with one that does not is refused whenever
// read, and would make the whole backup refused on import.
func sealedData(fields []sealedField) bool {
	for _, f := range fields {
		if keyring.KeyID(*f.value) == "" {
			return false
		}
	}
	return true
}

// rawUser reads a member record as stored and decoded: nil raw when there
// is none, nil u when it cannot be trusted.
func (e *Engine) rawUser(ctx context.Context, id string) ([]byte, *User, error) {
	raw, err := e.store.Get(ctx, userKey(id))
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, err
	}
	u, err := decodeUser(raw, id)
	if err != nil {
		return raw, nil, nil
	}
	return raw, u, nil
}

// rawDevice reads a remembered device record as stored and decoded: nil
// when there is none or it is not one.
func (e *Engine) rawDevice(ctx context.Context, member, hexID string) ([]byte, *Device, error) {
	id, ok := deviceID(hexID)
	if !ok {
		return nil, nil, nil
	}
	raw, err := e.store.Get(ctx, deviceKey(member, id))
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, err
	}
	var d Device
	if json.Unmarshal(raw, &d) != nil || d.ID != hexID {
		return nil, nil, nil
	}
	return raw, &d, nil
}

func deviceID(hexID string) ([16]byte, bool) {
	var id [16]byte
	b, err := hex.DecodeString(hexID)
	if err != nil || len(b) != len(id) || hex.EncodeToString(b) != hexID {
		return id, false
	}
	copy(id[:], b)
	return id, true
}

func mapKeys(m map[string]int64) func(yield func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// BackupError reports what is wrong with a backup, by line (the header is
// line 1) and field.
type BackupError struct {
	Line    int
	Field   string
	Problem string
}

func (e *BackupError) Error() string {
	if e.Field == "" {
		return fmt.Sprintf("backup line %d: %s", e.Line, e.Problem)
	}
	return fmt.Sprintf("backup line %d: %s: %s", e.Line, e.Field, e.Problem)
}

// ImportOptions says how to import a backup.
type ImportOptions struct {
	// Merge allows an import into a store that already holds members:
	// every record the store holds is kept as it is, and only the
	// backup's others are added (see Import).
	Merge bool
	// Actor and Reason are for the audit trail.
	Actor, Reason string
}

// ImportResult counts what an import did.
type ImportResult struct {
	// From is the ID of the store the backup was taken from.
	From string `json:"from_store"`
	// Taken is when the backup was taken.
	Taken time.Time `json:"taken"`
	// Written counts the records written; seen records merged into the
	// store's count there too.
	Written BackupCounts `json:"written"`
	// Kept counts the backup's records left out because the store held
	// the member's record already (with merge): the store's is kept, and
	// with it its devices and activity.
	Kept BackupCounts `json:"kept"`
	// Expired counts records whose expiry passed since the backup was
	// taken, left out.
	Expired int `json:"expired"`
}

// Import restores a backup into the store, read from its start. It reads
// the backup twice:
// first it checks every line (format, version, each record decoded, each
// sealed value opened with the configured keys and bound to its member),
// and writes nothing if one is wrong, naming the line; then it writes.
//
// A record is only ever added, never put in place of one the store holds:
// a member's record in the store is newer than any backup of it, or was
// reset since, and replacing it would bring back factors, recovery codes
// or devices that were removed. So where the store holds a member's
// record, the backup's record, devices and activity for that member are
// left out; seen records are merged (the earlier first sighting, the
// later last). An import into a store that holds members is refused
// unless opts.Merge is set. With the same rule, an import stopped midway
// (the store went away) completes when run again with Merge.
//
// Import never writes the store's key check value. The store keeps its
// own ID, so a store that lost its data stays detected as lost: an import
// needs a store the gateway has accepted (after a loss, the operator
// first accepts the empty store, deliberately, then imports).
func (e *Engine) Import(ctx context.Context, backup io.ReadSeeker, opts ImportOptions) (ImportResult, error) {
	res, err := e.importBackup(ctx, backup, opts)
	fields := []zap.Field{zap.String("actor", opts.Actor), zap.String("admin_reason", strings.TrimSpace(opts.Reason)),
		zap.Bool("merge", opts.Merge), zap.String("from_store", res.From),
		zap.Int("users", res.Written.Users), zap.Int("devices", res.Written.Devices),
		zap.Int("activity", res.Written.Activity), zap.Int("seen", res.Written.Seen),
		zap.Int("kept", res.Kept.total()), zap.Int("expired", res.Expired)}
	if err != nil {
		var be *BackupError
		var in *InputError
		why := reason(err)
		if errors.As(err, &be) || errors.As(err, &in) {
			why = "invalid"
		}
		e.Audit(Actor{}, "admin_import", "error", append(fields, zap.String("reason", why), zap.String("error", err.Error()))...)
		return res, err
	}
	e.Audit(Actor{}, "admin_import", "success", fields...)
	return res, nil
}

func (e *Engine) importBackup(ctx context.Context, backup io.ReadSeeker, opts ImportOptions) (ImportResult, error) {
	var res ImportResult
	if err := e.Intact(ctx); err != nil {
		return res, err
	}
	if !opts.Merge {
		for _, index := range []string{usersIndex, seenIndex} {
			ids, err := e.store.IndexPage(ctx, index, "", 1)
			if err != nil {
				return res, err
			}
			if len(ids) > 0 {
				return res, &InputError{"merge", fmt.Sprintf("the store already holds members (%q, ...): "+
					"import into an empty store, or set merge to keep every record the store holds and add the backup's others", ids[0])}
			}
		}
	}
	h, users, err := e.checkBackup(backup)
	if err != nil {
		return res, err
	}
	res.From, res.Taken = h.Store, h.Time
	if _, err := backup.Seek(0, io.SeekStart); err != nil {
		return res, err
	}
	w := importer{e: e, res: &res, withUser: users, written: map[[16]byte]bool{}}
	err = readBackup(backup, func(n int, l *backupLine, raw []byte) error {
		if n == 1 || l.Kind == kindEnd {
			return nil
		}
		return w.write(ctx, l, raw)
	})
	if ferr := w.flush(ctx); err == nil {
		err = ferr
	}
	return res, err
}

// readBackup calls visit with each line of the backup, numbered from 1,
// decoded (the header is line 1, with l nil) and with its value decoded.
func readBackup(r io.Reader, visit func(n int, l *backupLine, raw []byte) error) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), maxBackupLine)
	n := 0
	for sc.Scan() {
		n++
		if n == 1 {
			if err := visit(n, nil, sc.Bytes()); err != nil {
				return err
			}
			continue
		}
		var l backupLine
		if err := strictJSON(sc.Bytes(), &l); err != nil {
			return &BackupError{Line: n, Problem: err.Error()}
		}
		var raw []byte
		if l.Kind != kindEnd {
			var err error
			if raw, err = base64.StdEncoding.DecodeString(l.Value); err != nil || l.Value == "" {
				return &BackupError{n, "value", "not base64 (standard, padded), or empty"}
			}
		}
		if err := visit(n, &l, raw); err != nil {
			return err
		}
	}
	if errors.Is(sc.Err(), bufio.ErrTooLong) {
		return &BackupError{n + 1, "", fmt.Sprintf("longer than %d bytes", maxBackupLine)}
	}
	if sc.Err() != nil {
		return sc.Err()
	}
	if n == 0 {
		return &BackupError{1, "", "the file is empty: not a backup"}
	}
	return nil
}

// strictJSON decodes one JSON object into v, naming an unknown field.
func strictJSON(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("not a backup line: %v", err)
	}
	if dec.More() {
		return errors.New("not a backup line: more than one JSON value")
	}
	return nil
}

// recordKey names a record of the backup, to find one given twice.
func recordKey(kind, member, device string) [16]byte {
	h := sha256.Sum256([]byte(kind + "\x00" + member + "\x00" + device))
	return [16]byte(h[:16])
}

// checkBackup reads the whole backup and reports the first thing wrong
// with it. It returns the header and the keys (recordKey) of the records.
func (e *Engine) checkBackup(r io.Reader) (BackupHeader, map[[16]byte]bool, error) {
	var h BackupHeader
	keys := map[string]bool{}
	seen := map[[16]byte]bool{}
	var counts BackupCounts
	ended := 0
	err := readBackup(r, func(n int, l *backupLine, raw []byte) error {
		if n == 1 {
			return e.checkHeader(raw, &h, keys)
		}
		if ended > 0 {
			return &BackupError{n, "", fmt.Sprintf("after the end line (line %d)", ended)}
		}
		if l.Kind == kindEnd {
			ended = n
			switch {
			case l.Records == nil || l.Counts == nil:
				return &BackupError{n, "records", "the end line needs records and counts"}
			case *l.Records != counts.total() || *l.Counts != counts:
				return &BackupError{n, "records", fmt.Sprintf("the end line counts %d records (%+v), the backup has %d (%+v): records are missing or added",
					*l.Records, *l.Counts, counts.total(), counts)}
			}
			return nil
		}
		if err := e.checkRecord(n, l, raw, keys, seen); err != nil {
			return err
		}
		counts.add(l.Kind)
		return nil
	})
	if err != nil {
		return h, nil, err
	}
	if ended == 0 {
		return h, nil, &BackupError{1 + counts.total() + 1, "", "the backup ends without its end line: it is incomplete (cut short, or the export failed)"}
	}
	return h, seen, nil
}

func (e *Engine) checkHeader(raw []byte, h *BackupHeader, keys map[string]bool) error {
	if err := strictJSON(raw, h); err != nil {
		return &BackupError{1, "", "not a backup header: " + err.Error()}
	}
	switch {
	case h.Format != BackupFormat:
		return &BackupError{1, "format", fmt.Sprintf("%q, want %q: not a backup of this gateway", h.Format, BackupFormat)}
	case h.Version != BackupVersion:
		return &BackupError{1, "version", fmt.Sprintf("%d: this gateway reads version %d; import with the version that exported it, or newer", h.Version, BackupVersion)}
	case h.Time.IsZero():
		return &BackupError{1, "time", "required"}
	}
	for _, k := range h.Keys {
		if !e.secret.HasKey(k) {
			return &BackupError{1, "keys", fmt.Sprintf("records are sealed under key %s, which this gateway does not have: "+
				"add that key to keys (after the current one), reload, and import again", k)}
		}
		keys[k] = true
	}
	return nil
}

// checkRecord checks one record line, without writing anything.
func (e *Engine) checkRecord(n int, l *backupLine, raw []byte, keys map[string]bool, seen map[[16]byte]bool) error {
	if l.Member == "" {
		return &BackupError{n, "member", "required"}
	}
	if !plausibleID(l.Member) {
		return &BackupError{n, "member", fmt.Sprintf("%q: not a member ID the gateway takes (printable UTF-8, at most %d bytes)", l.Member, maxMemberID)}
	}
	if l.Records != nil || l.Counts != nil {
		return &BackupError{n, "records", "only on the end line"}
	}
	if (l.Device != "") != (l.Kind == KindDevice) {
		return &BackupError{n, "device", "on device records only, and required there"}
	}
	k := recordKey(l.Kind, l.Member, l.Device)
	if seen[k] {
		return &BackupError{n, "member", fmt.Sprintf("%q has a second %s record", l.Member, l.Kind)}
	}
	bad := func(field, problem string) error {
		return &BackupError{n, field, fmt.Sprintf("%s record of %q: %s", l.Kind, l.Member, problem)}
	}
	switch l.Kind {
	case KindUser:
		if l.Expires != nil {
			return bad("expires", "member records do not expire")
		}
		u, err := decodeUser(raw, l.Member)
		if err != nil {
			return bad("value", err.Error())
		}
		for _, f := range e.sealedFields(u) {
			id := keyring.KeyID(*f.value)
			if !keys[id] {
				return bad("value", fmt.Sprintf("its %s is sealed under key %q, which the header does not list", f.name, id))
			}
			if _, err := open(f.sealer, *f.value, f.aad); err != nil {
				return bad("value", fmt.Sprintf("its %s does not open with the configured keys: altered, or sealed for another member", f.name))
			}
		}
	case KindDevice:
		if !seen[recordKey(KindUser, l.Member, "")] {
			return bad("member", "comes before the member's user record, or the backup has none")
		}
		if _, ok := deviceID(l.Device); !ok {
			return bad("device", "not 32 lowercase hex digits")
		}
		var d Device
		if err := json.Unmarshal(raw, &d); err != nil || d.ID != l.Device {
			return bad("value", "not a remembered device record for this device")
		}
		if l.Expires == nil {
			return bad("expires", "required on device records")
		}
	case KindActivity:
		var list []Activity
		if err := json.Unmarshal(raw, &list); err != nil {
			return bad("value", "not a list of activity: "+err.Error())
		}
	case KindSeen:
		var s Seen
		if err := json.Unmarshal(raw, &s); err != nil || s.First.IsZero() || s.Last.IsZero() {
			return bad("value", "not a seen record with first and last")
		}
		if l.Expires != nil {
			return bad("expires", "seen records do not expire")
		}
	default:
		return &BackupError{n, "kind", fmt.Sprintf("%q: unknown; want user, device, activity, seen or end", l.Kind)}
	}
	seen[k] = true
	return nil
}

// importer writes the checked records of a backup.
type importer struct {
	e   *Engine
	res *ImportResult
	// withUser holds the record keys of the backup (checkBackup's); a
	// member's user record is there when the backup has one.
	withUser map[[16]byte]bool
	// written holds the members whose user record this import wrote.
	written     map[[16]byte]bool
	users, seen []string // to add to the indexes
}

func (w *importer) write(ctx context.Context, l *backupLine, raw []byte) error {
	e, res := w.e, w.res
	userKeyOf := recordKey(KindUser, l.Member, "")
	ttl := time.Duration(0)
	if l.Expires != nil {
		ttl = l.Expires.Sub(e.now())
		if ttl <= 0 {
			res.Expired++
			return nil
		}
	}
	var key string
	switch l.Kind {
	case KindUser:
		key = userKey(l.Member)
	case KindDevice:
		if !w.written[userKeyOf] {
			res.Kept.add(l.Kind) // the store's record of the member is kept, with its devices
			return nil
		}
		id, _ := deviceID(l.Device)
		key = deviceKey(l.Member, id)
	case KindActivity:
		if w.withUser[userKeyOf] && !w.written[userKeyOf] {
			res.Kept.add(l.Kind)
			return nil
		}
		if l.Expires == nil {
			ttl = activityTTL
		}
		key = activityKey(l.Member)
	case KindSeen:
		return w.mergeSeen(ctx, l.Member, raw)
	}
	swap := store.CompareAndSwapOp(key, nil, raw, ttl)
	var u *User
	if l.Kind == KindUser {
		// Checked before: the file cannot have changed under the import.
		var err error
		if u, err = decodeUser(raw, l.Member); err != nil {
			return err
		}
		swap = e.announced(swap, u)
	}
	if err := store.RunBatch(ctx, e.store, swap); err != nil {
		return err
	}
	if !swap.Swapped {
		res.Kept.add(l.Kind)
		return nil
	}
	res.Written.add(l.Kind)
	if l.Kind == KindUser {
		w.written[userKeyOf] = true
		// Drop every instance's copy of the member (held as "no record"):
		// this one's now, the others' by the change notice.
		e.wrote(u)
		w.users = append(w.users, l.Member)
	}
	return w.flushFull(ctx)
}

// mergeSeen writes the member's seen record, or merges it into the
// store's: the earlier first sighting, the later last.
func (w *importer) mergeSeen(ctx context.Context, member string, raw []byte) error {
	var in Seen
	if err := json.Unmarshal(raw, &in); err != nil {
		return err
	}
	key := seenKey(member)
	for range 10 {
		old, err := w.e.store.Get(ctx, key)
		if errors.Is(err, store.ErrNotFound) {
			old = nil
		} else if err != nil {
			return err
		}
		s := in
		var have Seen
		if old != nil && json.Unmarshal(old, &have) == nil && !have.First.IsZero() {
			if have.First.Before(s.First) {
				s.First = have.First
			}
			if have.Last.After(s.Last) {
				s.Last = have.Last
			}
			if s == have {
				w.res.Kept.Seen++
				return nil
			}
		}
		next, err := json.Marshal(s)
		if err != nil {
			return err
		}
		ok, err := w.e.store.CompareAndSwap(ctx, key, old, next, 0)
		if err != nil {
			return err
		}
		if ok {
			w.res.Written.Seen++
			if old == nil {
				w.seen = append(w.seen, member)
			}
			return w.flushFull(ctx)
		}
	}
	return fmt.Errorf("%w: seen record %q kept changing", store.ErrUnavailable, member)
}

// flushFull adds to the indexes once a page of members is waiting.
func (w *importer) flushFull(ctx context.Context) error {
	if len(w.users) < indexPage && len(w.seen) < indexPage {
		return nil
	}
	return w.flush(ctx)
}

func (w *importer) flush(ctx context.Context) error {
	// The member list's own indexes (enrolled, by method, last seen, ...)
	// from the records just written: the survey that builds them ran at
	// start, on a store that may then have been empty.
	for _, ids := range [][]string{w.users, w.seen} {
		for _, id := range ids {
			st, err := w.e.memberState(ctx, id)
			if err != nil {
				return err
			}
			w.e.relist(ctx, st)
		}
	}
	if len(w.users) > 0 {
		if err := w.e.store.IndexPut(ctx, usersIndex, w.users...); err != nil {
			return err
		}
		w.users = w.users[:0]
	}
	if len(w.seen) > 0 {
		if err := w.e.store.IndexPut(ctx, seenIndex, w.seen...); err != nil {
			return err
		}
		w.seen = w.seen[:0]
	}
	return nil
}

// maxMemberID is the longest member ID an identity source hands on.
const maxMemberID = 256

// plausibleID reports whether id is one an identity source could have
// given: printable UTF-8, spaces allowed, at most maxMemberID bytes. A
// backup naming another could not have come from the gateway.
func plausibleID(id string) bool {
	if len(id) > maxMemberID || !utf8.ValidString(id) {
		return false
	}
	for _, r := range id {
		if !unicode.IsPrint(r) && r != ' ' {
			return false
		}
	}
	return true
}
