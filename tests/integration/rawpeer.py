"""Raw peers for the differential tests: an upstream that records exactly the
bytes sluice sends and re-parses them strictly (strict_http, not llhttp), and
a client that reads sluice's answers strictly.

RawUpstream answers each request it parses with whatever its responder
returns, byte for byte, so a test can make the upstream misbehave precisely.
"""
import socket
import struct
import threading
import time

from strict_http import StrictError, parse_requests, parse_responses


def ok_answer(msg, conn):
    """200 whose body names the request it answers: "<METHOD> <target> <body length>"."""
    body = b"%s %s %d" % (msg.method, msg.target, len(msg.body))
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)


class Conn:
    def __init__(self, cid, sock):
        self.id = cid
        self.sock = sock
        self.data = bytearray()
        self.requests = []
        self.error = None
        self.closed = False
        self.reset_requested = False


class RawUpstream:
    """responder(msg, conn) returns the bytes to send, or (bytes, "close") to
    close after them, or (bytes, "hang") to send them and answer nothing
    more on that connection."""

    def __init__(self, responder=ok_answer):
        self.responder = responder
        self.lock = threading.Lock()
        self.conns = []
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.port = self.sock.getsockname()[1]
        self.stopping = False
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self):
        while not self.stopping:
            try:
                s, _ = self.sock.accept()
            except OSError:
                return
            with self.lock:
                conn = Conn(len(self.conns), s)
                self.conns.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        s, done, hanging = conn.sock, 0, False
        s.settimeout(0.02)  # to see reset requests: only this thread may close the socket
        try:
            while True:
                if conn.reset_requested:
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    break
                try:
                    b = s.recv(65536)
                except socket.timeout:
                    continue
                if not b:
                    break
                with self.lock:
                    conn.data += b
                if hanging:
                    continue
                try:
                    msgs, rest = parse_requests(bytes(conn.data[done:]))
                except StrictError as e:
                    with self.lock:
                        conn.error = str(e)
                    break
                done = len(conn.data) - len(rest)
                for msg in msgs:
                    with self.lock:
                        conn.requests.append(msg)
                    answer = self.responder(msg, conn)
                    action = "keep"
                    if isinstance(answer, tuple):
                        answer, action = answer
                    if answer:
                        s.settimeout(None)
                        s.sendall(answer)
                        s.settimeout(0.02)
                    if action == "close":
                        return
                    if action == "hang":
                        hanging = True
                        break
        except OSError:
            pass
        finally:
            conn.closed = True
            try:
                s.close()
            except OSError:
                pass

    def reset(self, conn_id, timeout=2.0):
        """Closes connection conn_id with a TCP reset; returns once it is closed."""
        conn = self.conns[conn_id]
        conn.reset_requested = True
        deadline = time.monotonic() + timeout
        while not conn.closed and time.monotonic() < deadline:
            time.sleep(0.005)
        assert conn.closed, "connection %d did not close" % conn_id

    def requests(self):
        """Every request parsed so far, in the order connections opened."""
        with self.lock:
            return [m for c in self.conns for m in c.requests]

    def errors(self):
        with self.lock:
            return ["conn %d: %s (bytes %r)" % (c.id, c.error, bytes(c.data[:300])) for c in self.conns if c.error]

    def leftovers(self):
        """Bytes received that are not part of a complete request (a request
        cut off by sluice, which is what must happen to a bad one)."""
        with self.lock:
            out = []
            for c in self.conns:
                used = sum(len(m.raw) for m in c.requests)
                if len(c.data) > used:
                    out.append(bytes(c.data[used:]))
            return out

    def close(self):
        self.stopping = True
        try:
            self.sock.close()
        except OSError:
            pass
        with self.lock:
            for c in self.conns:
                try:
                    c.sock.close()
                except OSError:
                    pass


def _closing(answer):
    conn = answer.get_all("connection")
    return answer.status >= 400 or any(v.lower() == b"close" for v in conn)


