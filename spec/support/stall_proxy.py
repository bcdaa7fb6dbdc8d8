# SPDX-License-Identifier: MIT
"""A TCP proxy that can stall, for the watchdog case of the Redis backplane
("a blocked reader that never gets a reply is detected"):

    /usr/bin/python3 spec/support/stall_proxy.py TARGET_PORT

Listens on 127.0.0.1:0 and forwards every connection to 127.0.0.1:TARGET_PORT,
both ways. Standard library only (selectors).

    SIGUSR1  the connections open now stop forwarding in both directions but
             stay open: no FIN, no RST, nothing read or written. To the client
             this is a half-open upstream (a host that vanished). Connections
             accepted later are forwarded normally.
    SIGUSR2  the stalled connections are closed.
    SIGTERM  exit. Without it, the proxy exits by itself after 300 s.

Lines on stdout, flushed, for the spec to wait on:
    stall_proxy listening on PORT
    accepted                   a connection, forwarded from now on
    refused                    a connection the target did not take (closed)
    stalled N                  at SIGUSR1: N connections stalled
    closed N                   at SIGUSR2: N stalled connections closed
    exiting                    at SIGTERM or at the 300 s bound
"""
import selectors
import signal
import socket
import sys
import time

TARGET = ("127.0.0.1", int(sys.argv[1]))
MAX_SECONDS = 300
CHUNK = 65536


def say(line):
    print(line, flush=True)


class Half:
    """One direction: bytes read from src wait in buf until dst takes them.
    While buf is not empty src is not read, so a slow side slows the other
    (the kernel's buffers do the rest)."""

    def __init__(self, src, dst):
        self.src, self.dst = src, dst
        self.buf = b""
        self.eof = False  # src said FIN; passed on once buf is empty
        self.done = False  # FIN passed on to dst


class Conn:
    def __init__(self, client, upstream):
        self.socks = (client, upstream)
        self.halves = (Half(client, upstream), Half(upstream, client))
        self.stalled = False


class Proxy:
    def __init__(self):
        self.sel = selectors.DefaultSelector()
        self.conns = set()
        self.stalled = []
        self.running = True
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.setblocking(False)
        self.sel.register(self.listener, selectors.EVENT_READ, None)
        # Signals reach the loop as bytes on a socket it selects on, so a
        # signal is handled between two events, never in the middle of one.
        self.wake_r, wake_w = socket.socketpair()
        self.wake_w = wake_w  # kept open: set_wakeup_fd does not own it
        for s in (self.wake_r, wake_w):
            s.setblocking(False)
        signal.set_wakeup_fd(wake_w.fileno())
        for sig in (signal.SIGUSR1, signal.SIGUSR2, signal.SIGTERM):
            signal.signal(sig, lambda *_: None)  # the wakeup byte does the work
        self.sel.register(self.wake_r, selectors.EVENT_READ, "signal")

    # -- selector bookkeeping: each socket is read by one half, written by the other

    def update(self, conn):
        if conn.stalled:
            return
        for sock in conn.socks:
            events = 0
            for h in conn.halves:
                if h.src is sock and not h.eof and not h.buf:
                    events |= selectors.EVENT_READ
                if h.dst is sock and h.buf:
                    events |= selectors.EVENT_WRITE
            registered = sock in self.sel.get_map()
            if events and registered:
                self.sel.modify(sock, events, conn)
            elif events:
                self.sel.register(sock, events, conn)
            elif registered:
                self.sel.unregister(sock)

    def unregister(self, conn):
        for sock in conn.socks:
            if sock in self.sel.get_map():
                self.sel.unregister(sock)

    def close(self, conn):
        self.unregister(conn)
        for sock in conn.socks:
            sock.close()
        self.conns.discard(conn)

    # -- events

    def accept(self):
        try:
            client, _ = self.listener.accept()
        except BlockingIOError:
            return
        try:
            upstream = socket.create_connection(TARGET, timeout=5)
        except OSError:
            say("refused")
            client.close()
            return
        for s in (client, upstream):
            s.setblocking(False)
        conn = Conn(client, upstream)
        self.conns.add(conn)
        self.update(conn)
        say("accepted")

    def pump(self, conn, sock, mask):
        """Moves what sock has ready; closes the pair on an error or once both
        directions ended."""
        try:
            for h in conn.halves:
                if h.src is sock and mask & selectors.EVENT_READ:
                    data = sock.recv(CHUNK)
                    h.buf += data
                    h.eof = not data
                if h.dst is sock and mask & selectors.EVENT_WRITE and h.buf:
                    h.buf = h.buf[sock.send(h.buf):]
                if h.eof and not h.buf and not h.done:
                    h.dst.shutdown(socket.SHUT_WR)
                    h.done = True
        except (BlockingIOError, InterruptedError):
            pass
        except OSError:
            self.close(conn)
            return
        if all(h.done for h in conn.halves):
            self.close(conn)
        else:
            self.update(conn)

    def on_signal(self):
        for sig in self.wake_r.recv(64):
            if sig == signal.SIGUSR1:
                self.stall()
            elif sig == signal.SIGUSR2:
                self.close_stalled()
            elif sig == signal.SIGTERM:
                self.running = False

    def stall(self):
        """Takes every open connection off the selector and keeps its sockets
        (and any bytes in flight) as they are."""
        now = [c for c in self.conns if not c.stalled]
        for conn in now:
            self.unregister(conn)
            conn.stalled = True
            self.stalled.append(conn)
        say("stalled %d" % len(now))

    def close_stalled(self):
        n = len(self.stalled)
        for conn in self.stalled:
            self.close(conn)
        self.stalled = []
        say("closed %d" % n)

    def run(self):
        say("stall_proxy listening on %d" % self.listener.getsockname()[1])
        deadline = time.monotonic() + MAX_SECONDS
        while self.running:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            for key, mask in self.sel.select(left):
                if key.data is None:
                    self.accept()
                elif key.data == "signal":
                    self.on_signal()
                elif key.data in self.conns and not key.data.stalled:
                    # (a pair closed or stalled earlier in this batch is skipped)
                    self.pump(key.data, key.fileobj, mask)
        say("exiting")


if __name__ == "__main__":
    Proxy().run()
