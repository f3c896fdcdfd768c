"""Resilience (SPEC §5, issue 4): safe retries with full-jitter exponential
backoff, the final answers (502 / 504 / the upstream's own 5xx), the
replacement of stale pooled connections, and the circuit breaker.

Faults come from sluice-upstream: fail=reset|close|hang|truncate, status=5xx,
fail_times=K&key=S (only the first K requests carrying key S fail), a closed
port for connection refused, --idle-timeout for stale pooled connections.
What the upstream really received is read from its own /__log and /__stats,
so "exactly one delivery" is checked where it happens.

The absolute rule under test: nothing the client sent once reaches the
upstream twice. GET/PUT are retried after any failure before response bytes
reached the client; POST/PATCH only when they certainly were not delivered.

Backoffs are small (0.05-0.3 s) and breaker timeouts under 1 s so that the
file stays fast, also under ASan. Except in the breaker tests, the breaker
threshold is raised so that a test's deliberate failures never open it.
"""
import json
import threading
import time
import uuid

import pytest

from conftest import free_port, http_get, upstream_stats
from helpers import HttpConn, build_request, fnv1a64, pattern, wait_until

FAST = dict(retry_backoff=0.05, retry_backoff_max=0.05, circuit_breaker_threshold=1000)


# --------------------------------------------------------------------------
# helpers

def key():
    return uuid.uuid4().hex[:12]


def upstream_log(up):
    status, _, body = http_get(up.url + "/__log")
    assert status == 200
    return json.loads(body)


def deliveries(up, target):
    """The upstream's log entries for exactly this target, in arrival order."""
    return [e for e in upstream_log(up) if e["target"] == target]


def health(sl):
    status, _, body = http_get(sl.url + "/proxy-health")
    assert status == 200, body
    return json.loads(body)


def metrics_retries(sl):
    """requests.retries from /proxy-metrics, or None while it is not served."""
    status, _, body = http_get(sl.url + "/proxy-metrics")
    if status != 200:
        return None
    try:
        return json.loads(body)["requests"]["retries"]
    except (ValueError, KeyError, TypeError):
        return None


def one(port, method, target, body=None, headers=None, timeout=15.0):
    """One request on a fresh client connection: (Response, seconds)."""
    t0 = time.monotonic()
    with HttpConn(port, timeout=timeout) as c:
        r = c.request(method, target, headers=headers, body=body)
    return r, time.monotonic() - t0


def is_circuit_open(r):
    if r.status != 503 or r.header("retry-after") is None:
        return False
    try:
        return r.json().get("error") == "circuit_open"
    except ValueError:
        return False


def describe(r):
    return "%s %r" % (r.status, r.body[:200]) if r is not None else "no response"


def concurrently(port, requests, timeout=15.0):
    """Sends every (method, target) at the same moment, each on its own
    connection (so they spread over the workers); returns
    [(Response or exception, finish time)] in order."""
    conns = [HttpConn(port, timeout=timeout) for _ in requests]
    barrier = threading.Barrier(len(requests))
    out = [None] * len(requests)

    def run(i):
        method, target = requests[i]
        try:
            barrier.wait()
            conns[i].send(build_request(method, target))
            out[i] = (conns[i].read_response(method), time.monotonic())
        except Exception as e:  # noqa: BLE001 - reported by the caller
            out[i] = (e, time.monotonic())
        finally:
            conns[i].close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(requests))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout + 5)
    return out


# --------------------------------------------------------------------------
# retried once, then success

@pytest.mark.parametrize("fault", ["fail=reset", "status=503", "fail=close"])
def test_get_failing_once_is_retried_once(start_upstream, start_sluice, fault):
    up = start_upstream()
    sl = start_sluice(up.port, max_retries=2, **FAST)
    target = "/once?%s&fail_times=1&key=%s&size=100" % (fault, key())
    r, _ = one(sl.port, "GET", target)
    assert r.status == 200, describe(r)
    assert r.body == pattern(100)
    got = deliveries(up, target)
    assert len(got) == 2, "upstream saw the GET %d times, expected 2 (one failure, one retry)" % len(got)


