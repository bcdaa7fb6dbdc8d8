#!/bin/sh
# SPDX-License-Identifier: MIT
# A stand-in for the rill master, for spec/ctl_spec.lua: the pid file and
# status file protocol of src/ctl.c, and nothing else.
#   sh fake_master.sh PIDFILE     FAKE=ok|failed|deaf|die|stubborn  NOSTATUS=1
# ok: each HUP writes "<n> ok"; failed: "<n> failed" and two error lines;
# deaf: HUP is ignored; die: HUP exits 3; stubborn: TERM is ignored.
# TERM and QUIT print "got TERM" / "got QUIT" and exit 0.
pidfile=$1
status=$1.status
n=0

# Replaces the status file atomically, as the real master must.
put() {
    printf '%s\n' "$@" >"$status.tmp" && mv "$status.tmp" "$status"
}

on_hup() {
    n=$((n + 1))
    case $FAKE in
    failed) put "$n failed" "app.lua:3: unexpected symbol near 'end'" "second line" ;;
    deaf) ;;
    die) exit 3 ;;
    *) put "$n ok" ;;
    esac
}

k=0
on_usr2() {
    k=$((k + 1))
    case $FAKE in
    deaf) ;;
    die) exit 3 ;;
    *) printf 'pid %s answer %s\nrole fake\nrequests %s0\n' $$ $k $k >"$pidfile.stats.tmp" &&
        mv "$pidfile.stats.tmp" "$pidfile.stats" ;;
    esac
}

trap on_hup HUP
trap on_usr2 USR2
trap 'echo got TERM; exit 0' TERM
trap 'echo got QUIT; exit 0' QUIT
[ "$FAKE" = stubborn ] && trap 'echo ignored TERM' TERM
[ "$NOSTATUS" = 1 ] || put "0 ok"
echo $$ >"$pidfile"
echo "fake master ready"
while :; do sleep 0.02; done # traps run between sleeps
