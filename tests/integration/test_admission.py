"""Admission control (SPEC §4, issue 3): a global, exact limit of
--max-concurrent-requests forwarded requests, a bounded FIFO queue of
--max-queue-size waiting ones, fast 503 queue_full / queue_timeout answers,
queued clients that leave, /proxy-* endpoints that never wait, no slot leaks.

Every test runs with --workers 1 and --workers 2: with two workers the
requests of one test land on both, so the limit, the queue order and the
hand-off of a freed slot are checked across threads.

The upstream (sluice-upstream) delays its answers (delay_ms) and reports its
own peak of in-flight requests (/__stats peak_inflight) and the order in
which requests reached it (/__log). Delays are 0.5-1 s so that the file stays
well under a minute, also under ASan.
"""
import socket
import threading
import time

import pytest

from conftest import upstream_stats
from helpers import (HttpConn, Pending, assert_rejection, health, reset_upstream, send_get, upstream_targets,
                     wait_idle, wait_inflight, wait_queued)

WORKERS = [pytest.param(1, id="w1"), pytest.param(2, id="w2")]


# --------------------------------------------------------------------------
# tests


@pytest.mark.parametrize("workers", WORKERS)
def test_limit_is_exact_and_overflow_gets_queue_full(start_upstream, start_sluice, workers):
    """N slots, Q queue places, 24 concurrent requests: the upstream never has
    more than N in flight (and reaches N), exactly N+Q are served, the other
    24-N-Q get a fast 503 queue_full that never touches the upstream."""
    N, Q, TOTAL, DELAY_MS = 3, 4, 24, 800
    up = start_upstream(workers=2)
    sl = start_sluice(up.port, workers=workers, max_concurrent_requests=N, max_queue_size=Q)
    reset_upstream(up)

    # Open every connection first, then send all requests back to back, so
    # that all of them are in before the first answer can come (0.8 s).
    pend = [Pending(sl.port, "/burst-%d?delay_ms=%d" % (i, DELAY_MS)) for i in range(TOTAL)]
    t0 = time.perf_counter()
    for p in pend:
        p.send()
    sent_in = time.perf_counter() - t0
    assert sent_in < 0.3, "sending took %.3fs: the test cannot judge the burst" % sent_in
    for p in pend:
        p.wait()
        p.close()

    report = "\n".join(p.describe() for p in pend)
    ok = [p for p in pend if p.resp is not None and p.resp.status == 200]
    rejected = [p for p in pend if p.resp is not None and p.resp.status == 503]
    assert len(ok) == N + Q, "expected %d served, got %d:\n%s" % (N + Q, len(ok), report)
    assert len(rejected) == TOTAL - N - Q, "expected %d rejected:\n%s" % (TOTAL - N - Q, report)
    for p in rejected:
        assert_rejection(p.resp, "queue_full")
        # "at once": well before the upstream could have answered anything
        assert p.elapsed < 0.4, "queue_full took %.3fs (%s)" % (p.elapsed, p.target)

    st = upstream_stats(up)
    assert st["peak_inflight"] <= N, "upstream saw %d in flight with a limit of %d: %r" % (st["peak_inflight"], N, st)
    assert st["peak_inflight"] == N, "the limit was never reached: %r" % st
    assert st["requests"] == N + Q, "the upstream got %d requests, expected %d: %r" % (st["requests"], N + Q, st)
    served = sorted(p.target for p in ok)
    assert sorted(upstream_targets(up)) == served
    # served in waves of N: the last one after ceil((N+Q)/N) delays
    assert max(p.elapsed for p in ok) >= 2 * DELAY_MS / 1000.0 - 0.05
    wait_idle(sl, up)


