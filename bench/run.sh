#!/usr/bin/env bash
# The verified path against Caddy without the plugin, in the same run. Three
# Caddy processes reverse-proxy to the same upstream:
#
#   stock      Caddy of the same version built without the plugin
#   plain      this repository's Caddy (with the plugin), a site without it
#   two_factor this repository's Caddy, the site behind two_factor
#
# wrk replays a verified member's request (a valid second-factor session:
# the hot path) against each in turn, several rounds. Each round prints
# requests/s and the CPU each process spent per request (from
# /proc/<pid>/stat, user and system); the end prints the medians and the
# ratios two_factor/plain and two_factor/stock, of the medians and, steadier
# on a shared machine, the medians of each round's ratios. bench/browser.lua keeps
# the cookies current from Set-Cookie, as a browser does.
#
#   bench/run.sh [duration per run, default 10s] [rounds, default 5]
#
# Needs wrk (Debian: apt-get install wrk) and Linux's /proc. Environment:
# CONNECTIONS (32), THREADS (1), BASE_PORT (19080; uses four ports from
# there, five with PROFILE), PROFILE=dir to also write a 10 s CPU and an
# allocation profile of the two_factor process there (it serves pprof on
# the admin endpoint), and a 10 s CPU profile of the plain site,
# PIN="0 1" to run wrk and the upstream on the first CPU list and the
# Caddy processes on the second (taskset), so that they do not take turns
# on the same cores: steadier numbers on a small machine.
# SECOND_DIRECTIVE="header X-Frame-Options DENY" gives every site (stock,
# plain and two_factor alike) that directive before reverse_proxy, as real
# sites have more than one: Caddy then runs each site's handlers as a
# route list whatever the plugin does, so the comparison counts that cost
# on both sides. Unset, the plain sites have reverse_proxy alone.
set -euo pipefail
cd "$(dirname "$0")/.."

duration=${1:-10s}
rounds=${2:-5}
connections=${CONNECTIONS:-32}
threads=${THREADS:-1}
base=${BASE_PORT:-19080}
upstream=127.0.0.1:$base
second=${SECOND_DIRECTIVE:-}
declare -A addr=(
	[stock]=127.0.0.1:$((base + 1))
	[plain]=127.0.0.1:$((base + 2))
	[two_factor]=127.0.0.1:$((base + 3))
)
admin=127.0.0.1:$((base + 4))
kinds=(stock plain two_factor)

command -v wrk >/dev/null || { echo "bench: wrk is not installed (apt-get install wrk)" >&2; exit 1; }
client=() server=()
if [ -n "${PIN:-}" ]; then
	read -r cpus_client cpus_server <<<"$PIN"
	client=(taskset -c "$cpus_client") server=(taskset -c "$cpus_server")
fi

work=$(mktemp -d)
pids=()
cleanup() {
	kill "${pids[@]}" 2>/dev/null || true
	wait 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT

go build -o "$work/caddy" ./cmd/caddy
go build -o "$work/stock" github.com/caddyserver/caddy/v2/cmd/caddy
go build -o "$work/prepare" ./bench/prepare

# The same global options everywhere but two_factor's, so the processes
# differ only in the plugin.
plainsite() { # name address
	cat <<CADDY
{
	admin off
	log {
		output discard
	}
}

http://$2 {
${second:+	$second
}	reverse_proxy $upstream
}
CADDY
}
plainsite stock "${addr[stock]}" >"$work/stock.caddyfile"
plain_admin=127.0.0.1:$((base + 5))
if [ -n "${PROFILE:-}" ]; then
	# The plain site is profiled too, for comparison: through an admin
	# endpoint of its own, which costs nothing per request.
	plainsite plain "${addr[plain]}" | sed "s#admin off#admin $plain_admin#" >"$work/plain.caddyfile"
else
	plainsite plain "${addr[plain]}" >"$work/plain.caddyfile"
fi
cat >"$work/two_factor.caddyfile" <<CADDY
{
	admin $admin
	log {
		output discard
	}
	two_factor {
		keys "bench-key-bench-key-bench-key-bench-key"
		store embedded $work/twofactor.db
	}
}

