package cache

import (
	"crypto/sha256"
	"strconv"
	"testing"
	"time"
)

// BenchmarkGetHot reads entries that are in the cache, as the verified
// path does three times a request: the member's record by ID (with a
// TTL), the identity by the hash of the member-site cookie (with a TTL),
// and the seen note by ID (without).
//
//	go test -run '^$' -bench GetHot -benchmem -cpu 1,2 ./cache/
func BenchmarkGetHot(b *testing.B) {
	ids := make([]string, 64)
	hashes := make([][32]byte, 64)
	for i := range ids {
		ids[i] = "member-" + strconv.Itoa(i)
		hashes[i] = sha256.Sum256([]byte(ids[i]))
	}
	b.Run("record", func(b *testing.B) { benchGet(b, Options{Size: 100_000, TTL: 2 * time.Second}, ids) })
	b.Run("identity", func(b *testing.B) { benchGet(b, Options{Size: 100_000, TTL: 10 * time.Second}, hashes) })
	b.Run("seen", func(b *testing.B) { benchGet(b, Options{Size: 100_000}, ids) })
}

func benchGet[K comparable](b *testing.B, o Options, keys []K) {
	c := New[K, int](o)
	for i, k := range keys {
		c.Set(k, i)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			if _, ok := c.Get(keys[i%len(keys)]); !ok {
				b.Fatal("miss")
			}
			i++
		}
	})
}
