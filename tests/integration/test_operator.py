"""What an operator meets (issue 13): a port that is ours, the connection
limit, and the admin endpoints through the drain.

  - A port another process listens on stops the start (exit 1) with a
    sentence naming that process; --reuse-port shares it on purpose.
  - At --max-connections sluice stops accepting (connections wait in the
    kernel's backlog) instead of accepting and dropping; it says so once per
    episode and counts it; the admin port has its own allowance, so health
    and metrics answer at the limit.
  - After SIGTERM the admin port keeps answering until exit: /proxy-health
    says "draining" with 503, /proxy-metrics stays 200.
"""
import json
import os
import re
import signal
import socket
import subprocess
import time

import pytest

from conftest import BUILD, free_port, http_get
from helpers import HttpConn, build_request, wait_until

SLUICE = os.path.join(BUILD, "sluice")


def run_sluice(*args, timeout=10):
    p = subprocess.run([SLUICE] + [str(a) for a in args], capture_output=True, timeout=timeout)
    return p.returncode, p.stderr.decode()


def metrics(port):
    status, _, body = http_get("http://127.0.0.1:%d/proxy-metrics" % port)
    assert status == 200
    return json.loads(body)


# ---- a port that is ours ----------------------------------------------------------


def test_a_port_in_use_by_another_sluice_stops_the_start(upstream, start_sluice):
    first = start_sluice(upstream.port)
    code, err = run_sluice("--listen-host", "127.0.0.1", "--listen-port", first.port, "--target-host", "127.0.0.1",
                           "--target-port", upstream.port)
    assert code == 1, err
    assert err.count("\n") == 1, err
    assert "cannot listen on 127.0.0.1:%d: the port is in use by pid %d (sluice)" % (first.port, first.pid) in err
    assert "pass --reuse-port to share the port on purpose" in err
    # the first one still has the port to itself and answers
    assert http_get(first.url + "/?size=1")[0] == 200


def test_a_port_in_use_by_anything_else(upstream):
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        code, err = run_sluice("--listen-host", "127.0.0.1", "--listen-port", port, "--target-host", "127.0.0.1",
                               "--target-port", upstream.port)
        assert code == 1 and "the port is in use by pid %d (python" % os.getpid() in err, err
        code, err = run_sluice("--listen-host", "127.0.0.1", "--listen-port", free_port(), "--admin-port", port,
                               "--target-host", "127.0.0.1", "--target-port", upstream.port)
        assert code == 1, err
        assert "stop that process or choose another --admin-port" in err and "reuse-port" not in err, err


def test_reuse_port_shares_on_purpose(upstream, start_sluice):
    a1, a2 = free_port(), free_port()
    first = start_sluice(upstream.port, reuse_port=True, admin_port=a1)
    second = start_sluice(upstream.port, listen_port=first.port, reuse_port=True, admin_port=a2, wait=False)
    assert wait_until(lambda: b"listening on" in second.stderr(), 5), second.stderr()
    for i in range(60):  # new connections: the kernel spreads them between the two
        assert http_get(first.url + "/?size=1")[0] == 200
    served = [metrics(a)["requests"]["total"] for a in (a1, a2)]
    assert sum(served) == 60 and min(served) > 0, served


# ---- the connection limit ---------------------------------------------------------


