"""Overload control (issue 15, items 1 and 3): the retry budget, Retry-After
as the backoff floor, and the adaptive limit under max_concurrent_requests.

Faults come from sluice-upstream (status=503, header=Retry-After:N, and
--max-inflight N for an upstream that answers 429 beyond N requests in
flight); load from sluice-load or threads; what sluice decided is read from
/proxy-metrics, what the upstream received from its /__stats.
"""
import json
import os
import signal
import subprocess
import threading
import time

from conftest import BUILD, free_port, http_get, upstream_stats
from helpers import HttpConn, wait_until

LOAD = os.path.join(BUILD, "sluice-load")
NO_BREAKER = dict(circuit_breaker_threshold=1000000)


def metrics(sl):
    status, _, body = http_get(sl.url + "/proxy-metrics")
    assert status == 200, body
    return json.loads(body)


def load(url, *args, timeout=120):
    r = subprocess.run([LOAD, "--url", url, "--json"] + [str(a) for a in args], capture_output=True,
                       timeout=timeout)
    assert r.returncode in (0, 1), r.stderr.decode(errors="replace")[-2000:]
    return json.loads(r.stdout)


def one(port, target, timeout=15.0):
    t0 = time.monotonic()
    with HttpConn(port, timeout=timeout) as c:
        r = c.request("GET", target)
    return r, time.monotonic() - t0


# --------------------------------------------------------------------------
# the retry budget

def test_failure_storm_retries_stay_within_the_budget(start_upstream, start_sluice):
    """Everything answers 503, 200 clients: without a budget every request
    would be tried max_retries + 1 = 3 times; with it, retries stay under
    20 % of requests plus a small constant."""
    up = start_upstream(workers=2)
    sl = start_sluice(up.port, max_retries=2, retry_backoff=0.02, retry_backoff_max=0.05, max_queue_size=400,
                      max_connections=1000, **NO_BREAKER)
    report = load(sl.url + "/storm?status=503", "--concurrent", 200, "--duration", "3s", "--timeout", 10)
    m = metrics(sl)
    total, retries = m["requests"]["total"], m["requests"]["retries"]
    exhausted = m["requests"]["retries_budget_exhausted"]
    ratio = retries / total
    print("failure storm: %d requests, %d retries (ratio %.4f), %d refused by the budget; "
          "upstream saw %d; sluice-load: %s" % (total, retries, ratio, exhausted,
                                                 upstream_stats(up)["requests"], report["status_codes"]))
    assert total >= 1000, "too little load to judge: %d requests" % total
    assert report["status_codes"].get("503", 0) > 0
    assert retries <= 0.20 * total + 10, "retries %d of %d requests" % (retries, total)
    assert exhausted > 0
    # every retry refused is a request answered with its own 503
    assert upstream_stats(up)["requests"] == total - m["requests"]["rejected"] + retries
    status, _, body = http_get(sl.url + "/proxy-metrics/prometheus")
    assert status == 200
    assert ("sluice_retries_budget_exhausted_total %d" % exhausted).encode() in body


