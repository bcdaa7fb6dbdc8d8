#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The hub on Redis (--hub redis://) beside the in-memory hub, and nchan on
# Redis beside nchan in memory, in one run, one redis-server (no persistence)
# for both: one publish to 1,000 subscribers (p50/p99 until each has the
# event) and fan-out throughput (1,000 subscribers x 100 sequential
# publishes: deliveries per second). Servers on core 0, clients and Redis on
# core 1, rounds interleaved, medians. Writes bench/RESULTS-redis.md.
# Bounded: every run is ROUNDS x a fixed number of publishes.
#   bench/redis.sh [rounds=3]
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}
./scripts/deps.sh nginx libnginx-mod-nchan redis-server gcc curl
cmake -S . -B build >/dev/null && cmake --build build -j"${JOBS:-$(nproc)}" >/dev/null
mkdir -p build/bench
gcc -O2 bench/fanout.c -o build/bench/fanout
gcc -O2 bench/fanthru.c -o build/bench/fanthru
WORK=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT
ulimit -n "$(ulimit -Hn)"

P_REDIS=18601 P_MEM=18602 P_RED=18603 P_NMEM=18604 P_NRED=18605
ready() { curl -s -o /dev/null --retry 50 --retry-connrefused --retry-delay 0 --max-time 10 "http://127.0.0.1:$1/hello"; }

taskset -c 1 redis-server --port $P_REDIS --bind 127.0.0.1 --save '' --appendonly no \
  --dir "$WORK" --daemonize no >"$WORK/redis.log" 2>&1 & PIDS+=($!)
for _ in $(seq 1 100); do grep -q "Ready to accept" "$WORK/redis.log" && break; sleep 0.05; done
taskset -c 0 build/rill bench/app.lua --listen 127.0.0.1:$P_MEM 2>"$WORK/mem.log" & PIDS+=($!)
taskset -c 0 build/rill bench/app.lua --listen 127.0.0.1:$P_RED --hub redis://127.0.0.1:$P_REDIS \
  --hub-prefix bench: 2>"$WORK/red.log" & PIDS+=($!)
for s in nmem nred; do
  port=$([ $s = nmem ] && echo $P_NMEM || echo $P_NRED)
  conf=$([ $s = nmem ] && echo bench/nchan.conf.in || echo bench/nchan-redis.conf.in)
  mkdir -p "$WORK/$s"
  sed -e "s|@PORT@|$port|" -e "s|@DIR@|$WORK/$s|" -e "s|@REDIS_PORT@|$P_REDIS|" "$conf" >"$WORK/$s/nginx.conf"
  taskset -c 0 nginx -c "$WORK/$s/nginx.conf" -p "$WORK/$s" 2>"$WORK/$s.log" & PIDS+=($!)
done
for p in $P_MEM $P_RED $P_NMEM $P_NRED; do ready $p; done

median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
port_of() { case $1 in mem) echo $P_MEM ;; red) echo $P_RED ;; nmem) echo $P_NMEM ;; nred) echo $P_NRED ;; esac; }
declare -A FAN THRU
MISSING=""
for round in $(seq 1 "$ROUNDS"); do
  for s in mem red nmem nred; do
    FAN[$s]+=$(taskset -c 1 build/bench/fanout "$(port_of $s)" 1000 5 | awk -F'|' 'NR > 2 {print $3, $4}')$'\n'
    read -r _ _ dps missing < <(taskset -c 1 build/bench/fanthru "$(port_of $s)" tput$round 1000 100)
    THRU[$s]+="$dps "
    [ "$missing" = 0 ] || MISSING+="$s round $round: $missing; "
    echo "round $round $s: fan-out done, $dps deliveries/s" >&2
  done
done
# that both really went through Redis: the keys each left there
KEYS_RILL=$(redis-cli -p $P_REDIS --scan --pattern 'bench:*' | wc -l)
KEYS_ALL=$(redis-cli -p $P_REDIS dbsize)
fan() { awk -v c="$2" 'NF {print $c}' <<<"${FAN[$1]}" | median; }
thru() { tr ' ' '\n' <<<"${THRU[$1]}" | grep -v '^$' | median; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a / b}'; }
minus() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.3f", a - b}'; }

{
  echo "# The hub on Redis: results"
  echo
  echo "Written by \`bench/redis.sh $ROUNDS\` on $(nproc) CPUs, $(date -u +%Y-%m-%d): servers on core 0, the"
  echo "clients and one redis-server $(redis-server --version | awk '{print $3}' | tr -d v=) (no persistence) on core 1,"
  echo "rounds interleaved, medians over every publish of every round. Ratios, not absolute"
  echo "figures: the machine is shared and noisy."
  echo
  echo "| publish → 1,000 subscribers | p50 ms | p99 ms | p99 added by Redis (ms) |"
  echo "|---|---|---|---|"
  echo "| rill, in-memory hub | $(fan mem 1) | $(fan mem 2) | |"
  echo "| rill --hub redis | $(fan red 1) | $(fan red 2) | $(minus "$(fan red 2)" "$(fan mem 2)") |"
  echo "| nchan, in memory | $(fan nmem 1) | $(fan nmem 2) | |"
  echo "| nchan on Redis | $(fan nred 1) | $(fan nred 2) | $(minus "$(fan nred 2)" "$(fan nmem 2)") |"
  echo
  echo "| 1,000 subscribers × 100 publishes | deliveries/s | vs rill in-memory |"
  echo "|---|---|---|"
  for s in mem red nmem nred; do
    case $s in mem) name="rill, in-memory hub" ;; red) name="rill --hub redis" ;; nmem) name="nchan, in memory" ;; nred) name="nchan on Redis" ;; esac
    echo "| $name | $(thru $s) | $(ratio "$(thru $s)" "$(thru mem)")× |"
  done
  echo
  echo "rill on Redis vs nchan on Redis: p99 $(ratio "$(fan red 2)" "$(fan nred 2)")×, deliveries/s $(ratio "$(thru red)" "$(thru nred)")×."
  echo "Keys left in Redis: $KEYS_RILL by rill (one stream per topic), $((KEYS_ALL - KEYS_RILL)) by nchan."
  [ -z "$MISSING" ] || echo "Deliveries missing: $MISSING"
} >bench/RESULTS-redis.md
cat bench/RESULTS-redis.md
