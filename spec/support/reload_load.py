# SPDX-License-Identifier: MIT
"""A bounded request loop for spec/e2e_reload_spec.lua: CONNS threads, each
on its own keep-alive connection (the standard library's http.client), send
GET /version (the app answers "<version> <worker pid>") until every
connection has seen WANT (the new code) on at least AFTER replies, or the
bounds are hit (MAX_REQUESTS per connection, MAX_SECONDS in all).

    /usr/bin/python3 spec/support/reload_load.py PORT CONNS WANT [AFTER MAX_REQUESTS MAX_SECONDS]

Lines on stdout (flushed; the spec waits for them):
    load: running                once every connection had a first 200
    load: fail <conn> <what>     for each real failure
    load: retried <conn> <what>  for each retry (see below)
    load: done <json>            the report, then it exits 0

What counts (HTTP/1.1, RFC 9112 §9.3 and §9.6):
  - a reply with Connection: close ends the connection after that reply;
    http.client opens a new one for the next request: "reconnects";
  - an idle connection the server closed is seen before it is reused (it
    reads as ready: EOF), as urllib3 and browsers check, and replaced by a
    new one: "idle_closed";
  - a reused connection the server closed (EOF) before a single byte of the
    reply, its idle close crossing our request on the wire, may be retried,
    once, on a new connection, as clients do for idempotent requests
    (RFC 9112 §9.3.1): "retried"; the retry failing is a failure;
  - anything else is a failure: a reset or a close mid-reply, a status other
    than 200, a body that is not "v<n> <pid>\\n", a timeout (5 s per request).
"""
import http.client
import json
import re
import select
import sys
import threading
import time

PORT = int(sys.argv[1])
CONNS = int(sys.argv[2])
WANT = sys.argv[3]
AFTER = int(sys.argv[4]) if len(sys.argv) > 4 else 20
MAX_REQUESTS = int(sys.argv[5]) if len(sys.argv) > 5 else 50000
MAX_SECONDS = float(sys.argv[6]) if len(sys.argv) > 6 else 30.0
DEADLINE = time.monotonic() + MAX_SECONDS
BODY = re.compile(r"^(v\d+) (\d+)\n$")

started = threading.Barrier(CONNS + 1)
out_lock = threading.Lock()


def say(line):
    with out_lock:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


class Conn:
    def __init__(self, index):
        self.index = index
        self.requests = 0
        self.failures = 0
        self.reconnects = 0
        self.retried = 0
        self.last_pid = None
        self.idle_closed = 0
        self.versions = {}
        self.pids = set()
        self.want_seen = 0
        self.conn = None
        self.used = 0  # requests answered on the current connection

    def fail(self, what):
        self.failures += 1
        say("load: fail %d %s" % (self.index, what))

    def new_conn(self):
        if self.conn:
            self.conn.close()
        self.conn = http.client.HTTPConnection("127.0.0.1", PORT, timeout=5)
        self.used = 0

    def dropped(self):
        """Whether the server closed the idle connection (readable: EOF, or bytes nobody asked for)."""
        sock = self.conn.sock
        return sock is None or bool(select.select([sock], [], [], 0)[0])

    def head(self):
        """Sends the request and reads the status line and headers."""
        self.conn.request("GET", "/version")
        return self.conn.getresponse()

    def request(self):
        if self.conn is None:
            self.new_conn()
        if self.used > 0 and self.dropped():
            self.idle_closed += 1  # closed while idle: seen before reuse, as urllib3 does
            self.new_conn()
        reused = self.used > 0
        try:
            resp = self.head()
        except http.client.RemoteDisconnected as e:
            # EOF before a byte of the status line: the server's FIN crossed
            # our request (a reset or a broken pipe is a failure, below)
            self.new_conn()
            if not reused:
                self.fail("%s on a new connection" % type(e).__name__)
                return
            self.retried += 1
            say("load: retried %d %s (the connection's worker: pid %s)" % (self.index, type(e).__name__, self.last_pid))
            try:
                resp = self.head()
            except Exception as e2:  # noqa: BLE001 - every error is a failure here
                self.new_conn()
                self.fail("retry: %s: %s" % (type(e2).__name__, e2))
                return
        except Exception as e:  # noqa: BLE001
            self.new_conn()
            self.fail("%s: %s" % (type(e).__name__, e))
            return
        try:
            body = resp.read()  # a reset or close mid-reply raises here: a failure
        except Exception as e:  # noqa: BLE001
            self.new_conn()
            self.fail("reading the body: %s: %s" % (type(e).__name__, e))
            return
        self.requests += 1
        self.used += 1
        text = body.decode("utf-8", "replace")
        m = BODY.match(text)
        if resp.status != 200 or not m:
            self.fail("status %d body %r" % (resp.status, text[:80]))
        else:
            version, pid = m.group(1), int(m.group(2))
            self.versions[version] = self.versions.get(version, 0) + 1
            self.pids.add(pid)
            self.last_pid = pid
            if version == WANT:
                self.want_seen += 1
        if (resp.getheader("Connection") or "").lower() == "close":
            self.reconnects += 1
            self.new_conn()  # http.client would too; explicit, so it is counted

    def run(self):
        self.request()
        try:
            started.wait(10)
        except threading.BrokenBarrierError:
            return
        while (self.want_seen < AFTER and self.requests + self.failures < MAX_REQUESTS
               and time.monotonic() < DEADLINE):
            self.request()
        if self.conn:
            self.conn.close()


conns = [Conn(i) for i in range(CONNS)]
threads = [threading.Thread(target=c.run, daemon=True) for c in conns]
for t in threads:
    t.start()
try:
    started.wait(10)
    say("load: running")
except threading.BrokenBarrierError:
    say("load: fail - the connections did not all start")
for t in threads:
    t.join(max(0.0, DEADLINE - time.monotonic()) + 6)
report = {
    "requests": sum(c.requests for c in conns),
    "failures": sum(c.failures for c in conns),
    "reconnects": sum(c.reconnects for c in conns),
    "retried": sum(c.retried for c in conns),
    "idle_closed": sum(c.idle_closed for c in conns),
    "finished": sum(1 for c in conns if c.want_seen >= AFTER),
    "versions": [c.versions for c in conns],
    "pids": sorted(set().union(*(c.pids for c in conns))),
    "timed_out": time.monotonic() >= DEADLINE,
}
say("load: done " + json.dumps(report, sort_keys=True))
