"""Observability (SPEC §8, §3 SIGHUP, §2 --admin-port and --access-log; issue 5):
/proxy-metrics counters after a known mix of requests, latency percentiles
against a known upstream delay, the Prometheus text exposition checked by a
line-by-line validator of format 0.0.4 (and by `promtool check metrics` when
Debian's prometheus package is installed), --admin-port routing, the access
log (to a file and to stdout), and SIGHUP raising and lowering the limit
under load without a failed request.

The dashboard has its own file (test_dashboard.py).

Numbers are exact wherever the mix makes them knowable; timings are generous
enough for an ASan build (2-3x slower).
"""
import datetime
import json
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
import uuid

import pytest

from conftest import BUILD, SANITIZER_MARKS, Proc, free_port, http_get, upstream_stats, wait_listening
from helpers import HttpConn, Pending, assert_rejection, reset_upstream, upstream_targets, wait_until


# --------------------------------------------------------------------------
# helpers


def metrics(url_base, timeout=5):
    status, headers, body = http_get(url_base + "/proxy-metrics", timeout=timeout)
    assert status == 200, (status, body[:300])
    assert "json" in (headers.get("Content-Type") or ""), headers.get("Content-Type")
    return json.loads(body)


def prometheus_text(url_base, timeout=5):
    status, headers, body = http_get(url_base + "/proxy-metrics/prometheus", timeout=timeout)
    assert status == 200, (status, body[:300])
    ctype = headers.get("Content-Type") or ""
    assert ctype.startswith("text/plain"), ctype
    assert "version=0.0.4" in ctype, ctype
    return body.decode("utf-8")


def health(url_base):
    status, _, body = http_get(url_base + "/proxy-health")
    assert status == 200, body
    return json.loads(body)


def get(port, target, timeout=10.0, method="GET", body=None, headers=None):
    """One request on its own connection -> Response."""
    with HttpConn(port, timeout=timeout) as c:
        return c.request(method, target, headers=headers, body=body)


def wait_sluice(sl, pred, timeout=5.0):
    """Polls /proxy-metrics until pred(metrics) is true; returns the last."""
    last = {}

    def probe():
        last["m"] = metrics(sl.url)
        return pred(last["m"])

    wait_until(probe, timeout)
    return last["m"]


def parse_iso8601(ts):
    """datetime (UTC-aware) of an ISO 8601 timestamp with a zone (Z or +hh:mm)."""
    m = re.match(r"^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(\.\d+)?(Z|[+-]\d{2}:?\d{2})$", ts)
    assert m, "not an ISO 8601 timestamp with a zone: %r" % ts
    frac = (m.group(2) or ".0")[:7]
    zone = "+00:00" if m.group(3) == "Z" else m.group(3)
    return datetime.datetime.fromisoformat(m.group(1) + frac + zone)


def approx(a, b, rel=1e-6, abs_=1e-9):
    return math.isclose(a, b, rel_tol=rel, abs_tol=abs_)


def write_json(path, obj):
    tmp = str(path) + ".tmp"
    with open(tmp, "w") as f:
        f.write(obj if isinstance(obj, str) else json.dumps(obj))
    os.replace(tmp, str(path))


# Every setting of SPEC §2 under its config-file key (§3's example keys are a
# subset). --config, --check-config, --help and --version are not settings.
SETTING_KEYS = [
    "listen_host", "listen_port", "target_host", "target_port", "connect_timeout", "read_timeout",
    "write_timeout", "max_concurrent_requests", "max_queue_size", "queue_timeout", "pool_maxsize",
    "pool_idle_timeout", "pool_connections", "max_retries", "retry_backoff_factor", "retry_backoff_max",
    "circuit_breaker_threshold", "circuit_breaker_timeout", "client_header_timeout", "client_idle_timeout",
    "max_header_size", "max_body_size", "max_connections", "workers", "admin_port", "shutdown_timeout",
    "access_log", "log_level",
]
SPEC3_EXAMPLE_KEYS = ["listen_port", "target_host", "target_port", "connect_timeout", "read_timeout",
                      "max_concurrent_requests", "max_queue_size", "pool_maxsize", "circuit_breaker_threshold"]
DEFAULTS = {
    "listen_host": "0.0.0.0", "target_port": 8000, "connect_timeout": 10, "read_timeout": 120,
    "write_timeout": 60, "max_concurrent_requests": 50, "max_queue_size": 100, "queue_timeout": 30,
    "pool_maxsize": 50, "pool_idle_timeout": 60, "pool_connections": 0, "max_retries": 2,
    "retry_backoff_factor": 0.5, "retry_backoff_max": 2, "circuit_breaker_threshold": 5,
    "circuit_breaker_timeout": 60, "client_header_timeout": 10, "client_idle_timeout": 60,
    "max_header_size": 32768, "max_body_size": 0, "max_connections": 10000, "admin_port": None,
    "shutdown_timeout": 30, "access_log": None, "log_level": "info",
}


def check_config(cfg, expected):
    """Every §2/§3 key is present; each expected value matches."""
    missing = [k for k in SETTING_KEYS + SPEC3_EXAMPLE_KEYS if k not in cfg]
    assert not missing, "config lacks %s: %r" % (missing, cfg)
    wrong = {}
    for k, v in expected.items():
        got = cfg.get(k)
        if isinstance(v, (int, float)) and not isinstance(v, bool) and isinstance(got, (int, float)):
            if not approx(float(got), float(v)):
                wrong[k] = (v, got)
        elif got != v:
            wrong[k] = (v, got)
    assert not wrong, "config values (expected, got): %r" % wrong


# --------------------------------------------------------------------------
# Prometheus text format 0.0.4 validator

METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
FLOAT = re.compile(r"^(?:[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?|[+-]?Inf|NaN)$")
TIMESTAMP = re.compile(r"^-?\d+$")
TYPES = ("counter", "gauge", "histogram", "summary", "untyped")


def prom_float(s):
    if s in ("+Inf", "Inf"):
        return math.inf
    if s == "-Inf":
        return -math.inf
    if s == "NaN":
        return math.nan
    return float(s)


def _parse_labels(s, i, err):
    """s[i] is just after '{'. Returns ([(name, value)], index after '}') or
    (None, None) after err()."""
    labels = []
    while True:
        while i < len(s) and s[i] in " \t":
            i += 1
        if i < len(s) and s[i] == "}":
            return labels, i + 1
        m = LABEL_NAME.match(s, i)
        if not m:
            err("bad label name at column %d" % (i + 1))
            return None, None
        name = m.group(0)
        i = m.end()
        while i < len(s) and s[i] in " \t":
            i += 1
        if i >= len(s) or s[i] != "=":
            err("expected '=' after label %s" % name)
            return None, None
        i += 1
        while i < len(s) and s[i] in " \t":
            i += 1
        if i >= len(s) or s[i] != '"':
            err("label %s value not quoted" % name)
            return None, None
        i += 1
        value = []
        while True:
            if i >= len(s):
                err("unterminated value of label %s" % name)
                return None, None
            ch = s[i]
            if ch == "\\":
                nxt = s[i + 1] if i + 1 < len(s) else ""
                if nxt not in ("\\", '"', "n"):
                    err("bad escape \\%s in label %s" % (nxt, name))
                    return None, None
                value.append("\n" if nxt == "n" else nxt)
                i += 2
                continue
            if ch == '"':
                i += 1
                break
            value.append(ch)
            i += 1
        labels.append((name, "".join(value)))
        while i < len(s) and s[i] in " \t":
            i += 1
        if i < len(s) and s[i] == ",":
            i += 1
            continue
        if i < len(s) and s[i] == "}":
            return labels, i + 1
        err("expected ',' or '}' after label %s" % name)
        return None, None


