#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Benchmarks rill against a bare evhttp server in C (the architecture's
# ceiling) and nginx with lua-nginx-module, all on 127.0.0.1 in one run: each
# server pinned to core 0, wrk on core 1, rounds interleaved (A B C, A B C),
# medians. Writes bench/RESULTS.md. Bounded: ROUNDS x SECONDS per measurement.
#   bench/run.sh [rounds=3] [seconds=5]
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}
SECS=${2:-5}
./scripts/deps.sh wrk nginx libnginx-mod-http-lua valgrind gcc libevent-dev
cmake -S . -B build >/dev/null && cmake --build build -j"$(nproc)" >/dev/null
mkdir -p build/bench
gcc -O2 bench/bare_evhttp.c -o build/bench/bare_evhttp -levent
gcc -O2 bench/hold.c -o build/bench/hold
WORK=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT
ulimit -n "$(ulimit -Hn)"

RILL_PORT=18301 BARE_PORT=18302 NGINX_PORT=18303
# a server answers when curl gets a 200 from it (a real request, bounded retries)
ready() { curl -s -o /dev/null --retry 50 --retry-connrefused --retry-delay 0 --max-time 10 "http://127.0.0.1:$1/hello"; }

taskset -c 0 build/rill bench/app.lua --listen 127.0.0.1:$RILL_PORT 2>"$WORK/rill.log" & PIDS+=($!); RILL_PID=$!
taskset -c 0 build/bench/bare_evhttp $BARE_PORT 2>"$WORK/bare.log" & PIDS+=($!); BARE_PID=$!
sed -e "s|@PORT@|$NGINX_PORT|" -e "s|@DIR@|$WORK|" bench/nginx.conf.in > "$WORK/nginx.conf"
taskset -c 0 nginx -c "$WORK/nginx.conf" -p "$WORK" 2>"$WORK/nginx.log" & PIDS+=($!)
for p in $RILL_PORT $BARE_PORT $NGINX_PORT; do ready $p; done
NGINX_PID=$(pgrep -f "nginx: worker process" -n)

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
rss_kb() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
HZ=$(getconf CLK_TCK)

# wrk on core 1: prints "req/s cpu_us_per_request"
measure() { # name port pid path
  local t0 t1 out reqs rps
  t0=$(cpu_ticks "$3")
  out=$(taskset -c 1 wrk -t1 -c50 -d"${SECS}s" "http://127.0.0.1:$2$4")
  t1=$(cpu_ticks "$3")
  rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  reqs=$(echo "$out" | awk '/requests in/ {print $1}')
  echo "$rps $(awk -v d=$((t1 - t0)) -v hz="$HZ" -v n="$reqs" 'BEGIN {printf "%.2f", d / hz * 1e6 / n}')"
}

declare -A RPS CPU
for round in $(seq 1 "$ROUNDS"); do
  for w in /hello /chunks; do
    for s in rill bare nginx; do
      case $s in rill) port=$RILL_PORT pid=$RILL_PID ;; bare) port=$BARE_PORT pid=$BARE_PID ;; nginx) port=$NGINX_PORT pid=$NGINX_PID ;; esac
      read -r rps cpu < <(measure $s $port $pid $w)
      RPS[$s$w]+="$rps "
      CPU[$s$w]+="$cpu "
      echo "round $round $s $w: $rps req/s, $cpu us cpu/request" >&2
    done
  done
done
med() { tr ' ' '\n' <<<"$1" | grep -v '^$' | median; }

# idle event streams: server RSS per held connection
sse_cost() { # port pid n → KiB per stream
  local before after
  before=$(rss_kb "$2")
  exec {fd}> >(build/bench/hold "$1" /sse "$3" > "$WORK/hold.out")
  local hold_fd=$fd
  for _ in $(seq 1 600); do grep -q holding "$WORK/hold.out" 2>/dev/null && break; sleep 0.1; done
  after=$(rss_kb "$2")
  exec {hold_fd}>&-
  awk -v a="$after" -v b="$before" -v n="$3" 'BEGIN {printf "%.2f", (a - b) / n}'
  for _ in $(seq 1 100); do [ "$(ls /proc/"$2"/fd | wc -l)" -lt 100 ] && break; sleep 0.1; done
}
declare -A SSE
for n in 5000 10000; do
  SSE[rill$n]=$(sse_cost $RILL_PORT $RILL_PID $n)
  SSE[bare$n]=$(sse_cost $BARE_PORT $BARE_PID $n)
  SSE[nginx$n]=$(sse_cost $NGINX_PORT $NGINX_PID $n)
