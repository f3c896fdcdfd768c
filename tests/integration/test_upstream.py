"""sluice-upstream (SPEC §10): every query parameter, the test-support
endpoints, framing on raw sockets, failure modes, streaming memory, workers.

The other suites trust this server's behaviour, so it is pinned down here
byte by byte where framing matters."""
import http.client
import json
import os
import re
import socket
import subprocess
import threading
import time

import pytest

from conftest import BUILD, http_get, raw_exchange, status_of, upstream_stats
from helpers import reset_upstream as reset, upstream_log as log, wait_until

PATTERN = bytes(ord("a") + i % 26 for i in range(26))


def pattern(n, offset=0):
    reps = (offset % 26 + n) // 26 + 2
    p = PATTERN * reps
    return p[offset % 26: offset % 26 + n]


def fnv1a64(data):
    h = 0xCBF29CE484222325
    for b in data:
        h ^= b
        h = (h * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return "%016x" % h


class Conn:
    """A raw client connection that reads whole responses, keeping the
    framing details (chunk sizes, delimitation) visible to the test."""

    def __init__(self, port, timeout=5.0):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""

    def close(self):
        self.s.close()

    def send(self, data):
        self.s.sendall(data)

    def _fill(self):
        data = self.s.recv(65536)
        if not data:
            raise EOFError("peer closed")
        self.buf += data

    def line(self):
        while b"\r\n" not in self.buf:
            self._fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def exact(self, n):
        while len(self.buf) < n:
            self._fill()
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def to_close(self):
        while True:
            try:
                self._fill()
            except EOFError:
                break
        data, self.buf = self.buf, b""
        return data

    def closed(self, timeout=2.0):
        """True if the peer closes (FIN or RST) within timeout, with no data."""
        self.s.settimeout(timeout)
        try:
            return self.s.recv(1) == b"" and not self.buf
        except ConnectionResetError:
            return True
        except socket.timeout:
            return False

    def head(self):
        status_line = self.line()
        version, status, _ = (status_line.decode() + " ").split(" ", 2)
        headers = []
        while True:
            line = self.line()
            if not line:
                break
            k, v = line.decode().split(":", 1)
            headers.append((k.strip(), v.strip()))
        return version, int(status), headers

    def response(self, method="GET"):
        """One response (1xx interim ones are returned in .interim)."""
        r = Response()
        while True:
            r.version, r.status, r.headers = self.head()
            if r.status >= 200:
                break
            r.interim.append((r.status, r.headers))
        if method == "HEAD" or r.status in (204, 304):
            return r
        if "chunked" in r.header("Transfer-Encoding", "").lower():
            body = b""
            while True:
                size = int(self.line(), 16)
                r.chunk_sizes.append(size)
                if size == 0:
                    assert self.line() == b""
                    break
                body += self.exact(size)
                assert self.exact(2) == b"\r\n"
            r.body = body
        elif r.header("Content-Length") is not None:
            r.body = self.exact(int(r.header("Content-Length")))
        else:
            r.body = self.to_close()
            r.close_delimited = True
        return r


class Response:
    def __init__(self):
        self.interim = []
        self.chunk_sizes = []
        self.body = b""
        self.close_delimited = False

    def header(self, name, default=None):
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return default


def req(target, method="GET", headers=(), body=b"", version="HTTP/1.1"):
    lines = ["%s %s %s" % (method, target, version), "Host: up"]
    lines += ["%s: %s" % kv for kv in headers]
    if body:
        lines.append("Content-Length: %d" % len(body))
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def one(port, target, method="GET", **kw):
    c = Conn(port)
    try:
        c.send(req(target, method=method, **kw))
        return c.response(method)
    finally:
        c.close()


# -- plain answers -----------------------------------------------------------

def test_default_body_status_and_size(upstream):
    r = one(upstream.port, "/anything")
    assert (r.status, r.body, r.header("Content-Length")) == (200, b"ok\n", "3")
    assert r.header("Content-Type") == "text/plain"

    r = one(upstream.port, "/x?status=503")
    assert r.status == 503 and r.body == b"ok\n"
    for status, reason in ((201, "Created"), (404, "Not Found"), (429, "Too Many Requests"),
                           (502, "Bad Gateway"), (418, "Client Error")):
        c = Conn(upstream.port)
        c.send(req("/?status=%d" % status))
        assert c.line() == ("HTTP/1.1 %d %s" % (status, reason)).encode()
        c.close()

    r = one(upstream.port, "/x?size=1000")
    assert r.header("Content-Length") == "1000" and r.body == pattern(1000)
    r = one(upstream.port, "/x?size=0")
    assert r.header("Content-Length") == "0" and r.body == b""
    # Any method, any path.
    r = one(upstream.port, "/some/deep/path?size=5", method="DELETE")
    assert r.status == 200 and r.body == b"abcde"


def test_bad_query_parameter_is_400_and_keeps_the_connection(upstream):
    c = Conn(upstream.port)
    for target in ("/?status=abc", "/?status=99", "/?size=-1", "/?fail=explode", "/?delay_ms=1x",
                   "/?header=NoColon", "/?header=Bad%0D%0AName:x", "/?chunked=maybe"):
        c.send(req(target))
        r = c.response()
        assert r.status == 400, target
        assert r.body.startswith(b"bad query parameter")
    c.send(req("/?unknown=1&n=2"))  # unknown parameters are ignored
    assert c.response().status == 200
    c.close()


def test_delay_ms(upstream):
    t0 = time.monotonic()
    r = one(upstream.port, "/?delay_ms=300")
    elapsed = time.monotonic() - t0
    assert r.status == 200 and 0.29 <= elapsed < 2.0  # libuv timers run off the cached loop time: up to ~1 ms early


def test_extra_headers(upstream):
    r = one(upstream.port, "/?header=X-One:1&header=X-Two:%20a+b%2Fc&header=Cache-Control:no-store")
    assert r.header("X-One") == "1"
    assert r.header("X-Two") == "a b/c"
    assert r.header("Cache-Control") == "no-store"


def test_early_hints_before_the_response(upstream):
    c = Conn(upstream.port)
    c.send(req("/?early=103&delay_ms=100"))
    assert c.exact(len(b"HTTP/1.1 103 Early Hints\r\n")) == b"HTTP/1.1 103 Early Hints\r\n"
    assert c.line() == b"Link: </style.css>; rel=preload"
    assert c.line() == b""
    r = c.response()
    assert r.status == 200 and r.body == b"ok\n"
    c.close()


# -- framing -----------------------------------------------------------------

def test_chunked_framing(upstream):
    c = Conn(upstream.port)
    c.send(req("/?chunked=1&size=150000"))
    r = c.response()
    assert r.header("Transfer-Encoding") == "chunked" and r.header("Content-Length") is None
    assert r.body == pattern(150000)
    assert sum(r.chunk_sizes) == 150000 and r.chunk_sizes[-1] == 0 and len(r.chunk_sizes) >= 3
    # Default body, chunked; then the connection is still usable.
    c.send(req("/?chunked=1"))
    r = c.response()
    assert r.body == b"ok\n" and r.chunk_sizes == [3, 0]
    c.send(req("/?chunked=1&size=0"))
    r = c.response()
    assert r.body == b"" and r.chunk_sizes == [0]
    c.close()


def test_chunks_with_delay_stream_slowly(upstream):
    c = Conn(upstream.port)
    t0 = time.monotonic()
    c.send(req("/?chunks=3&chunk_delay_ms=200"))
    version, status, headers = c.head()
    assert status == 200 and ("Transfer-Encoding", "chunked") in headers
    arrivals, texts = [], []
    for _ in range(3):
        size = int(c.line(), 16)
        texts.append(c.exact(size))
        assert c.exact(2) == b"\r\n"
        arrivals.append(time.monotonic() - t0)
    assert c.line() == b"0" and c.line() == b""
    assert texts == [b"data: chunk 0\n\n", b"data: chunk 1\n\n", b"data: chunk 2\n\n"]
    assert arrivals[0] < 0.15, arrivals  # the first chunk comes with the head
    assert arrivals[1] - arrivals[0] >= 0.17 and arrivals[2] - arrivals[1] >= 0.17, arrivals
    c.close()

    # With size the bytes are spread over the chunks.
    r = one(upstream.port, "/?chunks=4&size=10&chunk_delay_ms=1")
    assert r.chunk_sizes == [3, 3, 2, 2, 0] and r.body == pattern(10)


def test_head_has_length_but_no_body(upstream):
    c = Conn(upstream.port)
    c.send(req("/?size=100", method="HEAD") + req("/?size=4"))
    r = c.response("HEAD")
    assert r.status == 200 and r.header("Content-Length") == "100"
    r = c.response()  # no stray body bytes in between
    assert r.body == b"abcd"
    c.send(req("/?chunked=1", method="HEAD") + req("/?size=2"))
    r = c.response("HEAD")
    assert r.header("Transfer-Encoding") == "chunked"
    assert c.response().body == b"ab"
    c.close()


@pytest.mark.parametrize("status", [204, 304])
def test_no_body_statuses(upstream, status):
    c = Conn(upstream.port)
    c.send(req("/?status=%d&size=50" % status) + req("/?size=3"))
    r = c.response()
    assert r.status == status
    assert r.header("Content-Length") is None and r.header("Transfer-Encoding") is None
    assert c.response().body == b"abc"
    c.close()


def test_close_delimited_http10_and_nolength(upstream):
    c = Conn(upstream.port)
    c.send(req("/?http10=1&size=40"))
    r = c.response()
    assert r.version == "HTTP/1.0" and r.close_delimited and r.body == pattern(40)
    assert r.header("Content-Length") is None
    c.close()

    c = Conn(upstream.port)
    c.send(req("/?nolength=1&size=30"))
    r = c.response()
    assert r.version == "HTTP/1.1" and r.close_delimited and r.body == pattern(30)
    assert r.header("Content-Length") is None and r.header("Transfer-Encoding") is None
    c.close()


def test_connection_close_parameter(upstream):
    c = Conn(upstream.port)
    c.send(req("/?connection=close&size=7"))
    r = c.response()
    assert r.header("Connection") == "close" and r.body == pattern(7)
    assert c.closed()
    c.close()


def test_pipelining_three_in_one_send_answers_in_order(upstream):
    c = Conn(upstream.port)
    c.send(req("/1?delay_ms=150&size=1") + req("/2?size=2") + req("/3?chunked=1&size=3"))
    bodies = [c.response().body for _ in range(3)]
    assert bodies == [b"a", b"ab", b"abc"]
    c.close()
    # The same through raw_exchange with the last one closing.
    data = raw_exchange(upstream.port, req("/a") + req("/b?status=404") +
                        req("/c", headers=[("Connection", "close")]))
    assert data.count(b"HTTP/1.1 ") == 3
    assert re.findall(rb"HTTP/1\.1 (\d+)", data) == [b"200", b"404", b"200"]


def test_keep_alive_reuses_one_connection(upstream):
    reset(upstream)
    conn = http.client.HTTPConnection("127.0.0.1", upstream.port, timeout=5)
    for i in range(5):
        conn.request("GET", "/k?size=%d" % (i + 1))
        resp = conn.getresponse()
        assert resp.status == 200 and resp.read() == pattern(i + 1)
    conn.close()
    entries = log(upstream)
    assert len(entries) == 5 and len({e["conn"] for e in entries}) == 1
    time.sleep(0.1)
    s = upstream_stats(upstream)
    assert s["connections"] == 1 and s["requests"] == 5 and s["responses"] == 5


def test_http10_clients(upstream):
    # Without keep-alive: answered, then closed.
    data = raw_exchange(upstream.port, b"GET /?size=5 HTTP/1.0\r\n\r\n")
    assert data.startswith(b"HTTP/1.1 200 OK\r\n") and data.endswith(b"\r\n\r\nabcde")
    assert b"Connection: close" in data
    # With keep-alive: kept open for a second request.
    c = Conn(upstream.port)
    c.send(b"GET /?size=2 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    r = c.response()
    assert r.header("Connection") == "keep-alive" and r.body == b"ab"
    c.send(b"GET /?chunked=1&size=3 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    r = c.response()  # no chunked framing for a 1.0 client: close-delimited
    assert r.close_delimited and r.body == b"abc"
    c.close()


def test_bad_request_gets_400_and_close(upstream):
    for junk in (b"GARBAGE\r\n\r\n", b"GET / HTTP/1.1\r\nBad Header\r\n\r\n",
                 b"GET / HTTP/1.1\r\nContent-Length: x\r\n\r\n", b"GET / HTTP/9.9\r\n\r\n"):
        data = raw_exchange(upstream.port, junk)
        assert status_of(data) == 400, (junk, data)
        assert b"Connection: close" in data
    # Too many header bytes: 431.
    big = b"GET / HTTP/1.1\r\nX-Big: " + b"x" * 70000 + b"\r\n\r\n"
    assert status_of(raw_exchange(upstream.port, big)) == 431


# -- request bodies and echo -------------------------------------------------

def test_echo_describes_the_request(upstream):
    body = os.urandom(100000)
    c = Conn(upstream.port)
    c.send(req("/e?echo=1&x=%20y", method="POST", headers=[("X-Test", "one"), ("x-test", "two")], body=body))
    r = c.response()
    assert r.status == 200 and r.header("Content-Type") == "application/json"
    e = json.loads(r.body)
    assert e["method"] == "POST" and e["target"] == "/e?echo=1&x=%20y" and e["version"] == "1.1"
    assert e["headers"] == [["Host", "up"], ["X-Test", "one"], ["x-test", "two"],
                            ["Content-Length", "100000"]]
    assert e["body_bytes"] == 100000 and e["body_fnv1a"] == fnv1a64(body)

    # A chunked request body, on the same connection.
    c.send(b"PUT /?echo=1 HTTP/1.1\r\nHost: up\r\nTransfer-Encoding: chunked\r\n\r\n"
           b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
    e = json.loads(c.response().body)
    assert e["method"] == "PUT" and e["body_bytes"] == 11 and e["body_fnv1a"] == fnv1a64(b"hello world")
    c.close()

    e = json.loads(one(upstream.port, "/?echo=1").body)
    assert e["body_bytes"] == 0 and e["body_fnv1a"] == fnv1a64(b"")


def test_body_is_read_before_answering(upstream):
    reset(upstream)
    c = Conn(upstream.port)
    head = b"POST /?size=3 HTTP/1.1\r\nHost: up\r\nContent-Length: 10\r\n\r\n"
    c.send(head + b"12345")
    c.s.settimeout(0.3)
    with pytest.raises(socket.timeout):
        c.s.recv(1)  # no answer while the body is incomplete
    c.s.settimeout(5)
    c.send(b"67890" + req("/?size=1"))
    assert c.response().body == b"abc" and c.response().body == b"a"
    c.close()
    # Expect: 100-continue gets an interim answer.
    c = Conn(upstream.port)
    c.send(b"POST /?echo=1 HTTP/1.1\r\nHost: up\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n")
    assert c.line() == b"HTTP/1.1 100 Continue" and c.line() == b""
    c.send(b"data")
    assert json.loads(c.response().body)["body_bytes"] == 4
    c.close()
    time.sleep(0.1)
    s = upstream_stats(upstream)
    assert s["bytes_received"] == 14 and s["requests"] == 3


# -- failures ----------------------------------------------------------------

def test_fail_reset(upstream):
    c = Conn(upstream.port)
    c.send(req("/?fail=reset"))
    with pytest.raises(ConnectionResetError):
        while c.s.recv(65536):
            pass
    c.close()


def test_fail_close(upstream):
    data = raw_exchange(upstream.port, req("/?fail=close"))
    assert data == b""
    c = Conn(upstream.port)
    c.send(req("/?fail=close&delay_ms=200"))
    t0 = time.monotonic()
    assert c.closed(timeout=3)
    assert time.monotonic() - t0 >= 0.18
    c.close()


def test_fail_hang_until_client_closes(upstream):
    reset(upstream)
    c = Conn(upstream.port)
    c.send(req("/?fail=hang"))
    assert not c.closed(timeout=0.5)
    s = upstream_stats(upstream)
    assert s["inflight"] == 1 and s["open_connections"] == 1
    c.close()
    deadline = time.time() + 3
    while time.time() < deadline:
        s = upstream_stats(upstream)
        if s["inflight"] == 0 and s["open_connections"] == 0:
            break
        time.sleep(0.05)
    assert s["inflight"] == 0 and s["open_connections"] == 0 and s["responses"] == 0


def test_fail_truncate(upstream):
    c = Conn(upstream.port)
    c.send(req("/?fail=truncate"))
    version, status, headers = c.head()
    assert status == 200 and ("Content-Length", "1000") in headers
    assert c.to_close() == pattern(500)
    c.close()
    c = Conn(upstream.port)
    c.send(req("/?fail=truncate&size=10000"))
    c.head()
    assert c.to_close() == pattern(5000)
    c.close()


def test_fail_times_with_key(upstream):
    target = "/?status=503&fail_times=2&key=k-status"
    assert [one(upstream.port, target).status for _ in range(4)] == [503, 503, 200, 200]
    # Another key has its own count.
    assert one(upstream.port, "/?status=503&fail_times=1&key=other").status == 503
    # fail= actions too.
    c = Conn(upstream.port)
    c.send(req("/?fail=reset&fail_times=1&key=k-reset"))
    with pytest.raises(ConnectionResetError):
        while c.s.recv(65536):
            pass
    c.close()
    r = one(upstream.port, "/?fail=reset&fail_times=1&key=k-reset&size=3")
    assert r.status == 200 and r.body == b"abc"
    assert raw_exchange(upstream.port, req("/?fail=close&fail_times=1&key=k-close")) == b""
    assert status_of(raw_exchange(upstream.port, req("/?fail=close&fail_times=1&key=k-close",
                                                     headers=[("Connection", "close")]))) == 200


def test_fail_times_shared_across_workers(start_upstream):
    up = start_upstream(workers=2)
    statuses = []
    for _ in range(10):  # new connections land on both workers
        statuses.append(one(up.port, "/?status=500&fail_times=3&key=shared").status)
    assert statuses == [500] * 3 + [200] * 7


# -- stats and log -----------------------------------------------------------

def test_stats_and_peak_inflight_under_concurrency(upstream):
    reset(upstream)
    n = 10
    results = []

    def worker(i):
        results.append(http_get(upstream.url + "/c%d?delay_ms=1000" % i, method="POST", data=b"x" * 100)[0])

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    time.sleep(0.5)
    during = upstream_stats(upstream)
    for t in threads:
        t.join()
    time.sleep(0.1)
    after = upstream_stats(upstream)
    assert results == [200] * n
    assert during["inflight"] == n and during["open_connections"] == n
    assert after["inflight"] == 0 and after["peak_inflight"] == n
    assert after["requests"] == n and after["responses"] == n and after["connections"] == n
    assert after["bytes_received"] == 100 * n and after["open_connections"] == 0

    reset(upstream)
    s = upstream_stats(upstream)
    assert s["requests"] == 0 and s["responses"] == 0 and s["peak_inflight"] == 0
    assert s["connections"] == 0 and s["bytes_received"] == 0


def test_log_records_requests_in_order(upstream):
    reset(upstream)
    assert log(upstream) == []
    c = Conn(upstream.port)
    c.send(req("/first?size=1", headers=[("X-A", "1")]))
    c.response()
    c.send(req("/second", method="POST", body=b"12345"))
    c.response()
    c.close()
    one(upstream.port, "/third?status=404")
    upstream_stats(upstream)  # not logged, not counted
    entries = log(upstream)
    assert [e["target"] for e in entries] == ["/first?size=1", "/second", "/third?status=404"]
    assert [e["method"] for e in entries] == ["GET", "POST", "GET"]
    assert entries[0]["headers"] == [["Host", "up"], ["X-A", "1"]]
    assert [e["body_bytes"] for e in entries] == [0, 5, 0]
    assert entries[0]["conn"] == entries[1]["conn"] != entries[2]["conn"]
    seqs = [e["seq"] for e in entries]
    assert seqs == sorted(seqs) and len(set(seqs)) == 3
    assert entries[0]["t_ms"] <= entries[1]["t_ms"] <= entries[2]["t_ms"]
    assert upstream_stats(upstream)["requests"] == 3


def test_log_keeps_the_last_thousand(upstream):
    reset(upstream)
    c = Conn(upstream.port)
    batch = b"".join(req("/n%d" % i) for i in range(50))
    for _ in range(21):
        c.send(batch)
        for _ in range(50):
            c.response()
    c.close()
    entries = log(upstream)
    assert len(entries) == 1000
    assert entries[-1]["target"] == "/n49" and entries[0]["target"] == "/n0"  # 1050 sent: 50 dropped


# -- resources and processes -------------------------------------------------

def rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def test_100mb_response_streams_in_little_memory(upstream):
    size = 100 * 1024 * 1024
    c = Conn(upstream.port, timeout=20)
    c.send(req("/?size=%d" % size))
    version, status, headers = c.head()
    assert status == 200 and ("Content-Length", str(size)) in headers
    expected = PATTERN * (1 << 16) + PATTERN  # covers any 1.6 MB window
    got = len(c.buf)
    assert c.buf == pattern(got)
    c.buf = b""
    peak = 0
    reads = 0
    while got < size:
        data = c.s.recv(min(1 << 20, size - got))
        assert data
        off = got % 26
        assert data == expected[off:off + len(data)]
        got += len(data)
        reads += 1
        if reads % 64 == 0:
            peak = max(peak, rss_kb(upstream.pid))
    peak = max(peak, rss_kb(upstream.pid))
    assert got == size
    assert peak < 50 * 1024, "upstream RSS reached %d kB" % peak
    c.send(req("/?size=3"))  # still in step
    assert c.response().body == b"abc"
    c.close()


def test_slow_reader_gets_backpressure(upstream):
    """A client that does not read: the upstream must not buffer the body."""
    c = Conn(upstream.port)
    c.s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    c.send(req("/?size=%d" % (200 * 1024 * 1024)))
    time.sleep(0.5)
    assert rss_kb(upstream.pid) < 50 * 1024
    c.close()
    deadline = time.time() + 3
    while time.time() < deadline and upstream_stats(upstream)["open_connections"]:
        time.sleep(0.05)
    assert upstream_stats(upstream)["open_connections"] == 0


def test_two_workers(start_upstream):
    up = start_upstream(workers=2)

    def threads():
        with open("/proc/%d/status" % up.pid) as f:
            return int([l for l in f if l.startswith("Threads:")][0].split()[1])

    # the sockets listen before the worker threads start: give them a moment
    deadline = time.monotonic() + 3
    while threads() < 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert threads() >= 3  # main + 2 workers
    # conftest's listening probe is counted once a worker accepts it, which
    # may be after the threads started: only then are the counters reset
    assert wait_until(lambda: upstream_stats(up)["connections"] >= 1, 3)
    reset(up)
    results = []

    def client():
        for _ in range(10):
            results.append(one(up.port, "/w?size=10").body)

    ts = [threading.Thread(target=client) for _ in range(8)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert results == [pattern(10)] * 80
    time.sleep(0.1)
    s = upstream_stats(up)
    assert s["requests"] == 80 and s["responses"] == 80 and s["connections"] == 80
    assert len(log(up)) == 80
    # Connections were spread over both workers' sockets: ids are unique anyway.
    assert len({e["conn"] for e in log(up)}) == 80


def test_idle_timeout_closes_idle_connections(start_upstream):
    up = start_upstream("--idle-timeout", "0.3")
    c = Conn(up.port)
    c.send(req("/"))
    assert c.response().body == b"ok\n"
    t0 = time.monotonic()
    assert c.closed(timeout=3)
    assert 0.25 <= time.monotonic() - t0 < 2
    c.close()
    # A request in progress is not idle.
    c = Conn(up.port)
    c.send(req("/?delay_ms=600"))
    assert c.response().status == 200
    c.close()


def test_sigterm_with_busy_connections_exits_cleanly(start_upstream):
    up = start_upstream(workers=2)
    conns = []
    for target in ("/?fail=hang", "/?delay_ms=5000", "/?chunks=100&chunk_delay_ms=100",
                   "/?size=500000000"):
        c = Conn(up.port)
        c.send(req(target))
        conns.append(c)
    half = Conn(up.port)
    half.send(b"GET / HTTP/1.1\r\nHo")
    time.sleep(0.3)
    t0 = time.monotonic()
    assert up.stop() == 0
    assert time.monotonic() - t0 < 5
    for c in conns + [half]:
        c.close()


def test_command_line():
    exe = os.path.join(BUILD, "sluice-upstream")
    r = subprocess.run([exe, "--help"], capture_output=True, timeout=10)
    assert r.returncode == 0 and b"--workers" in r.stdout
    for argv in (["--bogus"], ["--port", "x"], ["--port", "70000"], ["--workers", "0"],
                 ["--idle-timeout", "-1"], ["--port"], ["stray"]):
        r = subprocess.run([exe] + argv, capture_output=True, timeout=10)
        assert r.returncode == 2, argv
        err = r.stderr.decode().strip()
        assert err.startswith("sluice-upstream: ") and err.count("\n") == 0, err
    # A port already in use without SO_REUSEPORT: exit 1.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        r = subprocess.run([exe, "--port", str(s.getsockname()[1])], capture_output=True, timeout=10)
        assert r.returncode == 1 and b"cannot listen" in r.stderr
