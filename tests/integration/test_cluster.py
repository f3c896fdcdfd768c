"""Cluster-wide admission through Redis (issue 14): several sluice replicas
with the same --redis-url and cluster key share one --max-concurrent-requests.

Real processes only: a redis-server this file starts on a free loopback port
(never 6379), three sluice replicas, one sluice-upstream that delays its
answers and counts what it is working on (/__stats inflight, peak_inflight).
The invariant "the upstream never has more than N in flight" is checked on
the upstream's own peak, strictly; "eventually" properties are polled with
deadlines.

Timings are kept short with --cluster-lease-ttl 2 where the test is about
expiry; the whole file runs in about a minute. The last tests run
src/cluster.lua itself (EVAL) against the same kind of redis-server.
"""
import json
import os
import signal
import socket
import subprocess
import threading
import time
from collections import Counter

import pytest

from conftest import BUILD, ROOT, SANITIZER_MARKS, free_port, http_get, upstream_stats
from helpers import HttpConn, assert_rejection, health, reset_upstream, wait_until

N = 10            # --max-concurrent-requests, for all replicas together
DELAY_MS = 100    # the upstream's service time
PATH = "/work?delay_ms=%d" % DELAY_MS
LOAD = os.path.join(BUILD, "sluice-load")


# --------------------------------------------------------------------------
# Redis


class Redis:
    """A redis-server of our own on 127.0.0.1:port, no persistence."""

    def __init__(self, tmp_path, port=None):
        self.port = port or free_port()
        self.tmp = str(tmp_path)
        self.proc = None
        self.paused = False
        self.generation = 0
        self.start()

    @property
    def url(self):
        return "redis://127.0.0.1:%d" % self.port

    def start(self):
        """Starts a new, empty redis-server on self.port."""
        self.generation += 1
        log = open(os.path.join(self.tmp, "redis-%d-%d.log" % (self.port, self.generation)), "wb")
        argv = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly",
                "no", "--dir", self.tmp, "--daemonize", "no", "--loglevel", "warning"]
        self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        self.paused = False
        deadline = time.monotonic() + 10
        while True:
            assert self.proc.poll() is None, "redis-server exited %s" % self.proc.returncode
            try:
                if self.cmd("PING") == "PONG":
                    return
            except OSError:
                pass
            assert time.monotonic() < deadline, "redis-server did not answer on port %d" % self.port
            time.sleep(0.02)

    def cmd(self, *args, timeout=2.0):
        """One command over a new connection (RESP); the decoded reply."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=timeout) as s:
            out = b"*%d\r\n" % len(args)
            for a in args:
                a = a if isinstance(a, bytes) else str(a).encode()
                out += b"$%d\r\n%s\r\n" % (len(a), a)
            s.sendall(out)
            f = s.makefile("rb")
            return _resp_read(f)

    def leases(self, key):
        """{replica id: (lease, expiry_ms, demand)} in the cluster's hash."""
        flat = self.cmd("HGETALL", "sluice:{%s}:leases" % key) or []
        out = {}
        for i in range(0, len(flat), 2):
            lease, expiry, demand = flat[i + 1].split()
            out[flat[i]] = (int(lease), int(expiry), int(demand))
        return out

    def pause(self):
        self.proc.send_signal(signal.SIGSTOP)
        self.paused = True

    def resume(self):
        self.proc.send_signal(signal.SIGCONT)
        self.paused = False

    def kill(self):
        if self.paused:
            self.resume()
        self.proc.kill()
        self.proc.wait()

    def stop(self):
        if self.proc.poll() is None:
            if self.paused:
                self.resume()
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _resp_read(f):
    line = f.readline()
    if not line:
        raise OSError("redis closed the connection")
    kind, rest = line[:1], line[1:-2]
    if kind == b"+":
        return rest.decode()
    if kind == b"-":
        raise RuntimeError("redis: " + rest.decode())
    if kind == b":":
        return int(rest)
    if kind == b"$":
        n = int(rest)
        if n < 0:
            return None
        data = f.read(n + 2)[:-2]
        return data.decode()
    if kind == b"*":
        n = int(rest)
        return None if n < 0 else [_resp_read(f) for _ in range(n)]
    raise OSError("bad RESP line %r" % line)


@pytest.fixture
def redis(tmp_path):
    r = Redis(tmp_path)
    yield r
    r.stop()


# --------------------------------------------------------------------------
# helpers


def metrics(sl):
    status, _, body = http_get(sl.url + "/proxy-metrics", timeout=5)
    assert status == 200, body
    return json.loads(body)


def cluster(sl):
    return metrics(sl)["cluster"]