done

# instructions per hello-world request (callgrind counts instructions: steady on a noisy machine)
ir_total() { # requests → total instructions of a rill run serving them
  local port=18310
  valgrind --tool=callgrind --callgrind-out-file="$WORK/cg.$1" build/rill bench/app.lua --listen 127.0.0.1:$port 2>"$WORK/cg.log" &
  local pid=$!
  ready $port
  lua5.4 -e "
    package.path = './lua/?.lua;./lua/?/init.lua;' .. package.path
    package.cpath = './build/lua/?.so;' .. package.cpath
    local t = require 'rill.test'
    local sock = require('socket').tcp(); sock:settimeout(10); assert(sock:connect('127.0.0.1', $port))
    for _ = 1, $1 do
      sock:send('GET /hello HTTP/1.1\r\nHost: x\r\n\r\n'); assert(t.response(sock, 'GET')):rest()
    end
    sock:close()"
  kill -INT $pid; wait $pid || true
  awk '/^summary:/ {print $2}' "$WORK/cg.$1"
}
IR1=$(ir_total 1)
IR2=$(ir_total 2001)
IRPR=$(( (IR2 - IR1) / 2000 ))

ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a / b}'; }
{
  echo "# Benchmark results"
  echo
  echo "Measured by \`bench/run.sh $ROUNDS $SECS\` on $(date -u +%Y-%m-%d), $(nproc) cores: each server pinned to core 0,"
  echo "wrk on core 1, rounds interleaved, medians of $ROUNDS runs of ${SECS} s (\`wrk -t1 -c50\`)."
  echo "Versions: $(build/rill --version), $(nginx -v 2>&1), lua-nginx-module $(dpkg-query -W -f='${Version}' libnginx-mod-http-lua), $(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2)."
  echo "The machine is shared and noisy: read the ratios, not the absolute figures."
  echo
  echo "## Requests per second"
  echo
  echo "| workload | rill | bare evhttp | nginx-lua | rill / bare | rill / nginx |"
  echo "|---|---|---|---|---|---|"
  for w in /hello /chunks; do
    r=$(med "${RPS[rill$w]}") b=$(med "${RPS[bare$w]}") g=$(med "${RPS[nginx$w]}")
    echo "| $w | $r | $b | $g | $(ratio "$r" "$b") | $(ratio "$r" "$g") |"
  done
  echo
  echo "## Server CPU time per request (µs, from /proc)"
  echo
  echo "| workload | rill | bare evhttp | nginx-lua | rill / bare | nginx / rill |"
  echo "|---|---|---|---|---|---|"
  for w in /hello /chunks; do
    r=$(med "${CPU[rill$w]}") b=$(med "${CPU[bare$w]}") g=$(med "${CPU[nginx$w]}")
    echo "| $w | $r | $b | $g | $(ratio "$r" "$b") | $(ratio "$g" "$r") |"
  done
  echo
  echo "\`/hello\`: \"hello world\\n\" on keep-alive. \`/chunks\`: 100 lines as 100 chunks (rill: a"
  echo "\`coroutine.wrap\` iterator; nginx-lua: \`ngx.print\` + \`ngx.flush\` per line; evhttp: 100 \`send_reply_chunk\`)."
  echo
  echo "## Memory per idle event stream (KiB of server RSS per held connection)"
  echo
  echo "| streams | rill | bare evhttp | nginx-lua |"
  echo "|---|---|---|---|"
  for n in 5000 10000; do
    echo "| $n | ${SSE[rill$n]} | ${SSE[bare$n]} | ${SSE[nginx$n]} |"
  done
  echo
  echo "## Instructions per request"
  echo
  echo "rill, \`/hello\` on keep-alive: **$IRPR instructions per request** (callgrind, 2,000 requests,"
  echo "startup and shutdown subtracted). Compare later changes against this figure."
  echo
  echo "## Not measured yet"
  echo
  echo "Fan-out latency to 1,000 subscribers and proxy added latency against nginx-lua;"
  echo "\`bench/tail_latency.lua\` measures append-to-client latency of \`rill.tail\`."
} > bench/RESULTS.md
cat bench/RESULTS.md