def validate_prometheus(text):
    """Checks `text` against the Prometheus text exposition format 0.0.4 and
    its conventions. Returns (errors, samples) where samples maps
    (name, frozenset(labels)) -> float."""
    errors = []
    samples = {}
    if not text.endswith("\n"):
        errors.append("output does not end with a newline")
    types = {}       # family -> type
    helps = set()
    seen_sample = set()  # families that already had a sample
    closed = set()   # families whose block has ended
    current = None
    hist = {}        # (family, frozenset(labels without le)) -> {"buckets": [(le, v)], "sum":, "count":}
    summ = {}

    def family_of(name):
        if name in types:
            return name, ""
        for suffix in ("_bucket", "_sum", "_count"):
            if name.endswith(suffix):
                base = name[: -len(suffix)]
                t = types.get(base)
                if t == "histogram" or (t == "summary" and suffix != "_bucket"):
                    return base, suffix
        return name, ""

    def enter(family, lineno):
        nonlocal current
        if family != current:
            if family in closed:
                errors.append("line %d: samples of %s are not contiguous" % (lineno, family))
            if current is not None:
                closed.add(current)
            current = family

    for lineno, line in enumerate(text.split("\n")[:-1] if text.endswith("\n") else text.split("\n"), 1):
        def err(msg, lineno=lineno, line=line):
            errors.append("line %d: %s: %r" % (lineno, msg, line))

        if "\r" in line:
            err("carriage return")
            continue
        if line.strip() == "":
            continue
        if line.lstrip(" \t").startswith("#"):
            parts = line.lstrip(" \t")[1:].lstrip(" \t").split(None, 2)
            if not parts or parts[0] not in ("HELP", "TYPE"):
                continue  # an ordinary comment
            if len(parts) < 2 or not METRIC_NAME.fullmatch(parts[1]):
                err("%s without a valid metric name" % parts[0])
                continue
            name = parts[1]
            if name in seen_sample or name in closed:
                err("%s for %s after its samples" % (parts[0], name))
            if parts[0] == "HELP":
                if name in helps:
                    err("second HELP for %s" % name)
                helps.add(name)
                doc = parts[2] if len(parts) > 2 else ""
                if "\\" in re.sub(r"\\[\\n]", "", doc):
                    err("HELP text with a bad escape")
            else:
                if name in types:
                    err("second TYPE for %s" % name)
                if len(parts) != 3 or parts[2].strip() not in TYPES:
                    err("TYPE is not one of %s" % (TYPES,))
                    continue
                types[name] = parts[2].strip()
                if types[name] == "counter" and not name.endswith("_total"):
                    err("counter %s does not end in _total" % name)
            enter(name, lineno)
            continue
        # a sample
        s = line.lstrip(" \t")
        m = METRIC_NAME.match(s)
        if not m:
            err("bad metric name")
            continue
        name = m.group(0)
        i = m.end()
        labels = []
        if i < len(s) and s[i] == "{":
            labels, i = _parse_labels(s, i + 1, err)
            if labels is None:
                continue
        rest = s[i:]
        if rest and rest[0] not in " \t":
            err("no blank between name/labels and value")
            continue
        fields = rest.split()
        if len(fields) not in (1, 2):
            err("expected a value and an optional timestamp")
            continue
        if not FLOAT.match(fields[0]):
            err("value %r is not a float" % fields[0])
            continue
        if len(fields) == 2 and not TIMESTAMP.match(fields[1]):
            err("timestamp %r is not an integer" % fields[1])
        value = prom_float(fields[0])
        names = [k for k, _ in labels]
        if len(set(names)) != len(names):
            err("duplicate label name")
        if any(k.startswith("__") for k in names):
            err("reserved label name (__...)")
        key = (name, frozenset(labels))
        if key in samples:
            err("duplicate series")
        samples[key] = value
        family, suffix = family_of(name)
        enter(family, lineno)
        seen_sample.add(family)
        ftype = types.get(family, "untyped")
        if ftype == "counter":
            if math.isnan(value) or value < 0:
                err("counter with a negative or NaN value")
        elif ftype in ("histogram", "summary"):
            if suffix == "":
                err("%s sample %s without _bucket/_sum/_count" % (ftype, name))
                continue
            rest_labels = frozenset((k, v) for k, v in labels if k != ("le" if ftype == "histogram" else "quantile"))
            store = hist if ftype == "histogram" else summ
            g = store.setdefault((family, rest_labels), {"buckets": [], "sum": None, "count": None, "line": lineno})
            if suffix == "_bucket":
                le = dict(labels).get("le")
                if le is None or not FLOAT.match(le):
                    err("bucket without a valid le label")
                    continue
                g["buckets"].append((prom_float(le), value))
            elif suffix == "_sum":
                g["sum"] = value
            elif suffix == "_count":
                g["count"] = value
            if ftype == "summary" and suffix == "" and "quantile" in dict(labels):
                q = prom_float(dict(labels)["quantile"])
                if not 0 <= q <= 1:
                    err("quantile out of 0..1")

    for (family, labels), g in sorted(hist.items(), key=lambda kv: kv[1]["line"]):
        where = "histogram %s%s" % (family, dict(labels) or "")
        b = g["buckets"]
        if not b:
            errors.append("%s has no _bucket samples" % where)
            continue
        les = [le for le, _ in b]
        if any(not (les[i] < les[i + 1]) for i in range(len(les) - 1)):
            errors.append("%s: le not strictly increasing: %r" % (where, les))
        if les[-1] != math.inf:
            errors.append("%s: last bucket is not le=\"+Inf\"" % where)
        counts = [v for _, v in b]
        if any(counts[i] > counts[i + 1] for i in range(len(counts) - 1)):
            errors.append("%s: cumulative counts decrease: %r" % (where, counts))
        if any(c != int(c) or c < 0 for c in counts if not math.isnan(c)):
            errors.append("%s: bucket counts are not non-negative integers" % where)
        if g["count"] is None:
            errors.append("%s has no _count" % where)
        elif les[-1] == math.inf and counts[-1] != g["count"]:
            errors.append("%s: +Inf bucket %r != _count %r" % (where, counts[-1], g["count"]))
        if g["sum"] is None:
            errors.append("%s has no _sum" % where)
    for (family, labels), g in summ.items():
        if g["count"] is None or g["sum"] is None:
            errors.append("summary %s%s lacks _sum or _count" % (family, dict(labels) or ""))
    return errors, samples


def prom_value(samples, name, **labels):
    key = (name, frozenset(labels.items()))
    assert key in samples, "no sample %s%s" % (name, labels or "")
    return samples[key]


# --------------------------------------------------------------------------
# the known mix of test 1 / test 3