def states(replicas):
    return [health(sl)["cluster"] for sl in replicas]


def leases(replicas):
    return [cluster(sl)["lease"] for sl in replicas]


def successes(replicas):
    return sum(metrics(sl)["requests"]["success"] for sl in replicas)


def start_replicas(start_sluice, up, redis, n=3, **opts):
    """n replicas sharing N through redis, each --workers 2, all on a lease."""
    opts.setdefault("max_concurrent_requests", N)
    opts.setdefault("workers", 2)
    reps = [start_sluice(up.port, redis_url=redis.url, **opts) for _ in range(n)]
    assert wait_until(lambda: all(s == "ok" for s in states(reps)), 10), states(reps)
    return reps


class Clients:
    """`n` client threads, each sending GET PATH in a loop, one request at a
    time on a keep-alive connection, to the replica route(i) names (None:
    pause). Counts the answers by status."""

    def __init__(self, n, route, path=PATH):
        self.route = route
        self.path = path
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.status = Counter()
        self.errors = Counter()
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(n)]
        for t in self.threads:
            t.start()

    def _run(self, i):
        conn, port = None, None
        while not self.stopping.is_set():
            sl = self.route(i)
            if sl is None:
                if conn:
                    conn.close()
                    conn = None
                time.sleep(0.02)
                continue
            try:
                if conn is None or port != sl.port:
                    if conn:
                        conn.close()
                    conn, port = HttpConn(sl.port, timeout=20), sl.port
                r = conn.request("GET", self.path)
                with self.lock:
                    self.status[r.status] += 1
                if (r.header("connection") or "").lower() == "close":
                    conn.close()
                    conn = None
            except Exception as e:  # noqa: BLE001 - counted, the test judges
                with self.lock:
                    self.errors[type(e).__name__] += 1
                if conn:
                    conn.close()
                conn = None
                time.sleep(0.02)
        if conn:
            conn.close()

    def stop(self):
        self.stopping.set()
        for t in self.threads:
            t.join(30)

    def count(self, status):
        with self.lock:
            return self.status[status]


@pytest.fixture
def clients():
    """clients(n, route) -> Clients; every set is stopped at teardown."""
    started = []

    def make(n, route, path=PATH):
        c = Clients(n, route, path)
        started.append(c)
        return c

    yield make
    for c in started:
        c.stop()


def peak(up):
    return upstream_stats(up)["peak_inflight"]


def check_clean(stderr):
    for mark in SANITIZER_MARKS:
        assert mark not in stderr, "sluice-load reported:\n%s" % stderr.decode(errors="replace")[-6000:]


# --------------------------------------------------------------------------
# 1. the limit holds for the cluster, and the slots are all used