http://${addr[two_factor]} {
	two_factor {
		identity endpoint http://$upstream/api/me {
			session_cookie member_session
			cache 10m
		}
		protect /members/* /bench/*
	}
${second:+	$second
}	reverse_proxy $upstream
}
CADDY

declare -A pid
for k in "${kinds[@]}"; do
	bin="$work/caddy"
	[ "$k" = stock ] && bin="$work/stock"
	"${server[@]}" "$bin" run --config "$work/$k.caddyfile" --adapter caddyfile >"$work/$k.log" 2>&1 &
	pid[$k]=$!
	pids+=($!)
done
"${client[@]}" "$work/prepare" -listen "$upstream" -gateway "http://${addr[two_factor]}" -cookie-file "$work/cookie" &
pids+=($!)
for _ in $(seq 150); do [ -s "$work/cookie" ] && break; sleep 0.2; done
[ -s "$work/cookie" ] || { echo "bench: no verified session; caddy log:" >&2; cat "$work/two_factor.log" >&2; exit 1; }
cookie=$(cat "$work/cookie")

# Every site must answer the bench page with the upstream's body: the
# gated one must not redirect to the challenge.
for k in "${kinds[@]}"; do
	check=$(curl -s -H "Cookie: $cookie" "http://${addr[$k]}/bench/x")
	[ "$check" = "ok" ] || { echo "bench: $k does not serve the page: $check" >&2; exit 1; }
done

# cpu_ticks pid: user + system time of the process, in clock ticks.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)

# measure kind: sets rate (requests/s) and cpu (µs of the process per request).
measure() {
	local before after out requests
	before=$(cpu_ticks "${pid[$1]}")
	out=$("${client[@]}" wrk -t"$threads" -c"$connections" -d"$duration" -s bench/browser.lua "http://${addr[$1]}/bench/x" -- "$cookie")
	after=$(cpu_ticks "${pid[$1]}")
	if grep -q 'Non-2xx' <<<"$out"; then
		echo "bench: $1 answered with errors:" >&2
		echo "$out" >&2
		exit 1
	fi
	rate=$(awk '/^Requests\/sec/ {print $2}' <<<"$out")
	requests=$(awk '/requests in/ {print $1}' <<<"$out")
	cpu=$(echo "($after - $before) * 1000000 / $hz / $requests" | bc -l)
}

if [ -n "${PROFILE:-}" ]; then
	mkdir -p "$PROFILE"
	"${client[@]}" wrk -t"$threads" -c"$connections" -d12s -s bench/browser.lua "http://${addr[two_factor]}/bench/x" -- "$cookie" >/dev/null &
	curl -s -o "$PROFILE/cpu.pprof" "http://$admin/debug/pprof/profile?seconds=10"
	curl -s -o "$PROFILE/allocs.pprof" "http://$admin/debug/pprof/allocs"
	wait $!
	"${client[@]}" wrk -t"$threads" -c"$connections" -d12s -s bench/browser.lua "http://${addr[plain]}/bench/x" -- "$cookie" >/dev/null &
	curl -s -o "$PROFILE/plain-cpu.pprof" "http://$plain_admin/debug/pprof/profile?seconds=10"
	wait $!
	echo "profiles in $PROFILE: cpu.pprof and allocs.pprof of two_factor, plain-cpu.pprof of the plain site (go tool pprof -top $PROFILE/cpu.pprof)"
fi

echo "wrk -t$threads -c$connections -d$duration, $rounds rounds, each process in turn${second:+; every site also has: $second}"
declare -A rates cpus
for i in $(seq "$rounds"); do
	line="round $i:"
	# Rotate the order, so no process always runs right after another.
	for j in 0 1 2; do
		k=${kinds[$(((i + j) % 3))]}
		measure "$k"
		rates[$k]+="$rate "
		cpus[$k]+="$cpu "
	done
	for k in "${kinds[@]}"; do
		line+=$(printf '  %s %6.0f req/s %5.1f µs' "$k" "$(echo "${rates[$k]}" | awk '{print $NF}')" "$(echo "${cpus[$k]}" | awk '{print $NF}')")
	done
	echo "$line"
done

median() { tr ' ' '\n' | grep . | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
declare -A mr mc
for k in "${kinds[@]}"; do
	mr[$k]=$(median <<<"${rates[$k]}")
	mc[$k]=$(median <<<"${cpus[$k]}")
	printf 'median %-10s %8.0f req/s %7.1f µs CPU per request\n' "$k" "${mr[$k]}" "${mc[$k]}"
done
printf 'throughput: two_factor/plain %.3f   two_factor/stock %.3f   plain/stock %.3f\n' \
	"$(echo "${mr[two_factor]} / ${mr[plain]}" | bc -l)" \
	"$(echo "${mr[two_factor]} / ${mr[stock]}" | bc -l)" \
	"$(echo "${mr[plain]} / ${mr[stock]}" | bc -l)"
printf 'CPU per request: two_factor/plain %.3f   two_factor/stock %.3f\n' \
	"$(echo "${mc[two_factor]} / ${mc[plain]}" | bc -l)" \
	"$(echo "${mc[two_factor]} / ${mc[stock]}" | bc -l)"
# The same ratios taken round by round (the processes of one round ran
# seconds apart, under the same outside load), then their medians: steadier
# than the ratios of the medians on a machine shared with other work.
ratios() { # numerator denominator (space-separated lists in round order)
	paste -d' ' <(tr ' ' '\n' <<<"$1" | grep .) <(tr ' ' '\n' <<<"$2" | grep .) | awk '{printf "%s ", $1 / $2}'
}
printf 'per round, median: throughput two_factor/plain %.3f   two_factor/stock %.3f   CPU per request two_factor/plain %.3f   two_factor/stock %.3f\n' \
	"$(ratios "${rates[two_factor]}" "${rates[plain]}" | median)" \
	"$(ratios "${rates[two_factor]}" "${rates[stock]}" | median)" \
	"$(ratios "${cpus[two_factor]}" "${cpus[plain]}" | median)" \
	"$(ratios "${cpus[two_factor]}" "${cpus[stock]}" | median)"
