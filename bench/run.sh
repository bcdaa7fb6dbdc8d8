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
gcc -O2 bench/fanout.c -o build/bench/fanout
gcc -O2 bench/proxylat.c -o build/bench/proxylat
WORK=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT
ulimit -n "$(ulimit -Hn)"

RILL_PORT=18301 BARE_PORT=18302 NGINX_PORT=18303
RILL_UPSTREAM=18320 NGINX_UPSTREAM=18321 DIRECT_UPSTREAM=18322 # proxylat plays the upstream on these
# a server answers when curl gets a 200 from it (a real request, bounded retries)
ready() { curl -s -o /dev/null --retry 50 --retry-connrefused --retry-delay 0 --max-time 10 "http://127.0.0.1:$1/hello"; }

UPSTREAM=http://127.0.0.1:$RILL_UPSTREAM/events \
  taskset -c 0 build/rill bench/app.lua --listen 127.0.0.1:$RILL_PORT 2>"$WORK/rill.log" & PIDS+=($!); RILL_PID=$!
taskset -c 0 build/bench/bare_evhttp $BARE_PORT 2>"$WORK/bare.log" & PIDS+=($!); BARE_PID=$!
sed -e "s|@PORT@|$NGINX_PORT|" -e "s|@DIR@|$WORK|" -e "s|@UPSTREAM_PORT@|$NGINX_UPSTREAM|" \
  bench/nginx.conf.in > "$WORK/nginx.conf"
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

# idle event streams: server RSS per held connection, each figure on a fresh
# process (a server that already served the other workloads reuses freed
# memory, which would hide part of what the streams cost)
sse_cost() { # port pid n → KiB per stream
  local before after
  before=$(rss_kb "$2")
  exec {fd}> >(build/bench/hold "$1" /sse "$3" > "$WORK/hold.out")
  local hold_fd=$fd
  for _ in $(seq 1 600); do grep -q holding "$WORK/hold.out" 2>/dev/null && break; sleep 0.1; done
  after=$(rss_kb "$2")
  exec {hold_fd}>&-
  rm -f "$WORK/hold.out"
  awk -v a="$after" -v b="$before" -v n="$3" 'BEGIN {printf "%.2f", (a - b) / n}'
}
sse_fresh() { # server n → KiB per stream
  local port=18340 job pid dir
  case $1 in
    rill) taskset -c 0 build/rill bench/app.lua --listen 127.0.0.1:$port >/dev/null 2>&1 & job=$! ;;
    bare) taskset -c 0 build/bench/bare_evhttp $port >/dev/null 2>&1 & job=$! ;;
    nginx)
      dir=$(mktemp -d -p "$WORK")
      sed -e "s|@PORT@|$port|" -e "s|@DIR@|$dir|" -e "s|@UPSTREAM_PORT@|$NGINX_UPSTREAM|" \
        bench/nginx.conf.in > "$dir/nginx.conf"
      taskset -c 0 nginx -c "$dir/nginx.conf" -p "$dir" >/dev/null 2>&1 & job=$! ;;
  esac
  ready $port
  pid=$job
  [ "$1" = nginx ] && pid=$(pgrep -P "$job" | head -1) # the worker holds the connections
  sse_cost $port "$pid" "$2"
  kill "$job"
  wait "$job" 2>/dev/null || true
}
declare -A SSE
for n in 5000 10000; do
  for s in rill bare nginx; do SSE[$s$n]=$(sse_fresh $s $n); done
done

# fan-out: one publish to 1,000 subscribers, 5 publishes per run, runs interleaved;
# the figures are medians over every publish of every run
declare -A FAN
for round in $(seq 1 "$ROUNDS"); do
  for s in rill nginx; do
    port=$([ $s = rill ] && echo $RILL_PORT || echo $NGINX_PORT)
    FAN[$s]+=$(taskset -c 1 build/bench/fanout "$port" 1000 5 | awk -F'|' 'NR > 2 {print $3, $4, $5}')$'\n'
    echo "round $round $s fan-out done" >&2
  done
done
fan_med() { awk -v c="$2" 'NF {print $c}' <<<"${FAN[$1]}" | median; }

