#!/bin/sh
# SPDX-License-Identifier: MIT
# Runs busted under Lua 5.4 (Debian's `lua` may be another version) and ends
# with one "busted: N passed, N failed" line. Arguments: specs to run (default: all).
set -u
out=$(mktemp)
trap 'rm -f "$out"' EXIT
busted --lua=lua5.4 "$@" 2>&1 | tee "$out"
status=0
line=$(grep -E '^[0-9]+ success(es)? / [0-9]+ failures? / [0-9]+ errors? / [0-9]+ pending' "$out" | tail -n 1)
if [ -z "$line" ]; then
  echo "busted: no summary (busted did not run)"
  exit 1
fi
set -- $(echo "$line" | grep -Eo '[0-9]+' | head -n 4)
failed=$(( $2 + $3 ))
[ "$failed" -eq 0 ] && [ "$1" -gt 0 ] || status=1
echo "busted: $1 passed, $failed failed, $4 skipped"
exit $status