def test_at_max_connections_new_ones_wait_and_admin_still_answers(upstream, start_sluice):
    admin = free_port()
    sl = start_sluice(upstream.port, workers=2, max_connections=4, admin_port=admin)
    # the start-up probe's connection has gone: the four below are all there is
    assert wait_until(lambda: metrics(admin)["connections"]["clients"] == 0, 3)
    held = [socket.create_connection(("127.0.0.1", sl.port), timeout=5) for _ in range(4)]
    assert wait_until(lambda: metrics(admin)["connections"]["clients"] == 4, 3), metrics(admin)
    # the fifth completes its TCP handshake (the kernel's backlog) but is not
    # served, and not dropped either
    waiting = socket.create_connection(("127.0.0.1", sl.port), timeout=5)
    waiting.sendall(build_request("GET", "/waited?size=2"))
    waiting.settimeout(0.8)
    with pytest.raises(socket.timeout):
        waiting.recv(100)
    m = metrics(admin)  # the admin port answers at the limit
    assert m["connections"]["clients"] == 4 and m["connections"]["limit_reached"] == 1, m["connections"]
    prom = http_get("http://127.0.0.1:%d/proxy-metrics/prometheus" % admin)[2].decode()
    assert "sluice_connection_limit_reached_total 1\n" in prom
    # a place comes free: the waiting connection is accepted and answered
    t0 = time.monotonic()
    held.pop().close()
    waiting.settimeout(5)
    got = waiting.recv(4096)
    assert got.startswith(b"HTTP/1.1 200"), got
    assert time.monotonic() - t0 < 1.0
    for s in held + [waiting]:
        s.close()
    assert wait_until(lambda: metrics(admin)["connections"]["clients"] == 0, 3)
    err = sl.stderr().decode()
    assert err.count("max_connections (4) reached") == 1, err
    assert "below max_connections (4) again" in err, err


def test_the_limit_is_shared_by_the_workers(upstream, start_sluice):
    """Places freed on one worker let another worker's waiting connection in."""
    admin = free_port()
    sl = start_sluice(upstream.port, workers=4, max_connections=3, admin_port=admin)
    conns = []
    for i in range(8):  # SO_REUSEPORT spreads them over the workers
        s = socket.create_connection(("127.0.0.1", sl.port), timeout=5)
        s.sendall(build_request("GET", "/c%d?size=1" % i))
        conns.append(s)
    answered = 0
    deadline = time.monotonic() + 15
    while conns and time.monotonic() < deadline:
        for s in list(conns):
            s.settimeout(0.05)
            try:
                got = s.recv(4096)
            except socket.timeout:
                continue
            assert got.startswith(b"HTTP/1.1 200"), got
            answered += 1
            s.close()  # frees a place, perhaps on another worker
            conns.remove(s)
        assert metrics(admin)["connections"]["clients"] <= 3
    assert answered == 8, "%d of 8 answered" % answered


# ---- through the drain ------------------------------------------------------------


def test_admin_port_answers_through_the_drain(upstream, start_sluice):
    admin = free_port()
    sl = start_sluice(upstream.port, admin_port=admin, shutdown_timeout=10)
    slow = HttpConn(sl.port)
    slow.send(build_request("GET", "/slow?delay_ms=1500&size=3"))
    assert wait_until(lambda: metrics(admin)["concurrency"]["active"] == 1, 2)
    scrape = HttpConn(admin)  # a keep-alive scraper, as Prometheus keeps one
    assert scrape.request("GET", "/proxy-health").status == 200
    sl.signal(signal.SIGTERM)
    assert wait_until(lambda: json.loads(http_get("http://127.0.0.1:%d/proxy-health" % admin)[2])["status"] ==
                      "draining", 2)
    status, _, body = http_get("http://127.0.0.1:%d/proxy-health" % admin)
    assert status == 503 and json.loads(body)["status"] == "draining", body
    r = scrape.request("GET", "/proxy-metrics")  # the same connection goes on
    assert r.status == 200 and json.loads(r.body)["status"] == "draining"
    prom = http_get("http://127.0.0.1:%d/proxy-metrics/prometheus" % admin)[2].decode()
    assert "sluice_draining 1\n" in prom
    # the main port takes nothing new
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", sl.port), timeout=1).close()
    assert slow.read_response().status == 200
    slow.close()
    # once the last request is done, the process exits, scrapers or not
    assert sl.proc.wait(5) == 0
    scrape.close()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", admin), timeout=1).close()
    sl.stop()
