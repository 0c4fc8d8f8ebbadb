package challenge

import (
	"context"
	"encoding/json"

	"github.com/caddy-twofactor/twofactor/store"
)

// SeedUser writes u as the member's record as it is, replacing any: no
// revision check, no change notice, no member-list index, no audit. It is
// for tools that fill a store with many members quickly (benchmarks, load
// tests), never for members' own data.
func SeedUser(ctx context.Context, st store.Store, u *User) error {
	raw, err := json.Marshal(u)
	if err != nil {
		return err
	}
	return st.Set(ctx, userKey(u.ID), raw, 0)
}