def run_mix(start_upstream, start_sluice, tmp_path):
    """Sluice A (limit 1, queue 1, --max-retries 0, a high breaker threshold):
    K successes, M upstream 500s, one request holding the slot + one queued,
    R queue_full rejections, one 504 read timeout. Sluice B (--max-retries 1,
    breaker threshold 2): one success after a retried reset, two relayed 503s
    (each retried once) that open the breaker, C circuit_open rejections.
    Returns (up, a, b, numbers)."""
    K, M, R, C = 5, 3, 3, 3
    up = start_upstream(workers=2)
    cfg_path = tmp_path / "mix.json"
    # file values, some overridden on the command line
    write_json(cfg_path, {"read_timeout": 300, "pool_maxsize": 20, "connect_timeout": 3,
                          "max_queue_size": 50, "circuit_breaker_threshold": 10, "queue_timeout": 20})
    a = start_sluice(up.port, workers=2, config=str(cfg_path), max_concurrent_requests=1, max_queue_size=1,
                     max_retries=0, circuit_breaker_threshold=1000, read_timeout=1, client_idle_timeout=45.5)
    for i in range(K):
        r = get(a.port, "/ok-%d" % i)
        assert r.status == 200, r
    for i in range(M):
        r = get(a.port, "/err-%d?status=500" % i)
        assert r.status == 500, r
    hold = Pending(a.port, "/hold?delay_ms=700").send()
    assert wait_until(lambda: health(a.url)["active"] == 1, 5), health(a.url)
    queued = Pending(a.port, "/queued").send()
    assert wait_until(lambda: health(a.url)["queued"] == 1, 5), health(a.url)
    for i in range(R):
        r = get(a.port, "/reject-%d" % i)
        assert_rejection(r, "queue_full")
    assert hold.wait().status == 200, hold.describe()
    assert queued.wait().status == 200, queued.describe()
    hold.close()
    queued.close()
    t0 = time.monotonic()
    r = get(a.port, "/slow?delay_ms=3000")
    assert r.status == 504, r
    assert time.monotonic() - t0 < 2.5
    assert wait_until(lambda: health(a.url)["active"] == 0, 5)

    b = start_sluice(up.port, workers=2, max_retries=1, retry_backoff_factor=0.01, retry_backoff_max=0.02,
                     circuit_breaker_threshold=2, circuit_breaker_timeout=30)
    r = get(b.port, "/retried?fail=reset&fail_times=1&key=%s" % uuid.uuid4().hex)
    assert r.status == 200, r
    for i in range(2):
        r = get(b.port, "/unavail-%d?status=503" % i)
        assert r.status == 503, r
        assert b"circuit_open" not in r.body, "the upstream's own 503 was expected, got %r" % r.body
    for i in range(C):
        r = get(b.port, "/open-%d" % i)
        assert_rejection(r, "circuit_open")
    return up, a, b, dict(K=K, M=M, R=R, C=C, cfg_path=str(cfg_path))


# --------------------------------------------------------------------------
# 1. counters


def test_counters_move_exactly_after_a_known_mix(start_upstream, start_sluice, tmp_path):
    t_start = datetime.datetime.now(datetime.timezone.utc)
    up, a, b, n = run_mix(start_upstream, start_sluice, tmp_path)
    K, M, R, C = n["K"], n["M"], n["R"], n["C"]

    # ---- sluice A
    m = metrics(a.url)
    req = m["requests"]
    total = K + M + 2 + R + 1          # oks, 500s, hold + queued, rejections, 504
    success = K + 2
    failed = M + 1
    expected = {"total": total, "success": success, "failed": failed, "rejected": R, "timeouts": 1,
                "retries": 0, "circuit_open_rejections": 0}
    got = {k: req.get(k) for k in expected}
    assert got == expected, "sluice A requests: expected %r, got %r" % (expected, req)
    assert req.get("rejected_by") == {"queue_full": R, "queue_timeout": 0, "circuit_open": 0, "tunnel_limit": 0,
                                   "cluster_unavailable": 0}, req
    assert req.get("client_closed") == 0, req
    assert approx(m["success_rate"], success / (total - R)), m["success_rate"]
    assert 0 < m["uptime_seconds"] < 120
    assert m["throughput_rps"] > 0
    forwarded = total - R
    lat = m["latency_ms"]
    assert lat.get("count", forwarded) == forwarded, lat
    assert lat["max"] >= 950, "the 504 took 1 s: %r" % lat          # read timeout 1 s
    assert lat["p50"] <= lat["p95"] <= lat["p99"] <= lat["max"], lat
    qw = m["queue_wait_ms"]
    assert 400 <= qw["max"] <= 1500, "the queued request waited ~700 ms for the slot: %r" % qw
    assert 1 <= qw.get("count", 1) <= forwarded, qw
    assert m["recent"]["latency_ms"] == lat and m["recent"]["queue_wait_ms"] == qw, m["recent"]
    conc = m["concurrency"]
    assert conc == {"active": 0, "max": 1, "queued": 0, "max_queue": 1, "peak_active": 1, "peak_queued": 1,
                    "draining": 0, "effective_limit": 1}, conc
    pool = m["pool"]
    assert 1 <= pool["created"] <= forwarded, pool
    assert forwarded <= pool["created"] + pool["reused"] <= forwarded + 2, (
        "each of the %d upstream attempts used a new or a pooled connection: %r" % (forwarded, pool))
    assert pool["reused"] >= 1, pool
    assert pool["idle"] <= pool["open"] <= pool["created"], pool
    assert pool["idle"] <= 20 * 2, pool
    cb = m["circuit_breaker"]
    assert cb == {"state": "closed", "consecutive_failures": 1, "opened_total": 0}, cb
    assert m["status"] == "degraded", "success rate %d/%d < 80 %%: %r" % (success, forwarded, m["status"])
    ts = parse_iso8601(m["timestamp"])
    now = datetime.datetime.now(datetime.timezone.utc)
    assert t_start - datetime.timedelta(seconds=2) <= ts <= now + datetime.timedelta(seconds=2), m["timestamp"]
    assert m["connections"]["clients"] >= 1, m["connections"]
    # upstream saw every forwarded request once (no retries), no rejected one
    targets = upstream_targets(up)
    assert not any(t.startswith("/reject-") or t.startswith("/open-") for t in targets), targets

    cfg = m["config"]
    assert cfg["target"] == "127.0.0.1:%d" % up.port, cfg.get("target")
    exp = dict(DEFAULTS)
    exp.update(listen_host="127.0.0.1", listen_port=a.port, target_host="127.0.0.1", target_port=up.port,
               workers=2, max_concurrent_requests=1, max_retries=0, client_idle_timeout=45.5,
               # command line over file
               read_timeout=1, max_queue_size=1, circuit_breaker_threshold=1000,
               # file only
               pool_maxsize=20, connect_timeout=3, queue_timeout=20)
    check_config(cfg, exp)

    leg = m["metrics"]
    exp_leg = {"total_requests": total, "successful_requests": success, "failed_requests": failed,
               "timeout_requests": 1, "active_requests": 0, "queue_rejected": R, "circuit_open": False,
               "consecutive_failures": 1, "queue_size": 0, "available_slots": 1}
    assert {k: leg.get(k) for k in exp_leg} == exp_leg, "legacy metrics: expected %r, got %r" % (exp_leg, leg)
    assert leg["circuit_open"] is False
    assert abs(leg["success_rate"] - 100.0 * success / forwarded) < 0.01, leg["success_rate"]
    assert abs(leg["avg_response_time"] - lat["avg"] / 1000.0) < 0.002, (leg, lat)
    assert abs(leg["p95_response_time"] - lat["p95"] / 1000.0) < 0.002, (leg, lat)

    # /proxy-* requests were not counted
    m2 = metrics(a.url)
    assert m2["requests"]["total"] == total, m2["requests"]

    # idle client connections are counted: our three, plus the metrics
    # request's own (earlier clients' connections may come and go meanwhile,
    # so no base is taken: they can only add to the count)
    conns = [HttpConn(a.port) for _ in range(3)]
    try:
        m3 = wait_sluice(a, lambda x: x["connections"]["clients"] >= 3 + 1)
        assert m3["connections"]["clients"] >= 3 + 1, m3["connections"]
    finally:
        for c in conns:
            c.close()

    # ---- sluice B: retries and the breaker
    m = metrics(b.url)
    req = m["requests"]
    expected = {"total": 1 + 2 + C, "success": 1, "failed": 2, "rejected": C, "timeouts": 0,
                "retries": 3, "circuit_open_rejections": C}
    got = {k: req.get(k) for k in expected}
    assert got == expected, "sluice B requests: expected %r, got %r" % (expected, req)
    assert req.get("rejected_by") == {"queue_full": 0, "queue_timeout": 0, "circuit_open": C, "tunnel_limit": 0,
                                   "cluster_unavailable": 0}, req
    assert approx(m["success_rate"], 1 / 3), m["success_rate"]
    cb = m["circuit_breaker"]
    assert cb == {"state": "open", "consecutive_failures": 2, "opened_total": 1}, cb
    assert m["status"] == "unhealthy", m["status"]
    h = health(b.url)
    assert h["status"] == "unhealthy" and h["circuit_state"] == "open", h
    leg = m["metrics"]
    exp_leg = {"total_requests": 3 + C, "successful_requests": 1, "failed_requests": 2, "timeout_requests": 0,
               "queue_rejected": 0, "circuit_open": True, "consecutive_failures": 2, "queue_size": 0,
               "available_slots": 50, "active_requests": 0}
    assert {k: leg.get(k) for k in exp_leg} == exp_leg, "legacy metrics B: expected %r, got %r" % (exp_leg, leg)
    assert abs(leg["success_rate"] - 100.0 / 3) < 0.01, leg["success_rate"]
    assert m["config"]["target"] == "127.0.0.1:%d" % up.port
    exp = dict(DEFAULTS)
    exp.update(listen_host="127.0.0.1", listen_port=b.port, target_host="127.0.0.1", target_port=up.port,
               workers=2, max_retries=1, retry_backoff_factor=0.01, retry_backoff_max=0.02,
               circuit_breaker_threshold=2, circuit_breaker_timeout=30)
    check_config(m["config"], exp)


