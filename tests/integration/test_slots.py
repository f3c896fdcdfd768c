"""A slot means work at the upstream (issue 12): clients that leave, CONNECT
tunnels, and a deadline for the whole request.

  - With --client-abort drain, a request whose client leaves keeps its slot
    until the upstream's answer ends, so an upstream that keeps working after
    the client left never has more than the limit of ours to work on; the
    request ends as client_closed, which is neither a failure nor in the
    success rate. --client-abort cancel closes the upstream connection at once.
  - A FIN after a whole request is not leaving: the answer still comes.
  - A tunnel holds a slot only while an exchange goes through it.
  - --request-timeout bounds queue, attempts and backoff; a read timeout is
    retried only with --retry-on-timeout.
"""
import json
import os
import socket
import struct
import threading
import time

import pytest

from conftest import http_get
from helpers import HttpConn, build_request, health, wait_until
from rawpeer import ConnectProxy, RawUpstream, Working
from tlsfix import HttpsServer, make_ca, make_leaf


def metrics(sl):
    status, _, body = http_get(sl.url + "/proxy-metrics")
    assert status == 200
    return json.loads(body)


def rst_close(s):
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()


@pytest.fixture
def peers():
    made = []
    yield made
    for p in made:
        p.close()


def abandon_all(port, n, after, target="/work"):
    """n clients send a GET each, wait `after` seconds and reset their
    connection without reading the answer."""
    def one(i):
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        s.sendall(build_request("GET", "%s/%d" % (target, i)))
        time.sleep(after)
        rst_close(s)
    ts = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()


@pytest.mark.parametrize("policy", ["drain", "cancel"])
def test_abandoned_requests_keep_the_upstream_under_the_limit(peers, start_sluice, policy):
    work = Working(0.4)
    up = RawUpstream(work)
    peers.append(up)
    limit = 4
    sl = start_sluice(up.port, workers=2, max_concurrent_requests=limit, max_queue_size=100,
                      queue_timeout=20, client_abort=policy)
    abandon_all(sl.port, 24, 0.1)
    # every request either reached the upstream once or was withdrawn from the queue
    assert wait_until(lambda: health(sl)["active"] == 0 and health(sl)["queued"] == 0, 15), health(sl)
    assert wait_until(lambda: work.now == 0, 5)
    m = metrics(sl)
    assert m["requests"]["client_closed"] == 24, m["requests"]
    assert m["requests"]["failed"] == 0
    assert m["concurrency"]["draining"] == 0
    if policy == "drain":
        assert work.peak <= limit, "the upstream worked on %d requests at once, limit %d" % (work.peak, limit)
        assert work.done >= limit  # the first ones were sent and drained
    else:
        assert work.peak > limit, "cancel frees the slot at once: the upstream saw only %d" % work.peak


def test_drained_connection_goes_back_to_the_pool(peers, start_sluice):
    work = Working(0.3)
    up = RawUpstream(work)
    peers.append(up)
    sl = start_sluice(up.port, workers=1, max_concurrent_requests=1)
    abandon_all(sl.port, 1, 0.05)
    assert wait_until(lambda: metrics(sl)["concurrency"]["draining"] == 1, 2)
    assert health(sl)["active"] == 1  # the drain holds the slot while the upstream works
    assert wait_until(lambda: health(sl)["active"] == 0, 3)
    with HttpConn(sl.port) as c:
        assert c.request("GET", "/next").status == 200
    assert len(up.conns) == 1, "the drained connection was not reused"


