#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Where an idle stream's bytes go (bench/run.sh): the per-stream difference
between two massif detailed snapshots of one rill process (at N1 and N2 held
streams, each after a full Lua collection), every allocation site put in a
category by its call stack, with the Lua state's share split by kind from
bench/luacount.c's two snapshots taken at the same moments.
  bytes.py MASSIF1 MASSIF2 LUACOUNT STREAMS  ->  "category<TAB>bytes" lines
Libevent and Lua are Debian's stripped builds: their internal functions show as
??? and a site is named by its nearest exported or rill frame."""
import collections
import re
import sys


def leaves(path):
    """{call stack (innermost first): bytes} of a detailed snapshot; extra heap."""
    out, stack, extra = collections.Counter(), [], 0
    for line in open(path):
        if line.startswith("mem_heap_extra_B="):
            extra = int(line.split("=")[1])
        m = re.match(r"^( *)n(\d+): (\d+) (.*)$", line.rstrip("\n"))
        if not m:
            continue
        depth, kids, size, rest = len(m.group(1)), int(m.group(2)), int(m.group(3)), m.group(4)
        f = re.match(r"0x[0-9A-F]+: (\S+)", rest)
        name = f.group(1) if f else "below-threshold"
        del stack[depth:]
        stack.append(name)
        if kids == 0:
            out[tuple(stack[1:])] += size
    return out, extra


# (category, test on the named frames, innermost first); the first that matches wins
def first(names, *fns):
    return bool(names) and names[0] in fns


RULES = [
    ("Lua state (all of it; split below)", lambda n: "capped_alloc" in n),
    ("libevent: the bufferevent (struct bufferevent_private)", lambda n: first(n, "bufferevent_socket_new")),
    ("libevent: the bufferevent's input and output evbuffers",
     lambda n: first(n, "evbuffer_new") and "bufferevent_socket_new" in n),
    ("libevent: evbuffer callback entries (rill's progress and input callbacks, the bufferevent's)",
     lambda n: first(n, "evbuffer_add_cb")),
    ("libevent: the epoll fd map (evmap_io)", lambda n: bool(n) and n[0].startswith("evmap_")),
    ("evhttp: the connection (struct evhttp_connection, its address)",
     lambda n: "evhttp_connection_base_bufferevent_new" in n[:2]),
    ("evhttp: the request (struct evhttp_request)", lambda n: first(n, "evhttp_request_new")),
    ("evhttp: the request's input and output evbuffers",
     lambda n: first(n, "evbuffer_new") and "evhttp_request_new" in n),
    ("evhttp: the URI (parsed, and its strings)",
     lambda n: "evhttp_uri_parse_with_flags" in n[:2] or n[:2] == ["strdup", "evhttp_parse_firstline_"]),
    ("evhttp: the request headers (evkeyval, names and values)",
     lambda n: first(n, "bufferevent_run_readcb_") or n[:2] == ["strdup", "bufferevent_run_readcb_"]),
    ("evhttp: the response line's reason", lambda n: "evhttp_response_code_" in n[:2]),
    ("rill: struct rill_request (its task's timer and the heartbeat event inside)",
     lambda n: first(n, "request_new")),
    ("rill: struct rill_conn", lambda n: first(n, "on_accept")),
    ("rill: the connection index (by_fd), amortised", lambda n: first(n, "index_put")),
    ("libevent: evbuffer chains (buffered bytes)",
     lambda n: bool(n) and n[0].startswith("evbuffer_") and n[0] != "evbuffer_new"),
    ("libevent: the timer heap (armed timers), amortised",
     lambda n: bool(n) and (n[0].startswith("min_heap") or n[0] == "event_add_nolock_")),
    ("rill: the slots of Lua `req` views, amortised", lambda n: first(n, "take_slot")),
]

LUA = {4: "strings", 20: "strings", 5: "tables (Table headers)", 6: "Lua closures", 38: "C closures",
       7: "userdata (the C-fed stream's: struct subscription, the hub cursor)", 8: "coroutines (lua_State)",
       9: "upvalues", 10: "function prototypes"}


def lua_snapshots(path):
    snaps, cur = [], None
    for line in open(path):
        f = line.split()
        if f[0] == "snapshot":
            cur = collections.Counter()
            snaps.append(cur)
        elif f[0] == "kind" and f[1] != "0":
            cur[LUA.get(int(f[1]), "other objects (tag %s)" % f[1])] += int(f[3])
        elif f[0] == "size":
            size = int(f[1])
            if size == 64:
                kind = "CallInfo frames (64 B each)"
            elif size >= 720 and size % 16 == 0:
                kind = "coroutine stacks, and big arrays like the registry's (blocks of 720 B and up)"
            else:
                kind = "other untagged blocks (table parts, ...)"
            cur[kind] += int(f[3])
    return snaps[-2], snaps[-1]


def main():
    a, extra_a = leaves(sys.argv[1])
    b, extra_b = leaves(sys.argv[2])
    n = float(sys.argv[4])
    cats = collections.Counter()
    for stack in set(a) | set(b):
        names = [f for f in stack if f != "???"]
        for cat, test in RULES:
            if test(names):
                break
        else:
            cat = "other: " + (names[0] if names else "???")
        cats[cat] += (b[stack] - a[stack]) / n
    la, lb = lua_snapshots(sys.argv[3])
    lua = {k: (lb[k] - la[k]) / n for k in set(la) | set(lb)}
    small = 0.0
    for cat, v in sorted(cats.items(), key=lambda kv: -kv[1]):
        if cat.startswith("other") and abs(v) < 8:
            small += v
            continue
        print("%s\t%.0f" % (cat, v))
        if cat.startswith("Lua state"):
            for k, lv in sorted(lua.items(), key=lambda kv: -kv[1]):
                if abs(lv) >= 0.5:
                    print("  Lua: %s\t%.0f" % (k, lv))
    print("other sites (under 8 B each)\t%.0f" % small)
    print("malloc's own overhead per block (massif's extra heap)\t%.0f" % ((extra_b - extra_a) / n))
    print("total\t%.0f" % (sum(cats.values()) + (extra_b - extra_a) / n))


main()
