"""Resources (SPEC §6 streaming, §7, issue 2 tests): a 100 MB body each way
through sluice with its RSS staying small (bodies are streamed with
backpressure, never buffered whole), and thousands of client connections --
normal, half-sent, reset, abandoned mid-request, garbage -- with sluice's
descriptor count back to its baseline afterwards.
"""
import json
import os
import random
import socket
import struct
import subprocess
import time

import pytest

from conftest import BUILD, http_get, upstream_stats
from helpers import HttpConn, build_request, fd_count, fnv1a64, pattern, proc_status, wait_until

MB = 1024 * 1024
RSS_LIMIT_KB = 64 * 1024          # plain build: absolute VmHWM
# These tests are about memory and descriptors, not admission control: slots,
# queue and breaker are set out of the way (aborted requests are not under test).
NO_ADMISSION_LIMITS = dict(max_concurrent_requests=1000, max_queue_size=1000, circuit_breaker_threshold=100000)


def _is_asan_build():
    try:
        with open(os.path.join(BUILD, "sluice"), "rb") as f:
            return b"__asan_init" in f.read()
    except OSError:
        return False


ASAN = _is_asan_build()


@pytest.fixture
def small_quarantine(monkeypatch):
    """Under ASan freed memory is held in a 256 MB quarantine, which would look
    like growth; shrink it so RSS reflects live memory."""
    if ASAN:
        opts = os.environ.get("ASAN_OPTIONS", "")
        monkeypatch.setenv("ASAN_OPTIONS", (opts + ":" if opts else "") + "quarantine_size_mb=4")


