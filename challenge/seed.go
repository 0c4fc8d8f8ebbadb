package challenge

import (
	"context"
	"encoding/json"
	"fmt"
	"time"
)

// Bulk loading: the records and index entries of many enrolled members at
// once, encoded exactly as the engine writes them, for a load test that
// fills a store with members it can sign in as. The caller writes them as
// fast as its store allows (a Redis pipeline) or through WriteSeed.

// SeedMember is one member to load: enrolled with an authenticator app
// whose key is TOTPSecret, and, with Email, with email codes sent to the
// identity's address (the method follows the member site's address, so
// the record holds none).
type SeedMember struct {
	ID         string
	TOTPSecret []byte
	Email      bool
}

// SeedRecord is one value to store under Key (without the store's prefix).
type SeedRecord struct {
	Key   string
	Value []byte
}

// SeedBatch is what a batch of members needs in the store: their user
// records, and the entries of the member list's indexes (by index name)
// that a first enrolment writes.
type SeedBatch struct {
	Records []SeedRecord
	Indexes map[string][]string
}

// Seed encodes members as enrolled at now: their app secrets sealed under
// the current key and bound to each ID, and their index entries. It reads
// and writes nothing.
func (e *Engine) Seed(members []SeedMember, now time.Time) (SeedBatch, error) {
	b := SeedBatch{Records: make([]SeedRecord, 0, len(members)), Indexes: map[string][]string{}}
	put := func(index, entry string) { b.Indexes[index] = append(b.Indexes[index], entry) }
	now = now.UTC()
	for _, m := range members {
		switch {
		case !plausibleID(m.ID) || m.ID == "":
			return SeedBatch{}, fmt.Errorf("seed: member ID %q: empty, too long or not printable", m.ID)
		case len(m.TOTPSecret) < 16:
			return SeedBatch{}, fmt.Errorf("seed: member %q: TOTPSecret of %d bytes, want at least 16", m.ID, len(m.TOTPSecret))
		}
		u := &User{ID: m.ID, Rev: 1, Epoch: 1, Created: now, Default: MethodTOTP,
			TOTP: &TOTPMethod{Secret: e.secret.Seal(nil, m.TOTPSecret, secretAAD("totp", m.ID)), Added: now}}
		if m.Email {
			u.Email = &CodeMethod{FromIdentity: true, Added: now}
		}
		raw, err := json.Marshal(u)
		if err != nil {
			return SeedBatch{}, err
		}
		b.Records = append(b.Records, SeedRecord{Key: userKey(m.ID), Value: raw})
		// As listChange writes them for a record created enrolled.
		put(usersIndex, m.ID)
		put(membersIndex, m.ID)
		put(lastSeenIndex, lastSeenEntry(m.ID, time.Time{}))
		put(enrolledIndex, m.ID)
		for _, method := range listedMethods {
			if u.Has(method) {
				put(methodIndex(method), m.ID)
			}
		}
	}
	return b, nil
}

// WriteSeed writes a batch through the store, one record at a time,
// keeping any record already there (a member who signed in since, or a
// load run before), and returns how many records it wrote. Stores that
// can pipeline write SeedBatch themselves, faster.
func (e *Engine) WriteSeed(ctx context.Context, b SeedBatch) (int, error) {
	written := 0
	for _, r := range b.Records {
		ok, err := e.store.CompareAndSwap(ctx, r.Key, nil, r.Value, 0)
		if err != nil {
			return written, err
		}
		if ok {
			written++
		}
	}
	for index, entries := range b.Indexes {
		if err := e.store.IndexPut(ctx, index, entries...); err != nil {
			return written, err
		}
	}
	return written, nil
}
