#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Issue 16's benchmarks, rill against nginx in the same run (one worker each,
# the server on core 0, the clients on core 1, rounds interleaved, medians):
#   - hello over TLS (wrk, keep-alive): req/s and server CPU per request;
#   - fan-out of one publish to 1,000 subscribers over TLS (rill against nchan): p50/p99;
#   - static files (wrk): a 4 KiB and a 1 MiB file, rill.static against nginx
#     with sendfile on, plain HTTP;
#   - compressed fan-out to 1,000 subscribers x 100 publishes (bench/gzfan.py):
#     server CPU per delivery with the topic's shared compression, with a
#     compressor per subscriber (a generator stream), and their plain twins;
#     bytes sent per event.
# Writes bench/RESULTS-web.md. Bounded: ROUNDS x SECONDS per measurement.
#   bench/web.sh [rounds=3] [seconds=5]
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}
SECS=${2:-5}
./scripts/deps.sh wrk nginx libnginx-mod-nchan python3 openssl
cmake -S . -B build >/dev/null && cmake --build build -j"${JOBS:-$(nproc)}" >/dev/null
WORK=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT
ulimit -n "$(ulimit -Hn)"

RILL=18401 RILL_TLS=18402 NGINX=18403 NGINX_TLS=18404
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 -subj /CN=localhost \
  -keyout "$WORK/key.pem" -out "$WORK/cert.pem" 2>/dev/null
chmod 755 "$WORK" # nginx's worker (nobody, when run as root) reads the files
chmod 600 "$WORK/key.pem"
mkdir -p "$WORK/www/assets"
head -c 4096 /dev/urandom > "$WORK/www/assets/small.bin"
head -c 1048576 /dev/urandom > "$WORK/www/assets/big.bin"

STATIC_ROOT="$WORK/www/assets" taskset -c 0 build/rill bench/app.lua --listen 127.0.0.1:$RILL \
  --listen https://127.0.0.1:$RILL_TLS --tls-cert "$WORK/cert.pem" --tls-key "$WORK/key.pem" \
  2>"$WORK/rill.log" & PIDS+=($!); RILL_PID=$!
sed -e "s|@PORT@|$NGINX|" -e "s|@TLSPORT@|$NGINX_TLS|" -e "s|@DIR@|$WORK|" bench/web.conf.in > "$WORK/nginx.conf"
taskset -c 0 nginx -c "$WORK/nginx.conf" -p "$WORK" 2>"$WORK/nginx.log" & PIDS+=($!); NGINX_JOB=$!
ready() { curl -sk -o /dev/null --retry 50 --retry-connrefused --retry-delay 0 --max-time 10 "$1/hello"; }
ready http://127.0.0.1:$RILL; ready https://127.0.0.1:$RILL_TLS
ready http://127.0.0.1:$NGINX; ready https://127.0.0.1:$NGINX_TLS
for p in $RILL $NGINX; do # both serve the files, whole: wrk counts no statuses
  [ "$(curl -s -o /dev/null -w '%{http_code} %{size_download}' http://127.0.0.1:$p/assets/big.bin)" = "200 1048576" ] ||
    { echo "port $p does not serve the bench file"; exit 1; }
done
NGINX_PID=$(pgrep -P "$NGINX_JOB" | head -1)

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
HZ=$(getconf CLK_TCK)
measure() { # url pid: "req/s cpu_us_per_request"
  local t0 t1 out reqs rps
  t0=$(cpu_ticks "$2")
  out=$(taskset -c 1 wrk -t1 -c50 -d"${SECS}s" "$1")
  t1=$(cpu_ticks "$2")
  rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  reqs=$(echo "$out" | awk '/requests in/ {print $1}')
  echo "$rps $(awk -v d=$((t1 - t0)) -v hz="$HZ" -v n="$reqs" 'BEGIN {printf "%.2f", d / hz * 1e6 / n}')"
}

declare -A RPS CPU
for ((r = 0; r < ROUNDS; r++)); do
  for w in "tls-hello https://127.0.0.1:%s/hello" "small http://127.0.0.1:%s/assets/small.bin" \
           "big http://127.0.0.1:%s/assets/big.bin"; do
    name=${w%% *} url=${w#* }
    case $name in tls-hello) rp=$RILL_TLS np=$NGINX_TLS ;; *) rp=$RILL np=$NGINX ;; esac
    read -r a b <<<"$(measure "$(printf "$url" "$rp")" "$RILL_PID")"; RPS[rill-$name]+="$a "; CPU[rill-$name]+="$b "
    read -r a b <<<"$(measure "$(printf "$url" "$np")" "$NGINX_PID")"; RPS[nginx-$name]+="$a "; CPU[nginx-$name]+="$b "
  done
done
med() { tr ' ' '\n' <<<"$1" | grep . | median; }

# fan-out over TLS: 1,000 subscribers, ROUNDS x 5 publishes each
declare -A LAT
for ((r = 0; r < ROUNDS; r++)); do
  LAT[rill]+="$(taskset -c 1 python3 bench/tlsfan.py $RILL_TLS $RILL tlsfan$r 1000 5);"
  LAT[nchan]+="$(taskset -c 1 python3 bench/tlsfan.py $NGINX_TLS $NGINX tlsfan$r 1000 5);"
done
lat_med() { tr ';' '\n' <<<"$1" | grep . | awk -v f="$2" '{print $f}' | median; }