# --------------------------------------------------------------------------
# 2. percentiles


def test_latency_percentiles_match_a_known_delay(start_upstream, start_sluice):
    """20 requests of 100 ms, 4 at a time: p50/p95/p99 and avg near 100 ms."""
    N, CONC, DELAY = 20, 4, 100
    up = start_upstream(workers=2)
    sl = start_sluice(up.port, workers=2, max_concurrent_requests=8)
    reset_upstream(up)
    barrier = threading.Barrier(CONC)
    results, errors = [], []

    def client(k):
        try:
            with HttpConn(sl.port, timeout=10) as c:
                barrier.wait(5)
                for i in range(N // CONC):
                    r = c.request("GET", "/lat-%d-%d?delay_ms=%d" % (k, i, DELAY))
                    results.append(r.status)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(repr(e))

    threads = [threading.Thread(target=client, args=(k,)) for k in range(CONC)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors, errors
    assert results == [200] * N, results

    m = metrics(sl.url)
    lat = m["latency_ms"]
    assert m["requests"]["total"] == N and m["requests"]["success"] == N, m["requests"]
    assert lat.get("count", N) == N, lat
    for k in ("p50", "p95", "p99", "avg"):
        assert 95 <= lat[k] <= 200, "latency_ms.%s = %r, the upstream delay is %d ms: %r" % (k, lat[k], DELAY, lat)
    assert lat["p50"] <= lat["p95"] <= lat["p99"] <= lat["max"], lat
    assert lat["max"] < 500, lat
    # the last minute holds every one of them, with the same figures
    recent = m["recent"]
    assert recent["window_seconds"] == 60, recent
    assert recent["latency_ms"] == lat, (recent, lat)
    assert lat["avg"] <= lat["max"], lat
    qw = m["queue_wait_ms"]
    assert qw["max"] < 20, "limit 8 > 4 clients: nothing should have waited: %r" % qw
    assert qw["p50"] <= qw["p95"] <= qw["p99"] <= qw["max"], qw
    st = upstream_stats(up)
    assert st["peak_inflight"] <= m["concurrency"]["peak_active"] <= CONC, (st, m["concurrency"])
    assert 0.3 <= m["throughput_rps"] <= 25, m["throughput_rps"]
    leg = m["metrics"]
    assert 0.095 <= leg["avg_response_time"] <= 0.130, leg
    assert 0.095 <= leg["p95_response_time"] <= 0.130, leg


# --------------------------------------------------------------------------
# 3. Prometheus


GOOD_EXPOSITION = """\
# HELP a_total A counter with a \\\\ backslash and a \\n newline.
# TYPE a_total counter
a_total{path="/x\\"y\\\\z\\n",code="200"} 3
a_total{path="/",code="200"} 1.5e3 1700000000000
# a plain comment
# TYPE h_seconds histogram
h_seconds_bucket{le="0.1"} 1
h_seconds_bucket{le="1"} 2
h_seconds_bucket{le="+Inf"} 2
h_seconds_sum 0.75
h_seconds_count 2
# TYPE g gauge
g NaN
g2 -Inf
"""

BAD_EXPOSITIONS = {
    "counter name": "# TYPE a counter\na 1\n",
    "unknown type": "# TYPE a thing\na 1\n",
    "type after samples": "a_total 1\n# TYPE a_total counter\n",
    "second type": "# TYPE a gauge\n# TYPE a gauge\na 1\n",
    "bad metric name": "1a 1\n",
    "bad label name": 'a{1x="y"} 1\n',
    "unquoted label": "a{x=y} 1\n",
    "bad escape": 'a{x="\\t"} 1\n',
    "unterminated": 'a{x="y} 1\n',
    "reserved label": 'a{__x="y"} 1\n',
    "bad value": "a one\n",
    "no value": "a\n",
    "bad timestamp": "a 1 1.5\n",
    "duplicate series": 'a{x="1"} 1\na{x="1"} 2\n',
    "duplicate label": 'a{x="1",x="2"} 1\n',
    "not contiguous": "a 1\nb 1\na{x=\"1\"} 1\n",
    "no final newline": "a 1",
    "negative counter": "# TYPE c_total counter\nc_total -1\n",
    "le not increasing": ('# TYPE h histogram\nh_bucket{le="1"} 1\nh_bucket{le="0.5"} 1\n'
                          'h_bucket{le="+Inf"} 1\nh_sum 1\nh_count 1\n'),
    "no +Inf": '# TYPE h histogram\nh_bucket{le="1"} 1\nh_sum 1\nh_count 1\n',
    "decreasing counts": '# TYPE h histogram\nh_bucket{le="1"} 2\nh_bucket{le="+Inf"} 1\nh_sum 1\nh_count 1\n',
    "inf != count": '# TYPE h histogram\nh_bucket{le="1"} 1\nh_bucket{le="+Inf"} 2\nh_sum 1\nh_count 3\n',
    "no sum": '# TYPE h histogram\nh_bucket{le="+Inf"} 1\nh_count 1\n',
    "bare histogram sample": '# TYPE h histogram\nh 1\n',
    "crlf": "a 1\r\n",
    "help bad escape": "# HELP a bad \\x escape\na 1\n",
}


def test_prometheus_validator_itself():
    """The validator accepts a valid exposition and catches each kind of fault."""
    errors, samples = validate_prometheus(GOOD_EXPOSITION)
    assert errors == [], errors
    assert samples[("a_total", frozenset({("path", '/x"y\\z\n'), ("code", "200")}))] == 3
    assert samples[("a_total", frozenset({("path", "/"), ("code", "200")}))] == 1500
    for what, text in BAD_EXPOSITIONS.items():
        errors, _ = validate_prometheus(text)
        assert errors, "the validator missed: %s (%r)" % (what, text)


def test_prometheus_exposition_is_valid_and_agrees_with_json(start_upstream, start_sluice, tmp_path):
    up, a, b, n = run_mix(start_upstream, start_sluice, tmp_path)
    for sl in (a, b):
        text = prometheus_text(sl.url)
        errors, samples = validate_prometheus(text)
        assert not errors, "invalid exposition:\n%s\n---\n%s" % ("\n".join(errors), text)
        m = metrics(sl.url)
        req = m["requests"]
        for outcome in ("success", "failed", "rejected"):
            assert prom_value(samples, "sluice_requests_total", outcome=outcome) == req[outcome], (outcome, req)
        for reason, v in req["rejected_by"].items():
            assert prom_value(samples, "sluice_rejections_total", reason=reason) == v, (reason, req)
        assert prom_value(samples, "sluice_timeouts_total") == req["timeouts"]
        assert prom_value(samples, "sluice_retries_total") == req["retries"]
        lat = m["latency_ms"]
        count = prom_value(samples, "sluice_request_duration_seconds_count")
        assert count == lat.get("count", req["total"] - req["rejected"]), (count, lat)
        s = prom_value(samples, "sluice_request_duration_seconds_sum")
        assert abs(s - lat["avg"] * count / 1000.0) < 0.01 + 0.01 * s, (s, lat)
        assert prom_value(samples, "sluice_queue_wait_seconds_count") == m["queue_wait_ms"].get(
            "count", prom_value(samples, "sluice_queue_wait_seconds_count"))
        assert prom_value(samples, "sluice_active_requests") == m["concurrency"]["active"]
        assert prom_value(samples, "sluice_max_concurrent_requests") == m["concurrency"]["max"]
        assert prom_value(samples, "sluice_queued_requests") == m["concurrency"]["queued"]
        state = m["circuit_breaker"]["state"]
        for st in ("closed", "open", "half_open"):
            assert prom_value(samples, "sluice_circuit_breaker_state", state=st) == (1 if st == state else 0), st
        assert prom_value(samples, "sluice_circuit_breaker_opened_total") == m["circuit_breaker"]["opened_total"]
        families = {name for (name, _) in samples}
        for fam in ("sluice_request_duration_seconds_bucket", "sluice_queue_wait_seconds_bucket"):
            assert fam in families, fam
        assert "# TYPE sluice_request_duration_seconds histogram" in text
        assert "# TYPE sluice_queue_wait_seconds histogram" in text
        # sluice A: the holder (0.7 s), the request queued behind it (~0.7 s)
        # and the 504 (1 s) are the only ones above 0.5 s
        if sl is a:
            le05 = prom_value(samples, "sluice_request_duration_seconds_bucket", le="0.5")
            assert le05 == count - 3, (le05, count)
            le25 = prom_value(samples, "sluice_request_duration_seconds_bucket", le="2.5")
            assert le25 == count, (le25, count)
            qw1 = prom_value(samples, "sluice_queue_wait_seconds_bucket", le="0.25")
            qwn = prom_value(samples, "sluice_queue_wait_seconds_count")
            assert qw1 == qwn - 1, "one request waited ~0.7 s in the queue: %r of %r" % (qw1, qwn)
        promtool = shutil.which("promtool")
        if promtool:
            p = subprocess.run([promtool, "check", "metrics"], input=text.encode(), capture_output=True, timeout=30)
            assert p.returncode == 0, "promtool check metrics:\n%s%s" % (p.stdout.decode(), p.stderr.decode())

    # the active gauge while a request holds the slot of A
    hold = Pending(a.port, "/hold2?delay_ms=800").send()
    try:
        assert wait_until(lambda: health(a.url)["active"] == 1, 5)
        _, samples = validate_prometheus(prometheus_text(a.url))
        assert prom_value(samples, "sluice_active_requests") == 1
        assert metrics(a.url)["concurrency"]["active"] == 1
        assert hold.wait().status == 200
    finally:
        hold.close()
    if not shutil.which("promtool"):
        pytest.skip("promtool not installed (Debian package prometheus): its check was skipped")


# --------------------------------------------------------------------------
# 4. --admin-port


ENDPOINTS = ["/proxy-health", "/proxy-metrics", "/proxy-metrics/prometheus", "/proxy-dashboard"]


def test_admin_port_serves_endpoints_and_main_port_forwards_everything(start_upstream, start_sluice):
    up = start_upstream()
    admin = free_port()
    sl = start_sluice(up.port, admin_port=admin)
    wait_listening(admin, sl.proc)
    reset_upstream(up)
    base = "http://127.0.0.1:%d" % admin
    for path in ENDPOINTS:
        status, headers, body = http_get(base + path)
        assert status == 200, (path, status, body[:200])
    assert json.loads(http_get(base + "/proxy-health")[2])["status"] == "healthy"
    assert upstream_targets(up) == [], "the admin port forwarded: %r" % upstream_targets(up)

    # on the main port every path goes to the upstream, answered by it
    sent = []
    for path in ENDPOINTS + ["/other"]:
        target = path + "?status=203&size=7"
        r = get(sl.port, target)
        assert r.status == 203 and len(r.body) == 7, "%s was not forwarded: %r %r" % (path, r, r.body[:200])
        sent.append(target)
    assert upstream_targets(up) == sent, upstream_targets(up)

    # a path the admin port does not serve is not forwarded from there
    status, _, _ = http_get(base + "/other")
    assert 400 <= status < 500, status
    assert upstream_targets(up) == sent

    m = metrics(base)
    assert m["requests"]["total"] == len(sent), m["requests"]
    assert m["requests"]["success"] == len(sent), m["requests"]
    assert m["config"]["admin_port"] == admin, m["config"].get("admin_port")


# --------------------------------------------------------------------------
# 5. --access-log


LOG_LINE = re.compile(
    r'^(?P<time>\S+) (?P<client>\S+) "(?P<method>[A-Z]+) (?P<target>\S+) (?P<version>HTTP/1\.[01])" '
    r"(?P<status>\d{3}) (?P<bytes>\d+)(?P<kv>(?: [a-z_]+=\S+)*)$")


def parse_log_line(line):
    m = LOG_LINE.match(line)
    assert m, "access log line not in the format of src/accesslog.h: %r" % line
    d = m.groupdict()
    kv = dict(item.split("=", 1) for item in d.pop("kv").split())
    for k in ("total_ms", "queue_ms", "upstream_ms", "attempts", "outcome", "error"):
        assert k in kv, "access log line without %s: %r" % (k, line)
    d.update(kv)
    parse_iso8601(d["time"])
    for k in ("total_ms", "queue_ms", "upstream_ms"):
        d[k] = float(d[k])
        assert d[k] >= 0, line
    d["attempts"] = int(d["attempts"])
    d["status"] = int(d["status"])
    d["bytes"] = int(d["bytes"])
    d["line"] = line
    return d


def read_log(path):
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as f:
        text = f.read()
    return [parse_log_line(line) for line in text.split("\n") if line]


def by_target(entries):
    out = {}
    for e in entries:
        assert e["target"] not in out, "two lines for %s" % e["target"]
        out[e["target"]] = e
    return out


def check_rejected_line(e, reason, body_len):
    assert e["status"] == 503, e["line"]
    assert e["outcome"].startswith("rejected") or e["outcome"] == reason, e["line"]
    assert reason in e["line"], "rejected request logged without its reason %s: %r" % (reason, e["line"])
    assert e["attempts"] == 0, e["line"]
    assert e["upstream_ms"] == 0, e["line"]


def test_access_log_file(start_upstream, start_sluice, tmp_path):
    up = start_upstream(workers=2)
    path = str(tmp_path / "access.log")
    sl = start_sluice(up.port, access_log=path, max_concurrent_requests=1, max_queue_size=1, max_retries=0)
    t0 = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(seconds=1)

    r_ok = get(sl.port, "/ok?size=123")
    assert r_ok.status == 200 and len(r_ok.body) == 123
    r_err = get(sl.port, "/err?status=500&size=10")
    assert r_err.status == 500
    r_post = get(sl.port, "/post?delay_ms=200", method="POST", body=b"x" * 50)
    assert r_post.status == 200
    r_502 = get(sl.port, "/reset?fail=reset")
    assert r_502.status == 502 and r_502.body, r_502
    hold = Pending(sl.port, "/hold?delay_ms=500").send()
    assert wait_until(lambda: health(sl.url)["active"] == 1, 5)
    queued = Pending(sl.port, "/queued").send()
    assert wait_until(lambda: health(sl.url)["queued"] == 1, 5)
    r_rej = get(sl.port, "/reject")
    assert_rejection(r_rej, "queue_full")
    assert hold.wait().status == 200 and queued.wait().status == 200
    hold.close()
    queued.close()
    with HttpConn(sl.port) as c:
        r10 = c.request("GET", "/v10", version="HTTP/1.0")
        assert r10.status == 200
    done = time.monotonic()

    want = {"/ok?size=123", "/err?status=500&size=10", "/post?delay_ms=200", "/reset?fail=reset",
            "/hold?delay_ms=500", "/queued", "/reject", "/v10"}
    assert wait_until(lambda: want <= set(by_target(read_log(path))), 1.5), (
        "lines missing %.1fs after the requests: %r" % (time.monotonic() - done, read_log(path)))
    got = by_target(read_log(path))
    assert set(got) == want, "unexpected lines: %r" % sorted(set(got) - want)
    now = datetime.datetime.now(datetime.timezone.utc)
    for e in got.values():
        assert e["client"] == "127.0.0.1", e["line"]
        assert t0 <= parse_iso8601(e["time"]) <= now, e["line"]
        assert e["upstream_ms"] <= e["total_ms"] + 0.2, e["line"]
        assert e["queue_ms"] <= e["total_ms"] + 0.2, e["line"]

    e = got["/ok?size=123"]
    assert (e["method"], e["version"], e["status"], e["bytes"], e["attempts"], e["outcome"], e["error"]) == (
        "GET", "HTTP/1.1", 200, 123, 1, "success", "-"), e["line"]
    e = got["/err?status=500&size=10"]
    assert (e["status"], e["bytes"], e["attempts"], e["outcome"], e["error"]) == (500, 10, 1, "failed", "-"), e["line"]
    e = got["/post?delay_ms=200"]
    assert (e["method"], e["status"], e["outcome"]) == ("POST", 200, "success"), e["line"]
    assert 195 <= e["upstream_ms"] <= 1000 and 195 <= e["total_ms"] <= 1000, e["line"]
    e = got["/reset?fail=reset"]
    # a reset on a pooled connection may be taken for a stale one and tried
    # again on a new connection (SPEC §5), so 1 or 2 attempts
    assert (e["status"], e["outcome"]) == (502, "failed") and 1 <= e["attempts"] <= 2, e["line"]
    assert e["error"] == "upstream_reset", e["line"]
    e = got["/hold?delay_ms=500"]
    assert e["total_ms"] >= 495 and e["queue_ms"] < 50, e["line"]
    e = got["/queued"]
    assert 300 <= e["queue_ms"] <= 1500, "waited for the 500 ms holder: %r" % e["line"]
    assert e["total_ms"] >= e["queue_ms"], e["line"]
    e = got["/v10"]
    assert e["version"] == "HTTP/1.0", e["line"]
    check_rejected_line(got["/reject"], "queue_full", len(r_rej.body))
    assert got["/reject"]["error"] == "queue_full"

    # all lines are there after SIGTERM, even the very last ones
    for i in range(5):
        assert get(sl.port, "/last-%d" % i).status == 200
    sl.stop()
    got = by_target(read_log(path))
    assert set(got) == want | {"/last-%d" % i for i in range(5)}, sorted(got)

    # bytes is the response body size sent to the client (src/accesslog.h),
    # also for the bodies sluice writes itself (its 502 and 503)
    wrong = [(t, len(r.body), got[t]["line"]) for t, r in (("/reset?fail=reset", r_502), ("/reject", r_rej))
             if got[t]["bytes"] != len(r.body)]
    assert not wrong, "logged bytes differ from the body sent (target, sent, line): %r" % wrong


def test_access_log_to_stdout(start_upstream, tmp_path):
    up = start_upstream()
    port = free_port()
    errpath = str(tmp_path / "sluice-stdout-test.stderr")
    argv = [os.path.join(BUILD, "sluice"), "--listen-host", "127.0.0.1", "--listen-port", str(port),
            "--target-host", "127.0.0.1", "--target-port", str(up.port), "--workers", "2", "--access-log", "-",
            "--max-retries", "0"]
    with open(errpath, "wb") as errf:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=errf)
    try:
        wait_listening(port, proc)
        assert get(port, "/one?size=5").status == 200
        assert get(port, "/two?status=404").status == 404
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
        code = proc.returncode
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    with open(errpath, "rb") as f:
        err = f.read()
    for mark in SANITIZER_MARKS:
        assert mark not in err, err.decode(errors="replace")[-4000:]
    assert code == 0, (code, err.decode(errors="replace")[-2000:])
    lines = [ln for ln in out.decode().split("\n") if ln]
    entries = by_target([parse_log_line(ln) for ln in lines])   # nothing but access-log lines on stdout
    assert set(entries) == {"/one?size=5", "/two?status=404"}, lines
    assert (entries["/one?size=5"]["status"], entries["/one?size=5"]["bytes"]) == (200, 5)
    assert (entries["/two?status=404"]["status"], entries["/two?status=404"]["outcome"]) == (404, "success")


def test_access_log_json_lines_and_escapes(start_upstream, start_sluice, tmp_path):
    """--access-log-format json: one object per line, the same fields as the
    text format; a target with '"', '\\' or non-ASCII bytes cannot break the
    line in either format."""
    up = start_upstream()
    text_path, json_path = str(tmp_path / "text.log"), str(tmp_path / "json.log")
    # one worker each: lines of different workers are not in request order
    slt = start_sluice(up.port, access_log=text_path, max_retries=0, workers=1)
    slj = start_sluice(up.port, access_log=json_path, access_log_format="json", max_retries=0, workers=1)
    targets = ['/q"x\\y?size=2', "/caf\xc3\xa9", "/gone?fail=reset"]
    for sl in (slt, slj):
        for t in targets:
            with HttpConn(sl.port) as c:
                c.send(b"GET " + t.encode("latin-1") + b" HTTP/1.1\r\nHost: x\r\n\r\n")
                c.read_response()
        sl.stop()
    with open(json_path, encoding="ascii") as f:  # pure ASCII: every odd byte escaped
        objs = [json.loads(line) for line in f.read().splitlines()]
    assert [o["target"] for o in objs] == ['/q"x\\y?size=2', "/caf\u00c3\u00a9", "/gone?fail=reset"], objs
    text = [parse_log_line(line) for line in open(text_path, encoding="ascii").read().splitlines()]
    assert [e["target"] for e in text] == ["/q\\x22x\\x5Cy?size=2", "/caf\\xC3\\xA9", "/gone?fail=reset"], text
    for o, e in zip(objs, text):
        assert set(o) == {"time", "client", "method", "target", "protocol", "status", "bytes", "total_ms",
                          "queue_ms", "upstream_ms", "attempts", "outcome", "error"}, o
        assert (o["status"], o["bytes"], o["outcome"], o["attempts"], o["protocol"]) == (
            e["status"], e["bytes"], e["outcome"], e["attempts"], e["version"]), (o, e)
        assert (o["error"] or "-") == e["error"], (o, e)
    assert objs[0]["error"] is None and objs[2]["error"] == "upstream_reset", objs


def test_upstream_failures_are_warned_once_a_second_with_a_count(start_sluice, tmp_path):
    """At the default level a 502 leaves a line on stderr naming the kind,
    the target's address and the request; many alike in one second make one
    line, and the next line counts the ones held back."""
    closed = free_port()  # nothing listens there: every connect is refused
    sl = start_sluice(closed, max_retries=0, circuit_breaker_threshold=1000)
    for i in range(20):
        assert get(sl.port, "/r/%d" % i).status == 502
    time.sleep(1.1)
    assert get(sl.port, "/after").status == 502
    prom = http_get(sl.url + "/proxy-metrics/prometheus")[2].decode()
    assert 'sluice_upstream_failures_total{kind="connect_refused"} 21\n' in prom, prom
    assert 'sluice_responses_total{code="5xx"} 21\n' in prom, prom
    sl.stop()
    lines = [ln for ln in sl.stderr().decode().splitlines() if "upstream connect_refused" in ln]
    assert len(lines) == 2, lines
    assert " warn: upstream connect_refused (connection refused) at 127.0.0.1:%d: GET /r/0 from 127.0.0.1, " \
           "attempt 1, answered" % closed in lines[0], lines[0]
    assert "GET /after" in lines[1] and "19 more like it since the last such line" in lines[1], lines[1]


def logged_targets(path):
    return [e["target"] for e in read_log(path)]


def test_access_log_reopened_after_rotation(start_upstream, start_sluice, tmp_path):
    """logrotate's way: rename the file, signal, and the next lines go to a
    new file at the configured path; nothing is lost on either side, and a
    failed reopen keeps writing to the old file."""
    up = start_upstream()
    path = str(tmp_path / "access.log")
    sl = start_sluice(up.port, access_log=path)

    def requests(prefix, n=3):
        names = ["/%s-%d" % (prefix, i) for i in range(n)]
        for t in names:
            assert get(sl.port, t).status == 200
        return names

    before = requests("before")
    assert wait_until(lambda: set(before) <= set(logged_targets(path)), 3), read_log(path)
    os.rename(path, path + ".1")
    # renamed, not yet signalled: these lines may still sit in a worker's
    # buffer at the signal, so they end in either file, once
    between = requests("between")
    sl.signal(signal.SIGUSR1)
    assert wait_until(lambda: os.path.exists(path), 5), "SIGUSR1 did not reopen %s" % path
    after = requests("after")

    # (two workers: the order of lines across them is not the order of requests)
    def split_ok():
        old, new = logged_targets(path + ".1"), logged_targets(path)
        return (sorted(old + new) == sorted(before + between + after) and set(before) <= set(old)
                and set(after) <= set(new))

    assert wait_until(split_ok, 3), (read_log(path + ".1"), read_log(path))
    rotated_1, first_new = logged_targets(path + ".1"), logged_targets(path)

    # SIGHUP reopens too (here without --config: nothing to reload)
    os.rename(path, path + ".2")
    sl.signal(signal.SIGHUP)
    assert wait_until(lambda: os.path.exists(path), 5), "SIGHUP did not reopen %s" % path
    hup = requests("hup")
    assert wait_until(lambda: sorted(logged_targets(path)) == sorted(hup), 3), read_log(path)

    # the path cannot be opened (a directory took its place): sluice says so
    # and keeps writing to the file it has
    os.rename(path, path + ".3")
    os.mkdir(path)
    sl.signal(signal.SIGUSR1)
    assert wait_until(lambda: b"cannot open access log" in sl.stderr(), 5), sl.stderr()[-2000:]
    kept = requests("kept")
    assert wait_until(lambda: sorted(logged_targets(path + ".3")) == sorted(hup + kept), 3), read_log(path + ".3")

    m = metrics(sl.url)
    assert m["access_log"] == {"enabled": True, "dropped_lines": 0}, m["access_log"]
    sl.stop()
    assert logged_targets(path + ".1") == rotated_1
    assert logged_targets(path + ".2") == first_new
    assert sorted(logged_targets(path + ".3")) == sorted(hup + kept)


def test_access_log_stall_drops_and_counts_lines_but_never_slows_requests(start_upstream, start_sluice,
                                                                           tmp_path):
    """The log is a FIFO nobody reads: once the pipe and the 1 MiB buffer are
    full, lines are dropped and counted while every request is still served.
    When the reader comes back, every line that was not counted as dropped
    arrives, whole."""
    up = start_upstream(workers=2)
    path = str(tmp_path / "access.fifo")
    os.mkfifo(path)
    rfd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # a reader exists, but reads nothing yet
    drained = bytearray()
    reader = None
    try:
        sl = start_sluice(up.port, access_log=path, workers=1)
        n = 1500
        target = "/stall?pad=" + "p" * 2000  # ~2.1 KB a line: 1500 lines are 3 MB
        load = subprocess.run([os.path.join(BUILD, "sluice-load"), "--url", sl.url + target, "--concurrent", "8",
                               "--total-requests", str(n), "--json"], capture_output=True, timeout=120)
        r = json.loads(load.stdout)
        assert load.returncode == 0 and r["success"] == n, r
        m = metrics(sl.url)
        dropped = m["access_log"]["dropped_lines"]
        assert m["access_log"]["enabled"] is True
        assert 0 < dropped < n, m["access_log"]
        _, samples = validate_prometheus(prometheus_text(sl.url))
        assert prom_value(samples, "sluice_access_log_dropped_lines_total") == dropped
        assert sl.stderr().count(b"dropping lines") == 1, sl.stderr()[-2000:]  # said once, not per line

        os.set_blocking(rfd, True)

        def drain():
            while True:
                chunk = os.read(rfd, 65536)
                if not chunk:
                    return
                drained.extend(chunk)

        reader = threading.Thread(target=drain, daemon=True)
        reader.start()
        sl.stop()  # flushes what is left, closes the write end: the reader sees EOF
        reader.join(30)
        assert not reader.is_alive(), "sluice did not close the log"
    finally:
        os.close(rfd)
    lines = [ln for ln in drained.decode().split("\n") if ln]
    entries = [parse_log_line(ln) for ln in lines]
    assert all(e["target"] == target and e["status"] == 200 for e in entries), lines[:3]
    assert len(entries) + dropped == n, (len(entries), dropped, n)


# --------------------------------------------------------------------------
# 6. SIGHUP


class LoadClient(threading.Thread):
    """Sends requests in a loop on one keep-alive connection until stopped;
    records every status and any error (a dropped connection is an error)."""

    def __init__(self, port, k, delay_ms):
        super().__init__(daemon=True)
        self.port, self.k, self.delay_ms = port, k, delay_ms
        self.statuses, self.errors = [], []
        self.stop = threading.Event()

    def run(self):
        try:
            with HttpConn(self.port, timeout=30) as c:
                i = 0
                while not self.stop.is_set():
                    r = c.request("GET", "/load-%d-%d?delay_ms=%d" % (self.k, i, self.delay_ms))
                    self.statuses.append(r.status)
                    i += 1
        except Exception as e:  # noqa: BLE001 - reported by the test
            self.errors.append(repr(e))


def test_sighup_changes_limit_under_load(start_upstream, start_sluice, tmp_path):
    """Limit 2 -> 8 (queued requests admitted at once) -> 1, then a broken file
    (kept settings); 14 keep-alive clients in a loop all the time: every
    request gets 200, no connection drops, the process never exits."""
    up = start_upstream(workers=2)
    cfg = tmp_path / "reload.json"
    base = {"max_concurrent_requests": 2, "max_queue_size": 50, "queue_timeout": 30, "max_retries": 0}
    write_json(cfg, base)
    sl = start_sluice(up.port, config=str(cfg))
    reset_upstream(up)

    def inflight():
        return upstream_stats(up)["inflight"]

    # two long holders take both slots; the load clients queue behind them
    holders = [Pending(sl.port, "/holder-%d?delay_ms=2500" % i, timeout=30).send() for i in range(2)]
    assert wait_until(lambda: inflight() == 2, 5), upstream_stats(up)
    clients = [LoadClient(sl.port, k, 200) for k in range(12)]
    for c in clients:
        c.start()
    try:
        assert wait_until(lambda: health(sl.url)["queued"] == 12, 5), health(sl.url)
        assert inflight() == 2 and upstream_stats(up)["peak_inflight"] == 2, upstream_stats(up)

        # raise to 8: six queued requests go at once, while the holders still hold
        write_json(cfg, dict(base, max_concurrent_requests=8))
        t0 = time.monotonic()
        sl.signal(signal.SIGHUP)
        reached = wait_until(lambda: inflight() >= 8, 1.5, step=0.01)
        took = time.monotonic() - t0
        assert reached, "after SIGHUP to limit 8 the upstream has %r" % upstream_stats(up)
        assert took < 1.0, "queued requests admitted %.2fs after the raise, not at once" % took
        assert all(h.resp is None for h in holders), "the holders ended early"
        time.sleep(0.8)
        st = upstream_stats(up)
        assert st["peak_inflight"] == 8, "limit 8: %r" % st
        m = metrics(sl.url)
        assert m["concurrency"]["max"] == 8 and m["config"]["max_concurrent_requests"] == 8, m["concurrency"]
        for h in holders:
            assert h.wait(10).status == 200, h.describe()
            h.close()

        # lower to 1: in-flight requests finish, then one at a time
        write_json(cfg, dict(base, max_concurrent_requests=1))
        sl.signal(signal.SIGHUP)
        assert wait_until(lambda: metrics(sl.url)["concurrency"]["max"] == 1, 2), metrics(sl.url)["concurrency"]
        assert wait_until(lambda: inflight() <= 1, 3), upstream_stats(up)
        reset_upstream(up)
        time.sleep(1.0)
        st = upstream_stats(up)
        assert st["peak_inflight"] == 1, "limit lowered to 1: %r" % st
        assert st["requests"] >= 3, "the load stalled at limit 1: %r" % st

        # a broken file: an error is logged, limit 1 stays
        err_before = len(sl.stderr())
        write_json(cfg, '{"max_concurrent_requests": 4,,}')
        sl.signal(signal.SIGHUP)
        assert wait_until(lambda: len(sl.stderr()) > err_before, 2), "nothing logged for a broken config file"
        time.sleep(0.3)
        new_err = sl.stderr()[err_before:].decode(errors="replace")
        assert re.search(r"error", new_err, re.I), "no error logged for the broken file: %r" % new_err
        assert cfg.name in new_err or re.search(r"json|line|column|sighup|reload", new_err, re.I), new_err
        m = metrics(sl.url)
        assert m["concurrency"]["max"] == 1 and m["config"]["max_concurrent_requests"] == 1, m["concurrency"]
        assert m["config"]["max_queue_size"] == 50
        reset_upstream(up)
        time.sleep(0.8)
        st = upstream_stats(up)
        assert st["peak_inflight"] == 1 and st["requests"] >= 2, "after the broken file: %r" % st
        assert sl.proc.poll() is None, "sluice exited"
    finally:
        for c in clients:
            c.stop.set()
        for c in clients:
            c.join(30)
    errors = [(c.k, e) for c in clients for e in c.errors]
    assert not errors, "load clients failed (dropped connections?): %r" % errors
    bad = [(c.k, s) for c in clients for s in c.statuses if s != 200]
    assert not bad, "non-200 answers during the reloads: %r" % bad
    assert sum(len(c.statuses) for c in clients) >= 30
    m = metrics(sl.url)
    assert m["requests"]["failed"] == 0 and m["requests"]["rejected"] == 0, m["requests"]
    assert sl.proc.poll() is None


def test_sighup_applies_timeouts_breaker_and_keeps_restart_only_settings(start_upstream, procs, tmp_path):
    """A reload applies read_timeout, max_retries and the breaker threshold at
    once; listen/target/workers need a restart and keep their running values;
    counters are not reset by a reload. Everything comes from the file here
    (flags would override the file on reload too)."""
    up = start_upstream(workers=2)
    cfg = tmp_path / "live.json"
    port = free_port()
    base = {"listen_host": "127.0.0.1", "listen_port": port, "target_host": "127.0.0.1", "target_port": up.port,
            "workers": 2}
    write_json(cfg, dict(base, read_timeout=5, max_retries=0, circuit_breaker_threshold=50))
    sl = Proc([os.path.join(BUILD, "sluice"), "--config", str(cfg)], port, "sluice", tmp_path)
    procs.append(sl)
    r = get(port, "/slow-before?delay_ms=800")
    assert r.status == 200, "read_timeout 5: %r" % r

    other = free_port()
    write_json(cfg, dict(base, read_timeout=0.3, max_retries=0, circuit_breaker_threshold=1,
                         target_host="127.0.0.2", target_port=other, listen_port=other, workers=5))
    sl.signal(signal.SIGHUP)
    m = wait_sluice(sl, lambda x: x["config"]["read_timeout"] == 0.3)
    cfg_now = m["config"]
    assert cfg_now["read_timeout"] == 0.3 and cfg_now["circuit_breaker_threshold"] == 1, cfg_now
    assert (cfg_now["listen_port"], cfg_now["target_port"], cfg_now["target_host"], cfg_now["workers"]) == (
        port, up.port, "127.0.0.1", 2), cfg_now
    assert cfg_now["target"] == "127.0.0.1:%d" % up.port, cfg_now["target"]
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", other), timeout=1).close()

    t0 = time.monotonic()
    r = get(port, "/slow-after?delay_ms=3000")
    took = time.monotonic() - t0
    assert r.status == 504, "read_timeout reloaded to 0.3 s: %r" % r
    assert took < 2.0, took
    r = get(port, "/after-open")
    assert_rejection(r, "circuit_open")
    m = metrics(sl.url)
    req = m["requests"]
    assert (req["total"], req["success"], req["failed"], req["timeouts"], req["rejected"]) == (3, 1, 1, 1, 1), req
    assert m["circuit_breaker"]["state"] == "open" and m["circuit_breaker"]["opened_total"] == 1, m["circuit_breaker"]
    assert sl.proc.poll() is None
