"""Graceful shutdown (SPEC §2 --shutdown-timeout, issue 2 item 8): on SIGTERM
or SIGINT sluice stops accepting, lets in-flight requests finish (up to
--shutdown-timeout) and exits 0.
"""
import signal
import socket
import threading
import time

import pytest

from conftest import upstream_stats
from helpers import HttpConn, build_request, pattern, wait_until


def connect_refused(port):
    """True if a new connection to port is refused (or reset at once)."""
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=0.3)
    except ConnectionRefusedError:
        return True
    except OSError:
        return False
    # connected: see whether anyone serves it
    try:
        s.sendall(build_request("GET", "/proxy-health"))
        s.settimeout(0.3)
        b = s.recv(100)
        return b == b""  # closed without an answer counts as refused
    except ConnectionResetError:
        return True
    except OSError:
        return False
    finally:
        s.close()


def start_slow(port, target, result, key="r"):
    def run():
        try:
            with HttpConn(port, timeout=20) as c:
                result[key] = c.request("GET", target)
        except Exception as e:  # recorded, asserted by the test
            result[key] = e

    t = threading.Thread(target=run)
    t.start()
    return t


def wait_inflight(up_stats_fn, n=1, timeout=3):
    return wait_until(lambda: up_stats_fn()["inflight"] >= n, timeout)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_drains_inflight_request(upstream, start_sluice, sig):
    sl = start_sluice(upstream.port)
    result = {}
    t = start_slow(sl.port, "/?delay_ms=1500&size=100", result)
    assert wait_inflight(lambda: upstream_stats(upstream)), "slow request never reached the upstream"
    t_sig = time.monotonic()
    sl.signal(sig)
    # new connections are refused soon after the signal, while the slow one runs
    refused = wait_until(lambda: connect_refused(sl.port), 1.0, step=0.05)
    t_refused = time.monotonic() - t_sig
    t.join(10)
    r = result.get("r")
    assert not isinstance(r, Exception) and r is not None, "in-flight request failed: %r" % r
    assert r.status == 200 and r.body == pattern(100)
    assert refused, "sluice still accepted connections 1 s after the signal"
    assert t_refused < 1.2
    code = sl.proc.wait(10)
    assert code == 0, "sluice exited %s after draining" % code
    sl.stop(expect_code=0)  # sanitizer check


def test_idle_keepalive_connection_does_not_delay_exit(upstream, start_sluice):
    """An idle keep-alive client (idle timeout 60 s) must not hold shutdown."""
    sl = start_sluice(upstream.port, client_idle_timeout=60, shutdown_timeout=30)
    with HttpConn(sl.port) as idle:
        assert idle.request("GET", "/?size=3").status == 200
        t0 = time.monotonic()
        sl.signal(signal.SIGTERM)
        try:
            code = sl.proc.wait(5)
        except Exception:
            code = None
        took = time.monotonic() - t0
        assert code == 0, "sluice did not exit 0 within 5 s with an idle keep-alive client (code %s)" % code
        assert took < 3
        assert idle.wait_closed(2), "idle client connection not closed at exit"
    sl.stop(expect_code=0)


def test_keepalive_client_with_inflight_request_closed_after_response(upstream, start_sluice):
    """The response in flight at SIGTERM on a keep-alive connection is
    delivered whole; then the connection is closed and sluice exits."""
    sl = start_sluice(upstream.port)
    with HttpConn(sl.port, timeout=10) as c:
        assert c.request("GET", "/?size=3").status == 200
        c.send(build_request("GET", "/?delay_ms=800&size=50"))
        assert wait_inflight(lambda: upstream_stats(upstream))
        sl.signal(signal.SIGTERM)
        r = c.read_response()
        assert r.status == 200 and r.body == pattern(50)
        assert c.wait_closed(3), "keep-alive connection left open during shutdown"
    assert sl.proc.wait(10) == 0
    sl.stop(expect_code=0)


def test_shutdown_timeout_bounds_the_drain(upstream, start_sluice, tmp_path):
    log = str(tmp_path / "access.log")
    sl = start_sluice(upstream.port, shutdown_timeout=1, access_log=log)
    result = {}
    t = start_slow(sl.port, "/?delay_ms=6000", result)
    assert wait_inflight(lambda: upstream_stats(upstream))
    t0 = time.monotonic()
    sl.signal(signal.SIGTERM)
    try:
        code = sl.proc.wait(5)
    except Exception:
        code = None
    took = time.monotonic() - t0
    t.join(10)
    assert code == 0, "sluice did not exit 0 within 5 s with --shutdown-timeout 1 (code %s)" % code
    assert 0.8 <= took < 3.5, "exited %.2f s after SIGTERM with --shutdown-timeout 1" % took
    r = result.get("r")
    # the cut request must not look like a success
    assert not (hasattr(r, "status") and r.status == 200), r
    sl.stop(expect_code=0)
    with open(log) as f:  # the access log says why it ended
        lines = f.read().splitlines()
    assert len(lines) == 1 and lines[0].endswith(" outcome=failed error=shutdown"), lines


def test_exit_without_traffic(upstream, start_sluice):
    sl = start_sluice(upstream.port)
    t0 = time.monotonic()
    sl.signal(signal.SIGTERM)
    assert sl.proc.wait(5) == 0
    assert time.monotonic() - t0 < 2
    sl.stop(expect_code=0)