def test_clients_that_give_up_are_not_failures(start_upstream, start_sluice):
    """100 clients give up after 0.5 s on a 2 s upstream, limit 10: the ten
    that reached it are drained, the ninety queued are withdrawn; nothing
    failed, health stays healthy, the success rate stays 1."""
    up = start_upstream(workers=2)
    sl = start_sluice(up.port, workers=2, max_concurrent_requests=10, max_queue_size=200, queue_timeout=30)

    def client(i):
        try:
            with socket.create_connection(("127.0.0.1", sl.port), timeout=0.5) as s:
                s.sendall(build_request("GET", "/slow/%d?delay_ms=2000" % i))
                s.recv(100)
        except OSError:
            pass  # timed out: the socket closes

    ts = [threading.Thread(target=client, args=(i,)) for i in range(100)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert wait_until(lambda: health(sl)["active"] == 0, 10), health(sl)
    m = metrics(sl)
    req = m["requests"]
    assert (req["client_closed"], req["failed"], req["success"]) == (100, 0, 0), req
    assert m["success_rate"] == 1.0
    assert health(sl)["status"] == "healthy"
    prom = http_get(sl.url + "/proxy-metrics/prometheus")[2].decode()
    assert 'sluice_requests_total{outcome="client_closed"} 100' in prom


def test_half_close_after_a_complete_request_gets_its_answer(upstream, start_sluice):
    sl = start_sluice(upstream.port)
    with socket.create_connection(("127.0.0.1", sl.port), timeout=5) as s:
        s.sendall(build_request("GET", "/?size=5&delay_ms=100"))
        s.shutdown(socket.SHUT_WR)
        got = b""
        while True:
            b = s.recv(65536)
            if not b:
                break
            got += b
    assert got.startswith(b"HTTP/1.1 200"), got[:100]
    assert got.endswith(b"abcde") or len(got.split(b"\r\n\r\n", 1)[1]) == 5
    assert metrics(sl)["requests"]["success"] == 1


def test_queued_client_that_half_closes_is_withdrawn(start_upstream, start_sluice):
    up = start_upstream()
    sl = start_sluice(up.port, workers=1, max_concurrent_requests=1)
    with HttpConn(sl.port) as hold:
        hold.send(build_request("GET", "/hold?delay_ms=800"))
        assert wait_until(lambda: health(sl)["active"] == 1, 2)
        s = socket.create_connection(("127.0.0.1", sl.port), timeout=5)
        s.sendall(build_request("GET", "/never"))
        assert wait_until(lambda: health(sl)["queued"] == 1, 2)
        s.shutdown(socket.SHUT_WR)
        assert wait_until(lambda: health(sl)["queued"] == 0, 2)
        assert s.recv(100) == b""
        s.close()
        assert hold.read_response().status == 200
    assert metrics(sl)["requests"]["client_closed"] == 1


# ---- tunnels ---------------------------------------------------------------------


def tunnel(port, dest_port, timeout=10):
    """A connection through sluice's CONNECT to 127.0.0.1:dest_port."""
    c = HttpConn(port, timeout=timeout)
    c.send(b"CONNECT 127.0.0.1:%d HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n" % (dest_port, dest_port))
    r = c.read_response(method="CONNECT")
    assert r.status == 200, r.body
    return c


def test_idle_tunnels_hold_no_slot(peers, upstream, start_sluice):
    proxy = ConnectProxy()
    peers.append(proxy)
    sl = start_sluice(proxy.port, workers=2, max_concurrent_requests=2, queue_timeout=5,
                      tunnel_release_after=0.2)
    a, b = tunnel(sl.port, upstream.port), tunnel(sl.port, upstream.port)
    try:
        for c in (a, b):  # each used once, then kept open and idle (as urllib3 pools them)
            assert c.request("GET", "/?size=3").status == 200
        assert wait_until(lambda: health(sl)["active"] == 0, 2), health(sl)
        m = metrics(sl)
        assert m["tunnels"] == {"open": 2, "active": 0}, m["tunnels"]
        # a third client's plain request is answered at once... through the
        # parent proxy, which answers it with 405: what matters is that it
        # was not held in sluice's queue
        t0 = time.monotonic()
        status, _, _ = http_get(sl.url + "/plain", timeout=5)
        assert status == 405 and time.monotonic() - t0 < 1.0
        # back-to-back exchanges in one tunnel each take and give back a slot
        for i in range(2):
            a.send(build_request("GET", "/?delay_ms=300&size=2"))
            assert wait_until(lambda: health(sl)["active"] == 1, 1), health(sl)
            assert a.read_response().status == 200
            assert wait_until(lambda: health(sl)["active"] == 0, 1), health(sl)
    finally:
        a.close()
        b.close()
    assert wait_until(lambda: metrics(sl)["tunnels"]["open"] == 0, 3)
    # the two CONNECTs, ended as tunnels, and the plain request (the parent proxy's 405)
    assert metrics(sl)["requests"]["success"] == 3


def test_tunnel_waiting_for_the_upstream_keeps_its_slot(peers, upstream, start_sluice):
    proxy = ConnectProxy()
    peers.append(proxy)
    sl = start_sluice(proxy.port, workers=1, max_concurrent_requests=1, tunnel_release_after=0.2)
    with tunnel(sl.port, upstream.port) as t:
        assert wait_until(lambda: health(sl)["active"] == 0, 2)
        t.send(build_request("GET", "/?delay_ms=3000&size=1"))
        t0 = time.monotonic()
        assert wait_until(lambda: health(sl)["active"] == 1, 1)
        # a plain request meanwhile waits for the slot the tunnel holds
        waiter = HttpConn(sl.port, timeout=10)
        waiter.send(build_request("GET", "/plain"))
        time.sleep(1.5)
        assert health(sl) == {**health(sl), "active": 1, "queued": 1}
        assert t.read_response().status == 200
        assert time.monotonic() - t0 >= 2.9
        assert waiter.read_response().status == 405  # the parent proxy's answer, once the slot was free
        waiter.close()


def test_tunnel_half_close_follows_the_bytes_that_wait_for_a_slot(peers, upstream, start_sluice):
    """A client sends its last request on a tunnel that has no slot and
    half-closes: the FIN must reach the upstream after those bytes, not
    before them, or the upstream sees an empty connection."""
    proxy = ConnectProxy()
    peers.append(proxy)
    sl = start_sluice(proxy.port, workers=1, max_concurrent_requests=1, queue_timeout=10,
                      tunnel_release_after=0.2)
    with tunnel(sl.port, upstream.port) as busy, tunnel(sl.port, upstream.port) as t:
        assert wait_until(lambda: health(sl)["active"] == 0, 2)
        busy.send(build_request("GET", "/?delay_ms=800&size=1"))
        assert wait_until(lambda: health(sl)["active"] == 1, 1)
        t.send(b"GET /?size=3 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert wait_until(lambda: health(sl)["queued"] == 1, 1), health(sl)
        t.sock.shutdown(socket.SHUT_WR)
        r = t.read_response()
        assert r.status == 200 and r.body == b"abc", r
        assert busy.read_response().status == 200


def test_max_tunnels_refuses_the_next_connect(peers, upstream, start_sluice):
    proxy = ConnectProxy()
    peers.append(proxy)
    sl = start_sluice(proxy.port, max_tunnels=2)
    a, b = tunnel(sl.port, upstream.port), tunnel(sl.port, upstream.port)
    try:
        with HttpConn(sl.port) as c:
            c.send(b"CONNECT 127.0.0.1:%d HTTP/1.1\r\nHost: x\r\n\r\n" % upstream.port)
            r = c.read_response(method="CONNECT")
        body = json.loads(r.body)
        assert r.status == 503 and body["error"] == "tunnel_limit", r.body
        assert "tunnels" in body["message"], r.body
    finally:
        a.close()
        b.close()
    assert wait_until(lambda: metrics(sl)["tunnels"]["open"] == 0, 3)
    c = tunnel(sl.port, upstream.port)  # room again
    c.close()
    assert metrics(sl)["requests"]["rejected_by"]["tunnel_limit"] == 1


def test_https_through_tunnels_with_requests(peers, start_sluice, tmp_path, monkeypatch):
    """Python requests with HTTPS_PROXY=sluice, to a real TLS server: its
    pool keeps the tunnel open between calls, which holds no slot."""
    requests = pytest.importorskip("requests")
    ca_key, ca_crt = make_ca(str(tmp_path))
    key, crt = make_leaf(str(tmp_path), ca_key, ca_crt)
    server = HttpsServer(key, crt)
    proxy = ConnectProxy()
    peers += [server, proxy]
    sl = start_sluice(proxy.port, workers=2, max_concurrent_requests=1, tunnel_release_after=0.2)
    monkeypatch.setenv("HTTPS_PROXY", sl.url)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    url = "https://localhost:%d" % server.port
    with requests.Session() as session:
        for i in range(3):
            r = session.get(url + "/call/%d" % i, timeout=10, verify=ca_crt)
            assert r.status_code == 200 and r.text == "ok /call/%d" % i
            # between calls the pooled tunnel stays open and holds no slot:
            # another client gets the only one at once
            assert wait_until(lambda: health(sl)["active"] == 0, 2), health(sl)
            t0 = time.monotonic()
            assert http_get(sl.url + "/x", timeout=5)[0] == 405
            assert time.monotonic() - t0 < 1.0
    assert proxy.connects == 1, "the tunnel was not reused: %d CONNECTs" % proxy.connects


# ---- the deadline of a request ------------------------------------------------------


def test_request_timeout_bounds_attempts_against_a_hung_upstream(start_upstream, start_sluice):
    up = start_upstream()
    sl = start_sluice(up.port, request_timeout=2, max_retries=3, retry_backoff_factor=0.1)
    t0 = time.monotonic()
    with HttpConn(sl.port, timeout=10) as c:
        r = c.request("GET", "/hung?fail=hang")
    took = time.monotonic() - t0
    assert r.status == 504, r.body
    assert 1.8 <= took <= 2.2 + 0.3, "504 after %.2f s with --request-timeout 2" % took
    hung = [e for e in json.loads(http_get(up.url + "/__log")[2]) if e["target"].startswith("/hung")]
    assert len(hung) == 1, "a read timeout was retried: %r" % hung


def test_request_timeout_with_retry_on_timeout_stops_at_the_deadline(start_upstream, start_sluice):
    up = start_upstream()
    sl = start_sluice(up.port, request_timeout=2, read_timeout=0.5, max_retries=5, retry_on_timeout=True,
                      retry_backoff_factor=0.05)
    t0 = time.monotonic()
    with HttpConn(sl.port, timeout=10) as c:
        r = c.request("GET", "/hung?fail=hang")
    took = time.monotonic() - t0
    assert r.status == 504
    assert 1.4 <= took <= 2.3, took
    hung = [e for e in json.loads(http_get(up.url + "/__log")[2]) if e["target"].startswith("/hung")]
    assert 2 <= len(hung) <= 4, hung


def test_request_timeout_shortens_the_queue_wait(start_upstream, start_sluice):
    up = start_upstream()
    sl = start_sluice(up.port, workers=1, max_concurrent_requests=1, queue_timeout=30, request_timeout=0.5)
    with HttpConn(sl.port) as hold:
        hold.send(build_request("GET", "/hold?delay_ms=400"))
        assert wait_until(lambda: health(sl)["active"] == 1, 2)
        t0 = time.monotonic()
        with HttpConn(sl.port) as c:
            r = c.request("GET", "/queued?delay_ms=400")
        took = time.monotonic() - t0
        # the held request ends at 0.4 s; this one got the slot with 0.1 s
        # left and the upstream takes 0.4 s: 504 at its deadline, not 0.8 s
        assert r.status == 504, r.body
        assert took < 0.75, took
        hold.read_response()
    with HttpConn(sl.port) as hold:
        hold.send(build_request("GET", "/hold2?chunked=1&chunks=6&chunk_delay_ms=250"))
        assert wait_until(lambda: health(sl)["active"] == 1, 2)
        t0 = time.monotonic()
        with HttpConn(sl.port) as c:
            r = c.request("GET", "/queued2")
        took = time.monotonic() - t0
        assert r.status == 503 and json.loads(r.body)["error"] == "queue_timeout", r.body
        assert 0.4 <= took < 0.9, took
        assert hold.read_response().status == 200  # an answer under way is not cut by the deadline
