# SPDX-License-Identifier: MIT
"""A strict HTTP/1.1 client (Debian's python3-h11) against spec/apps/framing.lua,
for spec/e2e_strict_client_spec.lua:

    /usr/bin/python3 spec/support/h11_client.py --list      the case names
    /usr/bin/python3 spec/support/h11_client.py --port N    runs every case

Each case sends one request (HTTP/1.1 through h11 itself; HTTP/1.0 as raw
bytes, since h11 only sends 1.1) with a second request pipelined behind it
in the same write, and reads both responses with a fresh h11 parser each
(so a 1.0 exchange is parsed strictly too). h11 must accept every response;
the case then checks what h11 does not: Date, no duplicate framing headers,
no body and no framing on 204/304, HEAD and 304 lengths equal to GET's, the
connection closing exactly when a response says so, and the pipelined
request answered correctly when it stays open. One JSON line per case on
stdout: {"case": name, "ok": bool, "problems": [...]}; then "h11 client: done".
Bounded: a 5 s timeout on every read, 120 s for the whole run.
"""
import json
import socket
import sys
import time

import h11

READ_TIMEOUT = 5.0
RUN_DEADLINE = time.monotonic() + 120
MAX_BODY = 1024  # the spec starts rill with --max-body-bytes 1024

HELLO = b"hello\n"
LAZY3 = b"line 1\nline 2\nline 3\n"

# path -> (status for GET/POST, body for GET/POST or None for "any")
ROUTES = [
    ("/string", 200, HELLO),
    ("/empty-string", 200, b""),
    ("/none", 204, b""),
    ("/list", 200, b"abc"),
    ("/empty-list", 200, b""),
    ("/lazy", 200, LAZY3),
    ("/lazy-sleep", 200, b"tick 1\ntick 2\n"),
    ("/sse", 200, b"retry: 3000\n\ndata: one\n\nevent: two\ndata: 2\n\n"),
    ("/redirect", 302, b""),
    ("/created", 201, b"made\n"),
    ("/s204", 204, b""),
    ("/s204-list", 204, b""),
    ("/s204-type", 204, b""),
    ("/etag", 200, b"etag body\n"),
    ("/s304-lazy", 304, b""),
    ("/h-cl-right", 200, HELLO),
    ("/h-cl-wrong", 500, None),
    ("/h-cl-twocase", 200, HELLO),
    ("/h-cl-list", 200, b"abc"),
    ("/h-cl-lazy", 200, LAZY3),
    ("/h-te-string", 200, HELLO),
    ("/h-te-list", 200, b"abc"),
    ("/h-conn-close", 200, HELLO),
    ("/h-conn-keepalive", 200, HELLO),
    ("/h-hop", 200, b"ab"),
    ("/relay-chunked", 200, b"abc"),
    ("/relay-chunked-read", 200, b"abc"),
    ("/relay-length", 200, HELLO),
    ("/relay-length-stream", 200, HELLO),
    ("/error", 500, None),
    ("/bad-return", 500, None),
    ("/status-99", 500, None),
    ("/status-150", 500, None),
    ("/status-150-lazy", 500, None),
    ("/status-abc", 500, None),
    ("/bad-header-ctl", 500, None),
    ("/bad-header-crlf", 500, None),
    ("/bad-header-nul", 500, None),
    ("/bad-header-table", 500, None),
    ("/bad-list", 500, None),
    ("/nope", 404, b"not found\n"),
    ("/get-only", 200, b"get only\n"),
]

# Headers a handler may set that rill alone writes: none may reach the wire.
HOP_ONLY_RILL = [b"te", b"trailer", b"upgrade", b"keep-alive"]
FRAMING = [b"content-length", b"transfer-encoding", b"connection"]

VERSIONS = [("1.1", False), ("1.0", False), ("1.0", True)]
METHODS = ["GET", "HEAD", "POST"]


class Case:
    def __init__(self, name, method, version, keep_alive, target, status, body,
                 headers=(), req_body=b"", refusal=False, compare=None, chunked=False, must_close=False):
        self.name, self.method, self.version, self.keep_alive = name, method, version, keep_alive
        self.target, self.status, self.body = target, status, body
        self.headers, self.req_body, self.refusal = list(headers), req_body, refusal
        self.compare = compare  # (key of a GET whose Content-Length this one's must equal)
        self.chunked = chunked  # send req_body chunked
        self.must_close = must_close


def version_label(version, keep_alive):
    return "HTTP/" + version + (" keep-alive" if keep_alive else "")


