"""Timeouts (SPEC §2, issue 2 item 4): connect -> 504, read (for the head) ->
504, read between body reads after the head was sent -> connection closed with
a truncated body, client header -> 408, client idle keep-alive -> close, write
stall -> close.

The connect timeout is provoked on loopback: a test-owned listening socket with
backlog 0 whose accept queue is filled and never accepted, so the kernel drops
further SYNs and sluice's connect() hangs.
"""
import json
import socket
import time

import pytest

from conftest import http_get, upstream_stats
from helpers import HttpConn, build_request, pattern, wait_until


class HangingListener:
    """A listening socket on 127.0.0.1 whose accept queue is full: connects to
    it neither succeed nor fail (SYNs are dropped)."""

    def __init__(self):
        self.lsock = socket.socket()
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(0)
        self.port = self.lsock.getsockname()[1]
        self.fill = []
        for _ in range(3):
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", self.port))
            self.fill.append(s)
        # check the trick works here: a connect must not complete
        probe = socket.socket()
        probe.settimeout(0.3)
        try:
            probe.connect(("127.0.0.1", self.port))
            self.works = False
        except socket.timeout:
            self.works = True
        except OSError:
            self.works = False
        finally:
            probe.close()

    def close(self):
        for s in self.fill:
            s.close()
        self.lsock.close()


def test_connect_timeout_gets_504(start_sluice):
    hl = HangingListener()
    try:
        if not hl.works:
            pytest.skip("cannot make connect() hang on loopback here")
        sl = start_sluice(hl.port, connect_timeout=0.5, max_retries=0, circuit_breaker_threshold=1000)
        with HttpConn(sl.port, timeout=10) as c:
            t0 = time.monotonic()
            r = c.request("GET", "/")
            took = time.monotonic() - t0
        assert r.status == 504, r
        assert 0.4 <= took <= 5, "504 after %.2f s with --connect-timeout 0.5" % took
    finally:
        hl.close()


def test_read_timeout_before_head_gets_504(upstream, start_sluice):
    sl = start_sluice(upstream.port, read_timeout=0.5, max_retries=0, circuit_breaker_threshold=1000)
    with HttpConn(sl.port, timeout=10) as c:
        t0 = time.monotonic()
        r = c.request("GET", "/?delay_ms=2500")
        took = time.monotonic() - t0
        assert r.status == 504, r
        assert 0.4 <= took < 2.4, "504 after %.2f s with --read-timeout 0.5" % took
        # a fast request afterwards works (on this connection or a new one)
        try:
            r = c.request("GET", "/?size=3")
        except Exception:
            with HttpConn(sl.port) as c2:
                r = c2.request("GET", "/?size=3")
        assert r.status == 200 and r.body == pattern(3)


def test_read_timeout_upstream_hang_gets_504(upstream, start_sluice):
    sl = start_sluice(upstream.port, read_timeout=0.5, max_retries=0, circuit_breaker_threshold=1000)
    with HttpConn(sl.port, timeout=10) as c:
        r = c.request("GET", "/?fail=hang")
    assert r.status == 504, r


def test_read_timeout_post_not_delivered_twice(upstream, start_sluice):
    """A POST that timed out may have reached the upstream: it gets 504 and is
    not retried (SPEC §5), whatever --max-retries says."""
    sl = start_sluice(upstream.port, read_timeout=0.5, max_retries=2, retry_backoff_factor=0.05,
                      circuit_breaker_threshold=1000)
    with HttpConn(sl.port, timeout=10) as c:
        t0 = time.monotonic()
        r = c.request("POST", "/once-only?delay_ms=1200", body=b"pay")
    assert r.status == 504, r

    def count():
        log = json.loads(http_get(upstream.url + "/__log")[2])
        return sum(1 for e in log if e["target"].startswith("/once-only"))

    assert wait_until(lambda: count() >= 1, 3), "the POST never reached the upstream"
    # give any retry time to arrive (it would have been sent ~0.55 s after the first)
    time.sleep(max(0.0, 2.6 - (time.monotonic() - t0)))
    assert count() == 1, "POST delivered %d times" % count()


def test_read_timeout_between_body_reads_closes_connection(upstream, start_sluice):
    """The head and the first chunk come at once, the next only after 1.5 s:
    with --read-timeout 0.5 the client gets the head, the first chunk, then the
    connection closes without the last chunk."""
    sl = start_sluice(upstream.port, read_timeout=0.5, max_retries=0, circuit_breaker_threshold=1000)
    with HttpConn(sl.port, timeout=10) as c:
        c.send(build_request("GET", "/?chunks=3&chunk_delay_ms=1500"))
        version, status, _, headers = c.read_head()
        t_head = time.monotonic()
        assert status == 200
        closed = c.wait_closed(5)
        took = time.monotonic() - t_head
        body = bytes(c.buf)
    assert closed, "connection not closed after a mid-body read timeout"
    assert took < 1.4, "closed %.2f s after the head; read timeout is 0.5 s" % took
    assert b"data: chunk 1" not in body
    assert not body.endswith(b"0\r\n\r\n"), "a truncated response was terminated as complete: %r" % body


