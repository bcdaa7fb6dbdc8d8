# SPDX-License-Identifier: MIT
# Compressed fan-out (bench/web.sh): N subscribers of PATH/TOPIC, M publishes
# of a JSON event, each sent when every subscriber has had the one before
# (decompressed when the stream is gzip'd, and found by its payload). Prints
# the server's CPU seconds over the publishes (from /proc/PID/stat) and the
# bytes each subscriber was sent per event.
#   python3 bench/gzfan.py PORT PID PATH TOPIC N M
import json, os, random, select, socket, sys, zlib

port, pid, path, topic, n, m = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4], int(sys.argv[5]), int(sys.argv[6])
HZ = os.sysconf("SC_CLK_TCK")

def cpu():
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / HZ

class Sub:
    def __init__(self):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.s.sendall(("GET %s/%s HTTP/1.1\r\nHost: a\r\nAccept: text/event-stream\r\nAccept-Encoding: gzip\r\n\r\n" % (path, topic)).encode())
        self.raw, self.text, self.wire, self.head, self.z = b"", "", 0, False, None
    def feed(self, data):
        self.raw += data
        if not self.head:
            if b"\r\n\r\n" not in self.raw:
                return
            head, self.raw = self.raw.split(b"\r\n\r\n", 1)
            self.head = True
            if b"content-encoding: gzip" in head.lower():
                self.z = zlib.decompressobj(16 + zlib.MAX_WBITS)
        while b"\r\n" in self.raw:  # chunks
            size, rest = self.raw.split(b"\r\n", 1)
            k = int(size, 16)
            if len(rest) < k + 2:
                return
            chunk, self.raw = rest[:k], rest[k + 2:]
            self.wire += len(chunk)
            self.text += (self.z.decompress(chunk) if self.z else chunk).decode()

subs = [Sub() for _ in range(n)]
by_fd = {c.s.fileno(): c for c in subs}
poll = select.epoll()
for c in subs:
    poll.register(c.s.fileno(), select.EPOLLIN)

def until(pred):
    while not pred():
        for fd, _ in poll.poll(30):
            c = by_fd[fd]
            data = c.s.recv(262144)
            if not data:
                sys.exit("a subscriber was closed")
            c.feed(data)

until(lambda: all("retry:" in c.text for c in subs))
for c in subs:
    c.text, c.wire = "", 0
pub = socket.create_connection(("127.0.0.1", port), timeout=30)
random.seed(7)
t0 = cpu()
for i in range(m):
    payload = json.dumps({"seq": i, "t": 1700000000 + i / 2, "cpu": round(random.random(), 3),
                          "mem": random.randint(10**7, 2 * 10**7), "host": "web-%d" % random.randint(1, 9),
                          "msg": random.choice(["ok", "slow request", "cache miss", "user login"])})
    pub.sendall(("POST /publish/%s HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n%s" % (topic, len(payload), payload)).encode())
    got = b""
    while b"\r\n\r\n" not in got:
        got += pub.recv(4096)
    head, body = got.split(b"\r\n\r\n", 1)
    length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
    while len(body) < length:
        body += pub.recv(4096)
    marker = '"seq": %d,' % i
    until(lambda: all(marker in c.text for c in subs))
    for c in subs:
        c.text = c.text[c.text.index(marker):]
t1 = cpu()
print("%.3f %.1f" % (t1 - t0, sum(c.wire for c in subs) / n / m))
