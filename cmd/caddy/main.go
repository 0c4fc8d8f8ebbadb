// Command caddy is Caddy with its standard modules and the two_factor
// plugin: what `xcaddy build --with github.com/caddy-twofactor/twofactor`
// produces, buildable with plain `go build ./cmd/caddy`.
package main

import (
	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	_ "github.com/caddy-twofactor/twofactor"
	_ "github.com/caddyserver/caddy/v2/modules/standard"
)

func main() {
	caddycmd.Main()
}