def test_client_header_timeout_gets_408(upstream, start_sluice):
    sl = start_sluice(upstream.port, client_header_timeout=1)
    before = upstream_stats(upstream)
    with HttpConn(sl.port, timeout=10) as c:
        t0 = time.monotonic()
        c.send(b"GET /half HTTP/1.1\r\nHost: a\r\nX-A:")
        closed = c.wait_closed(5)
        took = time.monotonic() - t0
        got = bytes(c.buf)
    assert got.startswith(b"HTTP/1.1 408") or got.startswith(b"HTTP/1.0 408"), got[:200]
    assert closed
    assert 0.8 <= took <= 3.0, "closed after %.2f s with --client-header-timeout 1" % took
    after = upstream_stats(upstream)
    assert after["requests"] == before["requests"], "the incomplete head reached the upstream"


def test_client_header_timeout_covers_trickled_head(upstream, start_sluice):
    """A head trickled one byte every 0.2 s does not reset the header clock."""
    sl = start_sluice(upstream.port, client_header_timeout=1)
    data = b"GET /trickle HTTP/1.1\r\nHost: a\r\n" + b"X-Slow: " + b"s" * 100
    with HttpConn(sl.port, timeout=10) as c:
        t0 = time.monotonic()
        closed = False
        for i in range(len(data)):
            try:
                c.send(data[i:i + 1])
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
            if c.wait_closed(0.2):
                closed = True
                break
            if time.monotonic() - t0 > 4:
                break
        took = time.monotonic() - t0
        got = bytes(c.buf)
    assert closed, "slowloris head still open after %.1f s" % took
    assert took <= 3.0
    assert got.startswith(b"HTTP/1.1 408") or got.startswith(b"HTTP/1.0 408"), got[:200]


def test_client_idle_keepalive_closed(upstream, start_sluice):
    sl = start_sluice(upstream.port, client_idle_timeout=1)
    with HttpConn(sl.port, timeout=10) as c:
        r = c.request("GET", "/?size=3")
        assert r.status == 200
        t0 = time.monotonic()
        closed = c.wait_closed(5)
        took = time.monotonic() - t0
    assert closed, "idle keep-alive connection still open 5 s later with --client-idle-timeout 1"
    assert 0.7 <= took <= 3.0, "closed after %.2f s idle with --client-idle-timeout 1" % took


def test_idle_and_header_timeouts_do_not_cut_slow_responses(upstream, start_sluice):
    """The client waits 1.5 s for the upstream: neither the 1 s idle nor the
    1 s header timeout applies while a request is in flight."""
    sl = start_sluice(upstream.port, client_idle_timeout=1, client_header_timeout=1)
    with HttpConn(sl.port, timeout=10) as c:
        r = c.request("GET", "/?delay_ms=1500&size=5")
        assert r.status == 200 and r.body == pattern(5)
        r = c.request("GET", "/?size=2")
        assert r.status == 200


def test_silent_connection_closed(upstream, start_sluice):
    sl = start_sluice(upstream.port, client_idle_timeout=1, client_header_timeout=1)
    with HttpConn(sl.port, timeout=10) as c:
        assert c.wait_closed(4), "a connection that never sends anything is kept open"


def test_write_timeout_closes_stalled_client(upstream, start_sluice):
    """A client that stops reading a large response is dropped after
    --write-timeout, and the request's resources are released."""
    sl = start_sluice(upstream.port, write_timeout=0.5)
    size = 256 * 1024 * 1024
    with HttpConn(sl.port, timeout=10) as c:
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        c.send(build_request("GET", "/?size=%d" % size))
        time.sleep(2.5)  # stall: read nothing
        got = 0
        closed = False
        c.sock.settimeout(2)
        t0 = time.monotonic()
        while time.monotonic() - t0 < 15:
            try:
                b = c.sock.recv(1 << 20)
            except ConnectionResetError:
                closed = True
                break
            except socket.timeout:
                break
            if not b:
                closed = True
                break
            got += len(b)
    assert got < size, "a stalled client still received the whole response"
    assert closed, "stalled client connection not closed (got %d bytes)" % got
    health = lambda: json.loads(http_get(sl.url + "/proxy-health")[2])["active"] == 0
    assert wait_until(health, 5), "request still active after its client was dropped"