def test_retries_in_progress_bounded_by_min(start_upstream, start_sluice):
    """retry_budget_percent 0, retry_budget_min 1: with three requests
    failing at once only one may retry; the others answer their 503 at once.
    Retry-After: 1 keeps the first one retrying (its backoff) while the
    other two fail."""
    up = start_upstream(workers=2)
    sl = start_sluice(up.port, max_retries=1, retry_backoff=0.01, retry_backoff_max=0.01, retry_budget_percent=0,
                      retry_budget_min=1, **NO_BREAKER)
    results = []

    def get(i):
        results.append(one(sl.port, "/b%d?status=503&header=Retry-After:1" % i))

    threads = [threading.Thread(target=get, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(15)
    statuses = sorted(r.status for r, _ in results)
    times = sorted(dt for _, dt in results)
    assert statuses == [503, 503, 503]
    assert times[1] < 0.8, "two of them were answered at once: %s" % times
    assert times[2] >= 0.95, "one waited the upstream's Retry-After and tried again: %s" % times
    m = metrics(sl)
    assert m["requests"]["retries"] == 1
    assert m["requests"]["retries_budget_exhausted"] == 2
    assert upstream_stats(up)["requests"] == 4


def test_token_bucket_stops_retries_after_a_few_failures(start_upstream, start_sluice):
    """Sequential failures, one at a time (the percent rule never binds):
    the bucket (10 tokens, -1 per failed attempt) stops retrying at 5."""
    up = start_upstream()
    sl = start_sluice(up.port, max_retries=2, retry_backoff=0.01, retry_backoff_max=0.01, **NO_BREAKER)
    for i in range(6):
        r, _ = one(sl.port, "/t%d?status=502" % i)
        assert r.status == 502
    # attempts: 3 (10->7), 2 (7->6 retried, 6->5 answered), then 1 each
    assert upstream_stats(up)["requests"] == 3 + 2 + 4
    m = metrics(sl)
    assert m["requests"]["retries"] == 3
    assert m["requests"]["retries_budget_exhausted"] == 5
    # answers refill it, 0.1 each: after 51 of them a failure is retried again
    for i in range(51):
        r, _ = one(sl.port, "/ok%d" % i)
        assert r.status == 200
    before = upstream_stats(up)["requests"]
    r, _ = one(sl.port, "/again?status=502")
    assert upstream_stats(up)["requests"] - before == 2


# --------------------------------------------------------------------------
# Retry-After

def test_retry_after_is_the_backoff_floor(start_upstream, start_sluice):
    up = start_upstream()
    sl = start_sluice(up.port, max_retries=1, retry_backoff=0.01, retry_backoff_max=0.01, **NO_BREAKER)
    r, dt = one(sl.port, "/ra?status=503&header=Retry-After:1")
    assert r.status == 503
    assert dt >= 0.95, "retried after %.3f s, before the upstream's Retry-After: 1" % dt
    assert upstream_stats(up)["requests"] == 2


def test_retry_after_past_the_deadline_relays_the_503(start_upstream, start_sluice):
    up = start_upstream()
    sl = start_sluice(up.port, max_retries=2, retry_backoff=0.01, retry_backoff_max=0.01, request_timeout=2,
                      **NO_BREAKER)
    r, dt = one(sl.port, "/late?status=503&header=Retry-After:5")
    assert r.status == 503
    assert r.header("retry-after") == "5", "the upstream's own answer, relayed"
    assert dt < 0.5, "answered after %.3f s: it waited for nothing" % dt
    assert upstream_stats(up)["requests"] == 1
    assert metrics(sl)["requests"]["retries"] == 0


# --------------------------------------------------------------------------
# the adaptive limit

def sample_while(sl, up, seconds, step=0.1):
    """(sluice's effective limit, the upstream's in-flight) every step."""
    out = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        out.append((metrics(sl)["concurrency"]["effective_limit"], upstream_stats(up)["inflight"]))
        time.sleep(step)
    return out


def median(xs):
    xs = sorted(xs)
    return xs[len(xs) // 2]


def test_adaptive_limit_settles_at_the_upstream_capacity(start_upstream, start_sluice):
    """An upstream that answers 429 beyond 20 in flight, 60 clients, a
    ceiling of 100: the limit comes down to about 20 and stays there, and
    429s fall under 5 % of the answers."""
    up = start_upstream("--max-inflight", 20, workers=2)
    sl = start_sluice(up.port, adaptive_limit=True, max_concurrent_requests=100, max_queue_size=200,
                      max_retries=0, **NO_BREAKER)
    assert metrics(sl)["concurrency"]["effective_limit"] == 100  # starts at the ceiling
    url = sl.url + "/work?delay_ms=50"
    # warm-up: from 100 down to about 20
    warm = load(url, "--concurrent", 60, "--duration", "3s", "--timeout", 10)
    settled = {}

    def measure():
        settled["report"] = load(url, "--concurrent", 60, "--duration", "6s", "--timeout", 10)

    t = threading.Thread(target=measure)
    t.start()
    samples = sample_while(sl, up, 5.5)
    t.join(30)
    report = settled["report"]
    codes = report["status_codes"]
    answers = sum(codes.values())
    share_429 = codes.get("429", 0) / answers
    limits = [s[0] for s in samples]
    inflight = [s[1] for s in samples]
    print("adaptive limit vs an upstream of capacity 20: warm-up %s; then %d answers, 429s %.2f %%, "
          "effective limit median %d (range %d..%d), upstream in flight median %d (max %d)" % (
              warm["status_codes"], answers, share_429 * 100, median(limits), min(limits), max(limits),
              median(inflight), max(inflight)))
    assert answers >= 1000, codes
    assert set(codes) <= {"200", "429"}, "lowering the limit cut nothing in flight: %s" % codes
    assert share_429 < 0.05, "429s %.2f %% of answers: %s" % (share_429 * 100, codes)
    assert 16 <= median(limits) <= 24, limits
    assert 14 <= median(inflight) <= 22, inflight
    status, _, body = http_get(sl.url + "/proxy-metrics/prometheus")
    assert b"sluice_concurrency_effective_limit " in body


def test_adaptive_limit_off_keeps_the_ceiling(start_upstream, start_sluice):
    """Without --adaptive-limit the same upstream gets everything up to the
    ceiling: the limit never moves, and 429s are many."""
    up = start_upstream("--max-inflight", 20, workers=2)
    sl = start_sluice(up.port, max_concurrent_requests=100, max_retries=0, **NO_BREAKER)
    report = load(sl.url + "/work?delay_ms=50", "--concurrent", 60, "--duration", "2s", "--timeout", 10)
    codes = report["status_codes"]
    assert codes.get("429", 0) > sum(codes.values()) / 2, codes
    assert metrics(sl)["concurrency"]["effective_limit"] == 100


def test_read_timeouts_and_refusals_lower_the_limit(start_upstream, start_sluice):
    """Read timeouts are overload signals; so are refused connects. Each
    request here starts after the previous cut, so each cuts again:
    10, 9, 8.1, 7.29, 6.56, 5.9 -> 5 after five read timeouts."""
    up = start_upstream()
    sl = start_sluice(up.port, adaptive_limit=True, max_concurrent_requests=10, min_concurrent_requests=2,
                      read_timeout=0.1, max_retries=0, **NO_BREAKER)
    for i in range(5):
        r, _ = one(sl.port, "/slow%d?delay_ms=1000" % i)
        assert r.status == 504
    assert metrics(sl)["concurrency"]["effective_limit"] == 5
    assert metrics(sl)["concurrency"]["max"] == 10
    # the floor holds
    for i in range(10):
        one(sl.port, "/slow%d?delay_ms=1000" % i)
    assert metrics(sl)["concurrency"]["effective_limit"] == 2
    # a closed port: connect refused
    closed = start_sluice(free_port(), adaptive_limit=True, max_concurrent_requests=10, max_retries=0,
                          **NO_BREAKER)
    r, _ = one(closed.port, "/refused")
    assert r.status == 502
    assert metrics(closed)["concurrency"]["effective_limit"] == 9


def test_sighup_turns_the_adaptive_limit_off_and_on(start_upstream, start_sluice, tmp_path):
    up = start_upstream()
    cfg = tmp_path / "adaptive.json"

    def write(**keys):
        base = dict(adaptive_limit=True, max_concurrent_requests=10, read_timeout=0.1, max_retries=0,
                    circuit_breaker_threshold=1000000)
        base.update(keys)
        cfg.write_text(json.dumps(base))

    def effective():
        return metrics(sl)["concurrency"]["effective_limit"]

    write()
    sl = start_sluice(up.port, config=str(cfg))
    for i in range(3):
        assert one(sl.port, "/slow%d?delay_ms=1000" % i)[0].status == 504
    assert effective() == 7  # 10 9 8.1 7.29
    write(adaptive_limit=False)
    sl.signal(signal.SIGHUP)
    assert wait_until(lambda: effective() == 10, 5), "off: back to max_concurrent_requests"
    write(min_concurrent_requests=8)
    sl.signal(signal.SIGHUP)
    # on again: what it learnt before is stale; it starts over at the ceiling
    assert wait_until(lambda: effective() == 10, 5), "on again: starts over at max_concurrent_requests"
    assert one(sl.port, "/slow-again?delay_ms=1000")[0].status == 504
    assert effective() == 9, "and learns again from there"
    write(min_concurrent_requests=12)  # above the ceiling: refused, the settings in force stay
    sl.signal(signal.SIGHUP)
    time.sleep(0.3)
    assert effective() == 9
