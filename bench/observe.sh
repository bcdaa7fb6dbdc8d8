#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# What observability costs /hello: the server's CPU per request with and
# without --access-log (wrk, one server on core 0 and wrk on core 1, rounds
# interleaved, medians), and instructions per request (callgrind: steady on a
# noisy machine) of this build with the log off and on, against a build of
# BASE (default: the commit before the metrics), to see what counting costs.
# Writes bench/RESULTS-observe.md. Bounded: ROUNDS x SECONDS per server.
#   bench/observe.sh [rounds=3] [seconds=5] [base-commit]
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}
SECS=${2:-5}
BASE=${3:-$(git log --format=%h -1 --grep '^Metrics: rill.metrics()')^}
./scripts/deps.sh wrk valgrind gcc lua5.4 lua-socket
cmake -S . -B build >/dev/null && cmake --build build -j"${JOBS:-$(nproc)}" >/dev/null
WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  git worktree remove --force "$WORK/base" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
git worktree add -q --detach "$WORK/base" "$BASE"
cmake -S "$WORK/base" -B "$WORK/base/build" >/dev/null && cmake --build "$WORK/base/build" -j"${JOBS:-$(nproc)}" >/dev/null

P_OFF=18701 P_ON=18702
ready() { curl -s -o /dev/null --retry 50 --retry-connrefused --retry-delay 0 --max-time 10 "http://127.0.0.1:$1/hello"; }
taskset -c 0 build/rill bench/app.lua --listen 127.0.0.1:$P_OFF 2>"$WORK/off.log" & PIDS+=($!); OFF=$!
taskset -c 0 build/rill bench/app.lua --listen 127.0.0.1:$P_ON --access-log "$WORK/access.log" 2>"$WORK/on.log" & PIDS+=($!); ON=$!
ready $P_OFF; ready $P_ON

ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
HZ=$(getconf CLK_TCK)
measure() { # port pid → cpu µs per request
  local t0 t1 reqs
  t0=$(ticks "$2")
  reqs=$(taskset -c 1 wrk -t1 -c50 -d"${SECS}s" "http://127.0.0.1:$1/hello" | awk '/requests in/ {print $1}')
  t1=$(ticks "$2")
  awk -v d=$((t1 - t0)) -v hz="$HZ" -v n="$reqs" 'BEGIN {printf "%.3f", d / hz * 1e6 / n}'
}
declare -A CPU
for round in $(seq 1 "$ROUNDS"); do
  for s in off on; do
    port=$([ $s = off ] && echo $P_OFF || echo $P_ON); pid=$([ $s = off ] && echo $OFF || echo $ON)
    CPU[$s]+="$(measure $port $pid) "
    echo "round $round $s: ${CPU[$s]}" >&2
  done
done
cpu() { tr ' ' '\n' <<<"${CPU[$1]}" | grep -v '^$' | median; }
# each round's on/off ratio (the two ran back to back): the median of those is steadier than
# the ratio of the medians when the machine's load drifts between rounds
paired() { paste -d' ' <(tr ' ' '\n' <<<"${CPU[on]}" | grep -v '^$') <(tr ' ' '\n' <<<"${CPU[off]}" | grep -v '^$') |
  awk '{printf "%.4f\n", $1 / $2}' | median; }
LINES=$(wc -l <"$WORK/access.log")

# instructions per request: (2,001 requests - 1 request) / 2,000, startup and shutdown cancel out
ir_total() { # binary requests extra-args... → total instructions of a run serving them
  local bin=$1 n=$2 port=18710
  shift 2
  valgrind --tool=callgrind --callgrind-out-file="$WORK/cg.out" "$bin" bench/app.lua --listen 127.0.0.1:$port "$@" 2>"$WORK/cg.log" &
  local pid=$!
  ready $port
  lua5.4 -e "
    package.path = './lua/?.lua;./lua/?/init.lua;' .. package.path
    package.cpath = './build/lua/?.so;' .. package.cpath
    local t = require 'rill.test'
    local sock = require('socket').tcp(); sock:settimeout(10); assert(sock:connect('127.0.0.1', $port))
    for _ = 1, $n do
      sock:send('GET /hello HTTP/1.1\r\nHost: x\r\n\r\n'); assert(t.response(sock, 'GET')):rest()
    end
    sock:close()"
  kill -INT $pid; wait $pid || true
  awk '/^summary:/ {print $2}' "$WORK/cg.out"
}
per_request_args() { # binary args...
  local bin=$1; shift
  local a b
  a=$(ir_total "$bin" 2001 "$@"); b=$(ir_total "$bin" 1 "$@")
  echo $(( (a - b) / 2000 ))
}
IR_BASE=$(per_request_args "$WORK/base/build/rill")
IR_NOW=$(per_request_args build/rill)
IR_LOG=$(per_request_args build/rill --access-log "$WORK/cg-access.log")
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a / b}'; }
{
  echo "# Observability: what it costs /hello"
  echo
  echo "Written by \`bench/observe.sh $ROUNDS $SECS $BASE\` on $(nproc) CPUs, $(date -u +%Y-%m-%d): the server on core 0,"
  echo "wrk -t1 -c50 on core 1, rounds interleaved, medians. Ratios, not absolute figures."
  echo
  echo "| /hello | server CPU µs/request | vs no log |"
  echo "|---|---|---|"
  echo "| rill | $(cpu off) | 1.00× |"
  echo "| rill --access-log FILE | $(cpu on) | $(ratio "$(cpu on)" "$(cpu off)")× |"
  echo
  echo "Median of the $ROUNDS rounds' own ratios (each round ran both back to back): $(awk -v r="$(paired)" 'BEGIN {printf "%.3f", r}')×."
  echo
  echo "The log got $LINES lines."
  echo
  echo "| instructions per /hello request (callgrind, 2,000 requests) | |"
  echo "|---|---|"
  echo "| $BASE (before the metrics) | $IR_BASE |"
  echo "| now (metrics counted on every request) | $IR_NOW ($(ratio "$IR_NOW" "$IR_BASE")×) |"
  echo "| now, with --access-log FILE | $IR_LOG ($(ratio "$IR_LOG" "$IR_NOW")× the log off) |"
} >bench/RESULTS-observe.md
cat bench/RESULTS-observe.md