@pytest.mark.parametrize("workers", WORKERS)
def test_queue_is_fifo(start_upstream, start_sluice, workers):
    """Limit 1: one slow request holds the slot; K requests sent one after
    another, each on its own connection (so with 2 workers they arrive on both),
    reach the upstream in exactly the order they were sent."""
    K = 8
    up = start_upstream(workers=2)
    sl = start_sluice(up.port, workers=workers, max_concurrent_requests=1, max_queue_size=10)
    reset_upstream(up)

    hold = Pending(sl.port, "/hold?delay_ms=700").send()
    wait_inflight(up, 1)
    pend = []
    for i in range(K):
        pend.append(Pending(sl.port, "/fifo-%d?delay_ms=10" % i).send())
        wait_queued(sl, i + 1)  # queued in this order
    assert hold.wait().status == 200, hold.describe()
    for p in pend:
        p.wait()
        p.close()
    hold.close()
    report = "\n".join(p.describe() for p in pend)
    assert all(p.resp is not None and p.resp.status == 200 for p in pend), report

    order = [t.split("?")[0] for t in upstream_targets(up)]
    assert order == ["/hold"] + ["/fifo-%d" % i for i in range(K)], "upstream order %r" % order
    # and the answers came back in that order too (each waited for the previous)
    done = [p.t_done for p in pend]
    assert done == sorted(done), report
    st = upstream_stats(up)
    assert st["peak_inflight"] == 1, st


@pytest.mark.parametrize("workers", WORKERS)
def test_queue_timeout_fires_on_time(start_upstream, start_sluice, workers):
    """--queue-timeout 0.5 with the only slot held for 2 s: the next request
    gets 503 queue_timeout after about 0.5 s and never reaches the upstream."""
    up = start_upstream(workers=2)
    sl = start_sluice(up.port, workers=workers, max_concurrent_requests=1, max_queue_size=5, queue_timeout=0.5)
    reset_upstream(up)

    hold = Pending(sl.port, "/hold?delay_ms=2000").send()
    wait_inflight(up, 1)
    late = Pending(sl.port, "/late").send()
    late.wait(5)
    assert late.resp is not None, late.describe()
    assert_rejection(late.resp, "queue_timeout")
    assert 0.4 <= late.elapsed <= 1.5, "queue_timeout after %.3fs (expected ~0.5 s)" % late.elapsed
    late.close()

    assert hold.wait(5).status == 200, hold.describe()
    hold.close()
    assert [t.split("?")[0] for t in upstream_targets(up)] == ["/hold"]
    wait_idle(sl, up)


@pytest.mark.parametrize("workers", WORKERS)
def test_disconnected_queued_client_is_never_forwarded(start_upstream, start_sluice, workers):
    """Limit 1, queue 1, slot held. B queues /gone then closes its socket: its
    place is freed at once (C queues instead of getting queue_full), /gone is
    never sent upstream, C is served when the slot frees, and nothing is left
    active or queued afterwards."""
    up = start_upstream(workers=2)
    sl = start_sluice(up.port, workers=workers, max_concurrent_requests=1, max_queue_size=1)
    reset_upstream(up)

    hold = Pending(sl.port, "/hold?delay_ms=1000").send()
    wait_inflight(up, 1)

    b = send_get(sl.port, "/gone")
    # B is queued: no answer comes for it while the slot is held
    b.sock.settimeout(0.15)
    try:
        early = b.sock.recv(4096)
    except socket.timeout:
        early = None
    assert early is None, "queued request got %r" % early
    b.close()
    wait_queued(sl, 0)  # sluice saw B's FIN and dropped it from the queue

    c = Pending(sl.port, "/c").send()
    wait_queued(sl, 1)
    # The single queue place is C's now: one more is refused at once.
    d = Pending(sl.port, "/d").send()
    d.wait(5)
    assert d.resp is not None, d.describe()
    assert_rejection(d.resp, "queue_full")
    d.close()
    assert c.t_done is None, "C answered before the slot freed: %s" % c.describe()

    assert hold.wait(5).status == 200, hold.describe()
    c.wait(5)
    assert c.resp is not None and c.resp.status == 200, (
        "C was not served after B left the queue (B's place not freed?): %s" % c.describe())
    hold.close()
    c.close()

    targets = [t.split("?")[0] for t in upstream_targets(up)]
    assert "/gone" not in targets, "a disconnected queued request was forwarded: %r" % targets
    assert targets == ["/hold", "/c"], targets
    assert upstream_stats(up)["peak_inflight"] == 1
    wait_idle(sl, up)
    h = health(sl)
    assert h["active"] == 0 and h["queued"] == 0, h


