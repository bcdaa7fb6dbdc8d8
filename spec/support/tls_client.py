# SPDX-License-Identifier: MIT
# A TLS client rill did not write, for spec/e2e_tls_spec.lua: Python's ssl
# module, with certificate and host name verification on, against
# spec/apps/tls.lua. Usage: tls_client.py CHECK PORT CAFILE [args]. Prints
# what it saw (one line), or exits non-zero with the reason.
import hashlib, os, signal, socket, ssl, sys, time, warnings

warnings.simplefilter("ignore")  # TLS 1.1 is deprecated: that is the point of "old"

check, port, cafile = sys.argv[1], int(sys.argv[2]), sys.argv[3]
args = sys.argv[4:]
signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGUSR1])  # for "held": sigwait takes it
TIMEOUT = float(os.environ.get("RILL_TEST_TIMEOUT", "10"))  # 60 under valgrind

def context(alpn=("http/1.1",), maximum=None):
    ctx = ssl.create_default_context(cafile=cafile)
    if alpn:
        ctx.set_alpn_protocols(list(alpn))
    if maximum:
        ctx.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
        ctx.maximum_version = maximum
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    return ctx

def connect(host="localhost", **kw):
    raw = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    return context(**kw).wrap_socket(raw, server_hostname=host)

def read_response(s, buf=b""):
    """One response (Content-Length or chunked): (status, headers, body, rest of buf)."""
    def more():
        nonlocal buf
        chunk = s.recv(65536)
        if not chunk:
            raise SystemExit("connection closed mid-response")
        buf += chunk
    while b"\r\n\r\n" not in buf:
        more()
    head, buf = buf.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {}
    for line in lines[1:]:
        k, v = line.split(":", 1)
        headers[k.strip().lower()] = v.strip()
    body = b""
    if headers.get("transfer-encoding") == "chunked":
        while True:
            while b"\r\n" not in buf:
                more()
            size, buf = buf.split(b"\r\n", 1)
            n = int(size, 16)
            while len(buf) < n + 2:
                more()
            body, buf = body + buf[:n], buf[n + 2:]
            if n == 0:
                break
    else:
        n = int(headers.get("content-length", "0"))
        while len(buf) < n:
            more()
        body, buf = buf[:n], buf[n:]
    return status, headers, body, buf

def get(s, path, extra=""):
    s.sendall(("GET %s HTTP/1.1\r\nHost: localhost\r\n%s\r\n" % (path, extra)).encode())
    return read_response(s)

if check == "hello":  # verification against the host name given (default localhost)
    host = args[0] if args else "localhost"
    try:
        s = connect(host)
    except ssl.SSLCertVerificationError as e:
        print("verify failed: %s" % e.verify_message)
        sys.exit(0)
    status, _, body, _ = get(s, "/")
    print("%d %s %s %s" % (status, s.version(), s.selected_alpn_protocol(), body.decode().strip()))

elif check == "alpn":  # what the server says to the protocols offered
    try:
        s = connect(alpn=tuple(args))
        print("selected %s" % s.selected_alpn_protocol())
    except ssl.SSLError as e:
        print("refused: %s" % e.reason)

elif check == "old":  # a client that speaks TLS 1.1 at most
    try:
        connect(maximum=ssl.TLSVersion.TLSv1_1)
        print("accepted")
    except ssl.SSLError as e:
        print("refused")

elif check == "fingerprint":  # the certificate served now; a keep-alive request on a connection opened before
    s = connect()
    print(hashlib.sha256(s.getpeercert(binary_form=True)).hexdigest())

elif check == "pipeline":  # three requests in one TLS record, then a head one byte per record
    s = connect()
    s.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n\r\nPOST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello"
              b"GET /nope HTTP/1.1\r\nHost: a\r\n\r\n")
    seen, buf = [], b""
    for _ in range(3):
        status, _, body, buf = read_response(s, buf)
        seen.append("%d:%s" % (status, body.decode().strip()))
    for b in b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n":
        s.sendall(bytes([b]))
    status, _, body, _ = read_response(s, buf)
    seen.append("%d:%s" % (status, body.decode()))
    print(" ".join(seen))