def test_three_replicas_share_the_limit_and_use_it_all(start_upstream, start_sluice, redis):
    """3 replicas (--workers 2), N=10 for all, 60 clients (three sluice-load
    -c 20, one per replica), a 100 ms upstream: the upstream never has more
    than 10 in flight, and from the second second on the replicas together
    serve at least 95 % of 10 / 100 ms = 100 requests/s."""
    up = start_upstream(workers=2)
    reps = start_replicas(start_sluice, up, redis)
    reset_upstream(up)
    run_s = 5.0
    loads = [subprocess.Popen([LOAD, "-c", "20", "-z", "%gs" % run_s, "-j", "--threads", "1", sl.url + PATH],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for sl in reps]
    t0 = time.monotonic()
    # the window: from 1 s after the start to 0.5 s before the end
    time.sleep(1.0)
    w0, s0, c0 = time.monotonic(), successes(reps), [cluster(sl)["redis_commands"] for sl in reps]
    time.sleep(max(0.0, t0 + run_s - 0.5 - time.monotonic()))
    w1, s1, c1 = time.monotonic(), successes(reps), [cluster(sl)["redis_commands"] for sl in reps]
    reports = []
    for p in loads:
        out, err = p.communicate(timeout=30)
        check_clean(err)
        reports.append(json.loads(out))
    goodput = (s1 - s0) / (w1 - w0)
    ideal = N / (DELAY_MS / 1000.0)
    cmd_rate = [(b - a) / (w1 - w0) for a, b in zip(c0, c1)]
    st = upstream_stats(up)
    print("goodput %.1f/s of %.0f/s (%.1f %%), upstream peak %d, Redis commands/s per replica %s, loads %s" %
          (goodput, ideal, 100 * goodput / ideal, st["peak_inflight"], ["%.1f" % r for r in cmd_rate],
           [(r["total"], r["success"]) for r in reports]))
    assert st["peak_inflight"] <= N, "the upstream saw %d in flight, the cluster's limit is %d" % (
        st["peak_inflight"], N)
    for r in reports:
        assert r["success"] == r["total"] and r["total"] > 0, r
    assert goodput >= 0.95 * ideal, "goodput %.1f/s is under 95 %% of %.0f/s" % (goodput, ideal)
    # every replica got a share (none starved), and they saw each other
    for sl in reps:
        c = cluster(sl)
        assert c["replicas"] == 3, c
        assert c["limit"] == N, c


# --------------------------------------------------------------------------
# 1b. the shares are fair, soon, and cost few Redis commands


def test_equal_load_gets_fair_shares_soon(start_upstream, start_sluice, redis):
    """The same load on 3 replicas (20 clients each, default TTL 10 s): within
    1 s every replica holds its max-min fair share (3, 3 and 4) and each
    serves about a third; in the steady state each asks Redis at most about
    every SL_LEASE_FAIR_GAP_MS (200 ms) plus its heartbeats, not per request."""
    up = start_upstream(workers=2)
    reps = start_replicas(start_sluice, up, redis)
    reset_upstream(up)
    loads = [subprocess.Popen([LOAD, "-c", "20", "-z", "4s", "-j", "--threads", "1", sl.url + PATH],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for sl in reps]
    t0 = time.monotonic()
    fair = wait_until(lambda: sorted(leases(reps)) == [3, 3, 4], 3.0, step=0.02)
    took = time.monotonic() - t0
    time.sleep(max(0.0, t0 + 1.5 - time.monotonic()))
    w0, c0 = time.monotonic(), [cluster(sl)["redis_commands"] for sl in reps]
    s0 = [metrics(sl)["requests"]["success"] for sl in reps]
    time.sleep(max(0.0, t0 + 3.5 - time.monotonic()))
    w1, c1 = time.monotonic(), [cluster(sl)["redis_commands"] for sl in reps]
    s1 = [metrics(sl)["requests"]["success"] for sl in reps]
    for p in loads:
        _, err = p.communicate(timeout=30)
        check_clean(err)
    rate = [(b - a) / (w1 - w0) for a, b in zip(c0, c1)]
    served = [b - a for a, b in zip(s0, s1)]
    print("fair shares after %.3f s (%s); served per replica %r; Redis commands/s per replica %s" % (
        took, fair, served, ["%.1f" % r for r in rate]))
    assert peak(up) <= N
    assert fair and took <= 1.0, "shares %r after %.3f s" % (leases(reps), took)
    for n in served:
        assert n >= 0.2 * sum(served), "served per replica %r: not a fair division" % served
    for r in rate:
        assert r <= 1000.0 / 200 + 2, "Redis commands/s per replica %r" % rate


# --------------------------------------------------------------------------
# 2. the slots follow the load


def wait_spread(reps, timeout=10.0, least=1):
    """Waits until every replica holds and uses at least `least` slots."""
    def spread():
        cs = [cluster(sl) for sl in reps]
        return all(c["lease"] >= least and c["in_use"] >= least for c in cs) and cs
    cs = wait_until(spread, timeout, step=0.05)
    assert cs, "the load never spread over the replicas: %r" % [cluster(sl) for sl in reps]
    return cs


def test_slots_follow_the_load_to_one_replica(start_upstream, start_sluice, redis, clients):
    """30 clients spread over 3 replicas, then all moved to one: within 1 s
    of the move that replica holds at least 8 of the 10 slots."""
    up = start_upstream(workers=2)
    reps = start_replicas(start_sluice, up, redis)
    reset_upstream(up)
    where = {"all": None}
    cl = clients(30, lambda i: where["all"] or reps[i % 3])
    wait_spread(reps)
    time.sleep(0.5)  # a steady state, not the ramp
    before = [cluster(sl)["lease"] for sl in reps]
    t0 = time.monotonic()
    where["all"] = reps[0]
    got = wait_until(lambda: cluster(reps[0])["lease"] >= 8, 5.0, step=0.02)
    took = time.monotonic() - t0
    print("leases before the move %r; the one replica held >= 8 after %.3f s" % (before, took))
    assert got, "after 5 s the replica holds %r" % cluster(reps[0])
    assert took <= 1.0, "the replica took %.3f s to hold 8 slots" % took
    # and the others gave theirs back
    assert wait_until(lambda: sum(leases(reps[1:])) <= N - cluster(reps[0])["lease"], 2.0)
    cl.stop()
    assert peak(up) <= N, upstream_stats(up)
    assert cl.count(200) > 0 and set(cl.status) == {200}, (cl.status, cl.errors)


# --------------------------------------------------------------------------
# 3. a replica that dies gives its slots back after the TTL


def test_killed_replica_slots_go_to_the_others_after_the_ttl(start_upstream, start_sluice, redis, clients):
    """kill -9 of a replica holding slots (--cluster-lease-ttl 2): within
    TTL + 1 s the two others use all 10; never more than 10 upstream."""
    ttl = 2.0
    up = start_upstream(workers=2)
    reps = start_replicas(start_sluice, up, redis, cluster_lease_ttl=ttl)
    reset_upstream(up)
    victim, alive = reps[2], reps[:2]
    dead = {"v": False}
    cl = clients(30, lambda i: alive[i % 2] if dead["v"] else reps[i % 3])
    cs = wait_spread(reps)
    assert cluster(victim)["lease"] >= 1, cs
    held = cluster(victim)["lease"]
    t0 = time.monotonic()
    victim.signal(signal.SIGKILL)
    victim.proc.wait(5)
    victim.expect_code = None  # conftest's teardown: it did not exit 0
    dead["v"] = True

    def all_used():
        cs = [cluster(sl) for sl in alive]
        return sum(c["lease"] for c in cs) == N and sum(c["in_use"] for c in cs) == N

    got = wait_until(all_used, ttl + 5, step=0.02)
    took = time.monotonic() - t0
    print("the victim held %d slots; the others used all %d after %.3f s (TTL %g s)" % (held, N, took, ttl))
    assert got, [cluster(sl) for sl in alive]
    assert took <= ttl + 1.0, "took %.3f s, TTL %g s" % (took, ttl)
    # They really work on the upstream: its own count of requests in progress
    # reaches N - 1 soon (a snapshot can fall between one answer and the next
    # request on a slot, more so under the sanitizers).
    assert wait_until(lambda: upstream_stats(up)["inflight"] >= N - 1, 2.0, step=0.01), upstream_stats(up)
    cl.stop()
    assert peak(up) <= N, upstream_stats(up)
    assert cl.count(200) > 0


# --------------------------------------------------------------------------
# 4. Redis stopped (SIGSTOP) past the TTL


def test_redis_paused_static_fallback_then_back(start_upstream, start_sluice, redis, clients):
    """Redis SIGSTOPped for longer than the TTL: the replicas keep serving at
    their static share, floor(10/3) = 3 each (9 at the upstream at most),
    /proxy-health says "cluster":"degraded"; after SIGCONT they are back to
    "ok" and the upstream never sees more than 10."""
    ttl = 2.0
    up = start_upstream(workers=2)
    reps = start_replicas(start_sluice, up, redis, cluster_lease_ttl=ttl)
    cl = clients(45, lambda i: reps[i % 3])
    wait_spread(reps)
    reset_upstream(up)
    t_stop = time.monotonic()
    redis.pause()
    got = wait_until(lambda: all(s == "degraded" for s in states(reps)), ttl + 5)
    t_degraded = time.monotonic() - t_stop
    assert got, states(reps)
    before_static = peak(up)
    assert before_static <= N, "%d in flight while the leases lapsed" % before_static
    for sl in reps:
        c = cluster(sl)
        assert c["state"] == "degraded" and c["lease"] == N // 3 and c["replicas"] == 3, c
        assert c["redis_errors"] >= 1, c
    # a lowered limit takes effect as slots come free: one service time
    time.sleep(3 * DELAY_MS / 1000.0)
    reset_upstream(up)
    s0 = successes(reps)
    time.sleep(max(1.5, ttl + 0.5 - (time.monotonic() - t_stop)))
    served = successes(reps) - s0
    st = upstream_stats(up)
    assert st["peak_inflight"] <= 3 * (N // 3), "static fallback: %d in flight, at most %d" % (
        st["peak_inflight"], 3 * (N // 3))
    assert served >= 10, "the replicas did not keep serving: %d answers" % served
    assert all(s == "degraded" for s in states(reps))

    reset_upstream(up)
    t_cont = time.monotonic()
    redis.resume()
    got = wait_until(lambda: all(s == "ok" for s in states(reps)), 10)
    t_ok = time.monotonic() - t_cont
    assert got, states(reps)
    time.sleep(1.5)
    st = upstream_stats(up)
    print("degraded after %.2f s; static peak %d; ok %.2f s after SIGCONT; peak since SIGCONT %d" % (
        t_degraded, before_static, t_ok, st["peak_inflight"]))
    assert st["peak_inflight"] <= N, "after SIGCONT the upstream saw %d in flight" % st["peak_inflight"]
    assert sum(leases(reps)) <= N
    cl.stop()
    assert cl.count(200) > 0 and set(cl.status) == {200}, (cl.status, cl.errors)


def test_redis_paused_closed_fallback_answers_503(start_upstream, start_sluice, redis, clients):
    """--cluster-fallback closed: once the lease lapsed with Redis stopped,
    the queued requests and every new one get 503 cluster_unavailable; after
    SIGCONT they are served."""
    ttl = 2.0
    up = start_upstream(workers=2)
    reps = start_replicas(start_sluice, up, redis, n=2, cluster_lease_ttl=ttl, cluster_fallback="closed")
    cl = clients(20, lambda i: reps[i % 2])
    wait_spread(reps)
    redis.pause()
    got = wait_until(lambda: all(s == "unavailable" for s in states(reps)), ttl + 5)
    assert got, states(reps)
    for sl in reps:
        assert cluster(sl)["lease"] == 0, cluster(sl)
        with HttpConn(sl.port) as c:
            assert_rejection(c.request("GET", PATH), "cluster_unavailable")
        assert metrics(sl)["requests"]["rejected_by"]["cluster_unavailable"] >= 1
    assert wait_until(lambda: cl.count(503) > 0, 3.0), cl.status
    logs = b"".join(sl.stderr() for sl in reps)
    assert b"queued requests with 503 cluster_unavailable" in logs, logs.decode(errors="replace")
    # what was admitted before the lapse ends; nothing new starts
    assert wait_until(lambda: upstream_stats(up)["inflight"] == 0, 2.0), upstream_stats(up)
    reset_upstream(up)
    time.sleep(0.5)
    assert upstream_stats(up)["peak_inflight"] == 0, upstream_stats(up)
    redis.resume()
    assert wait_until(lambda: all(s == "ok" for s in states(reps)), 10), states(reps)
    for sl in reps:
        with HttpConn(sl.port) as c:
            r = c.request("GET", PATH)
            assert r.status == 200, r
    n200 = cl.count(200)
    assert wait_until(lambda: cl.count(200) > n200 + 10, 5.0), cl.status
    cl.stop()


# --------------------------------------------------------------------------
# 5. Redis restarted empty


@pytest.mark.parametrize("down", ["brief", "past_ttl"])
def test_redis_restarted_empty(start_upstream, start_sluice, redis, clients, down):
    """Redis killed and a new, empty one started on the same port while the
    replicas are busy: they record their leases again, get back to "ok",
    and the upstream never sees more than 10. brief: the new Redis answers
    while the replicas' leases are still trusted; past_ttl: it answers after
    they fell back to their static shares (3 each)."""
    ttl = 3.0 if down == "brief" else 2.0
    up = start_upstream(workers=2)
    reps = start_replicas(start_sluice, up, redis, cluster_lease_ttl=ttl)
    key = "127.0.0.1:%d" % up.port
    cl = clients(45, lambda i: reps[i % 3])
    wait_spread(reps)
    reset_upstream(up)
    before = leases(reps)
    redis.kill()
    if down == "past_ttl":
        t0 = time.monotonic()
        assert wait_until(lambda: all(s == "degraded" for s in states(reps)), ttl + 5), states(reps)
        time.sleep(max(3 * DELAY_MS / 1000.0, ttl + 0.5 - (time.monotonic() - t0)))
        assert peak(up) <= N
        reset_upstream(up)
    redis.start()
    assert redis.leases(key) == {}
    t1 = time.monotonic()
    got = wait_until(lambda: len(redis.leases(key)) == 3 and all(s == "ok" for s in states(reps)), 10)
    t_ok = time.monotonic() - t1
    assert got, (states(reps), redis.leases(key))
    time.sleep(1.5)
    after = leases(reps)
    st = upstream_stats(up)
    print("restart (%s): leases before %r, after %r; ok after %.2f s; upstream peak %d" % (
        down, before, after, t_ok, st["peak_inflight"]))
    assert st["peak_inflight"] <= N, "after the restart the upstream saw %d in flight" % st["peak_inflight"]
    assert sum(v[0] for v in redis.leases(key).values()) <= N, redis.leases(key)
    cl.stop()
    assert cl.count(200) > 0 and set(cl.status) == {200}, (cl.status, cl.errors)


# --------------------------------------------------------------------------
# 6. a paused replica fences itself


def test_paused_replica_fences_itself(start_upstream, start_sluice, redis, clients):
    """A replica SIGSTOPped past the TTL while the others keep all 10 slots
    busy: after SIGCONT it admits nothing on its lapsed lease (it asks Redis
    again, "reacquiring"), and the upstream never sees more than 10. Twice:
    on waking, the replica's worker threads and its main loop (which applies
    the lease) race, and either may run first."""
    ttl = 2.0
    up = start_upstream(workers=2)
    reps = start_replicas(start_sluice, up, redis, cluster_lease_ttl=ttl)
    sleeper, others = reps[2], reps[:2]
    cl = clients(45, lambda i: reps[i % 3])
    wait_spread(reps)
    reset_upstream(up)

    def others_have_all():
        cs = [cluster(sl) for sl in others]
        return sum(c["lease"] for c in cs) == N and sum(c["in_use"] for c in cs) == N

    for cycle in range(2):
        assert wait_until(lambda: cluster(sleeper)["in_use"] >= 1, 10), cluster(sleeper)
        cmds = cluster(sleeper)["redis_commands"]
        lapsed = sleeper.stderr().count(b"the lease lapsed")
        sleeper.signal(signal.SIGSTOP)
        t0 = time.monotonic()
        try:
            assert wait_until(others_have_all, ttl + 5, step=0.02), [cluster(sl) for sl in others]
            time.sleep(max(0.0, ttl + 0.5 - (time.monotonic() - t0)))
            # the two others really work the upstream (waited for: a snapshot
            # can fall between an answer and the slot's next request)
            assert wait_until(lambda: upstream_stats(up)["inflight"] >= N - 1, 2.0, step=0.01), upstream_stats(up)
        finally:
            sleeper.signal(signal.SIGCONT)
        seen = Counter()
        t1 = time.monotonic()
        while time.monotonic() - t1 < 1.0:
            seen[health(sleeper)["cluster"]] += 1
            time.sleep(0.01)
        print("cycle %d: states of the woken replica: %r, upstream peak so far %d" % (
            cycle, dict(seen), peak(up)))
        err = sleeper.stderr()
        assert err.count(b"the lease lapsed") > lapsed or seen["reacquiring"], err.decode(errors="replace")[-2000:]
        assert cluster(sleeper)["redis_commands"] > cmds
        assert wait_until(lambda: health(sleeper)["cluster"] == "ok", 5)
        st = upstream_stats(up)
        assert st["peak_inflight"] <= N, "the woken replica pushed the upstream to %d in flight" % (
            st["peak_inflight"])
    time.sleep(1.0)
    assert peak(up) <= N, upstream_stats(up)
    cl.stop()


# --------------------------------------------------------------------------
# 7. Redis unreachable at start


def test_redis_unreachable_at_start(start_upstream, start_sluice, clients):
    """Nothing listens on the Redis port: the replica starts, is "degraded"
    with a static limit of 1 (it never saw the others: not N), and says so;
    with --cluster-fallback closed it answers 503 cluster_unavailable."""
    up = start_upstream(workers=2)
    url = "redis://127.0.0.1:%d" % free_port()
    sl = start_sluice(up.port, redis_url=url, max_concurrent_requests=N)
    assert wait_until(lambda: health(sl)["cluster"] == "degraded", 5), health(sl)
    c = cluster(sl)
    assert c["state"] == "degraded" and c["lease"] == 1 and c["limit"] == N, c
    assert c["redis_errors"] >= 1, c
    reset_upstream(up)
    cl = clients(6, lambda i: sl, path="/work?delay_ms=200")
    assert wait_until(lambda: cl.count(200) >= 6, 5), (cl.status, cl.errors)
    cl.stop()
    assert upstream_stats(up)["peak_inflight"] == 1, upstream_stats(up)
    assert metrics(sl)["concurrency"]["max"] == 1
    assert b"Redis" in sl.stderr() and b"static fallback" in sl.stderr(), sl.stderr()

    closed = start_sluice(up.port, redis_url=url, max_concurrent_requests=N, cluster_fallback="closed")
    assert wait_until(lambda: health(closed)["cluster"] == "unavailable", 5), health(closed)
    assert cluster(closed)["lease"] == 0
    with HttpConn(closed.port) as conn:
        assert_rejection(conn.request("GET", PATH), "cluster_unavailable")


# --------------------------------------------------------------------------
# 8. bad --redis-url


@pytest.mark.parametrize("url", ["http://x", "redis://", "redis://h:99999", "redis://h/abc", "redis://h:",
                                 "redis://:pw@", "redis://h:0", "redis://h:12x", "redis://[::1"])
def test_bad_redis_url_exits_2_with_one_sentence(url):
    p = subprocess.run([os.path.join(BUILD, "sluice"), "--target-host", "127.0.0.1", "--listen-port",
                        str(free_port()), "--redis-url", url], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=10)
    err = p.stderr.decode()
    assert p.returncode == 2, (p.returncode, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "--redis-url" in lines[0] and url in lines[0], err
    assert lines[0].count(". ") == 0, "more than one sentence: %r" % err


def test_good_redis_urls_are_accepted():
    for url in ("redis://h", "redis://h:7000", "redis://h/3", "redis://:pw@h", "redis://u:pw@h:1/2",
                "redis://[::1]:7000"):
        p = subprocess.run([os.path.join(BUILD, "sluice"), "--target-host", "127.0.0.1", "--redis-url", url,
                            "--check-config"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=10)
        assert p.returncode == 0, (url, p.stderr)


# --------------------------------------------------------------------------
# 9. a graceful stop gives the slots back at once


def test_graceful_stop_gives_slots_back_at_once(start_upstream, start_sluice, redis, clients):
    """SIGTERM of a replica deletes its record in Redis as it exits, so the
    other one uses all 10 slots well before the TTL (10 s) would free them."""
    ttl = 10.0
    up = start_upstream(workers=2)
    reps = start_replicas(start_sluice, up, redis, n=2, cluster_lease_ttl=ttl)
    key = "127.0.0.1:%d" % up.port
    leaving, staying = reps
    gone = {"v": False}
    cl = clients(30, lambda i: staying if gone["v"] else reps[i % 2])
    wait_spread(reps, timeout=ttl)
    assert cluster(leaving)["lease"] >= 1
    mine = [k for k in redis.leases(key) if ":%d:" % leaving.pid in k]
    assert len(mine) == 1, redis.leases(key)
    gone["v"] = True
    t0 = time.monotonic()
    assert leaving.stop() == 0
    exited = time.monotonic() - t0
    assert mine[0] not in redis.leases(key), redis.leases(key)

    def all_used():
        c = cluster(staying)
        return c["lease"] == N and c["in_use"] == N

    got = wait_until(all_used, ttl, step=0.02)
    took = time.monotonic() - t0
    print("SIGTERM: exited after %.3f s, the other replica used all %d after %.3f s (TTL %g s)" % (
        exited, N, took, ttl))
    assert got, cluster(staying)
    assert took <= 2.0, "took %.3f s: the slots came back by expiry, not at once" % took
    cl.stop()
    assert peak(up) <= N, upstream_stats(up)


# --------------------------------------------------------------------------
# 10. a stop is bounded whatever Redis does


class SlowRedis:
    """A fake Redis on a free port: EVAL is answered after `eval_delay`
    seconds with a lease of 0 (a valid answer), HDEL never; anything else
    +OK. Counts the commands it got."""

    def __init__(self, eval_delay):
        self.eval_delay = eval_delay
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.seen = Counter()
        self.closing = False
        self.conns = []
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self):
        return "redis://127.0.0.1:%d" % self.port

    def _accept(self):
        while not self.closing:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(c)
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, c):
        f = c.makefile("rb")
        try:
            while True:
                cmd = _resp_read(f)
                name = cmd[0].upper()
                self.seen[name] += 1
                if name == "EVAL":
                    time.sleep(self.eval_delay)
                    ttl = int(cmd[-2]) if len(cmd) >= 9 else 10000
                    c.sendall(b"*5\r\n:0\r\n:10\r\n:1\r\n:%d\r\n:0\r\n" % ttl)
                elif name == "HDEL":
                    pass  # never answered
                else:
                    c.sendall(b"+OK\r\n")
        except (OSError, ValueError, IndexError):
            pass

    def close(self):
        self.closing = True
        self.sock.close()
        for c in self.conns:
            c.close()


def test_stop_is_bounded_when_redis_answers_the_lease_but_not_the_release(start_upstream, start_sluice):
    """SIGTERM while a lease request is out: the release (HDEL) goes behind it
    and is bounded by the command timeout (1 s at TTL 10 s) even when Redis
    answers the lease request and then nothing more: the replica exits."""
    up = start_upstream()
    fake = SlowRedis(eval_delay=0.6)
    try:
        sl = start_sluice(up.port, redis_url=fake.url, max_concurrent_requests=N)
        sl.expect_code = None  # judged here, not by the teardown
        assert wait_until(lambda: fake.seen["EVAL"] >= 1, 5)
        t0 = time.monotonic()
        sl.signal(signal.SIGTERM)
        assert wait_until(lambda: fake.seen["HDEL"] >= 1, 5), fake.seen  # the release went out
        try:
            code = sl.proc.wait(5)
        except subprocess.TimeoutExpired:
            code = None
        took = time.monotonic() - t0
        assert code == 0, "no exit %.1f s after SIGTERM (Redis answered EVAL, not HDEL): %r" % (took, fake.seen)
        assert took < 3.0, took
    finally:
        fake.close()


# --------------------------------------------------------------------------
# 11. the script itself, against the real redis-server


SCRIPT = open(os.path.join(ROOT, "src", "cluster.lua")).read()


def lease_call(redis, rid, floor, demand, ttl=10000, limit=N, key="script", epoch=0, on_static=0):
    """cluster.lua for replica rid: [usable, fair, replicas, ttl, contended]
    (the epoch it also returns is dropped)."""
    base = "sluice:{%s}:leases" % key
    return redis.cmd("EVAL", SCRIPT, 3, base, base + ":epoch", base + ":fence", rid, floor, demand, ttl, limit,
                     epoch, on_static)[:5]


def test_script_quarantines_after_lost_records(redis):
    """A replica that knew another epoch (Redis lost its data), or one back
    from its static fallback: for one TTL nobody gets more than its floor,
    since slots are in use that no record shows."""
    base = "sluice:{q}:leases"
    epoch = redis.cmd("EVAL", SCRIPT, 3, base, base + ":epoch", base + ":fence", "a", 0, 3, 400, N, 0, 0)[5]
    assert lease_call(redis, "b", 0, 3, ttl=400, key="q", epoch=epoch)[0] == 3  # the same epoch: granted
    assert lease_call(redis, "c", 2, 5, ttl=400, key="q", epoch=epoch + 1)[0] == 2  # another: its floor only
    assert lease_call(redis, "d", 0, 5, ttl=400, key="q")[0] == 0  # quarantined, for everyone
    time.sleep(0.5)
    assert lease_call(redis, "d", 0, 5, ttl=400, key="q")[0] == 5  # one TTL later: granted
    assert lease_call(redis, "e", 1, 5, ttl=400, key="q", on_static=1)[0] == 1  # back from the static share


def test_script_divides_max_min_fair_and_never_over_the_limit(redis):
    """Equal demands: 3, 3, 4 (the remainder to the last by id); a small
    demand is met first and the rest split; the recorded leases never add up
    to more than the limit, whatever order the replicas ask in."""
    for rid in ("a", "b", "c"):
        lease_call(redis, rid, 0, 0)  # all three known, idle
    for rnd in range(3):
        for rid in ("a", "b", "c"):
            lease, fair, replicas, ttl, contended = lease_call(redis, rid, 0, 10)
            assert replicas == 3 and ttl == 10000
            assert contended == (0 if (rnd, rid) == (0, "a") else 1)  # they want 30 of 10 once b asked
            assert sum(v[0] for v in redis.leases("script").values()) <= N, redis.leases("script")
    fairs = [lease_call(redis, rid, 0, 10)[1] for rid in ("a", "b", "c")]
    assert sorted(fairs) == [3, 3, 4], fairs
    # a demand of 2 is met; the other two split the 8 left
    fairs = {}
    for _ in range(2):
        for rid, demand in (("a", 2), ("b", 10), ("c", 10)):
            fairs[rid] = lease_call(redis, rid, 0, demand)[1]
    assert fairs == {"a": 2, "b": 4, "c": 4}, fairs
    assert sum(v[0] for v in redis.leases("script").values()) <= N


def test_script_drops_expired_records(redis):
    """A record not renewed within its TTL stops counting: its slots are
    free for the others (and the record is deleted)."""
    assert lease_call(redis, "dead", 0, 10, ttl=300)[0] == 10
    assert lease_call(redis, "alive", 0, 10, ttl=300)[0] == 0  # nothing free
    time.sleep(0.4)
    lease, fair, replicas, _, _ = lease_call(redis, "alive", 0, 10, ttl=300)
    assert (lease, fair, replicas) == (10, 10, 1)
    assert "dead" not in redis.leases("script")


def test_script_floor_beyond_free_is_recorded_but_not_usable(redis):
    """A replica whose lease lapsed (it was paused) asks with floor = the
    slots it still counts in use, while the others hold all 10. Redis must
    record the floor (those requests may still be running), but the lease
    the replica is told it may admit on cannot include slots that are not
    free: else it starts new requests on them and the cluster runs over N."""
    assert lease_call(redis, "a", 0, 10)[0] == 10
    lease = lease_call(redis, "b", 4, 10)[0]
    assert redis.leases("script")["b"][0] >= 4, redis.leases("script")  # recorded: what b may be using
    assert lease == 0, "b was told it may use %d slots; a holds all %d" % (lease, N)