# idle event streams over TLS: KiB of server RSS per stream, 3,000 on each server (fresh: first use)
HOLD_RILL=$(taskset -c 1 python3 bench/tlshold.py $RILL_TLS /sse 3000 $RILL_PID)
HOLD_NCHAN=$(taskset -c 1 python3 bench/tlshold.py $NGINX_TLS /events/idle 3000 $NGINX_PID)

# compressed fan-out: server CPU per delivery, 1,000 x 100
declare -A GZ BYTES
for ((r = 0; r < ROUNDS; r++)); do
  for v in "shared /gz/events" "pump-plain /events" "per-sub /gen/events" "gen-plain /gen/events"; do
    name=${v%% *} path=${v#* } topic=gz$r$name
    [ "$name" = per-sub ] && topic="$topic?gz"
    read -r secs bytes <<<"$(taskset -c 1 python3 bench/gzfan.py $RILL $RILL_PID "$path" "$topic" 1000 100)"
    GZ[$name]+="$(awk -v s="$secs" 'BEGIN {printf "%.2f", s * 1e6 / 100000}') "; BYTES[$name]=$bytes
  done
done

{
  echo "# Issue 16 benchmarks: TLS, static files, compressed fan-out"
  echo
  echo "Measured by \`bench/web.sh $ROUNDS $SECS\` on $(date -u +%Y-%m-%d), $(nproc) cores: each server pinned to core 0,"
  echo "the clients on core 1, rounds interleaved, medians of $ROUNDS. $(nginx -v 2>&1), $(openssl version)."
  echo "The machine is shared and noisy: read the ratios, not the absolute figures."
  echo
  echo "## Requests per second (wrk -t1 -c50, keep-alive)"
  echo
  echo "| workload | rill | nginx | rill / nginx | rill CPU µs/req | nginx CPU µs/req |"
  echo "|---|---|---|---|---|---|"
  for name in tls-hello small big; do
    a=$(med "${RPS[rill-$name]}") b=$(med "${RPS[nginx-$name]}")
    echo "| $name | $a | $b | $(awk -v a="$a" -v b="$b" 'BEGIN {printf "%.2f", a / b}') | $(med "${CPU[rill-$name]}") | $(med "${CPU[nginx-$name]}") |"
  done
  echo
  echo "tls-hello: \"hello world\" over TLS 1.3 (nginx: \`return 200\`). small, big: a 4 KiB and a 1 MiB file,"
  echo "rill.static (small: read and sent with the head; big: sendfile) against nginx \`sendfile on\`, plain HTTP."
  echo
  echo "## Fan-out over TLS: one publish to 1,000 subscribers (ms until each has it)"
  echo
  echo "| server | p50 | p99 | max |"
  echo "|---|---|---|---|"
  for s in rill nchan; do
    echo "| $s | $(lat_med "${LAT[$s]}" 1) | $(lat_med "${LAT[$s]}" 2) | $(lat_med "${LAT[$s]}" 3) |"
  done
  echo
  echo "bench/tlsfan.py (Python's ssl, epoll) subscribes over TLS; the publish is plain HTTP. The client is"
  echo "the same for both and slower than the servers: the figures bound what a client sees, and compare."
  echo
  echo "## Idle event streams over TLS (KiB of server RSS per stream, 3,000 streams)"
  echo
  echo "| rill | nchan | rill / nchan |"
  echo "|---|---|---|"
  echo "| $HOLD_RILL | $HOLD_NCHAN | $(awk -v a="$HOLD_RILL" -v b="$HOLD_NCHAN" 'BEGIN {printf "%.2f", a / b}') |"
  echo
  echo "rill: \`rill.sse(rill.subscribe(\"idle\"), {heartbeat = 0})\` (the C-fed stream) over TLS 1.3; nchan:"
  echo "\`nchan_subscriber eventsource\`. bench/tlshold.py holds 500 first, then counts the next 3,000."
  echo
  echo "## Compressed fan-out: 1,000 subscribers x 100 publishes"
  echo
  echo "| stream | server CPU µs per delivery | bytes sent per event |"
  echo "|---|---|---|"
  for name in pump-plain shared gen-plain per-sub; do
    echo "| $name | $(med "${GZ[$name]}") | ${BYTES[$name]} |"
  done
  s=$(med "${GZ[shared]}") p=$(med "${GZ[pump-plain]}") g=$(med "${GZ[per-sub]}") q=$(med "${GZ[gen-plain]}")
  echo
  echo "Compression's own cost per delivery: shared $(awk -v a="$s" -v b="$p" 'BEGIN {printf "%.2f", a - b}') µs"
  echo "(shared - pump-plain), per subscriber $(awk -v a="$g" -v b="$q" 'BEGIN {printf "%.2f", a - b}') µs (per-sub - gen-plain)."
  echo "shared: \`rill.sse(rill.subscribe(t), {compress = true})\`, the C pump, each event compressed once"
  echo "for the topic in windows of 64; per-sub: the same subscription read by a Lua function"
  echo "(\`rill.sse(function() return sub() end, {compress = true})\`), so each stream has its own"
  echo "compressor; pump-plain and gen-plain are the same without compression. Events are ~120-byte JSON;"
  echo "bench/gzfan.py decompresses every stream and counts a delivery by its payload."
} > bench/RESULTS-web.md
cat bench/RESULTS-web.md
