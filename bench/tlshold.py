# SPDX-License-Identifier: MIT
# Idle event streams over TLS (bench/web.sh): holds 500, then N more TLS
# connections on PATH (each past its handshake and its response head), and
# prints the server process's RSS growth per stream in KiB over the N.
#   python3 bench/tlshold.py PORT PATH N PID
import socket, ssl, sys

port, path, n, pid = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])

def rss_kb():
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS"):
                return int(line.split()[1])

ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE

def hold(k):
    held = []
    for _ in range(k):
        s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=30))
        s.sendall(("GET %s HTTP/1.1\r\nHost: a\r\nAccept: text/event-stream\r\n\r\n" % path).encode())
        head = s.recv(4096)  # the head: the stream is open
        if b" 200 " not in head.split(b"\r\n", 1)[0]:
            sys.exit("not a stream: %r" % head[:80])
        held.append(s)
    return held

warm = hold(500)
before = rss_kb()
streams = hold(n)
print("%.2f" % ((rss_kb() - before) / n))