def read_answers(s, methods, timeout=3.0, wait_for_close=False, overall=True):
    """Reads from socket s until the peer closes, `timeout` passes (in all,
    or with overall=False without a byte), or every answer to `methods` has
    arrived (with wait_for_close: and, after a refusal or Connection: close,
    the close); returns (answers, leftover bytes, closed), parsed strictly."""
    got, closed = bytearray(), False
    deadline = time.monotonic() + timeout
    s.settimeout(timeout)
    while not overall or time.monotonic() < deadline:
        if overall:
            s.settimeout(max(0.05, deadline - time.monotonic()))
        try:
            b = s.recv(65536)
        except socket.timeout:
            break
        except ConnectionResetError:
            closed = True
            break
        if not b:
            closed = True
            break
        got += b
        answers, _ = parse_responses(bytes(got), methods, eof=False)
        if len(answers) == len(methods) and not (wait_for_close and any(_closing(a) for a in answers)):
            break
    answers, rest = parse_responses(bytes(got), methods, eof=closed)
    return answers, rest, closed


def exchange(port, data, methods, timeout=3.0, host="127.0.0.1"):
    """Sends raw bytes to sluice, reads until it closes, `timeout` passes
    quietly or every answer to `methods` has arrived (and, after a refusal
    or Connection: close, the close); returns (answers, leftover bytes,
    closed, elapsed). Answers are parsed strictly."""
    started = time.monotonic()
    with socket.create_connection((host, port), timeout=timeout) as s:
        try:
            s.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass
        answers, rest, closed = read_answers(s, methods, timeout, wait_for_close=True, overall=False)
    return answers, rest, closed, time.monotonic() - started


class Working:
    """A responder for RawUpstream that works `seconds` on each request and
    keeps working when the client has gone (as Python and LLM servers do: a
    closed connection is noticed only when the answer is written). It counts
    the requests it is working on, and the most at once."""

    def __init__(self, seconds):
        self.seconds = seconds
        self.lock = threading.Lock()
        self.now = 0
        self.peak = 0
        self.done = 0

    def __call__(self, msg, conn):
        with self.lock:
            self.now += 1
            self.peak = max(self.peak, self.now)
        time.sleep(self.seconds)
        with self.lock:
            self.now -= 1
            self.done += 1
        return ok_answer(msg, conn)


class ConnectProxy:
    """A forward proxy that understands only CONNECT host:port: it connects,
    answers 200 and relays bytes both ways, passing a half-close on, until
    both sides have closed. A parent proxy for sluice's tunnels that the tests
    control (Squid is the real one elsewhere)."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.port = self.sock.getsockname()[1]
        self.connects = 0
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                s, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(s,), daemon=True).start()

    def _serve(self, s):
        head = b""
        try:
            while b"\r\n\r\n" not in head:
                b = s.recv(4096)
                if not b:
                    return
                head += b
            line = head.split(b"\r\n", 1)[0].split(b" ")
            if line[0] != b"CONNECT":
                s.sendall(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                return
            host, _, port = line[1].rpartition(b":")
            d = socket.create_connection((host.decode(), int(port)))
            with self.lock:
                self.connects += 1
            s.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            rest = head.split(b"\r\n\r\n", 1)[1]
            if rest:
                d.sendall(rest)
            self._relay(s, d)
        except OSError:
            pass
        finally:
            s.close()

    @staticmethod
    def _relay(a, b):
        import select
        open_ = {a: b, b: a}
        while open_:
            ready, _, _ = select.select(list(open_), [], [], 30)
            if not ready:
                break
            for src in ready:
                data = src.recv(65536)
                dst = open_[src]
                if data:
                    dst.sendall(data)
                else:
                    del open_[src]
                    try:
                        dst.shutdown(socket.SHUT_WR)
                    except OSError:
                        pass
        b.close()

    def close(self):
        self.sock.close()
