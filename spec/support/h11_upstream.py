# SPDX-License-Identifier: MIT
"""An upstream the project did not write, for spec/e2e_body_stream_spec.lua: a
strict HTTP/1.1 server on Debian's python3-h11, one connection at a time.

    /usr/bin/python3 spec/support/h11_upstream.py

Prints "upstream listening on PORT", then answers every request with one JSON
line: the body's length and SHA-256 as h11 decoded it, how it was framed
(chunked or a length), and its method and target. h11 refuses any framing
error (a bad chunk size, a body longer than its length), so what rill sends
upstream is checked by a parser rill did not write. Bounded: every read times
out, and it exits after IDLE seconds without a connection (the spec kills it
by pid anyway).
"""
import hashlib
import json
import select
import socket

import h11

READ_TIMEOUT = 30.0
IDLE = 300.0


def serve(conn):
    h = h11.Connection(h11.SERVER)
    conn.settimeout(READ_TIMEOUT)
    while True:
        request = None
        digest = hashlib.sha256()
        size = 0
        while True:
            event = h.next_event()
            if event is h11.NEED_DATA:
                data = conn.recv(65536)
                h.receive_data(data)
                if not data and h.their_state is not h11.DONE:
                    return
                continue
            if isinstance(event, h11.ConnectionClosed):
                return
            if isinstance(event, h11.Request):
                request = event
            elif isinstance(event, h11.Data):
                digest.update(event.data)
                size += len(event.data)
            elif isinstance(event, h11.EndOfMessage):
                break
        headers = {k.decode().lower(): v.decode() for k, v in request.headers}
        body = json.dumps({
            "method": request.method.decode(),
            "target": request.target.decode(),
            "bytes": size,
            "sha256": digest.hexdigest(),
            "chunked": headers.get("transfer-encoding", "") == "chunked",
            "length": headers.get("content-length"),
        }).encode() + b"\n"
        conn.sendall(h.send(h11.Response(status_code=200, headers=[
            ("Content-Type", "application/json"), ("Content-Length", str(len(body)))])))
        conn.sendall(h.send(h11.Data(data=body)))
        conn.sendall(h.send(h11.EndOfMessage()))
        if h.our_state is h11.MUST_CLOSE:
            return
        h.start_next_cycle()


def main():
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    print("upstream listening on %d" % listener.getsockname()[1], flush=True)
    while True:
        ready, _, _ = select.select([listener], [], [], IDLE)
        if not ready:
            return
        if listener in ready:
            conn, _ = listener.accept()
            try:
                serve(conn)
            except (h11.RemoteProtocolError, OSError) as e:
                print("upstream: %s: %s" % (type(e).__name__, e), flush=True)
            finally:
                conn.close()


if __name__ == "__main__":
    main()