@pytest.mark.parametrize("workers", WORKERS)
def test_proxy_health_never_waits_for_a_slot(start_upstream, start_sluice, workers):
    """Every slot busy and the queue full: /proxy-health still answers at once,
    and reports the busy slot as active."""
    up = start_upstream(workers=2)
    sl = start_sluice(up.port, workers=workers, max_concurrent_requests=1, max_queue_size=1)
    reset_upstream(up)

    hold = Pending(sl.port, "/hold?delay_ms=1000").send()
    wait_inflight(up, 1)
    queued = Pending(sl.port, "/queued").send()
    wait_queued(sl, 1)
    full = Pending(sl.port, "/full").send()
    full.wait(5)
    assert_rejection(full.resp, "queue_full")  # the queue is indeed full
    full.close()

    for _ in range(3):  # several times, so that with 2 workers both answer
        t0 = time.perf_counter()
        h = health(sl, timeout=2)
        dt = time.perf_counter() - t0
        assert dt < 0.3, "/proxy-health took %.3fs while the slots were busy" % dt
        for k in ("status", "circuit_state", "active", "queued"):
            assert k in h, h
        assert h["active"] == 1, "one forwarded request holds the only slot: %r" % h
    assert queued.t_done is None and hold.t_done is None
    assert hold.wait(5).status == 200
    assert queued.wait(5).status == 200
    hold.close()
    queued.close()
    wait_idle(sl, up)


@pytest.mark.parametrize("workers", WORKERS)
def test_proxy_health_reports_queued(start_upstream, start_sluice, workers):
    """SPEC §8: /proxy-health "active" counts the requests holding a slot and
    "queued" those waiting for one (here 1 and 2)."""
    up = start_upstream(workers=2)
    sl = start_sluice(up.port, workers=workers, max_concurrent_requests=1, max_queue_size=5)
    reset_upstream(up)
    hold = Pending(sl.port, "/hold?delay_ms=800").send()
    wait_inflight(up, 1)
    waiting = [Pending(sl.port, "/q%d" % i).send() for i in range(2)]
    wait_queued(sl, 2)
    try:
        h = health(sl)
        assert h["active"] == 1 and h["queued"] == 2, h
    finally:
        for p in [hold] + waiting:
            p.wait(5)
            p.close()


@pytest.mark.parametrize("workers", WORKERS)
def test_queue_full_keeps_keepalive_connection_usable(start_upstream, start_sluice, workers):
    """A POST with a small body refused with 503 queue_full on a keep-alive
    connection: the body is consumed, the connection stays open and carries the
    next requests (a /proxy-* one at once, a forwarded one once a slot is free);
    the refused POST never reaches the upstream."""
    up = start_upstream(workers=2)
    sl = start_sluice(up.port, workers=workers, max_concurrent_requests=1, max_queue_size=1)
    reset_upstream(up)

    hold = Pending(sl.port, "/hold?delay_ms=800").send()
    wait_inflight(up, 1)
    queued = Pending(sl.port, "/queued").send()
    wait_queued(sl, 1)

    with HttpConn(sl.port, timeout=5) as conn:
        body = b'{"hello": "world", "n": 42}'
        t0 = time.perf_counter()
        r = conn.request("POST", "/post-refused", headers={"Content-Type": "application/json"}, body=body)
        dt = time.perf_counter() - t0
        assert_rejection(r, "queue_full")
        assert dt < 0.4, "queue_full took %.3fs" % dt
        assert not r.has_token("connection", "close"), r.headers
        # the same connection, at once: an endpoint that never waits
        r2 = conn.request("GET", "/proxy-health")
        assert r2.status == 200, r2
        assert hold.wait(5).status == 200
        assert queued.wait(5).status == 200
        # and once a slot is free, a forwarded request
        r3 = conn.request("POST", "/post-ok?echo=1", body=body)
        assert r3.status == 200, r3
        assert r3.json()["body_bytes"] == len(body), r3.json()
    hold.close()
    queued.close()

    targets = [t.split("?")[0] for t in upstream_targets(up)]
    assert targets == ["/hold", "/queued", "/post-ok"], targets


