# SPDX-License-Identifier: MIT
# A client rill did not write, for spec/e2e_gzip_spec.lua: a raw HTTP/1.1
# reader and Python's zlib against spec/apps/gzip.lua. Usage:
# gzip_client.py CHECK PORT [args]. Prints what it saw (one line), or exits
# non-zero with the reason.
import os, re, socket, sys, zlib

check, port, args = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
TIMEOUT = float(os.environ.get("RILL_TEST_TIMEOUT", "10"))

class Conn:
    def __init__(self):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        self.buf = b""

    def more(self):
        chunk = self.s.recv(65536)
        if not chunk:
            raise EOFError("closed")
        self.buf += chunk

    def head(self):
        while b"\r\n\r\n" not in self.buf:
            self.more()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in lines[1:]:
            k, v = line.split(":", 1)
            headers.setdefault(k.strip().lower(), []).append(v.strip())
        return int(lines[0].split(" ")[1]), headers

    def chunk(self):
        """One chunk's data; b"" for the last."""
        while b"\r\n" not in self.buf:
            self.more()
        size, self.buf = self.buf.split(b"\r\n", 1)
        n = int(size, 16)
        while len(self.buf) < n + 2:
            self.more()
        data, self.buf = self.buf[:n], self.buf[n + 2:]
        return data

    def send(self, method, path, body=b"", headers=""):
        self.s.sendall(("%s %s HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n%s\r\n" %
                        (method, path, len(body), headers)).encode() + body)

def publish(c, topic, data):
    c.send("POST", "/publish/" + topic, data.encode())
    status, _ = c.head()
    if status != 204:
        sys.exit("publish: %d" % status)

if check == "events":  # K gzip'd subscribers and a plain one; each event read by all before the next is published
    topic, n, k = args[0], int(args[1]), int(args[2])
    subs = []
    for j in range(k + 1):
        c = Conn()
        plain = j == k
        c.send("GET", "/events/" + topic + ("?plain" if plain else ""), headers="Accept-Encoding: gzip\r\n")
        status, headers = c.head()
        if status != 200 or (headers.get("content-encoding") == ["gzip"]) == plain:
            sys.exit("stream %d: %d %r" % (j, status, headers))
        c.z = None if plain else zlib.decompressobj(16 + zlib.MAX_WBITS)
        c.text = ""
        subs.append(c)
    def read_until(c, want):
        while want not in c.text:  # every byte of it, from the chunks so far: nothing held back
            data = c.chunk()
            c.text += (c.z.decompress(data) if c.z else data).decode()
    for c in subs:
        read_until(c, "retry: 3000\n\n")  # subscribed
    pub = Conn()
    for i in range(n):
        publish(pub, topic, "event %d" % i)
        for c in subs:
            read_until(c, "data: event %d\n\n" % i)
    plain = subs[-1].text
    for j, c in enumerate(subs[:-1]):
        if c.text != plain:
            sys.exit("subscriber %d decompressed to %r, the plain stream is %r" % (j, c.text, plain))
    print("%d events to %d gzip subscribers, each whole when it arrived, each stream the plain one" % (n, k))

elif check == "staggered":  # gzip'd subscribers joining mid-window, resuming, and with heartbeats
    topic, n = args[0], int(args[1])
    pub = Conn()
    def join(query="", last_id=None):
        c = Conn()
        h = "Accept-Encoding: gzip\r\n" + ("Last-Event-ID: %s\r\n" % last_id if last_id else "")
        c.send("GET", "/events/" + topic + query, headers=h)
        status, headers = c.head()
        c.z = zlib.decompressobj(16 + zlib.MAX_WBITS) if headers.get("content-encoding") == ["gzip"] else None
        c.text = ""
        return c
    def read_until(c, want):
        while want not in c.text:
            data = c.chunk()
            c.text += (c.z.decompress(data) if c.z else data).decode()
    def ids(c):
        return [line[4:] for line in c.text.split("\n") if line.startswith("id: ")]
    first = [join(), join("?plain"), join("?beat=0.005")]
    for c in first:
        read_until(c, "retry: 3000\n\n")
    groups = [first]
    for i in range(n):
        if i == 10 or i == 70:  # later joiners land mid-window; one of them resumes from event 5
            late = [join(), join("?plain")]
            for c in late:
                read_until(c, "retry: 3000\n\n")
            groups.append(late)
        if i == 20:  # an id this topic never had: a rill-gap notice first, compressed alone
            unknown = [join(last_id="nope-1"), join("?plain", last_id="nope-1")]
            for c in unknown:
                read_until(c, "event: rill-gap\n")
            groups.append(unknown)
        if i == 100:
            last = ids(first[1])[4]
            resumed = [join(last_id=last), join("?plain", last_id=last)]
            for c in resumed:
                read_until(c, "data: event 99 ")  # its history, replayed
            groups.append(resumed)
        publish(pub, topic, "event %d %s" % (i, "x" * (i % 37)))
        for g in groups:
            for c in g:
                read_until(c, "data: event %d " % i)
                read_until(c, "\n\n")
    for g in groups:
        plains = [c for c in g if c.z is None]
        if len(plains) != 1:  # every other member was gzip'd, or there is nothing to compare
            sys.exit("a group has %d plain streams of %d" % (len(plains), len(g)))
        plain = plains[0].text
        for c in g:
            if c.z is not None and c.text.replace(":\n", "") != plain.replace(":\n", ""):
                sys.exit("a gzip'd subscriber decompressed to %r, its plain twin to %r" % (c.text[-300:], plain[-300:]))
    print("%d groups, every gzip'd stream its plain twin's" % len(groups))