def build_cases():
    cases = []
    for version, ka in VERSIONS:
        label = version_label(version, ka)
        for method in METHODS:
            for path, status, body in ROUTES:
                want = status
                if method == "POST" and path == "/get-only":
                    want, body = 405, b"method not allowed\n"
                req_body = b"x=1" if method == "POST" else b""
                compare = None
                if method == "HEAD":
                    compare = ("GET", path, version, ka)
                cases.append(Case("%s %s %s" % (method, path, label), method, version, ka,
                                  path, want, body, req_body=req_body, compare=compare))
            # a conditional GET answered 304: no body, no framing; a length only if GET's
            cases.append(Case("%s /etag If-None-Match (304) %s" % (method, label), method, version, ka,
                              "/etag", 304, b"", headers=[("If-None-Match", '"v1"')],
                              req_body=b"x=1" if method == "POST" else b"",
                              compare=("GET", "/etag", version, ka)))
            # refusals a strict client can send
            cases.append(Case("%s encoded NUL in the path (400) %s" % (method, label), method, version, ka,
                              "/a%00b", 400, None, refusal=True))
            cases.append(Case("%s request line over the limit (414) %s" % (method, label), method, version, ka,
                              "/" + "a" * 40000, 414, None, refusal=True))
            cases.append(Case("%s header over the limit (431) %s" % (method, label), method, version, ka,
                              "/string", 431, None, headers=[("X-Long", "v" * 40000)], refusal=True))
            # a small request body: read for GET and POST; HEAD's is refused
            # (evhttp reads none for HEAD: what follows would run as a request)
            cases.append(Case("%s a 3-byte body (%s) %s" % (method, "400" if method == "HEAD" else "200", label),
                              method, version, ka, "/echo", 400 if method == "HEAD" else 200,
                              None if method == "HEAD" else b"got 3\n", req_body=b"abc", refusal=method == "HEAD"))
            # a chunked request body: over HTTP/1.0 the connection closes after it (RFC 9112 6.1)
            if method != "HEAD":
                cases.append(Case("%s a chunked body %s" % (method, label), method, version, ka, "/echo", 200,
                                  b"got 3\n", req_body=b"abc", chunked=True, must_close=version == "1.0"))
            big = b"b" * (2 * MAX_BODY)
            cases.append(Case("%s body over the limit (%s) %s" % (method, "400" if method == "HEAD" else "413", label),
                              method, version, ka, "/echo", 400 if method == "HEAD" else 413, None,
                              req_body=big, refusal=True))
    return cases


# ---------------------------------------------------------------------------
# Requests

def h11_request(method, target, host, headers, body, close, chunked=False):
    """The bytes h11 itself writes for an HTTP/1.1 request."""
    conn = h11.Connection(h11.CLIENT)
    hs = [("Host", host)] + list(headers)
    if body and chunked:
        hs.append(("Transfer-Encoding", "chunked"))
    elif body:
        hs.append(("Content-Length", str(len(body))))
    if close:
        hs.append(("Connection", "close"))
    out = conn.send(h11.Request(method=method, target=target, headers=hs))
    if body:
        out += conn.send(h11.Data(data=body))
    out += conn.send(h11.EndOfMessage())
    return out


def raw_request(method, target, host, headers, body, version, keep_alive, chunked=False):
    lines = ["%s %s HTTP/%s" % (method, target, version), "Host: " + host]
    lines += ["%s: %s" % (k, v) for k, v in headers]
    if body and chunked:
        lines.append("Transfer-Encoding: chunked")
        body = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
    elif body:
        lines.append("Content-Length: %d" % len(body))
    if keep_alive:
        lines.append("Connection: keep-alive")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def request_bytes(case, host):
    if case.version == "1.1":
        return h11_request(case.method, case.target, host, case.headers, case.req_body, False, case.chunked)
    return raw_request(case.method, case.target, host, case.headers, case.req_body, case.version, case.keep_alive,
                       case.chunked)


def follow_up_bytes(version, host):
    """A GET pipelined behind the request under test, asking to close after it."""
    if version == "1.1":
        return h11_request("GET", "/string", host, [], b"", True)
    return raw_request("GET", "/string", host, [], b"", version, False)


# ---------------------------------------------------------------------------
# Responses

