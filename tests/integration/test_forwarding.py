"""Forwarding through sluice (SPEC §6, issue 2): keep-alive and pipelining,
HTTP/1.0 clients, Content-Length / chunked / close-delimited framing both ways,
Expect: 100-continue, HEAD, 1xx, 204/304, hop-by-hop headers, X-Forwarded-*,
Via, Host, streaming of slow chunked responses, upstream connection reuse and
/proxy-health.

Every test talks raw HTTP/1.1 over a real socket (helpers.HttpConn) so that
it sees the framing sluice actually produced.
"""
import json
import os
import random
import shutil
import socket
import subprocess
import threading
import time

import pytest

from conftest import BUILD, Proc, free_port, http_get, upstream_stats
from helpers import HttpConn, build_request, chunked, echo_headers, fnv1a64, pattern, wait_until

# --------------------------------------------------------------------------
# fixtures


@pytest.fixture
def pair(upstream, start_sluice):
    """(upstream, sluice) with defaults."""
    return upstream, start_sluice(upstream.port)


# --------------------------------------------------------------------------
# basic requests, keep-alive, pipelining


def test_get_relays_status_headers_and_body(pair):
    up, sl = pair
    with HttpConn(sl.port) as c:
        r = c.request("GET", "/?size=1000")
        assert r.status == 200
        assert r.body == pattern(1000)
        r = c.request("GET", "/whatever?status=404")
        assert r.status == 404
        r = c.request("GET", "/")
        assert r.status == 200 and r.body == b"ok\n"


def test_keepalive_reuses_one_client_connection(pair):
    up, sl = pair
    with HttpConn(sl.port) as c:
        for i in range(20):
            r = c.request("GET", "/ka/%d?echo=1" % i)
            assert r.status == 200
            assert r.json()["target"] == "/ka/%d?echo=1" % i
            assert not r.has_token("connection", "close")


def test_pipelined_requests_answered_in_order(pair):
    up, sl = pair
    reqs = (build_request("GET", "/p1?echo=1&delay_ms=300")
            + build_request("POST", "/p2?echo=1", body=b"x" * 5000)
            + build_request("GET", "/p3?size=7000&chunked=1")
            + build_request("GET", "/p4?echo=1"))
    with HttpConn(sl.port) as c:
        c.send(reqs)
        r1 = c.read_response()
        r2 = c.read_response()
        r3 = c.read_response()
        r4 = c.read_response()
    assert r1.status == 200 and r1.json()["target"] == "/p1?echo=1&delay_ms=300"
    assert r2.status == 200 and r2.json()["target"] == "/p2?echo=1"
    assert r2.json()["body_bytes"] == 5000
    assert r3.status == 200 and r3.body == pattern(7000)
    assert r4.status == 200 and r4.json()["target"] == "/p4?echo=1"


def test_deep_pipeline_in_one_send(pair):
    up, sl = pair
    reqs = []
    for i in range(60):
        if i % 3 == 0:
            reqs.append(build_request("GET", "/d%d?size=%d" % (i, 1000 * i)))
        elif i % 3 == 1:
            reqs.append(build_request("POST", "/d%d?echo=1" % i, body=b"b" * i))
        else:
            reqs.append(build_request("GET", "/d%d?size=%d&chunked=1" % (i, 10 * i)))
    with HttpConn(sl.port, timeout=20) as c:
        c.send(b"".join(reqs))
        for i in range(60):
            r = c.read_response()
            assert r.status == 200, (i, r)
            if i % 3 == 0:
                assert r.body == pattern(1000 * i), i
            elif i % 3 == 1:
                assert r.json()["target"] == "/d%d?echo=1" % i and r.json()["body_bytes"] == i
            else:
                assert r.body == pattern(10 * i), i


