#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Benchmarks rill against a bare evhttp server in C (the architecture's
# ceiling), nginx with lua-nginx-module and, for event streams and fan-out,
# nginx with nchan (a pub/sub module in C), all on 127.0.0.1 in one run: each
# server pinned to core 0, wrk on core 1, rounds interleaved (A B C, A B C),
# medians. Writes bench/RESULTS.md. Bounded: ROUNDS x SECONDS per measurement.
#   bench/run.sh [rounds=3] [seconds=5]
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}
SECS=${2:-5}
./scripts/deps.sh wrk nginx libnginx-mod-http-lua libnginx-mod-nchan valgrind gcc libevent-dev python3
cmake -S . -B build >/dev/null && cmake --build build -j"${JOBS:-$(nproc)}" >/dev/null
mkdir -p build/bench
gcc -O2 bench/bare_evhttp.c -o build/bench/bare_evhttp -levent
gcc -O2 bench/hold.c -o build/bench/hold
gcc -O2 bench/fanout.c -o build/bench/fanout
gcc -O2 bench/fanthru.c -o build/bench/fanthru
gcc -O2 -shared -fPIC bench/luacount.c -o build/bench/luacount.so -ldl
gcc -O2 bench/proxylat.c -o build/bench/proxylat
WORK=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT
ulimit -n "$(ulimit -Hn)"

RILL_PORT=18301 BARE_PORT=18302 NGINX_PORT=18303 NCHAN_PORT=18304
RILL_UPSTREAM=18320 NGINX_UPSTREAM=18321 DIRECT_UPSTREAM=18322 # proxylat plays the upstream on these
# a server answers when curl gets a 200 from it (a real request, bounded retries)
ready() { curl -s -o /dev/null --retry 50 --retry-connrefused --retry-delay 0 --max-time 10 "http://127.0.0.1:$1/hello"; }

UPSTREAM=http://127.0.0.1:$RILL_UPSTREAM/events \
  taskset -c 0 build/rill bench/app.lua --listen 127.0.0.1:$RILL_PORT 2>"$WORK/rill.log" & PIDS+=($!); RILL_PID=$!
taskset -c 0 build/bench/bare_evhttp $BARE_PORT 2>"$WORK/bare.log" & PIDS+=($!); BARE_PID=$!
sed -e "s|@PORT@|$NGINX_PORT|" -e "s|@DIR@|$WORK|" -e "s|@UPSTREAM_PORT@|$NGINX_UPSTREAM|" \
  bench/nginx.conf.in > "$WORK/nginx.conf"
taskset -c 0 nginx -c "$WORK/nginx.conf" -p "$WORK" 2>"$WORK/nginx.log" & PIDS+=($!); NGINX_JOB=$!
mkdir -p "$WORK/nchan"
sed -e "s|@PORT@|$NCHAN_PORT|" -e "s|@DIR@|$WORK/nchan|" bench/nchan.conf.in > "$WORK/nchan/nginx.conf"
taskset -c 0 nginx -c "$WORK/nchan/nginx.conf" -p "$WORK/nchan" 2>"$WORK/nchan.log" & PIDS+=($!)
for p in $RILL_PORT $BARE_PORT $NGINX_PORT $NCHAN_PORT; do ready $p; done
NGINX_PID=$(pgrep -P "$NGINX_JOB" | head -1) # the worker serves the requests

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
sse_cost() { # port pid n path → KiB per stream
  local before after
  before=$(rss_kb "$2")
  exec {fd}> >(build/bench/hold "$1" "$4" "$3" > "$WORK/hold.out")
  local hold_fd=$fd
  for _ in $(seq 1 600); do grep -q holding "$WORK/hold.out" 2>/dev/null && break; sleep 0.1; done
  after=$(rss_kb "$2")
  exec {hold_fd}>&-
  rm -f "$WORK/hold.out"
  awk -v a="$after" -v b="$before" -v n="$3" 'BEGIN {printf "%.2f", (a - b) / n}'
}
sse_fresh() { # server n → KiB per stream
  local port=18340 job pid dir path=/sse
  case $1 in
    rill|rillgen) taskset -c 0 build/rill bench/app.lua --listen 127.0.0.1:$port >/dev/null 2>&1 & job=$!
      [ "$1" = rillgen ] && path=/sse-gen ;;
    bare) taskset -c 0 build/bench/bare_evhttp $port >/dev/null 2>&1 & job=$! ;;
    nginx)
      dir=$(mktemp -d -p "$WORK")
      sed -e "s|@PORT@|$port|" -e "s|@DIR@|$dir|" -e "s|@UPSTREAM_PORT@|$NGINX_UPSTREAM|" \
        bench/nginx.conf.in > "$dir/nginx.conf"
      taskset -c 0 nginx -c "$dir/nginx.conf" -p "$dir" >/dev/null 2>&1 & job=$! ;;
    nchan)
      dir=$(mktemp -d -p "$WORK")
      sed -e "s|@PORT@|$port|" -e "s|@DIR@|$dir|" bench/nchan.conf.in > "$dir/nginx.conf"
      taskset -c 0 nginx -c "$dir/nginx.conf" -p "$dir" >/dev/null 2>&1 & job=$! ;;
  esac
  ready $port
  pid=$job
  case $1 in nginx|nchan) pid=$(pgrep -P "$job" | head -1) ;; esac # the worker holds the connections
  sse_cost $port "$pid" "$2" $path
  kill "$job"
  wait "$job" 2>/dev/null || true
}
declare -A SSE
SSE_NS="5000 10000 15000"
for n in $SSE_NS; do
  for s in rill rillgen bare nginx nchan; do
    SSE[$s$n]=$(sse_fresh $s $n)
    echo "idle streams: $s $n: ${SSE[$s$n]} KiB each" >&2
  done