def check_rss(pid, hwm_before_kb, what):
    hwm = proc_status(pid, "VmHWM")
    if ASAN:
        grew = hwm - hwm_before_kb
        assert grew < 64 * 1024, "%s: sluice peak RSS grew by %d MB (ASan build)" % (what, grew // 1024)
    else:
        assert hwm < RSS_LIMIT_KB, "%s: sluice peak RSS %d MB (limit %d MB)" % (
            what, hwm // 1024, RSS_LIMIT_KB // 1024)


def test_100mb_request_body_streamed(small_quarantine, upstream, start_sluice):
    sl = start_sluice(upstream.port)
    hwm0 = proc_status(sl.pid, "VmHWM")
    size = 100 * MB
    block = random.Random(3).randbytes(MB)
    with HttpConn(sl.port, timeout=60) as c:
        c.send(build_request("POST", "/big?echo=1", [("Content-Length", str(size))]))
        for _ in range(size // MB):
            c.send(block)
        r = c.read_response()
    assert r.status == 200
    assert r.json()["body_bytes"] == size
    check_rss(sl.pid, hwm0, "100 MB request body")


def test_100mb_chunked_request_body_streamed(small_quarantine, upstream, start_sluice):
    sl = start_sluice(upstream.port)
    hwm0 = proc_status(sl.pid, "VmHWM")
    size = 100 * MB
    block = random.Random(4).randbytes(MB)
    chunk = b"%x\r\n" % len(block) + block + b"\r\n"
    with HttpConn(sl.port, timeout=60) as c:
        c.send(build_request("POST", "/bigch?echo=1", [("Transfer-Encoding", "chunked")]))
        for _ in range(size // MB):
            c.send(chunk)
        c.send(b"0\r\n\r\n")
        r = c.read_response()
    assert r.status == 200
    assert r.json()["body_bytes"] == size
    check_rss(sl.pid, hwm0, "100 MB chunked request body")


def test_medium_body_hash_exact(upstream, start_sluice):
    """Byte-exactness of a body large enough to span many reads (the 100 MB
    tests check the count only: FNV in Python is slow)."""
    sl = start_sluice(upstream.port)
    body = random.Random(5).randbytes(2 * MB + 123)
    with HttpConn(sl.port, timeout=30) as c:
        r = c.request("POST", "/mid?echo=1", body=body)
    assert r.status == 200
    assert r.json()["body_bytes"] == len(body)
    assert r.json()["body_fnv1a"] == fnv1a64(body)


def read_pattern_body(c, size, stall_after=None, stall=0.0):
    """Reads a `size`-byte pattern body (after the head) from c, checking it
    piece by piece; optionally stops reading for `stall` seconds after
    `stall_after` bytes. Returns the number of bytes that matched."""
    ref = pattern(26 * 40000)  # 1,040,000 bytes, a whole number of periods
    got = 0
    stalled = False
    buf = bytes(c.buf)
    c.buf.clear()
    while got < size:
        if buf:
            n = min(len(buf), size - got)
            off = got % 26
            piece = buf[:n]
            k = 0
            while k < n:
                m = min(n - k, len(ref) - 26)
                if piece[k:k + m] != ref[(off + k) % 26:(off + k) % 26 + m]:
                    return got + k
                k += m
            got += n
            buf = buf[n:]
        if stall_after is not None and not stalled and got >= stall_after:
            stalled = True
            time.sleep(stall)
        if got < size:
            buf = c.sock.recv(4 * MB)
            if not buf:
                break
    return got


def test_100mb_response_streamed_with_backpressure(small_quarantine, upstream, start_sluice):
    """The client stops reading for 1 s after 1 MB: sluice must stop reading
    the upstream instead of buffering the rest."""
    sl = start_sluice(upstream.port)
    hwm0 = proc_status(sl.pid, "VmHWM")
    size = 100 * MB
    with HttpConn(sl.port, timeout=60) as c:
        c.send(build_request("GET", "/?size=%d" % size))
        version, status, _, headers = c.read_head()
        assert status == 200
        h = dict(headers)
        assert h.get("content-length") == str(size), headers
        got = read_pattern_body(c, size, stall_after=MB, stall=1.0)
        assert got == size, "body mismatch or short at byte %d" % got
        # keep-alive still works after it
        r = c.request("GET", "/?size=3")
        assert r.status == 200 and r.body == pattern(3)
    check_rss(sl.pid, hwm0, "100 MB response with a stalled reader")


def test_100mb_chunked_response_streamed(small_quarantine, upstream, start_sluice):
    sl = start_sluice(upstream.port)
    hwm0 = proc_status(sl.pid, "VmHWM")
    size = 100 * MB
    with HttpConn(sl.port, timeout=60) as c:
        r = c.request("GET", "/?size=%d&chunked=1" % size)  # decoded in memory by the test
        assert r.status == 200
        assert len(r.body) == size
        assert r.body[:52] == pattern(52) and r.body[-26:] == pattern(26, size - 26)
    check_rss(sl.pid, hwm0, "100 MB chunked response")


# --------------------------------------------------------------------------
# descriptors


def wait_pool_closed(sl, timeout=5):
    def open_upstream():
        status, _, body = http_get(sl.url + "/proxy-metrics")
        return json.loads(body)["pool"]["open"]
    assert wait_until(lambda: open_upstream() == 0, timeout), "upstream connections still open"


def settle_fds(pid, timeout=3.0):
    """The lowest fd count seen once it has stopped changing."""
    last = fd_count(pid)
    deadline = time.monotonic() + timeout
    stable_since = time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.1)
        n = fd_count(pid)
        if n != last:
            last, stable_since = n, time.monotonic()
        elif time.monotonic() - stable_since >= 0.5:
            break
    return last


def describe_fds(pid):
    """The descriptors of pid and, for sockets, their TCP state (for failure messages)."""
    out = []
    for fd in sorted(os.listdir("/proc/%d/fd" % pid), key=int):
        try:
            out.append("%s -> %s" % (fd, os.readlink("/proc/%d/fd/%s" % (pid, fd))))
        except OSError:
            pass
    try:
        ss = subprocess.run(["ss", "-tanpi"], capture_output=True, text=True, timeout=5).stdout
        out += [l for l in ss.splitlines() if "pid=%d," % pid in l]
    except (OSError, subprocess.SubprocessError):
        pass
    return "\n".join(out)


def rst_close(s):
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()


def test_2000_connections_leave_no_descriptor(upstream, start_sluice):
    # idle upstream connections are closed after 0.5 s so that the pool does
    # not hold descriptors when we compare
    sl = start_sluice(upstream.port, pool_idle_timeout=0.5, client_header_timeout=2, shutdown_timeout=5,
                      **NO_ADMISSION_LIMITS)
    with HttpConn(sl.port) as c:  # warm up whatever is created lazily
        assert c.request("GET", "/?size=3").status == 200
        assert c.request("POST", "/?echo=1", body=b"x").status == 200
    wait_pool_closed(sl)  # the idle upstream connection, after pool_idle_timeout
    baseline = settle_fds(sl.pid)

    rng = random.Random(6)
    total = 0
    for batch in range(10):
        socks = []
        for i in range(200):
            s = socket.create_connection(("127.0.0.1", sl.port), timeout=10)
            socks.append(s)
        total += len(socks)
        for i, s in enumerate(socks):
            kind = i % 8
            try:
                if kind == 0:
                    pass                                   # connect and close
                elif kind == 1:
                    s.sendall(b"GET /half HTTP/1.1\r\nHo")  # half a head
                elif kind == 2:
                    s.sendall(build_request("POST", "/halfbody?echo=1", [("Content-Length", "1000")])
                              + b"x" * 10)                   # half a body
                elif kind == 3:
                    s.sendall(build_request("GET", "/?size=10", [("Connection", "close")]))
                elif kind == 4:
                    s.sendall(build_request("GET", "/?size=10"))  # keep-alive
                elif kind == 5:
                    s.sendall(build_request("GET", "/abandon?delay_ms=200"))  # leave before the answer
                elif kind == 6:
                    s.sendall(build_request("GET", "/?size=300000"))  # leave mid-response
                else:
                    s.sendall(bytes(rng.randrange(256) for _ in range(rng.randrange(1, 200))))
            except OSError:
                pass
        # read complete answers from the well-formed ones
        for i, s in enumerate(socks):
            if i % 8 in (3, 4):
                c = HttpConn.__new__(HttpConn)
                c.sock, c.buf = s, bytearray()
                r = c.read_response()
                assert r.status == 200 and r.body == pattern(10)
        for i, s in enumerate(socks):
            if i % 2:
                rst_close(s)
            else:
                s.close()
    assert total == 2000

    # sluice still answers
    with HttpConn(sl.port) as c:
        assert c.request("GET", "/?size=3").body == pattern(3)
    back = wait_until(lambda: fd_count(sl.pid) <= baseline, 10, step=0.1)
    assert back, "sluice holds %d descriptors, %d before the 2,000 connections:\n%s" % (
        fd_count(sl.pid), baseline, describe_fds(sl.pid))
    # and the upstream sees no connection left open by sluice beyond its pool
    # (the pool's idle connections close after 0.5 s; /__stats is not counted)
    wait_until(lambda: upstream_stats(upstream)["open_connections"] == 0, 5, step=0.1)
    assert upstream_stats(upstream)["open_connections"] == 0
    health = json.loads(http_get(sl.url + "/proxy-health")[2])
    assert health["active"] == 0 and health["queued"] == 0


def test_garbage_connections_do_not_crash_or_leak(upstream, start_sluice):
    """Seeded random mutations of valid requests on 300 connections: sluice
    survives, answers a normal request, and its descriptors come back."""
    sl = start_sluice(upstream.port, pool_idle_timeout=0.5, client_header_timeout=1,
                      max_header_size=8192, max_body_size=100000, shutdown_timeout=5, **NO_ADMISSION_LIMITS)
    with HttpConn(sl.port) as c:
        assert c.request("GET", "/?size=3").status == 200
    wait_pool_closed(sl)  # the idle upstream connection, after pool_idle_timeout
    baseline = settle_fds(sl.pid)
    rng = random.Random(7)
    seeds = [
        build_request("GET", "/?size=10"),
        build_request("POST", "/?echo=1", body=b"hello"),
        build_request("POST", "/?echo=1", [("Transfer-Encoding", "chunked")], body=b"5\r\nhello\r\n0\r\n\r\n"),
        build_request("GET", "/?size=10", version="HTTP/1.0"),
    ]
    for batch in range(3):
        socks = []
        for i in range(100):
            data = bytearray(rng.choice(seeds))
            for _ in range(rng.randrange(1, 6)):
                if not data:
                    break
                op = rng.randrange(4)
                pos = rng.randrange(len(data))
                if op == 0:
                    data[pos] = rng.randrange(256)
                elif op == 1:
                    del data[pos]
                elif op == 2:
                    data[pos:pos] = rng.choice([b"\r", b"\n", b"\r\n", b":", b" ", b"\x00", b"9" * 20,
                                                b"Transfer-Encoding: chunked\r\n", b"Content-Length: 3\r\n"])
                elif pos > 0:
                    data = data[:pos]
            s = socket.create_connection(("127.0.0.1", sl.port), timeout=10)
            try:
                s.sendall(bytes(data))
            except OSError:
                pass
            socks.append(s)
        time.sleep(0.05)
        for s in socks:
            rst_close(s)
        assert sl.proc.poll() is None, "sluice died on garbage input"
    with HttpConn(sl.port) as c:
        assert c.request("GET", "/?size=3").body == pattern(3)
    back = wait_until(lambda: fd_count(sl.pid) <= baseline, 10, step=0.1)
    assert back, "sluice holds %d descriptors, %d before:\n%s" % (fd_count(sl.pid), baseline, describe_fds(sl.pid))


@pytest.mark.parametrize("target", ["/?size=300000", "/?delay_ms=300&size=10", "/?chunks=3&chunk_delay_ms=200"])
def test_client_gone_before_response_releases_request(upstream, start_sluice, target):
    """Clients that send a request and close at once (before the response
    head): each request is released -- not active, no descriptor kept, no
    upstream connection left busy."""
    sl = start_sluice(upstream.port, pool_idle_timeout=0.5, shutdown_timeout=5, **NO_ADMISSION_LIMITS)
    with HttpConn(sl.port) as c:
        assert c.request("GET", "/?size=3").status == 200
    wait_pool_closed(sl)  # the idle upstream connection, after pool_idle_timeout
    baseline = settle_fds(sl.pid)
    # leave at several moments: before forwarding, while waiting for the
    # head, while the body streams
    for delay in (0, 0.0005, 0.001, 0.002, 0.003, 0.005, 0.01, 0.03) * 2:
        socks = []
        for i in range(20):
            s = socket.create_connection(("127.0.0.1", sl.port), timeout=10)
            s.sendall(build_request("GET", target))
            socks.append(s)
        time.sleep(delay)
        for i, s in enumerate(socks):
            if i % 2:
                rst_close(s)
            else:
                s.close()
    active = lambda: json.loads(http_get(sl.url + "/proxy-health")[2])["active"]
    assert wait_until(lambda: active() == 0, 3), "%d requests still active 3 s after their clients left" % active()
    back = wait_until(lambda: fd_count(sl.pid) <= baseline, 3, step=0.1)
    assert back, "sluice holds %d descriptors, %d before:\n%s" % (fd_count(sl.pid), baseline, describe_fds(sl.pid))