@pytest.mark.parametrize("workers", WORKERS)
def test_no_slot_leaks_after_mixed_outcomes(start_upstream, start_sluice, workers):
    """A burst whose requests end every way (served, queue_full, queue_timeout,
    client gone while queued, client gone mid-response, upstream reset), then
    exactly `limit` slow requests at once: all run together (the upstream's
    peak after a reset == limit), so every slot came back."""
    LIMIT = 4
    up = start_upstream(workers=2)
    sl = start_sluice(up.port, workers=workers, max_concurrent_requests=LIMIT, max_queue_size=8,
                      queue_timeout=0.6)
    reset_upstream(up)

    # Three long requests keep three slots busy, so the tail of the queue
    # waits past queue_timeout while the fourth slot churns.
    kinds = ["long"] * 3 + ["ok", "reset", "stream-abandon", "queued-abandon", "ok", "reset-late",
                                "stream-abandon", "ok", "queued-abandon", "ok"] * 3
    pend = []
    abandon_now = []
    abandon_stream = []
    for i, kind in enumerate(kinds):
        if kind == "long":
            target = "/mix-%d?delay_ms=1200" % i
        elif kind == "ok":
            target = "/mix-%d?delay_ms=200" % i
        elif kind == "reset":
            target = "/mix-%d?fail=reset" % i
        elif kind == "reset-late":
            target = "/mix-%d?fail=reset&delay_ms=150" % i
        elif kind == "stream-abandon":
            target = "/mix-%d?chunked=1&chunks=20&chunk_delay_ms=50&size=20000" % i
        else:
            target = "/mix-%d?delay_ms=300" % i
        p = Pending(sl.port, target, timeout=10)
        p.conn.send(p.raw)
        p.t_sent = time.perf_counter()
        if kind == "queued-abandon":
            abandon_now.append(p)
        elif kind == "stream-abandon":
            abandon_stream.append(p)
        else:
            p.thread = threading.Thread(target=p._read, daemon=True)
            p.thread.start()
            pend.append(p)
    time.sleep(0.05)
    for p in abandon_now:  # most of these are queued or rejected by now
        p.close()
    # read the first bytes of each streaming response (or its 503), then leave
    deadline = time.monotonic() + 3
    for p in abandon_stream:
        p.conn.sock.settimeout(max(0.05, deadline - time.monotonic()))
        try:
            p.conn.sock.recv(1)
        except (socket.timeout, OSError):
            pass
        p.close()
    for p in pend:
        p.wait(10)
        p.close()
    statuses = sorted(set(p.resp.status for p in pend if p.resp is not None))
    assert 503 in statuses, "the burst should have overflowed the queue: %r" % statuses

    wait_idle(sl, up, timeout=5)
    reset_upstream(up)
    final = [Pending(sl.port, "/final-%d?delay_ms=600" % i) for i in range(LIMIT)]
    for p in final:
        p.send()
    for p in final:
        p.wait(10)
        p.close()
    report = "\n".join(p.describe() for p in final)
    assert all(p.resp is not None and p.resp.status == 200 for p in final), report
    # all at once: none waited for another's slot
    assert max(p.elapsed for p in final) < 1.1, report
    st = upstream_stats(up)
    assert st["peak_inflight"] == LIMIT, "slots leaked: only %d of %d ran at once: %r" % (
        st["peak_inflight"], LIMIT, st)
    wait_idle(sl, up)