class Reader:
    """The bytes of one connection, handed to a fresh h11 parser per response."""

    def __init__(self, sock):
        self.sock, self.buf, self.eof = sock, b"", False

    def recv(self):
        if self.eof:
            return b""
        if time.monotonic() > RUN_DEADLINE:
            raise TimeoutError("the run's deadline passed")
        try:
            data = self.sock.recv(65536)
        except ConnectionResetError:
            data = b""
            self.reset = True
        if not data:
            self.eof = True
        return data

    def response(self, method):
        """(response, body) parsed by h11, or raises h11.RemoteProtocolError / TimeoutError."""
        conn = h11.Connection(h11.CLIENT)
        conn.send(h11.Request(method=method, target="/", headers=[("Host", "x")]))
        conn.send(h11.EndOfMessage())
        if not self.buf and self.eof:
            return None, b""  # closed before any response: the caller says so
        if self.buf:
            conn.receive_data(self.buf)
            self.buf = b""
        if self.eof:
            conn.receive_data(b"")
        res, body = None, b""
        while True:
            ev = conn.next_event()
            if ev is h11.NEED_DATA:
                data = self.recv()
                if not data and res is None and not conn.trailing_data[0]:
                    return None, b""  # closed before any response: the caller says so
                conn.receive_data(data)
                continue
            if isinstance(ev, h11.InformationalResponse):
                raise h11.RemoteProtocolError("an informational response (%d) nobody asked for" % ev.status_code)
            if isinstance(ev, h11.Response):
                res = ev
            elif isinstance(ev, h11.Data):
                body += ev.data
            elif isinstance(ev, h11.EndOfMessage):
                break
            elif isinstance(ev, h11.ConnectionClosed):
                if res is None:
                    return None, b""
                break
        data, closed = conn.trailing_data
        self.buf = data
        if closed:
            self.eof = True
        return res, body

    def rest(self):
        """Whatever arrives until the server closes; raises TimeoutError if it never does."""
        data = self.buf
        self.buf = b""
        while not self.eof:
            data += self.recv()
        return data


def header_values(res, name):
    return [v for k, v in res.headers if k == name]


def says_close(res, version, keep_alive):
    conn = b",".join(header_values(res, b"connection")).lower()
    tokens = [t.strip() for t in conn.split(b",")]
    if b"close" in tokens:
        return True
    if version == "1.0" or res.http_version == b"1.0":
        return b"keep-alive" not in tokens
    return False


def check_head(case, res, problems, lengths):
    hs = {}
    for k, v in res.headers:
        hs.setdefault(k, []).append(v)
    if res.status_code != case.status:
        problems.append("status %d, expected %d" % (res.status_code, case.status))
    if len(hs.get(b"date", [])) != 1:
        problems.append("%d Date headers, expected 1" % len(hs.get(b"date", [])))
    for name in FRAMING:
        if len(hs.get(name, [])) > 1:
            problems.append("duplicate %s: %r" % (name.decode(), hs[name]))
    for name in HOP_ONLY_RILL:
        if name in hs:
            problems.append("the handler's %s reached the wire: %r" % (name.decode(), hs[name]))
    cl, te = hs.get(b"content-length"), hs.get(b"transfer-encoding")
    if cl and te:
        problems.append("both Content-Length %r and Transfer-Encoding %r" % (cl, te))
    if te and case.version == "1.0":
        problems.append("Transfer-Encoding %r to an HTTP/1.0 request" % te)
    if res.status_code in (204, 304) or res.status_code < 200:
        if cl:
            if res.status_code == 204 or case.compare is None:
                problems.append("Content-Length %r on a %d" % (cl, res.status_code))
        if te:
            problems.append("Transfer-Encoding %r on a %d" % (te, res.status_code))
    if res.status_code == 204 and b"content-type" in hs:
        problems.append("Content-Type %r on a 204" % hs[b"content-type"])
    if case.compare is not None and res.status_code == case.status:
        got = cl[0] if cl else None
        if got is not None and case.compare in lengths and lengths[case.compare] != got:
            problems.append("Content-Length %r, but GET's is %r" % (got, lengths[case.compare]))
        if got is not None and case.compare in lengths and lengths[case.compare] is None:
            problems.append("Content-Length %r, but GET has none (chunked or close-delimited)" % got)
    if case.method == "GET" and not case.headers:
        lengths[(case.method, case.target, case.version, case.keep_alive)] = cl[0] if cl else None