done

# fan-out: one publish to 1,000 and to 10,000 subscribers, 5 publishes per run, runs
# interleaved; the figures are medians over every publish of every run
port_of() { case $1 in rill) echo $RILL_PORT ;; nginx) echo $NGINX_PORT ;; nchan) echo $NCHAN_PORT ;; esac; }
declare -A FAN
for round in $(seq 1 "$ROUNDS"); do
  for n in 1000 10000; do
    for s in rill nginx nchan; do
      FAN[$s$n]+=$(taskset -c 1 build/bench/fanout "$(port_of $s)" $n 5 | awk -F'|' 'NR > 2 {print $3, $4, $5}')$'\n'
      echo "round $round $s fan-out to $n done" >&2
    done
  done
done
fan_med() { awk -v c="$2" 'NF {print $c}' <<<"${FAN[$1]}" | median; }

# fan-out throughput: N subscribers x M sequential publishes, deliveries (counted by
# payload) per second until every subscriber has the last event; runs interleaved
THRU_CASES="1000x100 10000x10"
THRU_MISSING=""
declare -A THRU
for round in $(seq 1 "$ROUNDS"); do
  for c in $THRU_CASES; do
    for s in rill nginx nchan; do
      read -r _ _ dps missing < <(taskset -c 1 build/bench/fanthru "$(port_of $s)" tput "${c%x*}" "${c#*x}")
      THRU[$s$c]+="$dps "
      [ "$missing" = 0 ] || { THRU_MISSING+="$s $c: $missing; "; echo "fan-out throughput: $s $c: $missing deliveries missing" >&2; }
      echo "round $round $s throughput $c: $dps deliveries/s" >&2
    done
  done
done

