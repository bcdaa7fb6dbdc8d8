# SPDX-License-Identifier: MIT
# Fan-out over TLS (bench/web.sh): N subscribers of https://127.0.0.1:PORT/events/TOPIC,
# ROUNDS publishes (over plain HTTP to PUBPORT), each timed until every
# subscriber's stream holds its payload. Prints p50 p99 max in ms over all rounds.
#   python3 bench/tlsfan.py TLSPORT PUBPORT TOPIC N ROUNDS
import select, socket, ssl, sys, time

port, pubport, topic, n, rounds = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
ctx.set_alpn_protocols(["http/1.1"])

subs = []
for _ in range(n):
    s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=30))
    s.sendall(("GET /events/%s HTTP/1.1\r\nHost: a\r\nAccept: text/event-stream\r\n\r\n" % topic).encode())
    s.setblocking(False)
    subs.append([s, b""])
by_fd = {c[0].fileno(): c for c in subs}
poll = select.epoll()
for c in subs:
    poll.register(c[0].fileno(), select.EPOLLIN)

def drain(c):
    while True:
        try:
            data = c[0].recv(65536)
        except (ssl.SSLWantReadError, BlockingIOError):
            return
        if not data:
            sys.exit("a subscriber was closed")
        c[1] += data

def until(pred, stamp=None):
    while not pred():
        for fd, _ in poll.poll(30):
            drain(by_fd[fd])
            if stamp:
                stamp(by_fd[fd])

until(lambda: all(b"\r\n\r\n" in c[1] for c in subs))
lat = []
for r in range(rounds):
    for c in subs:
        c[1] = b""
    payload = b"round-%d-%d" % (r, time.monotonic_ns())
    done = {}
    def stamp(c):
        if id(c) not in done and payload in c[1]:
            done[id(c)] = time.monotonic()
    pub = socket.create_connection(("127.0.0.1", pubport), timeout=30)
    t0 = time.monotonic()
    pub.sendall(b"POST /publish/%s HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % (topic.encode(), len(payload)) + payload)
    until(lambda: len(done) == n, stamp)
    pub.close()
    lat += [(t - t0) * 1000 for t in done.values()]
lat.sort()
print("%.3f %.3f %.3f" % (lat[len(lat) // 2], lat[int(len(lat) * 0.99) - 1], lat[-1]))