elif check == "refused":  # a head the gate refuses: its answer comes over TLS, then the close
    s = connect()
    s.sendall(b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n")
    status, headers, _, _ = read_response(s)
    closed = s.recv(100) == b""
    print("%d %s closed=%s" % (status, headers.get("connection"), closed))

elif check == "slow-head":  # a head that stops coming: a 408, over TLS
    s = connect()
    s.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n")
    status, _, _, _ = read_response(s)
    print("%d closed=%s" % (status, s.recv(100) == b""))

elif check == "big":  # a body larger than any socket buffer, read slowly
    s = connect()
    status, _, body, _ = get(s, "/big")
    print("%d %d %s" % (status, len(body), hashlib.sha256(body).hexdigest()[:16]))

elif check == "sse":  # each event is read before the next is published: no buffering could pass
    n = int(args[0])
    sub = connect()
    sub.sendall(b"GET /events HTTP/1.1\r\nHost: localhost\r\nAccept: text/event-stream\r\n\r\n")
    buf = b""
    while b"\r\n\r\n" not in buf:
        buf += sub.recv(4096)
    head, buf = buf.split(b"\r\n\r\n", 1)
    if b" 200 " not in head.split(b"\r\n")[0]:
        sys.exit("stream: %r" % head)
    pub = connect()
    got = []
    for i in range(n):
        payload = "event %d" % i
        body = payload.encode()
        pub.sendall(b"POST /publish HTTP/1.1\r\nHost: localhost\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        status, _, _, _ = read_response(pub)
        if status != 204:
            sys.exit("publish: %d" % status)
        want = ("data: %s\n\n" % payload).encode()
        while want not in buf:
            chunk = sub.recv(4096)  # the socket's timeout fails a stream that holds events back
            if not chunk:
                sys.exit("stream closed after %r" % got)
            buf += chunk
        got.append(payload)
        buf = buf.split(want, 1)[1]
    print("%d events, each before the next" % len(got))

elif check == "shed":  # one connection too many (--max-connections 1): its 503 comes over TLS
    first = connect()
    status, _, _, _ = get(first, "/")
    second = connect()
    status2, headers, _, _ = read_response(second)
    print("%d %d %s closed=%s" % (status, status2, headers.get("retry-after"), second.recv(100) == b""))

elif check == "tls12":  # a client that speaks TLS 1.2 at most: served, with a forward-secret AEAD suite
    s = connect(maximum=ssl.TLSVersion.TLSv1_2)
    status, _, body, _ = get(s, "/")
    print("%d %s %s" % (status, s.version(), s.cipher()[0]))

elif check == "late":  # a request sent after --request-timeout, on a connection that shook hands at once
    s = connect()
    time.sleep(float(args[0]))  # the client's own pace: the server must not count it against the request
    status, _, body, _ = get(s, "/")
    print("%d %s" % (status, body.decode().strip()))

elif check == "silent":  # shakes hands, sends nothing: what the server sends before it closes
    s = connect()
    data = b""
    try:
        while True:
            chunk = s.recv(100)
            if not chunk:
                break
            data += chunk
    except ssl.SSLError as e:
        print("error %s" % e.reason)
        sys.exit(0)
    print("closed after %r" % data)

elif check == "http10":  # a close-delimited body over TLS ends with close_notify, not a bare EOF
    ctx = context()
    ctx.options &= ~getattr(ssl, "OP_IGNORE_UNEXPECTED_EOF", 0)  # Python's default hides a bare EOF
    s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT), server_hostname="localhost")
    s.sendall(b"GET /three HTTP/1.0\r\nHost: a\r\n\r\n")
    data = b""
    try:
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    except ssl.SSLEOFError:
        print("truncated (no close_notify)")
        sys.exit(0)
    print("whole: %r" % data.split(b"\r\n\r\n", 1)[1])

elif check == "pipelined-big":  # a request behind one that waits, with a body larger than the input limit
    s = connect()
    body = b"z" * 20000
    data = b"GET /wait HTTP/1.1\r\nHost: a\r\n\r\nPOST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n" % len(body) + body
    # two TLS records of 10 KB: the second is read by OpenSSL whole, but only up to the
    # 16 KiB input limit handed on while /wait waits; the rest waits inside the SSL
    s.sendall(data[:10000])
    time.sleep(0.05)  # shapes the records only: the answer must be the same either way
    s.sendall(data[10000:])
    first, _, b1, buf = read_response(s)
    second, _, b2, _ = read_response(s, buf)
    print("%d %s %d %d" % (first, b1.decode().strip(), second, len(b2)))

elif check == "held":  # a connection opened before a SIGHUP goes on after it: SIGUSR1 says when
    s = connect()
    print(hashlib.sha256(s.getpeercert(binary_form=True)).hexdigest(), flush=True)
    signal.sigwait([signal.SIGUSR1])
    status, _, body, _ = get(s, "/")
    print("after: %d %s" % (status, body.decode().strip()), flush=True)

else:
    sys.exit("unknown check " + check)