def test_concurrent_clients_get_their_own_responses(pair):
    """40 keep-alive clients at once over 2 workers and pooled upstream
    connections: every response belongs to its request."""
    up, sl = pair
    errors = []

    def client(k):
        try:
            with HttpConn(sl.port, timeout=20) as c:
                for i in range(25):
                    body = b"%d-%d" % (k, i)
                    r = c.request("POST", "/c%d/%d?echo=1" % (k, i), body=body)
                    j = r.json()
                    if r.status != 200 or j["target"] != "/c%d/%d?echo=1" % (k, i) or \
                            j["body_fnv1a"] != fnv1a64(body):
                        errors.append((k, i, r.status, j.get("target")))
                        return
        except Exception as e:
            errors.append((k, repr(e)))

    before = upstream_stats(up)["requests"]
    threads = [threading.Thread(target=client, args=(k,)) for k in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors, errors[:5]
    assert upstream_stats(up)["requests"] - before == 40 * 25


def test_request_sent_in_small_pieces(pair):
    up, sl = pair
    data = build_request("POST", "/slowly?echo=1", [("X-A", "1")], body=b"hello world")
    with HttpConn(sl.port) as c:
        for i in range(0, len(data), 7):
            c.send(data[i:i + 7])
            time.sleep(0.005)
        r = c.read_response()
    assert r.status == 200
    j = r.json()
    assert j["target"] == "/slowly?echo=1" and j["body_bytes"] == 11
    assert j["body_fnv1a"] == fnv1a64(b"hello world")


def test_target_passed_unchanged(pair):
    up, sl = pair
    target = "/a%20b/c;p=1?x=1&y=%2F&z=%E2%9C%93&echo=1"
    with HttpConn(sl.port) as c:
        r = c.request("GET", target)
    assert r.status == 200
    assert r.json()["target"] == target
    assert r.json()["method"] == "GET"


@pytest.mark.parametrize("method", ["PUT", "DELETE", "PATCH", "OPTIONS"])
def test_methods_forwarded(pair, method):
    up, sl = pair
    with HttpConn(sl.port) as c:
        r = c.request(method, "/m?echo=1", body=b"abc" if method in ("PUT", "PATCH") else None)
    assert r.status == 200
    assert r.json()["method"] == method


def test_client_connection_close_honoured(pair):
    up, sl = pair
    with HttpConn(sl.port) as c:
        r = c.request("GET", "/?size=10", [("Connection", "close")])
        assert r.status == 200 and r.body == pattern(10)
        assert c.wait_closed(3), "sluice kept the connection open after Connection: close"
        assert bytes(c.buf) == b""


# --------------------------------------------------------------------------
# HTTP/1.0 clients


def test_http10_client_gets_close_delimited_not_chunked(pair):
    up, sl = pair
    with HttpConn(sl.port) as c:
        c.send(b"GET /?size=30000&chunked=1 HTTP/1.0\r\nHost: a\r\n\r\n")
        r = c.read_response()
        assert r.status == 200
        assert r.header("transfer-encoding") is None, "chunked framing sent to an HTTP/1.0 client"
        assert r.body == pattern(30000)
        assert r.framing in ("close", "length")
        assert c.wait_closed(3), "HTTP/1.0 connection without keep-alive not closed"


def test_http10_client_no_keepalive_unless_asked(pair):
    up, sl = pair
    with HttpConn(sl.port) as c:
        c.send(b"GET /?size=100 HTTP/1.0\r\nHost: a\r\n\r\n")
        r = c.read_response()
        assert r.status == 200 and r.body == pattern(100)
        assert c.wait_closed(3), "HTTP/1.0 connection without keep-alive not closed"


def test_http10_client_keepalive_when_asked(pair):
    up, sl = pair
    with HttpConn(sl.port) as c:
        for i in range(3):
            c.send(b"GET /?size=100 HTTP/1.0\r\nHost: a\r\nConnection: keep-alive\r\n\r\n")
            r = c.read_response()
            assert r.status == 200 and r.body == pattern(100)
            assert r.framing == "length"
            assert r.has_token("connection", "keep-alive")
        assert not c.wait_closed(0.3)


def test_http10_request_forwarded(pair):
    up, sl = pair
    with HttpConn(sl.port) as c:
        c.send(b"POST /ten?echo=1 HTTP/1.0\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello")
        r = c.read_response()
    assert r.status == 200
    j = json.loads(r.body)
    assert j["method"] == "POST" and j["target"] == "/ten?echo=1" and j["body_bytes"] == 5


# --------------------------------------------------------------------------
# request bodies


def test_content_length_body_intact(pair):
    up, sl = pair
    body = random.Random(1).randbytes(300_000)
    with HttpConn(sl.port) as c:
        r = c.request("POST", "/cl?echo=1", body=body)
        assert r.status == 200
        j = r.json()
        assert j["body_bytes"] == len(body)
        assert j["body_fnv1a"] == fnv1a64(body)
        # and the connection is still usable
        r = c.request("POST", "/cl2?echo=1", body=b"")
        assert r.status == 200 and r.json()["body_bytes"] == 0


def test_chunked_body_intact(pair):
    up, sl = pair
    body = random.Random(2).randbytes(200_000)
    enc = chunked(body, [1, 17, 4096, 65536, 3])
    with HttpConn(sl.port) as c:
        r = c.request("POST", "/ch?echo=1", [("Transfer-Encoding", "chunked")], body=enc)
        assert r.status == 200
        j = r.json()
        assert j["body_bytes"] == len(body)
        assert j["body_fnv1a"] == fnv1a64(body)
        # a chunked body with a chunk extension and a trailer, then a second request
        enc2 = b"5;ext=1\r\nhello\r\n0\r\nX-Trailer: t\r\n\r\n"
        r = c.request("POST", "/ch2?echo=1", [("Transfer-Encoding", "chunked")], body=enc2)
        assert r.status == 200
        assert r.json()["body_bytes"] == 5 and r.json()["body_fnv1a"] == fnv1a64(b"hello")


def test_chunked_body_sent_slowly(pair):
    up, sl = pair
    with HttpConn(sl.port) as c:
        c.send(build_request("POST", "/slowch?echo=1", [("Transfer-Encoding", "chunked")]))
        for piece in (b"a" * 10, b"b" * 1000, b"c"):
            c.send(b"%x\r\n" % len(piece) + piece + b"\r\n")
            time.sleep(0.05)
        c.send(b"0\r\n\r\n")
        r = c.read_response()
    assert r.status == 200
    assert r.json()["body_bytes"] == 1011
    assert r.json()["body_fnv1a"] == fnv1a64(b"a" * 10 + b"b" * 1000 + b"c")


def test_expect_100_continue(pair):
    up, sl = pair
    body = b"z" * 1000
    with HttpConn(sl.port, timeout=5) as c:
        c.send(build_request("POST", "/exp?echo=1", [("Expect", "100-continue"), ("Content-Length", "1000")]))
        try:
            head = c.read_until(b"\r\n\r\n")
        except socket.timeout:
            pytest.fail("no 100 Continue within 5 s of a head with Expect: 100-continue")
        assert head.startswith(b"HTTP/1.1 100"), head
        c.send(body)
        r = c.read_response()
    assert r.status == 200
    assert r.json()["body_bytes"] == 1000
    assert r.json()["body_fnv1a"] == fnv1a64(body)


# --------------------------------------------------------------------------
# response framing


@pytest.mark.parametrize("query", ["size=70000", "size=70000&chunked=1", "size=70000&nolength=1",
                                   "size=70000&http10=1"])
def test_response_framings_relayed_intact(pair, query):
    up, sl = pair
    with HttpConn(sl.port) as c:
        r = c.request("GET", "/?" + query)
        assert r.status == 200
        assert r.body == pattern(70000), "body of %d bytes, framing %s" % (len(r.body), r.framing)
        if r.framing != "close":
            # still keep-alive: a second request on the same connection works
            r2 = c.request("GET", "/?size=5")
            assert r2.status == 200 and r2.body == pattern(5)


def test_close_delimited_upstream_response_to_keepalive_client(pair):
    """The upstream ends its body by closing; sluice must not end the client's
    body early nor hang waiting: the client sees the full body."""
    up, sl = pair
    with HttpConn(sl.port) as c:
        for i in range(3):
            r = c.request("GET", "/?size=%d&nolength=1" % (1000 + i))
            assert r.status == 200 and r.body == pattern(1000 + i)
            if r.framing == "close":
                break


def test_head_keeps_headers_sends_no_body(pair):
    up, sl = pair
    with HttpConn(sl.port) as c:
        # pipelined: if sluice sent a body after the HEAD response, the GET's
        # response would be misparsed
        c.send(build_request("HEAD", "/?size=5000") + build_request("GET", "/?size=3"))
        r = c.read_response("HEAD")
        assert r.status == 200
        assert r.header("content-length") == "5000"
        r2 = c.read_response()
        assert r2.status == 200 and r2.body == pattern(3)
        c.send(build_request("HEAD", "/?size=5000&chunked=1") + build_request("GET", "/?size=4"))
        r = c.read_response("HEAD")
        assert r.status == 200
        r2 = c.read_response()
        assert r2.status == 200 and r2.body == pattern(4)


def test_1xx_before_final_response(pair):
    up, sl = pair
    with HttpConn(sl.port) as c:
        r = c.request("GET", "/?early=103&size=100")
        assert r.status == 200 and r.body == pattern(100)
        assert r.interim in ([], [103])
        r = c.request("GET", "/?size=2")
        assert r.status == 200 and r.body == pattern(2)


@pytest.mark.parametrize("status", [204, 304])
def test_no_body_statuses(pair, status):
    up, sl = pair
    with HttpConn(sl.port) as c:
        c.send(build_request("GET", "/?status=%d" % status) + build_request("GET", "/?size=6"))
        r = c.read_response()
        assert r.status == status
        assert r.header("transfer-encoding") is None
        r2 = c.read_response()
        assert r2.status == 200 and r2.body == pattern(6)


# --------------------------------------------------------------------------
# headers


def test_hop_by_hop_request_headers_removed(pair):
    up, sl = pair
    with HttpConn(sl.port) as c:
        r = c.request("GET", "/hop?echo=1", [
            ("Connection", "keep-alive, X-Private-Hop"),
            ("X-Private-Hop", "secret"),
            ("Keep-Alive", "timeout=5"),
            ("Proxy-Connection", "keep-alive"),
            ("TE", "trailers"),
            ("Trailer", "X-T"),
            ("Upgrade", "something/1"),
            ("X-End-To-End", "kept"),
        ])
    assert r.status == 200
    names = [k for k, _ in echo_headers(r)]
    for hop in ("keep-alive", "x-private-hop", "proxy-connection", "te", "trailer", "upgrade"):
        assert hop not in names, "%s forwarded: %s" % (hop, echo_headers(r))
    for k, v in echo_headers(r):
        if k == "connection":
            assert "x-private-hop" not in v.lower(), v
    assert ("x-end-to-end", "kept") in echo_headers(r)


def test_hop_by_hop_response_headers_removed(pair):
    up, sl = pair
    with HttpConn(sl.port) as c:
        r = c.request("GET", "/?size=10&header=Keep-Alive:timeout=99&header=Upgrade:foo&header=X-E2E:yes")
    assert r.status == 200 and r.body == pattern(10)
    assert r.header("x-e2e") == "yes", "end-to-end response header lost: %s" % r.headers
    assert r.header("upgrade") is None, r.headers
    assert all("timeout=99" not in v for _, v in r.headers), r.headers


def test_forwarded_headers_added(pair):
    up, sl = pair
    with HttpConn(sl.port) as c:
        r = c.request("GET", "/xff?echo=1")
        hs = echo_headers(r)
        assert ("x-forwarded-for", "127.0.0.1") in hs, hs
        assert ("x-forwarded-proto", "http") in hs, hs
        via = [v for k, v in hs if k == "via"]
        assert len(via) == 1 and via[0].startswith("1.1 "), hs

        r = c.request("GET", "/xff?echo=1", [("X-Forwarded-For", "10.1.2.3"), ("Via", "1.0 fred")])
        hs = echo_headers(r)
        xff = ", ".join(v for k, v in hs if k == "x-forwarded-for")
        assert [p.strip() for p in xff.split(",")] == ["10.1.2.3", "127.0.0.1"], hs
        via = ", ".join(v for k, v in hs if k == "via")
        assert via.startswith("1.0 fred") and "1.1 " in via, hs


def test_host_passed_as_sent(pair):
    up, sl = pair
    with HttpConn(sl.port) as c:
        r = c.request("GET", "/h?echo=1", [("Host", "Example.TEST:4321")])
    hosts = [v for k, v in echo_headers(r) if k == "host"]
    assert hosts == ["Example.TEST:4321"]


def test_repeated_and_large_headers_kept(pair):
    up, sl = pair
    big = "v" * 20000
    with HttpConn(sl.port) as c:
        r = c.request("GET", "/rep?echo=1", [("X-Multi", "one"), ("X-Multi", "two"), ("X-Big", big),
                                             ("X-Empty", "")])
    assert r.status == 200
    hs = echo_headers(r)
    assert [v for k, v in hs if k == "x-multi"] in (["one", "two"], ["one, two"]), hs
    assert ("x-big", big) in hs
    assert [v for k, v in hs if k == "x-empty"] == [""]


# --------------------------------------------------------------------------
# streaming


def test_sse_chunks_arrive_as_sent(pair):
    """chunks=5&chunk_delay_ms=300: each chunk must reach the client before the
    upstream sends the next, i.e. arrivals are spread ~300 ms apart, not
    bunched at the end."""
    up, sl = pair
    n, gap = 5, 0.3
    with HttpConn(sl.port, timeout=10) as c:
        c.send(build_request("GET", "/events?chunks=%d&chunk_delay_ms=%d" % (n, int(gap * 1000))))
        t0 = time.monotonic()
        version, status, _, headers = c.read_head()
        assert status == 200
        te = dict(headers).get("transfer-encoding", "")
        arrivals = {}
        decoded = bytearray()
        # read raw bytes as they come; decode chunked incrementally
        raw = bytearray(c.buf)
        c.buf.clear()
        done = False
        while not done:
            if te.lower().endswith("chunked"):
                # decode whatever complete chunks are in raw
                while True:
                    i = raw.find(b"\r\n")
                    if i < 0:
                        break
                    size = int(bytes(raw[:i]).split(b";")[0], 16)
                    if size == 0:
                        done = True
                        break
                    if len(raw) < i + 2 + size + 2:
                        break
                    decoded += raw[i + 2:i + 2 + size]
                    del raw[:i + 2 + size + 2]
            else:
                decoded += raw
                raw.clear()
            now = time.monotonic()
            for k in range(n):
                if k not in arrivals and (b"data: chunk %d\n\n" % k) in decoded:
                    arrivals[k] = now - t0
            if done or len(arrivals) == n and not te.lower().endswith("chunked"):
                break
            b = c.sock.recv(65536)
            if not b:
                break
            raw += b
    assert sorted(arrivals) == list(range(n)), "chunks seen: %s, body %r" % (arrivals, bytes(decoded))
    times = [arrivals[k] for k in range(n)]
    for k in range(n - 1):
        assert times[k + 1] - times[k] > gap / 2, \
            "chunk %d and %d arrived %.3f s apart (upstream sends them %.1f s apart): %s" % (
                k, k + 1, times[k + 1] - times[k], gap, times)


def test_slow_chunked_response_with_size(pair):
    up, sl = pair
    with HttpConn(sl.port) as c:
        r = c.request("GET", "/?size=1000&chunks=4&chunk_delay_ms=50")
    assert r.status == 200 and r.body == pattern(1000)


# --------------------------------------------------------------------------
# upstream connection reuse


def test_upstream_connections_reused_by_keepalive_client(pair):
    up, sl = pair
    before = upstream_stats(up)
    with HttpConn(sl.port) as c:
        for i in range(200):
            r = c.request("GET", "/reuse?size=10")
            assert r.status == 200
    after = upstream_stats(up)
    assert after["requests"] - before["requests"] >= 200
    opened = after["connections"] - before["connections"]  # /__stats connections are not counted
    assert opened <= 10, "200 sequential requests opened %d upstream connections" % opened


def test_upstream_connections_reused_across_client_connections(pair):
    up, sl = pair
    before = upstream_stats(up)
    for i in range(100):
        with HttpConn(sl.port) as c:
            r = c.request("GET", "/reuse2?size=10", [("Connection", "close")])
            assert r.status == 200
    after = upstream_stats(up)
    opened = after["connections"] - before["connections"]
    assert opened <= 10, "100 client connections opened %d upstream connections" % opened


def test_upstream_connection_close_handled(pair):
    up, sl = pair
    with HttpConn(sl.port) as c:
        for i in range(5):
            r = c.request("GET", "/?size=20&connection=close")
            assert r.status == 200 and r.body == pattern(20)
        for i in range(5):
            r = c.request("POST", "/?echo=1&connection=close", body=b"abc")
            assert r.status == 200 and r.json()["body_bytes"] == 3


def test_pooled_connection_closed_by_upstream_is_replaced(start_upstream, start_sluice):
    """The upstream closes idle connections after 1 s; a request after 1.5 s of
    quiet (GET and POST) still succeeds."""
    up = start_upstream("--idle-timeout", "1")
    sl = start_sluice(up.port)
    with HttpConn(sl.port) as c:
        assert c.request("GET", "/?size=3").status == 200
        assert c.request("POST", "/?echo=1", body=b"abc").status == 200
        time.sleep(1.5)
        r = c.request("GET", "/?size=3")
        assert r.status == 200 and r.body == pattern(3)
        time.sleep(1.5)
        r = c.request("POST", "/?echo=1", body=b"abcd")
        assert r.status == 200 and r.json()["body_bytes"] == 4


# --------------------------------------------------------------------------
# /proxy-health


def test_proxy_health(pair):
    up, sl = pair
    before = upstream_stats(up)
    status, headers, body = http_get(sl.url + "/proxy-health")
    assert status == 200
    assert "json" in headers.get("Content-Type", "")
    j = json.loads(body)
    assert j["status"] == "healthy"
    assert j["circuit_state"] == "closed"
    assert j["active"] == 0 and j["queued"] == 0
    after = upstream_stats(up)
    assert after["requests"] == before["requests"], "/proxy-health was forwarded"


def test_proxy_health_counts_active(pair):
    up, sl = pair
    result = {}

    def slow():
        result["r"] = http_get(sl.url + "/?delay_ms=1000", timeout=10)

    t = threading.Thread(target=slow)
    t.start()
    try:
        seen = wait_until(lambda: json.loads(http_get(sl.url + "/proxy-health")[2])["active"] >= 1, 0.9)
        assert seen, "/proxy-health never showed the in-flight request as active"
    finally:
        t.join(10)
    assert result["r"][0] == 200
    j = json.loads(http_get(sl.url + "/proxy-health")[2])
    assert j["active"] == 0


def _listening(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def test_listen_port_forwards_all_paths_when_admin_port_set(upstream, start_sluice):
    admin = free_port()
    sl = start_sluice(upstream.port, admin_port=admin)
    assert wait_until(lambda: _listening(admin), 5), "admin port %d not listening" % admin
    with HttpConn(sl.port) as c:
        r = c.request("GET", "/proxy-health?echo=1")
        assert r.status == 200 and r.json()["target"] == "/proxy-health?echo=1"
    status, _, body = http_get("http://127.0.0.1:%d/proxy-health" % admin)
    assert status == 200 and json.loads(body)["status"] == "healthy"


@pytest.mark.parametrize("status", [500, 503])
def test_upstream_5xx_relayed(upstream, start_sluice, status):
    sl = start_sluice(upstream.port, max_retries=0, circuit_breaker_threshold=1000)
    with HttpConn(sl.port) as c:
        r = c.request("GET", "/?status=%d&header=X-From:upstream" % status)
    assert r.status == status
    assert r.header("x-from") == "upstream", "sluice answered itself instead of relaying: %s" % r


def test_target_host_name_resolved(upstream, start_sluice):
    """--target-host may be a name ("localhost" may resolve to ::1 first, where
    nothing listens: the next address must be tried)."""
    sl = start_sluice(upstream.port, target_host="localhost")
    with HttpConn(sl.port) as c:
        r = c.request("GET", "/?size=8")
    assert r.status == 200 and r.body == pattern(8)


def own_hosts_file_works():
    """sluice can be started in a private mount namespace with its own
    /etc/hosts (root and CAP_SYS_ADMIN; the real file is never touched)."""
    if shutil.which("unshare") is None:
        return False
    r = subprocess.run(["unshare", "-m", "sh", "-c", "mount --bind /dev/null /etc/hosts"], capture_output=True)
    return r.returncode == 0


def black_hole_v6(port):
    """A listener on [::1]:port whose accept queue is full: SYNs to it are
    dropped, so a connect hangs until its timeout. Returns the sockets."""
    lst = socket.socket(socket.AF_INET6)
    lst.bind(("::1", port))
    lst.listen(0)
    held = [lst]
    for _ in range(4):
        c = socket.socket(socket.AF_INET6)
        c.setblocking(False)
        try:
            c.connect(("::1", port))
        except BlockingIOError:
            pass
        held.append(c)
    time.sleep(0.1)
    probe = socket.socket(socket.AF_INET6)
    probe.settimeout(0.3)
    try:
        probe.connect(("::1", port))
        ok = False
    except (socket.timeout, TimeoutError):
        ok = True
    finally:
        probe.close()
    if not ok:
        for h in held:
            h.close()
        pytest.skip("cannot make a black-hole address on ::1 here")
    return held


@pytest.mark.parametrize("first", ["refused", "black_hole"])
def test_next_address_after_a_refused_or_silent_one(procs, tmp_path, first):
    """A target name with two addresses, ::1 first: nothing listens there
    (refused: the next address at once) or SYNs vanish (black hole: the next
    address after connect_timeout). Every request succeeds with no retry;
    connections start on the addresses in turn."""
    if not socket.has_ipv6 or not own_hosts_file_works():
        pytest.skip("needs IPv6 on loopback and a private mount namespace (unshare -m) for /etc/hosts")
    port = free_port()
    held = black_hole_v6(port) if first == "black_hole" else []
    try:
        up = Proc([os.path.join(BUILD, "sluice-upstream"), "--host", "127.0.0.1", "--port", str(port)], port,
                  "sluice-upstream", tmp_path)
        procs.append(up)
        hosts = tmp_path / "hosts"
        hosts.write_text("::1 dual.test\n127.0.0.1 dual.test\n")
        sl_port = free_port()
        argv = ["unshare", "-m", "sh", "-c", 'mount --bind "$0" /etc/hosts && exec "$@"', str(hosts),
                os.path.join(BUILD, "sluice"), "--listen-host", "127.0.0.1", "--listen-port", str(sl_port),
                "--target-host", "dual.test", "--target-port", str(port), "--workers", "1",
                "--connect-timeout", "0.4", "--max-retries", "0"]
        sl = Proc(argv, sl_port, "sluice", tmp_path)
        procs.append(sl)
        times = []
        for i in range(4):
            t0 = time.monotonic()
            with HttpConn(sl_port) as c:  # connection=close: each request needs a new upstream connection
                r = c.request("GET", "/dual-%d?connection=close&size=4" % i)
            times.append(time.monotonic() - t0)
            assert r.status == 200 and r.body == pattern(4), (i, r)
        slow = [t for t in times if t >= 0.38]
        if first == "black_hole":
            # the connections that started on ::1 waited out the timeout there
            assert len(slow) == 2 and all(t < 2.0 for t in slow), times
        else:
            assert not slow, times
        m = json.loads(http_get("http://127.0.0.1:%d/proxy-metrics" % sl_port)[2])
        assert (m["requests"]["success"], m["requests"]["failed"], m["requests"]["retries"]) == (4, 0, 0), m
        assert upstream_stats(up)["requests"] == 4
    finally:
        for h in held:
            h.close()
