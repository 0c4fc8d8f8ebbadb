package tests

import (
	"net/http"
	"testing"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddy-twofactor/twofactor/cache"
)

// The in-memory caches (member records, identities, members seen) leave
// nothing running: none while requests fill them past their TTLs, none
// after a reload replaces the config that owned them, none after Caddy
// unloads it. Their upkeep runs on the requests' own goroutines.
func TestCachesLeaveNothingRunning(t *testing.T) {
	e := start(t, setup{})
	alice, _ := enrolled(e, "alice")
	check := func(when string) {
		t.Helper()
		if n := cache.Goroutines(); n != 0 {
			t.Fatalf("%s: %d goroutines of the cache library running", when, n)
		}
	}
	visit := func() {
		t.Helper()
		for range 50 {
			if r := alice.get("/echo/x"); r.status != http.StatusOK {
				t.Fatalf("verified request: status %d", r.status)
			}
			// Past the member record's TTL each time: the caches expire
			// and refill.
			e.clock.Advance(3e9)
		}
	}
	visit()
	check("serving")
	for i := range 3 {
		if err := load(e.caddyfile(setup{})); err != nil {
			t.Fatalf("reload %d: %v", i, err)
		}
		alice.afterReload("/echo/x")
		visit()
		check("after a reload")
	}
	if err := caddy.Stop(); err != nil {
		t.Fatal(err)
	}
	check("after Caddy unloaded the config")
}
