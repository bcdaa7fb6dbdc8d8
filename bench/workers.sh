#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# rill with --workers 2 beside one process, and nginx with lua-nginx-module at
# worker_processes 2 beside 1, in one run: /hello req/s and the server's CPU
# per request (every process of the server summed: master and workers), wrk
# unpinned (-t2 -c50); and one publish to 1,000 subscribers spread over the
# workers, p99 to the last subscriber, rill --workers 2 against one process.
# Rounds interleaved, medians. Writes bench/RESULTS-workers.md. Bounded:
# ROUNDS x SECONDS per measurement.
#   bench/workers.sh [rounds=3] [seconds=5]
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}
SECS=${2:-5}
./scripts/deps.sh wrk nginx libnginx-mod-http-lua gcc
cmake -S . -B build >/dev/null && cmake --build build -j"${JOBS:-$(nproc)}" >/dev/null
mkdir -p build/bench
gcc -O2 bench/fanout.c -o build/bench/fanout
WORK=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT
ulimit -n "$(ulimit -Hn)"

P_R1=18401 P_R2=18402 P_N1=18403 P_N2=18404
ready() { curl -s -o /dev/null --retry 50 --retry-connrefused --retry-delay 0 --max-time 10 "http://127.0.0.1:$1/hello"; }

build/rill bench/app.lua --listen 127.0.0.1:$P_R1 2>"$WORK/r1.log" & PIDS+=($!); R1=$!
build/rill bench/app.lua --listen 127.0.0.1:$P_R2 --workers 2 --pid-file "$WORK/r2.pid" 2>"$WORK/r2.log" & PIDS+=($!); R2=$!
for n in 1 2; do
  port=$([ $n = 1 ] && echo $P_N1 || echo $P_N2)
  mkdir -p "$WORK/n$n"
  sed -e "s|@PORT@|$port|" -e "s|@DIR@|$WORK/n$n|" -e "s|@UPSTREAM_PORT@|18499|" \
    -e "s|^worker_processes 1;|worker_processes $n;|" bench/nginx.conf.in > "$WORK/n$n/nginx.conf"
  nginx -c "$WORK/n$n/nginx.conf" -p "$WORK/n$n" 2>"$WORK/n$n.log" & PIDS+=($!)
  eval "N$n=\$!"
done
for p in $P_R1 $P_R2 $P_N1 $P_N2; do ready $p; done

# CPU ticks of a process and its children (a master and its workers; nginx's master and workers)
tree_ticks() {
  local total=0 p
  for p in $1 $(pgrep -P "$1" || true); do
    total=$((total + $(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0)))
  done
  echo $total
}
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
HZ=$(getconf CLK_TCK)

measure() { # port pid → "req/s cpu_us_per_request"
  local t0 t1 out reqs rps
  t0=$(tree_ticks "$2")
  out=$(wrk -t2 -c50 -d"${SECS}s" "http://127.0.0.1:$1/hello")
  t1=$(tree_ticks "$2")
  rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  reqs=$(echo "$out" | awk '/requests in/ {print $1}')
  echo "$rps $(awk -v d=$((t1 - t0)) -v hz="$HZ" -v n="$reqs" 'BEGIN {printf "%.2f", d / hz * 1e6 / n}')"
}

declare -A RPS CPU FAN
for round in $(seq 1 "$ROUNDS"); do
  for s in r1 r2 n1 n2; do
    case $s in r1) port=$P_R1 pid=$R1 ;; r2) port=$P_R2 pid=$R2 ;; n1) port=$P_N1 pid=$N1 ;; n2) port=$P_N2 pid=$N2 ;; esac
    read -r rps cpu < <(measure $port $pid)
    RPS[$s]+="$rps " CPU[$s]+="$cpu "
    echo "round $round $s /hello: $rps req/s, $cpu us cpu/request" >&2
  done
  for s in r1 r2; do
    port=$([ $s = r1 ] && echo $P_R1 || echo $P_R2)
    FAN[$s]+=$(build/bench/fanout "$port" 1000 5 | awk -F'|' 'NR > 2 {print $4}')$'\n'
    echo "round $round $s fan-out to 1000 done" >&2
  done
done
med() { tr ' ' '\n' <<<"$1" | grep -v '^$' | median; }
fan_p99() { awk 'NF {print $1}' <<<"${FAN[$1]}" | median; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a / b}'; }

{
  echo "# rill --workers: results"
  echo
  echo "Written by \`bench/workers.sh $ROUNDS $SECS\` on $(nproc) CPUs, $(date -u +%Y-%m-%d). wrk -t2 -c50 and"
  echo "the servers unpinned, on the same machine; CPU per request sums every process of a server"
  echo "(rill's master and workers, nginx's master and workers). Ratios, not absolute figures: the"
  echo "machine is shared and noisy."
  echo
  echo "| /hello | req/s | CPU µs/request | CPU/request vs its 1-process figure |"
  echo "|---|---|---|---|"
  for s in r1 r2 n1 n2; do
    case $s in r1) name="rill (one process)" base=r1 ;; r2) name="rill --workers 2" base=r1 ;; n1) name="nginx-lua, 1 worker" base=n1 ;; n2) name="nginx-lua, 2 workers" base=n1 ;; esac
    echo "| $name | $(med "${RPS[$s]}") | $(med "${CPU[$s]}") | $(ratio "$(med "${CPU[$s]}")" "$(med "${CPU[$base]}")")× |"
  done
  echo
  echo "| publish → 1,000 subscribers | p99 to the last subscriber (ms) | vs one process |"
  echo "|---|---|---|"
  echo "| rill (one process) | $(fan_p99 r1) | 1.00× |"
  echo "| rill --workers 2 (subscribers spread over both) | $(fan_p99 r2) | $(ratio "$(fan_p99 r2)" "$(fan_p99 r1)")× |"
} > bench/RESULTS-workers.md
cat bench/RESULTS-workers.md