def test_put_failing_once_is_retried_with_its_body(start_upstream, start_sluice):
    up = start_upstream()
    sl = start_sluice(up.port, max_retries=2, **FAST)
    body = bytes(range(256)) * 8  # 2 KB, well inside the replay buffer
    target = "/put?fail=reset&fail_times=1&key=%s&echo=1" % key()
    r, _ = one(sl.port, "PUT", target, body=body)
    assert r.status == 200, describe(r)
    echo = r.json()
    assert echo["method"] == "PUT"
    assert echo["body_bytes"] == len(body)
    assert echo["body_fnv1a"] == fnv1a64(body), "the replayed body differs from the one sent"
    got = deliveries(up, target)
    assert len(got) == 2, "upstream saw the PUT %d times, expected 2" % len(got)
    assert got[1]["body_bytes"] == len(body)


# --------------------------------------------------------------------------
# delivered once: never twice

@pytest.mark.parametrize("method", ["POST", "PATCH"])
@pytest.mark.parametrize("when", [pytest.param("", id="at-head"),
                                  pytest.param("&delay_ms=100", id="after-body")])
def test_non_idempotent_reset_after_delivery_is_not_retried(start_upstream, start_sluice, method, when):
    """The upstream resets after the request reached it (at its head, or
    after the whole body): one delivery, 502."""
    up = start_upstream()
    sl = start_sluice(up.port, max_retries=2, **FAST)
    before = upstream_stats(up)["requests"]
    target = "/write?fail=reset%s&key=%s" % (when, key())
    r, _ = one(sl.port, method, target, body=b"x" * 300)
    assert r.status == 502, describe(r)
    got = deliveries(up, target)
    assert len(got) == 1, "%s delivered %d times to the upstream (client sent it once)" % (method, len(got))
    assert got[0]["method"] == method
    assert upstream_stats(up)["requests"] == before + 1


def test_body_larger_than_replay_buffer_is_not_retried_once_sent(start_upstream, start_sluice):
    """PUT is idempotent, but a 100 KB body over a 1 KB replay buffer has
    been streamed and not kept: it cannot be sent again."""
    up = start_upstream()
    sl = start_sluice(up.port, max_retries=2, retry_buffer_size=1024, **FAST)
    body = pattern(100000)
    # delay_ms: the upstream reads the whole body, then resets
    target = "/big?fail=reset&delay_ms=100&fail_times=1&key=%s" % key()
    r, _ = one(sl.port, "PUT", target, body=body)
    assert r.status == 502, describe(r)
    got = deliveries(up, target)
    assert len(got) == 1, "upstream saw the PUT %d times, expected 1" % len(got)
    assert got[0]["body_bytes"] == len(body)


def test_small_body_within_buffer_is_replayed_after_full_delivery(start_upstream, start_sluice):
    """The counterpart: the same PUT with the body inside the buffer is
    retried (whole body received, then reset) and the retry carries it."""
    up = start_upstream()
    sl = start_sluice(up.port, max_retries=2, retry_buffer_size=4096, **FAST)
    body = pattern(3000)
    target = "/small?fail=reset&delay_ms=100&fail_times=1&key=%s&echo=1" % key()
    r, _ = one(sl.port, "PUT", target, body=body)
    assert r.status == 200, describe(r)
    assert r.json()["body_fnv1a"] == fnv1a64(body)
    got = deliveries(up, target)
    assert [e["body_bytes"] for e in got] == [len(body), len(body)]


# --------------------------------------------------------------------------
# connection refused: retried for every method, with backoff

def test_connection_refused_is_retried_with_backoff_then_502(start_sluice):
    closed = free_port()  # nothing listens there
    # backoffs: n=0 uniform in [0, 0.2], n=1 uniform in [0, min(0.3, 0.4)]
    cap = 0.2 + 0.3
    overhead = 0.5  # generous: ASan, a loaded machine
    times = {"GET": [], "POST": []}
    retries = 0
    for i in range(12):
        # a fresh sluice each time: the retry budget's token bucket (gRPC's)
        # stops retrying after a few failures in a row with no success,
        # which is test_overload's business, not this test's
        sl = start_sluice(closed, max_retries=2, retry_backoff=0.2, retry_backoff_max=0.3,
                          circuit_breaker_threshold=1000, connect_timeout=2)
        method = "GET" if i % 2 == 0 else "POST"
        r, dt = one(sl.port, method, "/refused/%d" % i, body=b"payload" if method == "POST" else None)
        assert r.status == 502, "%s to a closed port: %s" % (method, describe(r))
        assert dt < cap + overhead, "%s took %.3f s; backoffs cap it at %.1f s" % (method, dt, cap)
        times[method].append(dt)
        retries += metrics_retries(sl) or 0
        sl.stop()
    for method, ts in times.items():
        mean = sum(ts) / len(ts)
        # full jitter: expected mean 0.25 s; without any retry or backoff ~0
        assert mean > 0.06, "%s mean %.3f s: no backoff, or not retried (%s)" % (method, mean, ts)
    assert retries == 12 * 2