# where the bytes of one idle rill stream go: massif snapshots at 1,000 and 3,000
# held streams of one process (each after a full Lua collection), the difference
# per stream by allocation site (bench/bytes.py), the Lua state's share by kind
# (bench/luacount.c, a counting allocator preloaded into the same process)
bytes_of() { # path → $WORK/bytes<path>
  local port=18350 pid fds=() n held=0 snaps=0 tag=${1//\//_} out
  out="$WORK/lc$tag"
  LUACOUNT_OUT=$out LD_PRELOAD=$PWD/build/bench/luacount.so taskset -c 0 valgrind --tool=massif \
    --threshold=0.01 --depth=40 --massif-out-file=/dev/null \
    build/rill bench/app.lua --listen 127.0.0.1:$port 2>"$WORK/massif.log" &
  pid=$!
  ready $port
  for n in 1000 3000; do
    exec {fd}> >(build/bench/hold $port "$1" $((n - held)) >"$WORK/hold.$n")
    fds+=("$fd")
    held=$n
    for _ in $(seq 1 600); do grep -q holding "$WORK/hold.$n" 2>/dev/null && break; sleep 0.1; done
    curl -s -o /dev/null "http://127.0.0.1:$port/gc"
    kill -WINCH $pid
    snaps=$((snaps + 1))
    for _ in $(seq 1 100); do [ "$(grep -c snapshot "$out" 2>/dev/null)" = $snaps ] && break; sleep 0.1; done
    vgdb --pid=$pid detailed_snapshot "$WORK/massif$tag.$n" >/dev/null 2>&1
  done
  for fd in "${fds[@]}"; do exec {fd}>&-; done
  kill -INT $pid
  wait $pid 2>/dev/null || true
  /usr/bin/python3 bench/bytes.py "$WORK/massif$tag.1000" "$WORK/massif$tag.3000" "$out" 2000 >"$WORK/bytes$tag"
}
for p in /sse /sse-hb /sse-gen; do bytes_of $p; echo "bytes of $p done" >&2; done

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
  fan=$(ratio "$(fan_med rill1000 2)" "$(fan_med nginx1000 2)")
  fan10k=$(ratio "$(fan_med rill10000 2)" "$(fan_med nchan10000 2)")
  thru=$(ratio "$(med "${THRU[rill1000x100]}")" "$(med "${THRU[nchan1000x100]}")")
  thru10k=$(ratio "$(med "${THRU[rill10000x10]}")" "$(med "${THRU[nchan10000x10]}")")
  met() { awk -v v="$1" -v t="$2" -v op="$3" 'BEGIN {ok = op == ">=" ? v >= t : v <= t; print ok ? "yes" : "**no**"}'; }
  echo "## Targets"
  echo
  echo "| target | measured | met |"
  echo "|---|---|---|"
  echo "| hello world ≥ 0.95× bare evhttp req/s | $hello× | $(met "$hello" 0.95 ">=") |"
  echo "| 100-chunk stream ≥ 2× nginx-lua req/s | $chunks× | $(met "$chunks" 2 ">=") |"
  echo "| idle SSE stream ≤ 4 KiB of RSS (10,000 streams) | ${SSE[rill10000]} KiB | $(met "${SSE[rill10000]}" 4 "<=") |"
  echo "| fan-out to 1,000: p99 ≤ nginx-lua's p99 | $fan× | $(met "$fan" 1 "<=") |"
  echo "| issue 17: C-fed stream ≤ 1.5 KiB (15,000 streams) | ${SSE[rill15000]} KiB | $(met "${SSE[rill15000]}" 1.5 "<=") |"
  echo "| issue 17: \`coroutine.wrap\` + \`rill.sleep\` stream ≤ 3.5 KiB (15,000) | ${SSE[rillgen15000]} KiB | $(met "${SSE[rillgen15000]}" 3.5 "<=") |"
  echo "| issue 17: fan-out to 10,000: p99 ≤ nchan's p99 | $fan10k× | $(met "$fan10k" 1 "<=") |"
  echo "| issue 17: fan-out deliveries/s ≥ 1.2× nchan's (1,000 × 100) | $thru× | $(met "$thru" 1.2 ">=") |"
  echo "| issue 17: fan-out deliveries/s ≥ 1.2× nchan's (10,000 × 10) | $thru10k× | $(met "$thru10k" 1.2 ">=") |"
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
  echo "| streams | rill C-fed | rill generator | bare evhttp | nginx-lua | nchan | C-fed / nchan | C-fed / nginx-lua | generator / nchan |"
  echo "|---|---|---|---|---|---|---|---|---|"
  for n in $SSE_NS; do
    echo "| $n | ${SSE[rill$n]} | ${SSE[rillgen$n]} | ${SSE[bare$n]} | ${SSE[nginx$n]} | ${SSE[nchan$n]} | $(ratio "${SSE[rill$n]}" "${SSE[nchan$n]}") | $(ratio "${SSE[rill$n]}" "${SSE[nginx$n]}") | $(ratio "${SSE[rillgen$n]}" "${SSE[nchan$n]}") |"
  done
  echo
  echo "C-fed: \`rill.sse(rill.subscribe(\"idle\"), { heartbeat = 0 })\` (no coroutine kept). Generator: a"
  echo "\`coroutine.wrap\` that loops on \`rill.sleep(3600)\` (heartbeat 0). nginx-lua: \`ngx.sleep\` in"
  echo "\`content_by_lua\`. nchan: \`nchan_subscriber eventsource\` on a channel nobody publishes to, in-memory"
  echo "store (the worker's RSS, which counts the shared memory pages it touches). The fd limit is the"
  echo "hard limit, $(ulimit -Hn) here: 15,000 streams is the most this machine allows beside the client's fds."
  echo
  echo "## Where an idle rill stream's bytes go (heap bytes per stream)"
  echo
  echo "| where | C-fed (heartbeat 0) | C-fed, 15 s heartbeat | generator |"
  echo "|---|---|---|---|"
  /usr/bin/python3 - "$WORK/bytes_sse" "$WORK/bytes_sse-hb" "$WORK/bytes_sse-gen" <<'PY'
import sys
cols = []
for path in sys.argv[1:]:
    cols.append(dict(line.rstrip("\n").rsplit("\t", 1) for line in open(path)))
order = []
for col in cols:
    for k in col:
        if k not in order:
            order.append(k)
rest = ["other sites (under 8 B each)", "malloc's own overhead per block (massif's extra heap)", "total"]
def rows():
    out = []
    for k in [k for k in order if k not in rest and not k.startswith("  ")]:
        out.append(k)
        if k.startswith("Lua state"):
            out += [k2 for k2 in order if k2.startswith("  Lua:")]
    return out + rest
for k in rows():
    name = k.strip()
    name = ("&nbsp;&nbsp;" + name) if k.startswith("  ") else ("**total**" if k == "total" else name)
    print("| %s | %s |" % (name, " | ".join(c.get(k, "0") for c in cols)))
PY
  echo
  echo "massif (\`--threshold=0.01\`) snapshots of one rill process at 1,000 and 3,000 held streams, each"
  echo "after a full Lua collection (\`GET /gc\` in bench/app.lua), the difference divided by 2,000;"
  echo "the Lua rows are kinds from bench/luacount.c, a counting allocator preloaded in the same process"
  echo "(Lua's own type tags; untagged blocks by size). Debian's libevent and Lua are stripped: a site is"
  echo "named by its nearest exported or rill frame (bench/bytes.py). The total is heap only; RSS adds"
  echo "glibc's arena slack. bench/README.md reads the table."
  echo
  echo "## Instructions per request"
  echo
  echo "rill, \`/hello\` on keep-alive: **$IRPR instructions per request** (callgrind, 2,000 requests,"
  echo "startup and shutdown subtracted). Compare later changes against this figure."
  echo
  echo "## Fan-out latency: one publish to N subscribers (ms until each has the event)"
  echo
  echo "| subscribers | server | p50 | p99 | max | p99 rill / this |"
  echo "|---|---|---|---|---|---|"
  for n in 1000 10000; do
    for s in rill nginx nchan; do
      echo "| $n | $(case $s in rill) echo rill ;; nginx) echo nginx-lua ;; nchan) echo nchan ;; esac) | $(fan_med $s$n 1) | $(fan_med $s$n 2) | $(fan_med $s$n 3) | $(ratio "$(fan_med rill$n 2)" "$(fan_med $s$n 2)") |"
    done
  done
  echo
  echo "Medians over $ROUNDS runs × 5 publishes. \`build/bench/fanout PORT N 5\` counts a subscriber when its"
  echo "stream holds the round's payload. rill: \`rill.subscribe\` + \`rill.sse\` (the C pump); nginx-lua: one"
  echo "\`ngx.semaphore\` per subscriber, posted by the publish (bench/nginx.conf.in); nchan: bench/nchan.conf.in."
  echo
  echo "## Fan-out throughput (deliveries per second, N subscribers × M sequential publishes)"
  echo
  echo "| N × M | rill | nginx-lua | nchan | rill / nchan | rill / nginx-lua |"
  echo "|---|---|---|---|---|---|"
  for c in $THRU_CASES; do
    r=$(med "${THRU[rill$c]}") g=$(med "${THRU[nginx$c]}") h=$(med "${THRU[nchan$c]}")
    echo "| ${c/x/ × } | $r | $g | $h | $(ratio "$r" "$h") | $(ratio "$r" "$g") |"
  done
  echo
  echo "\`build/bench/fanthru PORT tput N M\`: the next publish goes when the previous reply is in; a delivery"
  echo "is counted when a subscriber's stream holds that event's payload; the clock stops when every"
  echo "subscriber has the last one. Medians of $ROUNDS runs. Deliveries missing: ${THRU_MISSING:-none, every run delivered all N × M events}."
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
