"""Upstream connection pool: warm connections (--pool-connections), the
per-process idle limit (--pool-maxsize), name resolution of the target."""
import json
import time

from conftest import http_get, upstream_stats


def wait_for(pred, timeout=5.0, step=0.05):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if pred():
            return True
        time.sleep(step)
    return pred()


def reset(up):
    assert http_get(up.url + "/__reset", method="POST", data=b"")[0] == 200


def test_pool_connections_opened_before_first_request(upstream, start_sluice):
    reset(upstream)
    sl = start_sluice(upstream.port, pool_connections=4, workers=2)
    assert wait_for(lambda: upstream_stats(upstream)["open_connections"] == 4), upstream_stats(upstream)
    opened = upstream_stats(upstream)["connections"]
    for _ in range(20):
        assert http_get(sl.url + "/?size=10")[0] == 200
    stats = upstream_stats(upstream)
    # every request went over an already open connection
    assert stats["connections"] == opened, stats
    assert stats["requests"] == 20


def test_pool_connections_reopened_after_idle_close(upstream, start_sluice):
    reset(upstream)
    start_sluice(upstream.port, pool_connections=2, pool_idle_timeout=0.3, workers=1)
    assert wait_for(lambda: upstream_stats(upstream)["open_connections"] == 2)
    first = upstream_stats(upstream)["connections"]
    # idle ones are closed after 0.3 s and opened again within about a second
    assert wait_for(lambda: upstream_stats(upstream)["connections"] >= first + 2, timeout=5)
    assert wait_for(lambda: upstream_stats(upstream)["open_connections"] == 2)


def test_pool_maxsize_bounds_idle_connections(upstream, start_sluice):
    import threading
    reset(upstream)
    sl = start_sluice(upstream.port, pool_maxsize=3, workers=1)
    # 10 concurrent slow requests need 10 upstream connections at once ...
    threads = [threading.Thread(target=http_get, args=(sl.url + "/?delay_ms=300",)) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # ... but only pool_maxsize of them stay open afterwards
    assert wait_for(lambda: upstream_stats(upstream)["open_connections"] == 3), upstream_stats(upstream)


def test_target_given_by_name(upstream, start_sluice):
    sl = start_sluice(upstream.port, target_host="localhost")
    status, _, body = http_get(sl.url + "/?size=5")
    assert status == 200 and body == b"abcde"
    health = json.loads(http_get(sl.url + "/proxy-health")[2])
    assert health["status"] == "healthy"