# proxy added latency: an upstream event until the client has it, 2,000 events per run
declare -A PROXY
for round in $(seq 1 "$ROUNDS"); do
  PROXY[rill]+="$(taskset -c 1 build/bench/proxylat $RILL_PORT $RILL_UPSTREAM 2000)"$'\n'
  PROXY[nginx]+="$(taskset -c 1 build/bench/proxylat $NGINX_PORT $NGINX_UPSTREAM 2000)"$'\n'
  PROXY[direct]+="$(taskset -c 1 build/bench/proxylat 0 $DIRECT_UPSTREAM 2000)"$'\n'
  echo "round $round proxy latency done" >&2
done
proxy_med() { awk -v c="$2" 'NF {print $c}' <<<"${PROXY[$1]}" | median; }

TAIL=$(lua5.4 bench/tail_latency.lua 200)

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
  echo "rill and the bare evhttp server run the same libevent loop: epoll with its changelist"
  echo "(\`EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST\`); nginx runs with one worker."
  echo
  hello=$(ratio "$(med "${RPS[rill/hello]}")" "$(med "${RPS[bare/hello]}")")
  chunks=$(ratio "$(med "${RPS[rill/chunks]}")" "$(med "${RPS[nginx/chunks]}")")
  fan=$(ratio "$(fan_med rill 2)" "$(fan_med nginx 2)")
  met() { awk -v v="$1" -v t="$2" -v op="$3" 'BEGIN {ok = op == ">=" ? v >= t : v <= t; print ok ? "yes" : "**no**"}'; }
  echo "## Targets"
  echo
  echo "| target | measured | met |"
  echo "|---|---|---|"
  echo "| hello world ≥ 0.95× bare evhttp req/s | $hello× | $(met "$hello" 0.95 ">=") |"
  echo "| 100-chunk stream ≥ 2× nginx-lua req/s | $chunks× | $(met "$chunks" 2 ">=") |"
  echo "| idle SSE stream ≤ 4 KiB of RSS (10,000 streams) | ${SSE[rill10000]} KiB | $(met "${SSE[rill10000]}" 4 "<=") |"
  echo "| fan-out to 1,000: p99 ≤ nginx-lua's p99 | $fan× | $(met "$fan" 1 "<=") |"
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
  echo "## Memory per idle event stream (KiB of server RSS per held connection, fresh processes)"
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
  echo "## Fan-out: one publish to 1,000 subscribers (ms until each has the event)"
  echo
  echo "| server | p50 | p99 | max |"
  echo "|---|---|---|---|"
  for s in rill nginx; do
    echo "| $([ $s = rill ] && echo rill || echo nginx-lua) | $(fan_med $s 1) | $(fan_med $s 2) | $(fan_med $s 3) |"
  done
  echo
  echo "rill p99 / nginx-lua p99: **$(ratio "$(fan_med rill 2)" "$(fan_med nginx 2)")** (≤ 1 is the target). Medians over"
  echo "$ROUNDS runs × 5 publishes. \`build/bench/fanout PORT 1000 5\`: rill's \`rill.subscribe\` + \`rill.sse\`;"
  echo "nginx-lua: one \`ngx.semaphore\` per subscriber, posted by the publish (bench/nginx.conf.in)."
  echo
  echo "## Proxy added latency (µs from an upstream event to the client)"
  echo
  echo "| path | p50 | p99 | max |"
  echo "|---|---|---|---|"
  echo "| direct (no proxy: the floor) | $(proxy_med direct 1) | $(proxy_med direct 2) | $(proxy_med direct 3) |"
  echo "| rill (\`rill.sse.follow\`) | $(proxy_med rill 1) | $(proxy_med rill 2) | $(proxy_med rill 3) |"
  echo "| nginx-lua (cosocket, flush per event) | $(proxy_med nginx 1) | $(proxy_med nginx 2) | $(proxy_med nginx 3) |"
  echo
  echo "rill p50 / nginx-lua p50: **$(ratio "$(proxy_med rill 1)" "$(proxy_med nginx 1)")**. \`build/bench/proxylat PORT UPSTREAM 2000\`"
  echo "is both the upstream and the client; medians of $ROUNDS runs."
  echo
  echo "## Tail latency (append to a file → a \`rill.tail\` client has the line)"
  echo
  echo "$TAIL" | sed 1d
  echo
  echo "\`lua5.4 bench/tail_latency.lua 200\` (not pinned; no peer has a file tail to compare with)."
} > bench/RESULTS.md
cat bench/RESULTS.md
