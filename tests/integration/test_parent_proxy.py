"""Parent-proxy mode end to end (SPEC §6 last bullet, issue 7): clients use
sluice as their HTTP proxy, sluice forwards to a real Squid (its target), and
Squid reaches sluice-upstream as the origin:

    client --(proxy)--> sluice --> Squid --> sluice-upstream

Absolute-form requests are forwarded in absolute form; CONNECT opens a tunnel
through Squid. A tunnel holds its admission slot while open, closes after
read_timeout of silence, and a refused CONNECT is relayed and closed.

Squid is started once per module on a free loopback port with a minimal
config; the module is skipped when squid is not installed and cannot be.
"""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

import pytest

from conftest import BUILD, free_port, http_get, upstream_stats, wait_listening
from helpers import HttpConn, build_request, pattern, proc_status, wait_until

MB = 1024 * 1024
SQUID_CANDIDATES = ("/usr/sbin/squid", "/usr/bin/squid")


# --------------------------------------------------------------------------
# Squid


def _find_squid():
    for p in SQUID_CANDIDATES:
        if os.access(p, os.X_OK):
            return p
    return shutil.which("squid")


def _install_squid():
    """Tries `apt-get install -y squid` once (as root only); returns the path or None."""
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        return None
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    try:
        subprocess.run(["apt-get", "install", "-y", "-q", "squid"], env=env, timeout=300,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return _find_squid()


SQUID_CONF = """\
http_port 127.0.0.1:{port}
acl localnet src 127.0.0.0/8
http_access allow localnet
http_access deny all
cache deny all
pid_filename {dir}/squid.pid
access_log none
cache_log {dir}/cache.log
coredump_dir {dir}
pinger_enable off
shutdown_lifetime 1 seconds
"""


class Squid:
    def __init__(self, binary):
        # Squid drops privileges to the proxy user: its directory must be
        # writable by anyone.
        self.dir = tempfile.mkdtemp(prefix="sluice-squid-")
        os.chmod(self.dir, 0o1777)
        self.port = free_port()
        self.conf = os.path.join(self.dir, "squid.conf")
        with open(self.conf, "w") as f:
            f.write(SQUID_CONF.format(port=self.port, dir=self.dir))
        self.out = open(os.path.join(self.dir, "squid.out"), "wb")
        self.proc = subprocess.Popen([binary, "-N", "-f", self.conf], stdout=self.out,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        try:
            wait_listening(self.port, self.proc, timeout=20)
        except RuntimeError as e:
            log = self.log()
            self.stop()
            raise RuntimeError("squid did not start (%s):\n%s" % (e, log[-3000:]))

    def log(self):
        text = ""
        for name in ("squid.out", "cache.log"):
            try:
                with open(os.path.join(self.dir, name), errors="replace") as f:
                    text += f.read()
            except OSError:
                pass
        return text

    def alive(self):
        return self.proc.poll() is None

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.out.close()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="module")
def squid():
    binary = _find_squid() or _install_squid()
    if not binary:
        pytest.skip("squid is not installed and `apt-get install -y squid` failed "
                    "(the parent-proxy tests need a real Squid)")
    s = Squid(binary)
    yield s
    s.stop()


@pytest.fixture
def chain(squid, start_upstream, start_sluice):
    """chain(**sluice_flags) -> (sluice, upstream): sluice targets Squid,
    sluice-upstream is the origin the clients name."""

    def make(**flags):
        assert squid.alive(), "squid died:\n" + squid.log()[-3000:]
        up = start_upstream()
        sl = start_sluice(squid.port, **flags)
        return sl, up

    return make


# --------------------------------------------------------------------------
# helpers


def upstream_log(up):
    status, _, body = http_get(up.url + "/__log")
    assert status == 200
    return json.loads(body)


def log_headers(entry):
    return [(k.lower(), v) for k, v in entry["headers"]]


def health(sl):
    status, _, body = http_get(sl.url + "/proxy-health")
    assert status == 200, body
    return json.loads(body)


def metrics(sl):
    status, _, body = http_get(sl.url + "/proxy-metrics")
    assert status == 200, body
    return json.loads(body)


def open_tunnel(sl, up_port, timeout=10.0):
    """CONNECT 127.0.0.1:up_port through sluice; returns (HttpConn, status,
    headers). On 200 the connection is a raw tunnel to the origin."""
    c = HttpConn(sl.port, timeout=timeout)
    authority = "127.0.0.1:%d" % up_port
    c.send(build_request("CONNECT", authority, [("Host", authority)]))
    _, status, _, headers = c.read_head()
    return c, status, headers


def tunnel_get(c, up_port, target):
    """One HTTP/1.1 request spoken inside an open tunnel."""
    return c.request("GET", target, [("Host", "127.0.0.1:%d" % up_port)])


def curl(*args, timeout=30):
    if not shutil.which("curl"):
        pytest.skip("curl is not installed")
    return subprocess.run(["curl", "-sS", "--max-time", "20", "--noproxy", ""] + list(args),
                          capture_output=True, timeout=timeout)


# --------------------------------------------------------------------------
# (a) absolute-form requests through sluice and Squid


def test_curl_through_sluice_and_squid(chain):
    sl, up = chain()
    p = curl("-x", sl.url, "http://127.0.0.1:%d/?size=10" % up.port, "-D", "-")
    assert p.returncode == 0, p.stderr
    head, _, body = p.stdout.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    assert body == b"abcdefghij"
    assert b"squid" in head.lower(), "no sign of Squid in the response head:\n%s" % head.decode()

    entries = [e for e in upstream_log(up) if e["target"] == "/?size=10"]
    assert len(entries) == 1, entries
    hs = dict(log_headers(entries[0]))
    via = hs.get("via", "")
    # Via lists every hop in order: sluice first, then Squid.
    assert "sluice" in via and "squid" in via.lower(), "Via at the origin: %r" % via
    assert via.index("sluice") < via.lower().index("squid"), via
    assert "x-forwarded-for" in hs, hs
    assert hs.get("host") == "127.0.0.1:%d" % up.port

    m = metrics(sl)
    assert m["requests"]["total"] == 1 and m["requests"]["success"] == 1, m["requests"]


def test_absolute_form_raw_socket_keepalive(chain):
    sl, up = chain()
    authority = "127.0.0.1:%d" % up.port
    with HttpConn(sl.port) as c:
        for i in range(2):  # twice on one client connection
            r = c.request("GET", "http://%s/?echo=1&n=%d" % (authority, i), [("Host", authority)])
            assert r.status == 200, r
            echo = r.json()
            # Squid turns the absolute form into origin form for the origin.
            assert echo["target"] == "/?echo=1&n=%d" % i, echo
            hs = dict((k.lower(), v) for k, v in echo["headers"])
            assert "squid" in hs.get("via", "").lower(), hs
            assert "sluice" in hs.get("via", ""), hs
            assert hs.get("host") == authority
            assert r.header("connection", "").lower() != "close", r
    assert metrics(sl)["requests"]["success"] == 2


# --------------------------------------------------------------------------
# (b) CONNECT tunnels


def test_curl_proxytunnel(chain):
    sl, up = chain()
    p = curl("-p", "-x", sl.url, "http://127.0.0.1:%d/?size=1000" % up.port)
    assert p.returncode == 0, p.stderr
    assert p.stdout == pattern(1000)
    entries = [e for e in upstream_log(up) if e["target"] == "/?size=1000"]
    assert len(entries) == 1, entries
    names = [k for k, _ in log_headers(entries[0])]
    # Bytes in a tunnel are relayed untouched: neither sluice nor Squid added headers.
    assert "via" not in names and "x-forwarded-for" not in names, names


def test_connect_tunnel_keepalive_and_half_close(chain):
    sl, up = chain()
    c, status, headers = open_tunnel(sl, up.port)
    with c:
        assert status == 200, headers
        wait_until(lambda: health(sl)["active"] == 1, 3)
        assert health(sl)["active"] == 1, "an open tunnel holds a slot"

        r1 = tunnel_get(c, up.port, "/?size=5")
        assert r1.status == 200 and r1.body == b"abcde", r1
        r2 = tunnel_get(c, up.port, "/?echo=1")
        assert r2.status == 200, r2
        assert r2.json()["target"] == "/?echo=1"

        log = [e for e in upstream_log(up) if e["target"] in ("/?size=5", "/?echo=1")]
        assert len(log) == 2 and log[0]["conn"] == log[1]["conn"], \
            "both requests should use one origin connection (keep-alive inside the tunnel): %s" % log

        # The client half-closes: the origin sees EOF, closes, and the tunnel ends.
        c.sock.shutdown(socket.SHUT_WR)
        assert c.wait_closed(5), "tunnel still open 5 s after the client's half-close"
        assert bytes(c.buf) == b"", c.buf
    assert wait_until(lambda: health(sl)["active"] == 0, 3), health(sl)
    m = metrics(sl)
    assert m["requests"]["total"] == 1 and m["requests"]["success"] == 1, m["requests"]


def _is_asan_build():
    try:
        with open(os.path.join(BUILD, "sluice"), "rb") as f:
            return b"__asan_init" in f.read()
    except OSError:
        return False


def test_large_transfer_through_tunnel(chain, monkeypatch):
    asan = _is_asan_build()
    if asan:  # freed memory sits in ASan's quarantine and would look like growth
        opts = os.environ.get("ASAN_OPTIONS", "")
        monkeypatch.setenv("ASAN_OPTIONS", (opts + ":" if opts else "") + "quarantine_size_mb=4")
    sl, up = chain()
    hwm0 = proc_status(sl.pid, "VmHWM")
    size = 20 * MB
    ref = pattern(26 * 40000)
    c, status, _ = open_tunnel(sl, up.port, timeout=30)
    with c:
        assert status == 200
        c.send(build_request("GET", "/?size=%d" % size, [("Host", "127.0.0.1:%d" % up.port)]))
        # Do not read for a second: with backpressure sluice stops reading
        # from Squid instead of buffering the response.
        time.sleep(1.0)
        _, st, _, hs = c.read_head()
        assert st == 200
        assert dict(hs)["content-length"] == str(size)
        got = 0
        buf = bytes(c.buf)
        c.buf.clear()
        while got < size:
            if not buf:
                buf = c.sock.recv(4 * MB)
                assert buf, "tunnel closed after %d of %d bytes" % (got, size)
            n = min(len(buf), size - got)
            off = got % 26
            # compare against the periodic pattern, in windows of at most len(ref) - 26
            k = 0
            while k < n:
                m = min(n - k, len(ref) - 26)
                s = (off + k) % 26
                assert buf[k:k + m] == ref[s:s + m], "corrupt byte near offset %d" % (got + k)
                k += m
            got += n
            buf = buf[n:]
        assert got == size
    grew_kb = proc_status(sl.pid, "VmHWM") - hwm0
    limit_kb = (16 if asan else 8) * 1024
    assert grew_kb < limit_kb, "sluice's peak RSS grew by %d kB for a 20 MB tunnel transfer" % grew_kb


# --------------------------------------------------------------------------
# (c) admission: a tunnel holds its slot while open


def test_tunnels_hold_slots_and_limit_holds(chain):
    sl, up = chain(max_concurrent_requests=2, max_queue_size=0)
    t1, s1, _ = open_tunnel(sl, up.port)
    t2, s2, _ = open_tunnel(sl, up.port)
    try:
        assert (s1, s2) == (200, 200)
        assert wait_until(lambda: health(sl)["active"] == 2, 3), health(sl)

        # A third CONNECT and a plain absolute-form GET are rejected at once.
        c3, s3, h3 = open_tunnel(sl, up.port)
        with c3:
            assert s3 == 503, h3
            body = c3.read_exact(int(dict(h3)["content-length"]))
            assert json.loads(body)["error"] == "queue_full", body
            assert "retry-after" in dict(h3)
        with HttpConn(sl.port) as c:
            authority = "127.0.0.1:%d" % up.port
            r = c.request("GET", "http://%s/?size=3" % authority, [("Host", authority)])
            assert r.status == 503 and r.json()["error"] == "queue_full", r

        # The two tunnels still work.
        assert tunnel_get(t1, up.port, "/?size=3").body == b"abc"
        assert tunnel_get(t2, up.port, "/?size=4").body == b"abcd"

        # Closing one frees its slot; a new tunnel is then accepted.
        t1.close()
        assert wait_until(lambda: health(sl)["active"] == 1, 5), \
            "slot not released after the client closed a tunnel: %s" % health(sl)
        t4, s4, h4 = open_tunnel(sl, up.port)
        with t4:
            assert s4 == 200, h4
            assert tunnel_get(t4, up.port, "/?size=2").body == b"ab"
            assert health(sl)["active"] == 2
    finally:
        t1.close()
        t2.close()
    assert wait_until(lambda: health(sl)["active"] == 0, 5), health(sl)
    m = metrics(sl)
    assert m["requests"]["rejected_by"]["queue_full"] == 2, m["requests"]
    assert m["concurrency"]["peak_active"] <= 2, m["concurrency"]


# --------------------------------------------------------------------------
# (d) refused CONNECT; connect failure to the target


def test_refused_connect_relayed_and_closed(chain):
    sl, up = chain()
    c, status, headers = open_tunnel(sl, 1)  # nothing listens on port 1: Squid refuses
    with c:
        hs = dict(headers)
        assert 400 <= status < 600 and status != 200, (status, headers)
        assert "squid" in (hs.get("server", "") + hs.get("x-squid-error", "")).lower(), \
            "expected Squid's own answer relayed: %s %s" % (status, headers)
        assert "content-length" in hs
        body = c.read_exact(int(hs["content-length"]))
        assert body, "Squid's error page is relayed"
        assert c.wait_closed(5), "connection not closed after a refused CONNECT"
        assert bytes(c.buf) == b""
    m = metrics(sl)
    assert m["requests"]["retries"] == 0, "a CONNECT is retried only on connect failure: %s" % m["requests"]
    assert m["concurrency"]["active"] == 0


def test_connect_retried_on_connect_failure(start_sluice):
    # The target itself is unreachable: CONNECT is retried, then 502.
    sl = start_sluice(free_port(), max_retries=2, retry_backoff_factor=0.01, retry_backoff_max=0.02)
    c, status, headers = open_tunnel(sl, 80)
    with c:
        assert status in (502, 504), (status, headers)
    m = metrics(sl)
    assert m["requests"]["retries"] == 2, m["requests"]
    assert m["requests"]["failed"] == 1, m["requests"]


# --------------------------------------------------------------------------
# (e) idle tunnel timeout


def test_idle_tunnel_closed_after_read_timeout(chain):
    sl, up = chain(read_timeout=0.5)
    c, status, _ = open_tunnel(sl, up.port)
    with c:
        assert status == 200
        # Traffic every 0.2 s keeps the tunnel open well past 0.5 s.
        t0 = time.monotonic()
        while True:
            assert tunnel_get(c, up.port, "/?size=1").body == b"a"
            last = time.monotonic()  # the last byte through the tunnel
            if last - t0 >= 1.2:
                break
            time.sleep(0.2)
        # Then silence: closed after about read_timeout.
        assert c.wait_closed(5), "idle tunnel still open after 5 s (read_timeout 0.5)"
        idle = time.monotonic() - last
        assert 0.4 <= idle <= 2.0, "idle tunnel closed %.2f s after its last byte (read_timeout 0.5)" % idle
    assert wait_until(lambda: health(sl)["active"] == 0, 3), health(sl)


# --------------------------------------------------------------------------
# (f) standard clients: HTTP_PROXY / ProxyHandler / http.client tunnels

CLIENT_SCRIPT = r"""
import http.client, sys, urllib.request
up = sys.argv[1]
# urllib reads http_proxy / HTTP_PROXY from the environment
with urllib.request.urlopen("http://127.0.0.1:%s/?size=7" % up, timeout=10) as r:
    sys.stdout.write(r.read().decode() + "\n")
"""


def test_standard_clients(chain):
    sl, up = chain()
    env = {k: v for k, v in os.environ.items() if k.lower() not in ("no_proxy", "http_proxy", "https_proxy")}
    env["HTTP_PROXY"] = env["http_proxy"] = sl.url
    p = subprocess.run([sys.executable, "-c", CLIENT_SCRIPT, str(up.port)], env=env,
                       capture_output=True, timeout=30)
    assert p.returncode == 0, p.stderr
    assert p.stdout == b"abcdefg\n"

    # curl honours http_proxy too
    p = subprocess.run(["curl", "-sS", "--max-time", "20", "http://127.0.0.1:%d/?size=6" % up.port],
                       env=env, capture_output=True, timeout=30) if shutil.which("curl") else None
    if p is not None:
        assert p.returncode == 0 and p.stdout == b"abcdef", (p.returncode, p.stderr)

    # urllib with an explicit ProxyHandler
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({"http": sl.url}))
    with opener.open("http://127.0.0.1:%d/?size=4" % up.port, timeout=10) as r:
        assert r.read() == b"abcd"

    # http.client's CONNECT tunnel (what HTTPS clients do through HTTPS_PROXY)
    import http.client
    conn = http.client.HTTPConnection("127.0.0.1", sl.port, timeout=10)
    conn.set_tunnel("127.0.0.1", up.port)
    for size in (3, 5):
        conn.request("GET", "/?size=%d" % size)
        resp = conn.getresponse()
        assert resp.status == 200 and resp.read() == pattern(size)
    conn.close()

    targets = [e["target"] for e in upstream_log(up)]
    assert targets == ["/?size=7", "/?size=6", "/?size=4", "/?size=3", "/?size=5"], targets
    st = upstream_stats(up)
    assert st["requests"] == 5