# --------------------------------------------------------------------------
# timeouts

@pytest.mark.parametrize("retry_on_timeout", [False, True])
def test_hang_times_out_per_attempt_then_504(start_upstream, start_sluice, retry_on_timeout):
    """A read timeout is retried only with --retry-on-timeout (issue 12): a
    second attempt doubles the load on an upstream that is already slow."""
    up = start_upstream()
    extra = {"retry_on_timeout": True} if retry_on_timeout else {}
    sl = start_sluice(up.port, read_timeout=0.3, max_retries=1, **FAST, **extra)
    target = "/hang?fail=hang&key=%s" % key()
    r, dt = one(sl.port, "GET", target)
    assert r.status == 504, describe(r)
    attempts = 2 if retry_on_timeout else 1
    # attempts of 0.3 s each, plus a backoff of at most 0.05 s
    assert 0.3 * attempts - 0.05 <= dt < 0.3 * attempts + 0.05 + 1.0, "took %.3f s" % dt
    assert len(deliveries(up, target)) == attempts


# --------------------------------------------------------------------------
# the upstream's own 5xx

@pytest.mark.parametrize("status", [502, 503, 504])
def test_get_upstream_5xx_every_attempt_is_relayed_after_all_attempts(start_upstream, start_sluice, status):
    up = start_upstream()
    sl = start_sluice(up.port, max_retries=2, **FAST)
    target = "/s?status=%d&size=10&key=%s" % (status, key())
    r, _ = one(sl.port, "GET", target)
    assert r.status == status, describe(r)
    assert r.body == pattern(10), "not the upstream's own response: %r" % r.body
    assert len(deliveries(up, target)) == 3  # max_retries + 1


def test_upstream_5xx_near_the_deadline_is_still_the_upstreams_answer(start_upstream, start_sluice):
    """The decision to retry a 502/503/504 is made once, at its head: a
    second draw of the backoff that no longer fits the request's deadline
    used to leave sluice with the upstream's answer dropped and nothing to
    say but a 503 of its own."""
    up = start_upstream()
    sl = start_sluice(up.port, max_retries=3, request_timeout=1, retry_backoff_factor=1.5, retry_backoff_max=2,
                      circuit_breaker_threshold=1000)
    for i in range(12):
        r, _ = one(sl.port, "GET", "/s?status=503&size=10&key=%s" % key())
        assert r.status == 503 and r.body == pattern(10), "not the upstream's own answer: %s" % describe(r)


@pytest.mark.parametrize("status", [502, 503, 504])
def test_post_upstream_5xx_is_relayed_at_once(start_upstream, start_sluice, status):
    up = start_upstream()
    sl = start_sluice(up.port, max_retries=2, **FAST)
    target = "/s?status=%d&size=10&key=%s" % (status, key())
    r, _ = one(sl.port, "POST", target, body=b"once")
    assert r.status == status, describe(r)
    assert r.body == pattern(10)
    assert len(deliveries(up, target)) == 1


def test_500_is_not_retried(start_upstream, start_sluice):
    up = start_upstream()
    sl = start_sluice(up.port, max_retries=2, **FAST)
    target = "/s?status=500&size=10&key=%s" % key()
    r, _ = one(sl.port, "GET", target)
    assert r.status == 500, describe(r)
    assert r.body == pattern(10)
    assert len(deliveries(up, target)) == 1


# --------------------------------------------------------------------------
# no retry once response bytes reached the client

def test_truncated_response_is_not_retried(start_upstream, start_sluice):
    up = start_upstream()
    sl = start_sluice(up.port, max_retries=2, **FAST)
    target = "/trunc?fail=truncate&size=10000&key=%s" % key()
    with HttpConn(sl.port, timeout=10) as c:
        c.send(build_request("GET", target))
        _, status, _, headers = c.read_head()
        assert status == 200
        length = int(dict(headers)["content-length"])
        assert length == 10000
        rest = c.read_to_close()
    assert len(rest) < length, "got the whole body: the failure was hidden by a retry?"
    assert rest == pattern(len(rest)), "the partial body is not the upstream's"
    assert len(deliveries(up, target)) == 1