elif check == "ends":  # hub streams ended by close_topic, then by SIGTERM (to our parent's pid)
    topic, n = args[0], int(args[1])
    def group(name):
        subs = []
        for query in ("", "?plain"):
            c = Conn()
            c.send("GET", "/events/" + name + query, headers="Accept-Encoding: gzip\r\n")
            status, headers = c.head()
            c.z = zlib.decompressobj(16 + zlib.MAX_WBITS) if headers.get("content-encoding") == ["gzip"] else None
            c.text = ""
            subs.append(c)
        return subs
    def read_to_end(c):
        while True:
            data = c.chunk()
            if not data:
                return
            c.text += (c.z.decompress(data) if c.z else data).decode()
    def check(subs):
        gz, plain = subs
        if gz.z is None:
            sys.exit("the gzip'd subscriber's stream was not gzip'd")
        read_to_end(gz)
        read_to_end(plain)
        if not gz.z.eof or gz.z.unused_data:
            sys.exit("not a whole gzip member: eof=%s unused=%r" % (gz.z.eof, gz.z.unused_data))
        # a shutdown's retry hint is random, each stream its own
        a, b = (re.sub(r"retry: \d+\n\n$", "retry: N\n\n", c.text) for c in (gz, plain))
        if a != b:
            sys.exit("decompressed %r, plain %r" % (gz.text[-200:], plain.text[-200:]))
    pub = Conn()
    closed = group(topic) + group(topic)
    for i in range(n):  # past a window's end (64), and a late joiner that gets events alone first
        if i == 10:
            closed += group(topic)
            for c in closed[-2:]:
                while "retry:" not in c.text:
                    data = c.chunk()
                    c.text += (c.z.decompress(data) if c.z else data).decode()
        publish(pub, topic, "event %d" % i)
    pub.send("POST", "/close/" + topic)
    pub.head()
    check(closed[:2])
    check(closed[2:4])
    check(closed[4:])  # its trailer's CRC covers events sent alone and shared
    cut = group(topic + "2") + group(topic + "2")
    for i in range(5):
        publish(pub, topic + "2", "event %d" % i)
    for c in cut:  # every one has had the five before the signal
        while "event 4" not in c.text:
            data = c.chunk()
            c.text += (c.z.decompress(data) if c.z else data).decode()
    os.kill(int(os.environ["RILL_PID"]), 15)
    check(cut[:2])
    check(cut[2:])
    print("closed: 3 whole, each its plain twin's; shutdown: 2 whole, each its plain twin's")

elif check == "stream":  # a whole compressed stream: its chunks, its trailer, what it decompresses to
    c = Conn()
    c.send("GET", args[0], headers="Accept-Encoding: gzip\r\n")
    status, headers = c.head()
    z = zlib.decompressobj(16 + zlib.MAX_WBITS)
    text, wire = "", 0
    while True:
        data = c.chunk()
        if not data:
            break
        wire += len(data)
        text += z.decompress(data).decode()
    print("%d %s eof=%s unused=%d text=%r" % (status, headers.get("content-encoding"), z.eof,
                                                len(z.unused_data), text))

elif check == "cut":  # a stream ended by the server's shutdown: what came decompresses, and ends whole
    c = Conn()
    c.send("GET", args[0], headers="Accept-Encoding: gzip\r\n")
    c.head()
    z = zlib.decompressobj(16 + zlib.MAX_WBITS)
    text = z.decompress(c.chunk()).decode()
    print("ready", flush=True)  # the spec sends SIGTERM now
    while True:
        data = c.chunk()
        if not data:
            break
        text += z.decompress(data).decode()
    print("eof=%s text=%r" % (z.eof, text))

else:
    sys.exit("unknown check " + check)
