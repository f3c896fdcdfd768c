"""Helpers shared by the integration tests: a small raw HTTP/1.1 client
(HttpConn) that sees the framing sluice actually produced, request builders,
process probes (/proc), polling instead of sleeping (wait_until), and the
upstream's and sluice's own endpoints (sluice-upstream's /__log, /__reset;
/proxy-health).
"""
import json
import os
import socket
import threading
import time

from conftest import http_get, upstream_stats

def fnv1a64(data):
    """FNV-1a 64-bit, as sluice-upstream's echo reports it (16 hex digits)."""
    h = 0xcbf29ce484222325
    for b in data:
        h ^= b
        h = (h * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    return "%016x" % h


def pattern(n, offset=0):
    """The body sluice-upstream sends for size=n: byte i is 'a' + i % 26."""
    return bytes(97 + (i % 26) for i in range(offset, offset + n))


class Response:
    def __init__(self, version, status, reason, headers, body, framing, interim):
        self.version = version        # b"HTTP/1.1"
        self.status = status          # int
        self.reason = reason
        self.headers = headers        # [(lower-case name str, value str)] in order
        self.body = body              # bytes (decoded from chunked if chunked)
        self.framing = framing        # "length" | "chunked" | "close" | "none"
        self.interim = interim        # [status] of 1xx responses seen before it

    def header(self, name, default=None):
        name = name.lower()
        for k, v in self.headers:
            if k == name:
                return v
        return default

    def header_all(self, name):
        name = name.lower()
        return [v for k, v in self.headers if k == name]

    def has_token(self, name, token):
        """True when the comma-separated header `name` contains `token`."""
        for v in self.header_all(name):
            if token.lower() in [t.strip().lower() for t in v.split(",")]:
                return True
        return False

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return "<Response %s %s %s %d bytes>" % (self.status, self.framing, self.headers, len(self.body))


class PeerClosed(Exception):
    pass


class HttpConn:
    """One client connection to 127.0.0.1:port with a read buffer.

    read_response() parses exactly one response (skipping 1xx, honouring HEAD,
    204/304, Content-Length, chunked and close-delimited framing) and leaves any
    following bytes in the buffer, so pipelined responses can be read in turn."""

    def __init__(self, port, timeout=10.0):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = bytearray()

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()

    def send(self, data):
        self.sock.sendall(data)

    def _fill(self):
        try:
            b = self.sock.recv(262144)
        except ConnectionResetError:
            b = b""
        if not b:
            raise PeerClosed()
        self.buf += b

    def read_until(self, marker):
        while True:
            i = self.buf.find(marker)
            if i >= 0:
                out = bytes(self.buf[:i + len(marker)])
                del self.buf[:i + len(marker)]
                return out
            self._fill()

    def read_exact(self, n):
        while len(self.buf) < n:
            self._fill()
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def read_to_close(self, limit=1 << 31):
        while len(self.buf) < limit:
            try:
                self._fill()
            except PeerClosed:
                break
        out = bytes(self.buf)
        self.buf.clear()
        return out

    def read_head(self):
        raw = self.read_until(b"\r\n\r\n")
        lines = raw[:-4].split(b"\r\n")
        version, status, reason = (lines[0].split(b" ", 2) + [b""])[:3]
        headers = []
        for line in lines[1:]:
            k, _, v = line.partition(b":")
            headers.append((k.strip().decode("latin-1").lower(), v.strip().decode("latin-1")))
        return version, int(status), reason, headers

    def read_chunked(self):
        body = bytearray()
        while True:
            line = self.read_until(b"\r\n")
            size = int(line.split(b";")[0].strip(), 16)
            if size == 0:
                # trailers, up to the empty line
                while self.read_until(b"\r\n") != b"\r\n":
                    pass
                return bytes(body)
            body += self.read_exact(size)
            assert self.read_exact(2) == b"\r\n", "chunk not followed by CRLF"

    def read_response(self, method="GET"):
        interim = []
        while True:
            version, status, reason, headers = self.read_head()
            if 100 <= status < 200 and status != 101:
                interim.append(status)
                continue
            break
        r = Response(version, status, reason, headers, b"", "none", interim)
        te = r.header("transfer-encoding")
        cl = r.header("content-length")
        if method == "HEAD" or status in (204, 304) or (method == "CONNECT" and 200 <= status < 300):
            return r
        if te is not None:
            assert te.lower().strip().endswith("chunked"), "unexpected Transfer-Encoding %r" % te
            r.body, r.framing = self.read_chunked(), "chunked"
        elif cl is not None:
            r.body, r.framing = self.read_exact(int(cl)), "length"
        else:
            r.body, r.framing = self.read_to_close(), "close"
        return r

    def request(self, method, target, headers=None, body=None, version="HTTP/1.1"):
        self.send(build_request(method, target, headers, body, version))
        return self.read_response(method)

    def wait_closed(self, timeout):
        """True if the peer closes (EOF or reset) within `timeout` seconds;
        bytes that arrive meanwhile are kept in self.buf."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self.sock.settimeout(left)
            try:
                b = self.sock.recv(65536)
            except socket.timeout:
                return False
            except ConnectionResetError:
                return True
            if not b:
                return True
            self.buf += b


def build_request(method, target, headers=None, body=None, version="HTTP/1.1"):
    """Raw request bytes. `headers` is a list of (name, value) or a dict; a
    Host header is added unless present; Content-Length is added for a bytes
    body unless the caller framed it."""
    hs = list(headers.items()) if isinstance(headers, dict) else list(headers or [])
    names = [k.lower() for k, _ in hs]
    if "host" not in names:
        hs.insert(0, ("Host", "sluice.test"))
    if body is not None and "content-length" not in names and "transfer-encoding" not in names:
        hs.append(("Content-Length", str(len(body))))
    head = "%s %s %s\r\n" % (method, target, version)
    head += "".join("%s: %s\r\n" % (k, v) for k, v in hs) + "\r\n"
    return head.encode("latin-1") + (body or b"")


def chunked(data, sizes):
    """`data` encoded as chunks of the given sizes (cycled), with the last chunk."""
    out = bytearray()
    i = 0
    k = 0
    while i < len(data):
        n = sizes[k % len(sizes)]
        k += 1
        piece = data[i:i + n]
        i += n
        out += b"%x\r\n" % len(piece) + piece + b"\r\n"
    out += b"0\r\n\r\n"
    return bytes(out)


def echo_headers(resp):
    """Echo JSON headers as [(lower name, value)]."""
    return [(k.lower(), v) for k, v in resp.json()["headers"]]


def proc_status(pid, field):
    """A field of /proc/PID/status in kB (VmRSS, VmHWM)."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def fd_count(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def wait_until(pred, timeout, step=0.05):
    """Polls pred() until true or timeout; returns its last value."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v or time.monotonic() >= deadline:
            return v
        time.sleep(step)


def reset_upstream(up):
    """Zeroes the upstream's counters (conftest's listening probe counted as
    one connection) and clears its request log."""
    status, _, _ = http_get(up.url + "/__reset", method="POST", data=b"")
    assert status == 200


def upstream_log(up):
    status, _, body = http_get(up.url + "/__log")
    assert status == 200
    return json.loads(body)


def upstream_targets(up):
    return [e["target"] for e in upstream_log(up)]


def health(sl, timeout=5):
    status, _, body = http_get(sl.url + "/proxy-health", timeout=timeout)
    assert status == 200, body
    return json.loads(body)


def wait_queued(sl, n, timeout=5.0):
    """Waits until sluice reports exactly n requests in its admission queue."""
    assert wait_until(lambda: health(sl)["queued"] == n, timeout), "queued: %r, not %d" % (health(sl), n)


def send_get(port, target, timeout=10.0):
    """Opens a connection and sends one GET; returns the open HttpConn."""
    c = HttpConn(port, timeout=timeout)
    c.send(build_request("GET", target))
    return c


class Pending:
    """One request sent on its own connection, its response read by a thread;
    .resp is the Response (or None), .error the exception, .t_sent/.t_done
    perf_counter times."""

    def __init__(self, port, target, timeout=15.0, method="GET", body=None, headers=None):
        self.target = target
        self.resp = None
        self.error = None
        self.t_done = None
        self.conn = HttpConn(port, timeout=timeout)
        self.method = method
        self.raw = build_request(method, target, headers, body)
        self.t_sent = None
        self.thread = None

    def send(self):
        self.t_sent = time.perf_counter()
        self.conn.send(self.raw)
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()
        return self

    def _read(self):
        try:
            self.resp = self.conn.read_response(self.method)
        except Exception as e:  # noqa: BLE001 - reported by the test
            self.error = e
        self.t_done = time.perf_counter()

    def wait(self, timeout=20.0):
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "no response to %s within %ss" % (self.target, timeout)
        return self.resp

    @property
    def elapsed(self):
        return self.t_done - self.t_sent

    def close(self):
        self.conn.close()

    def describe(self):
        if self.resp is None:
            return "%s: error %r" % (self.target, self.error)
        return "%s: %d %r after %.3fs" % (self.target, self.resp.status, self.resp.body[:120], self.elapsed)


def assert_rejection(resp, reason):
    """A 503 of SPEC §4: Retry-After and a JSON body {"error": reason, ...}."""
    assert resp.status == 503, resp
    retry_after = resp.header("retry-after")
    assert retry_after is not None, "503 %s without Retry-After: %r" % (reason, resp.headers)
    assert retry_after.strip().isdigit(), "Retry-After %r is not delay-seconds" % retry_after
    ctype = resp.header("content-type", "")
    assert "json" in ctype, "503 %s Content-Type %r" % (reason, ctype)
    body = json.loads(resp.body)
    assert body.get("error") == reason, body


def wait_inflight(up, n, timeout=5.0):
    """Waits until the upstream has exactly n requests in flight."""
    ok = wait_until(lambda: upstream_stats(up)["inflight"] == n, timeout)
    assert ok, "upstream in-flight never reached %d: %r" % (n, upstream_stats(up))


def wait_idle(sl, up, timeout=5.0):
    """Waits until nothing is in flight at the upstream and sluice reports no
    active request."""
    ok = wait_until(lambda: upstream_stats(up)["inflight"] == 0 and health(sl)["active"] == 0, timeout)
    assert ok, "not idle: upstream %r, sluice %r" % (upstream_stats(up), health(sl))