# --------------------------------------------------------------------------
# stale pooled connections

def test_stale_pooled_connection_is_replaced_transparently(start_upstream, start_sluice):
    """The upstream closes idle keep-alive connections after 0.3 s. Even with
    --max-retries 0 the GET and the POST that would use such a connection get
    200, and the POST reaches the upstream exactly once."""
    up = start_upstream("--idle-timeout", "0.3")
    # one worker: the pooled connection is the one the next request finds
    sl = start_sluice(up.port, max_retries=0, workers=1, circuit_breaker_threshold=1000)
    k = key()
    with HttpConn(sl.port, timeout=10) as c:
        r = c.request("GET", "/warm?key=%s" % k)
        assert r.status == 200
        for method, body in (("GET", None), ("POST", b"deliver me once"), ("PATCH", b"me too")):
            time.sleep(0.6)
            assert wait_until(lambda: upstream_stats(up)["open_connections"] == 0, 2), \
                "the upstream did not close its idle connection"
            target = "/after-idle/%s?key=%s&echo=1" % (method, k)
            r = c.request(method, target, body=body)
            assert r.status == 200, "%s over a stale pooled connection: %s" % (method, describe(r))
            got = deliveries(up, target)
            assert len(got) == 1, "%s delivered %d times" % (method, len(got))
            if body:
                assert r.json()["body_fnv1a"] == fnv1a64(body)


# --------------------------------------------------------------------------
# the circuit breaker

def test_breaker_opens_probes_once_reopens_and_closes(start_upstream, start_sluice):
    up = start_upstream(workers=2)
    timeout = 0.8
    sl = start_sluice(up.port, workers=2, circuit_breaker_threshold=3, circuit_breaker_timeout=timeout,
                      max_retries=0)
    fail = "/b?status=503"
    for i in range(3):
        r, _ = one(sl.port, "GET", fail)
        assert r.status == 503 and not is_circuit_open(r), "failure %d: %s" % (i + 1, describe(r))
    opened = time.monotonic()
    seen = upstream_stats(up)["requests"]

    # open: 503 circuit_open at once, the upstream untouched (GET and POST,
    # on fresh connections so that both workers answer)
    for i in range(6):
        method = "GET" if i % 2 == 0 else "POST"
        r, dt = one(sl.port, method, "/b?status=200", body=b"x" if method == "POST" else None)
        assert is_circuit_open(r), "open breaker, %s: %s" % (method, describe(r))
        assert int(r.header("retry-after")) >= 1
        assert dt < 0.5, "circuit_open took %.3f s, should be at once" % dt
    assert upstream_stats(up)["requests"] == seen, "the upstream was contacted while the breaker was open"

    # half-open: of several simultaneous requests exactly one goes through
    # (the probe is slow so the others arrive while it is in flight); it fails
    time.sleep(max(0, opened + timeout + 0.2 - time.monotonic()))
    out = concurrently(sl.port, [("GET", "/b?status=503&delay_ms=300")] * 6)
    responses = [r for r, _ in out]
    assert all(not isinstance(r, Exception) for r in responses), responses
    probes = [r for r in responses if not is_circuit_open(r)]
    assert len(probes) == 1, "expected exactly one probe, got %s" % [describe(r) for r in responses]
    assert probes[0].status == 503  # the upstream's own
    assert upstream_stats(up)["requests"] == seen + 1, "more than one probe reached the upstream"
    reopened = max(t for r, t in out if r is probes[0])

    # the failed probe reopened it
    r, _ = one(sl.port, "GET", "/b?status=200")
    assert is_circuit_open(r), "after a failed probe: %s" % describe(r)
    assert upstream_stats(up)["requests"] == seen + 1

    # next probe succeeds: closed, traffic flows again
    time.sleep(max(0, reopened + timeout + 0.2 - time.monotonic()))
    r, _ = one(sl.port, "GET", "/b?status=200&size=5")
    assert r.status == 200, "the probe after the timeout: %s" % describe(r)
    out = concurrently(sl.port, [("GET", "/b?status=200&size=5")] * 6)
    assert [r.status if not isinstance(r, Exception) else repr(r) for r, _ in out] == [200] * 6
    assert upstream_stats(up)["requests"] == seen + 2 + 6


