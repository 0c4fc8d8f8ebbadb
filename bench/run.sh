#!/usr/bin/env bash
# Throughput of Caddy with the two_factor plugin against bare Caddy, in the
# same run: two sites of one Caddy reverse-proxy to the same upstream; wrk
# replays a verified member's request (valid second-factor session: the hot
# path) against each, alternating, several rounds. Prints requests/s and the
# ratio two_factor / bare. bench/browser.lua keeps the cookies current from
# Set-Cookie, as a browser does.
#
#   bench/run.sh [duration per run, default 10s] [rounds, default 5]
#
# Needs wrk (Debian: apt-get install wrk). Environment: CONNECTIONS (32),
# THREADS (1), BASE_PORT (19080; uses four ports from there).
set -euo pipefail
cd "$(dirname "$0")/.."

duration=${1:-10s}
rounds=${2:-5}
connections=${CONNECTIONS:-32}
threads=${THREADS:-1}
base=${BASE_PORT:-19080}
upstream=127.0.0.1:$base
bare=127.0.0.1:$((base + 1))
gated=127.0.0.1:$((base + 2))

command -v wrk >/dev/null || { echo "bench: wrk is not installed (apt-get install wrk)" >&2; exit 1; }

work=$(mktemp -d)
cleanup() {
	kill "${pids[@]}" 2>/dev/null || true
	wait 2>/dev/null || true
	rm -rf "$work"
}
pids=()
trap cleanup EXIT

go build -o "$work/caddy" ./cmd/caddy
go build -o "$work/prepare" ./bench/prepare

cat >"$work/Caddyfile" <<CADDY
{
	admin off
	log {
		output discard
	}
	two_factor {
		keys "bench-key-bench-key-bench-key-bench-key"
		store embedded $work/twofactor.db
	}
}

http://$bare {
	reverse_proxy $upstream
}

http://$gated {
	two_factor {
		identity endpoint http://$upstream/api/me {
			session_cookie member_session
			cache 10m
		}
		protect /members/* /bench/*
	}
	reverse_proxy $upstream
}
CADDY

"$work/caddy" run --config "$work/Caddyfile" --adapter caddyfile >"$work/caddy.log" 2>&1 &
pids+=($!)
"$work/prepare" -listen "$upstream" -gateway "http://$gated" -cookie-file "$work/cookie" &
pids+=($!)
for _ in $(seq 100); do [ -s "$work/cookie" ] && break; sleep 0.2; done
[ -s "$work/cookie" ] || { echo "bench: no verified session; caddy log:" >&2; cat "$work/caddy.log" >&2; exit 1; }
cookie=$(cat "$work/cookie")

# The gated site must answer the bench page with the upstream's body, not a
# redirect to the challenge.
check=$(curl -s -H "Cookie: $cookie" "http://$gated/bench/x")
[ "$check" = "ok" ] || { echo "bench: the session is not accepted: $check" >&2; exit 1; }

rate() { # url cookie
	wrk -t"$threads" -c"$connections" -d"$duration" -s bench/browser.lua "$1" -- "$2" | awk '/^Requests\/sec/ {print $2}'
}

echo "wrk -t$threads -c$connections -d$duration, $rounds rounds, alternating"
bare_rates=() gated_rates=()
for i in $(seq "$rounds"); do
	# The same Cookie header on both sides, so the difference is the
	# plugin's work, not the upstream parsing a larger request.
	b=$(rate "http://$bare/bench/x" "$cookie")
	g=$(rate "http://$gated/bench/x" "$cookie")
	bare_rates+=("$b") gated_rates+=("$g")
	printf 'round %d: bare %10.0f req/s   two_factor %10.0f req/s   ratio %.3f\n' "$i" "$b" "$g" "$(echo "$g / $b" | bc -l)"
done

median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
mb=$(median "${bare_rates[@]}")
mg=$(median "${gated_rates[@]}")
printf 'median: bare %.0f req/s, two_factor %.0f req/s, ratio %.3f\n' "$mb" "$mg" "$(echo "$mg / $mb" | bc -l)"