def run_case(case, port, lengths):
    host = "127.0.0.1:%d" % port
    problems = []
    sock = socket.create_connection(("127.0.0.1", port), timeout=READ_TIMEOUT)
    try:
        sock.sendall(request_bytes(case, host) + follow_up_bytes(case.version, host))
    except (BrokenPipeError, ConnectionResetError) as e:
        problems.append("send: %s" % e)
    reader = Reader(sock)
    try:
        res, body = reader.response(case.method)
        if res is None:
            problems.append("no response: the connection closed")
            return problems
        check_head(case, res, problems, lengths)
        if case.method != "HEAD" and case.body is not None and res.status_code == case.status and body != case.body:
            problems.append("body %r, expected %r" % (body[:200], case.body))
        closing = says_close(res, case.version, case.keep_alive)
        if case.refusal and not closing:
            problems.append("a refusal without Connection: close")
        if case.must_close and not closing:
            problems.append("keeps the connection after an HTTP/1.0 chunked request body")
        if case.version == "1.0" and not case.keep_alive and not closing:
            problems.append("says keep-alive to an HTTP/1.0 client that did not ask for it")
        if closing:
            extra = reader.rest()
            if extra:
                problems.append("said close, then sent %d more bytes: %r" % (len(extra), extra[:120]))
            return problems
        res2, body2 = reader.response("GET")
        if res2 is None:
            problems.append("closed without Connection: close; the pipelined request was dropped")
            return problems
        if res2.status_code != 200 or body2 != HELLO:
            problems.append("the pipelined GET /string got %d %r" % (res2.status_code, body2[:120]))
        extra = reader.rest()
        if extra:
            problems.append("%d bytes after the pipelined response: %r" % (len(extra), extra[:120]))
    except h11.RemoteProtocolError as e:
        problems.append("h11: RemoteProtocolError: %s" % e)
    except (TimeoutError, socket.timeout):
        problems.append("timeout: no (complete) answer within %g s" % READ_TIMEOUT)
    finally:
        sock.close()
    return problems


def run_pipeline(method, port):
    """Every non-refusal route in one write on one HTTP/1.1 connection, in order."""
    host = "127.0.0.1:%d" % port
    routes = [r for r in ROUTES if r[0] != "/h-conn-close"]
    problems = []
    sock = socket.create_connection(("127.0.0.1", port), timeout=READ_TIMEOUT)
    out = b""
    for path, _, _ in routes:
        out += h11_request(method, path, host, [], b"", False)
    out += h11_request(method, "/string", host, [], b"", True)
    reader = Reader(sock)
    try:
        sock.sendall(out)
        for path, status, body in routes + [("/string", 200, HELLO)]:
            res, got = reader.response(method)
            if res is None:
                problems.append("%s: no response, the connection closed" % path)
                break
            if res.status_code != status:
                problems.append("%s: status %d, expected %d" % (path, res.status_code, status))
            if method == "GET" and body is not None and got != body:
                problems.append("%s: body %r, expected %r" % (path, got[:80], body))
            if says_close(res, "1.1", False) and path != "/string":
                problems.append("%s: said close in the middle of the pipeline" % path)
                break
        extra = reader.rest()
        if extra:
            problems.append("%d bytes after the last response: %r" % (len(extra), extra[:120]))
    except h11.RemoteProtocolError as e:
        problems.append("h11: RemoteProtocolError: %s" % e)
    except (TimeoutError, socket.timeout):
        problems.append("timeout: no (complete) answer within %g s" % READ_TIMEOUT)
    finally:
        sock.close()
    return problems


def pipeline_names():
    return ["%s every route pipelined on one HTTP/1.1 connection" % m for m in ("GET", "HEAD")]


def main():
    cases = build_cases()
    if sys.argv[1:] == ["--list"]:
        for c in cases:
            print(c.name)
        for n in pipeline_names():
            print(n)
        return 0
    port = int(sys.argv[sys.argv.index("--port") + 1])
    lengths = {}
    # GETs first, so HEAD and 304 cases can compare with GET's length
    order = sorted(range(len(cases)), key=lambda i: 0 if cases[i].method == "GET" else 1)
    for i in order:
        c = cases[i]
        try:
            problems = run_case(c, port, lengths)
        except Exception as e:  # a bug here must name the case, not end the run
            problems = ["client error: %r" % e]
        print(json.dumps({"case": c.name, "ok": not problems, "problems": problems}), flush=True)
    for name, method in zip(pipeline_names(), ("GET", "HEAD")):
        try:
            problems = run_pipeline(method, port)
        except Exception as e:
            problems = ["client error: %r" % e]
        print(json.dumps({"case": name, "ok": not problems, "problems": problems}), flush=True)
    print("h11 client: done", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