def test_breaker_releases_queued_requests(start_upstream, start_sluice):
    """One slot; a slow failing request holds it while three others queue.
    When it fails and opens the breaker, the queued ones get 503
    circuit_open at once, without reaching the upstream."""
    up = start_upstream(workers=2)
    sl = start_sluice(up.port, workers=2, max_concurrent_requests=1, max_queue_size=10, queue_timeout=10,
                      circuit_breaker_threshold=1, circuit_breaker_timeout=5, max_retries=0)
    k = key()
    slow = "/hold?status=503&delay_ms=700&key=%s" % k
    results = {}

    def run(name, target):
        try:
            r, _ = one(sl.port, "GET", target)
            results[name] = (r, time.monotonic())
        except Exception as e:  # noqa: BLE001
            results[name] = (e, time.monotonic())

    threads = [threading.Thread(target=run, args=("slow", slow))]
    threads[0].start()
    assert wait_until(lambda: upstream_stats(up)["inflight"] == 1, 3), "the slow request did not reach the upstream"
    queued_targets = ["/queued/%d?key=%s&delay_ms=300" % (i, k) for i in range(3)]
    for i, t in enumerate(queued_targets):
        th = threading.Thread(target=run, args=("q%d" % i, t))
        th.start()
        threads.append(th)
    assert wait_until(lambda: health(sl)["queued"] == 3, 3), "the three requests did not queue"
    for th in threads:
        th.join(15)
    slow_r, slow_done = results["slow"]
    assert not isinstance(slow_r, Exception), slow_r
    assert slow_r.status == 503 and not is_circuit_open(slow_r), describe(slow_r)
    for i in range(3):
        r, done = results["q%d" % i]
        assert not isinstance(r, Exception), r
        assert is_circuit_open(r), "queued request %d: %s" % (i, describe(r))
        assert done - slow_done < 0.25, "queued request %d released %.3f s after the breaker opened" % (
            i, done - slow_done)
    assert [e["target"] for e in upstream_log(up)] == [slow], "queued requests reached the upstream"


def test_breaker_counts_consecutive_failed_requests_after_retries(start_upstream, start_sluice):
    """Threshold 3 with one retry each: a failed request (two 503 attempts)
    counts once; a success resets the count; a 500 is no failure."""
    up = start_upstream(workers=2)
    sl = start_sluice(up.port, workers=2, circuit_breaker_threshold=3, circuit_breaker_timeout=5,
                      max_retries=1, retry_backoff=0.02, retry_backoff_max=0.02)

    def get(target, expect):
        r, _ = one(sl.port, "GET", target)
        assert r.status == expect and not is_circuit_open(r), "%s: %s" % (target, describe(r))

    for _ in range(2):
        get("/c?status=503", 503)  # 2 attempts, 1 failed request
    get("/c?status=200", 200)       # resets the count
    for _ in range(2):
        get("/c?status=503", 503)
    for _ in range(4):
        get("/c?status=500", 500)   # not an upstream failure (and not retried)
    get("/c?status=200", 200)
    # the retry budget's token bucket (10, -1 per failed attempt, +0.1 per
    # answer, no retry at 5 or below) lets the fourth 503 request go unretried:
    # 10 9 8 7 6, +0.1, 5.1 -> retried to 4.1, then 3.1 -> answered at once
    assert upstream_stats(up)["requests"] == 3 * 2 + 1 + 1 + 4 + 1
    # now three in a row open it
    for _ in range(3):
        get("/c?status=502", 502)
    r, _ = one(sl.port, "GET", "/c?status=200")
    assert is_circuit_open(r), "after 3 consecutive failed requests: %s" % describe(r)


def test_health_reports_breaker_state(start_upstream, start_sluice):
    up = start_upstream()
    sl = start_sluice(up.port, circuit_breaker_threshold=2, circuit_breaker_timeout=0.5, max_retries=0)
    assert health(sl)["circuit_state"] == "closed"
    for _ in range(2):
        r, _ = one(sl.port, "GET", "/h?status=503")
        assert r.status == 503
    h = health(sl)
    assert (h["circuit_state"], h["status"]) == ("open", "unhealthy"), h
    time.sleep(0.7)
    r, _ = one(sl.port, "GET", "/h?status=200")
    assert r.status == 200
    assert health(sl)["circuit_state"] == "closed"
