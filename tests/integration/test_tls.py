"""TLS both ways (issue 16): HTTPS upstreams (--target-tls, verification,
SNI, resumption across pooled connections, handshake timeouts and failures,
truncation) and an HTTPS listener (--tls-cert/--tls-key, SIGHUP reload,
X-Forwarded-Proto, handshake failures that disturb nobody).

Certificates are throwaway ones made by tlsfix with the openssl command line;
the HTTPS upstream is tlsfix's threaded Python server."""
import hashlib
import http.client
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time

import pytest
import requests

from conftest import BUILD, http_get
from helpers import HttpConn, echo_headers, pattern, proc_status, wait_until
from test_resources import ASAN, check_rss, small_quarantine  # noqa: F401 (a fixture)
from tlsfix import HttpsServer, make_ca, make_leaf

MB = 1024 * 1024


@pytest.fixture
def pki(tmp_path):
    """A CA, a leaf for localhost/127.0.0.1 signed by it, and a second CA
    that signed nothing sluice is told about."""
    d = str(tmp_path)
    ca_key, ca_crt = make_ca(d)
    key, crt = make_leaf(d, ca_key, ca_crt)
    other = tmp_path / "other"
    other.mkdir()
    _, other_ca = make_ca(str(other), name="another CA")
    return {"ca": ca_crt, "ca_key": ca_key, "key": key, "crt": crt, "other_ca": other_ca, "dir": d}


@pytest.fixture
def https_up(pki):
    servers = []

    def start():
        s = HttpsServer(pki["key"], pki["crt"])
        servers.append(s)
        return s

    yield start
    for s in servers:
        s.close()


def metrics(url):
    status, _, body = http_get(url + "/proxy-metrics")
    assert status == 200
    return json.loads(body)


def get(port, path, timeout=10, method="GET", body=None, headers=None):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        return r.status, r.headers, r.read()
    finally:
        c.close()


# ---- to the upstream ------------------------------------------------------------


def test_upstream_valid_certificate(pki, https_up, start_sluice):
    up = https_up()
    sl = start_sluice(up.port, target_host="localhost", target_tls=True, target_tls_ca=pki["ca"])
    status, headers, body = get(sl.port, "/hello")
    assert status == 200 and body == b"ok /hello"
    # an IP target is checked as an IP (the leaf carries IP:127.0.0.1)
    sl2 = start_sluice(up.port, target_host="https://127.0.0.1:%d" % up.port,
                       target_tls_ca=pki["ca"])
    status, _, body = get(sl2.port, "/by-ip")
    assert status == 200 and body == b"ok /by-ip"


def test_upstream_pool_keeps_one_handshake_and_resumes(pki, https_up, start_sluice):
    up = https_up()
    sl = start_sluice(up.port, target_host="localhost", target_tls=True, target_tls_ca=pki["ca"], workers=1)
    for i in range(5):
        status, headers, body = get(sl.port, "/seq%d" % i)
        assert status == 200 and body == b"ok /seq%d" % i
        assert headers["X-Conn"] == "1"  # every request on the first pooled connection
    assert up.connections == 1
    m = metrics(sl.url)
    assert m["pool"]["created"] == 1 and m["pool"]["reused"] == 4
    # two at once need a second connection: it resumes the first one's session
    results = []

    def one(i):
        results.append(get(sl.port, "/pair%d?delay_ms=300" % i))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [r[0] for r in results] == [200, 200]
    assert up.connections == 2
    assert up.resumed == 1
    reused = sorted(r[1]["X-Session-Reused"] for r in results)
    assert reused == ["false", "true"]


def test_idle_pooled_connection_closed_by_the_upstream_leaves_the_pool(pki, start_sluice):
    up = HttpsServer(pki["key"], pki["crt"], idle_timeout=0.5)
    try:
        sl = start_sluice(up.port, target_host="localhost", target_tls=True, target_tls_ca=pki["ca"], workers=1)
        assert get(sl.port, "/one")[0] == 200
        assert metrics(sl.url)["pool"]["idle"] == 1
        # the upstream's idle close is noticed while pooled, not by the next request
        assert wait_until(lambda: metrics(sl.url)["pool"]["idle"] == 0, 5)
        status, headers, body = get(sl.port, "/two")
        assert status == 200 and headers["X-Conn"] == "2"
        assert up.connections == 2 and up.resumed == 1
        m = metrics(sl.url)
        assert m["requests"]["retries"] == 0 and sum(m["upstream_failures"].values()) == 0
    finally:
        up.close()


def test_upstream_streams_chunks_as_they_come(pki, https_up, start_sluice):
    up = https_up()
    sl = start_sluice(up.port, target_host="localhost", target_tls=True, target_tls_ca=pki["ca"])
    with HttpConn(sl.port) as c:
        c.send(b"GET /stream?n=4&gap_ms=300 HTTP/1.1\r\nHost: x\r\n\r\n")
        t0 = time.monotonic()
        head = c.read_until(b"\r\n\r\n")
        assert b" 200 " in head.split(b"\r\n")[0]
        first = c.read_until(b"chunk 0\n")
        assert time.monotonic() - t0 < 0.6, "the first chunk waited for the others"
        rest = c.read_until(b"0\r\n\r\n")
        assert b"chunk 3\n" in first + rest
        # and the connection carries the next request
        r = c.request("GET", "/after")
        assert r.status == 200 and r.body == b"ok /after"


def test_upstream_wrong_host_name_is_502(pki, https_up, start_sluice):
    up = https_up()
    sl = start_sluice(up.port, target_host="localhost", target_tls=True, target_tls_ca=pki["ca"],
                      target_tls_sni="wrong.example", max_retries=0)
    status, _, body = get(sl.port, "/x")
    assert status == 502, body
    assert up.connections == 0
    assert wait_until(lambda: b"hostname mismatch" in sl.stderr().lower(), 5), sl.stderr()


@pytest.mark.parametrize("store", ["system", "other_ca"])
def test_upstream_untrusted_ca_is_502(pki, https_up, start_sluice, store):
    up = https_up()
    opts = {"target_tls_ca": pki["other_ca"]} if store == "other_ca" else {}
    sl = start_sluice(up.port, target_host="localhost", target_tls=True, max_retries=1, retry_backoff_factor=0,
                      **opts)
    t0 = time.monotonic()
    status, _, _ = get(sl.port, "/x")
    assert status == 502 and time.monotonic() - t0 < 5
    err = sl.stderr()
    assert b"certificate verify failed" in err and b"local issuer" in err, err
    assert metrics(sl.url)["requests"]["retries"] == 1  # retried like a refusal


def test_upstream_insecure_skips_verification(pki, https_up, start_sluice):
    up = https_up()
    sl = start_sluice(up.port, target_host="localhost", target_tls=True, target_tls_insecure=True)
    status, _, body = get(sl.port, "/x")
    assert status == 200 and body == b"ok /x"
    assert b"--target-tls-insecure" in sl.stderr() and b"warn" in sl.stderr()


def test_upstream_that_never_handshakes_is_504(start_sluice):
    """Accepts TCP, reads the ClientHello, never answers: a connect timeout,
    not a hang."""
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(16)
    held = []
    stop = threading.Event()

    def accept():
        lsock.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(lsock.accept()[0])
            except socket.timeout:
                pass

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    try:
        sl = start_sluice(lsock.getsockname()[1], target_tls=True, target_tls_insecure=True, connect_timeout=1,
                          max_retries=0)
        t0 = time.monotonic()
        status, _, body = get(sl.port, "/x", timeout=10)
        took = time.monotonic() - t0
        assert status == 504, body
        assert 0.9 < took < 3, took
        assert metrics(sl.url)["upstream_failures"]["connect_timeout"] == 1
        # TCP did connect: the log names TLS as what stalled
        assert wait_until(lambda: b"TLS handshake with upstream" in sl.stderr(), 5), sl.stderr()
        assert b"not finished within connect_timeout" in sl.stderr(), sl.stderr()
    finally:
        stop.set()
        t.join()
        for s in held:
            s.close()
        lsock.close()


def test_upstream_abrupt_close_mid_body_is_reported(pki, https_up, start_sluice, tmp_path):
    up = https_up()
    log = str(tmp_path / "access.log")
    sl = start_sluice(up.port, target_host="localhost", target_tls=True, target_tls_ca=pki["ca"], access_log=log)
    c = http.client.HTTPConnection("127.0.0.1", sl.port, timeout=10)
    c.request("GET", "/abort?n=200000")
    r = c.getresponse()
    assert r.status == 200
    with pytest.raises(http.client.IncompleteRead):
        r.read()
    c.close()
    assert wait_until(lambda: os.path.exists(log) and b"truncated" in open(log, "rb").read(), 5), \
        open(log, "rb").read()
    assert metrics(sl.url)["upstream_failures"]["truncated"] == 1


def test_upstream_close_without_close_notify_is_truncation(pki, https_up, start_sluice):
    """A body framed by the close is complete only after close_notify: a bare
    TCP close could be an attacker's, or a crash (RFC 8446 6.1)."""
    up = https_up()
    sl = start_sluice(up.port, target_host="localhost", target_tls=True, target_tls_ca=pki["ca"], max_retries=0)
    status, _, body = get(sl.port, "/eof?n=50000&notify=1")
    assert status == 200 and body == pattern(50000)
    c = http.client.HTTPConnection("127.0.0.1", sl.port, timeout=10)
    c.request("GET", "/eof?n=50000")
    r = c.getresponse()
    assert r.status == 200
    with pytest.raises(http.client.IncompleteRead):
        r.read()
    c.close()
    assert wait_until(lambda: metrics(sl.url)["upstream_failures"]["truncated"] == 1, 5)


def test_20mb_each_way_with_bounded_rss(small_quarantine, pki, https_up, start_sluice):  # noqa: F811
    """TLS on both sides at once: 20 MB down, 20 MB up, through a proxy whose
    peak RSS stays small."""
    up = https_up()
    sl = start_sluice(up.port, target_host="localhost", target_tls=True, target_tls_ca=pki["ca"],
                      tls_cert=pki["crt"], tls_key=pki["key"], workers=1)
    hwm0 = proc_status(sl.pid, "VmHWM")
    url = "https://localhost:%d" % sl.port
    with requests.Session() as s:
        r = s.get(url + "/size?n=%d" % (20 * MB), verify=pki["ca"], stream=True, timeout=60)
        assert r.status_code == 200
        h, n = hashlib.sha256(), 0
        for piece in r.iter_content(1 << 20):
            h.update(piece)
            n += len(piece)
        assert n == 20 * MB and h.hexdigest() == hashlib.sha256(pattern(20 * MB)).hexdigest()
        body = pattern(20 * MB)
        r = s.post(url + "/count", data=body, verify=pki["ca"], timeout=60)
        assert r.status_code == 200
        assert r.text == "%d %s" % (len(body), hashlib.sha256(body).hexdigest())
    check_rss(sl.pid, hwm0, "20 MB each way over TLS")


# ---- the listener ----------------------------------------------------------------


def test_listener_curl_requests_and_forwarded_proto(pki, upstream, start_sluice, free_admin_port):
    sl = start_sluice(upstream.port, tls_cert=pki["crt"], tls_key=pki["key"], admin_port=free_admin_port)
    url = "https://localhost:%d" % sl.port
    out = subprocess.run(["curl", "-sS", "--cacert", pki["ca"], url + "/c?size=5"], capture_output=True,
                         timeout=20)
    assert out.returncode == 0 and out.stdout == pattern(5), out
    with requests.Session() as s:
        for i in range(3):  # one keep-alive TLS connection
            r = s.get(url + "/r%d?size=10" % i, verify=pki["ca"], timeout=10)
            assert r.status_code == 200 and r.content == pattern(10)
        r = s.get(url + "/h?echo=1", verify=pki["ca"], timeout=10)
        assert r.status_code == 200
        seen = dict(echo_headers(r))
        assert seen["x-forwarded-proto"] == "https"
    # Python's own client, too
    ctx = ssl.create_default_context(cafile=pki["ca"])
    c = http.client.HTTPSConnection("localhost", sl.port, context=ctx, timeout=10)
    c.request("GET", "/py?size=3")
    r = c.getresponse()
    assert r.status == 200 and r.read() == pattern(3)
    c.close()
    # the admin port stays plain HTTP
    status, _, _ = http_get("http://127.0.0.1:%d/proxy-health" % free_admin_port)
    assert status == 200


def cert_serial(port, ca):
    ctx = ssl.create_default_context(cafile=ca)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as s:
            return s.getpeercert()["serialNumber"]


def serial_of(crt):
    out = subprocess.run(["openssl", "x509", "-noout", "-serial", "-in", crt], capture_output=True, check=True)
    return out.stdout.decode().strip().split("=")[1].upper()


def test_listener_certificate_reload_on_sighup(pki, upstream, start_sluice, tmp_path):
    live = tmp_path / "live"
    live.mkdir()
    cert, key = str(live / "cert.pem"), str(live / "key.pem")
    shutil.copy(pki["crt"], cert)
    shutil.copy(pki["key"], key)
    k2, c2 = make_leaf(pki["dir"], pki["ca_key"], pki["ca"], prefix="renewed")
    assert serial_of(c2) != serial_of(pki["crt"])
    sl = start_sluice(upstream.port, tls_cert=cert, tls_key=key)
    assert cert_serial(sl.port, pki["ca"]).upper() == serial_of(pki["crt"])
    ctx = ssl.create_default_context(cafile=pki["ca"])
    old = http.client.HTTPSConnection("localhost", sl.port, context=ctx, timeout=10)
    old.request("GET", "/before?size=2")
    assert old.getresponse().read() == pattern(2)

    shutil.copy(c2, cert)  # as certbot renews
    shutil.copy(k2, key)
    sl.signal(signal.SIGHUP)
    assert wait_until(lambda: b"certificate reloaded" in sl.stderr(), 5), sl.stderr()
    assert cert_serial(sl.port, pki["ca"]).upper() == serial_of(c2)
    old.request("GET", "/after?size=4")  # the open keep-alive connection carries on
    assert old.getresponse().read() == pattern(4)

    with open(key, "w") as f:
        f.write("not a key\n")
    sl.signal(signal.SIGHUP)
    assert wait_until(lambda: b"keeping the current certificate" in sl.stderr(), 5), sl.stderr()
    assert key.encode() in sl.stderr()
    assert cert_serial(sl.port, pki["ca"]).upper() == serial_of(c2)
    old.request("GET", "/still?size=1")
    assert old.getresponse().read() == pattern(1)
    old.close()


def test_listener_plain_http_and_garbage_disturb_nobody(pki, upstream, start_sluice, free_admin_port):
    sl = start_sluice(upstream.port, tls_cert=pki["crt"], tls_key=pki["key"], admin_port=free_admin_port)
    ctx = ssl.create_default_context(cafile=pki["ca"])
    good = http.client.HTTPSConnection("localhost", sl.port, context=ctx, timeout=10)
    good.request("GET", "/first?size=1")
    assert good.getresponse().read() == pattern(1)
    for junk in (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", b"\x16\x03\x01\x00\x05hello" + os.urandom(64),
                 os.urandom(300)):
        with socket.create_connection(("127.0.0.1", sl.port), timeout=5) as s:
            s.sendall(junk)
            s.settimeout(5)
            try:
                while s.recv(4096):
                    pass  # an alert at most, then the close
            except ConnectionResetError:
                pass
    good.request("GET", "/second?size=2")
    assert good.getresponse().read() == pattern(2)
    admin = "http://127.0.0.1:%d" % free_admin_port
    assert wait_until(lambda: metrics(admin)["connections"]["tls_handshake_failures"] == 3, 5), \
        metrics(admin)["connections"]
    _, _, prom = http_get(admin + "/proxy-metrics/prometheus")
    assert b"sluice_tls_handshake_failures_total 3" in prom
    good.close()


@pytest.fixture
def free_admin_port():
    from conftest import free_port
    return free_port()


# ---- sluice-load -------------------------------------------------------------------


def load(*args):
    out = subprocess.run([os.path.join(BUILD, "sluice-load"), "--json", *args], capture_output=True, timeout=60)
    return out.returncode, (json.loads(out.stdout) if out.stdout.strip() else None), out.stderr


def test_sluice_load_drives_an_https_listener(pki, upstream, start_sluice):
    sl = start_sluice(upstream.port, tls_cert=pki["crt"], tls_key=pki["key"], max_concurrent_requests=100)
    url = "https://localhost:%d/?size=100" % sl.port
    code, rep, err = load("--cacert", pki["ca"], "-n", "200", "-c", "4", url)
    assert code == 0, err
    assert rep["status_codes"] == {"200": 200}, rep
    code, rep, err = load("--cacert", pki["ca"], "-n", "30", "-c", "3", "--no-keepalive", url)
    assert code == 0 and rep["status_codes"].get("200") == 30, (rep, err)
    # the system store does not know the test CA: every request is a connect error
    code, rep, err = load("-n", "5", "--min-success-rate", "1", url)
    assert code == 1 and rep["errors"]["connect"] == 5, rep
    code, rep, err = load("-k", "-n", "5", url)
    assert code == 0 and rep["status_codes"].get("200") == 5, rep
    code, rep, err = load("-k", "-n", "5", "http://localhost:%d/" % sl.port)
    assert code == 2 and b"--insecure applies to an https:// URL" in err


# ---- configuration ----------------------------------------------------------------


def run_sluice(*args):
    return subprocess.run([os.path.join(BUILD, "sluice"), "--target-host", "127.0.0.1", "--listen-port", "1",
                           *args], capture_output=True, timeout=20)


def test_configuration_errors(pki, tmp_path):
    r = run_sluice("--tls-cert", pki["crt"])
    assert r.returncode == 2 and b"--tls-cert needs --tls-key" in r.stderr, r.stderr
    r = run_sluice("--target-tls-ca", pki["ca"])
    assert r.returncode == 2 and b"add --target-tls" in r.stderr, r.stderr
    missing = str(tmp_path / "nope.pem")
    r = run_sluice("--tls-cert", missing, "--tls-key", pki["key"])
    assert r.returncode == 2 and missing.encode() in r.stderr, r.stderr
    _, other_key_crt = make_leaf(str(tmp_path), pki["ca_key"], pki["ca"], prefix="x")
    other_key = str(tmp_path / "x.key")
    r = run_sluice("--tls-cert", pki["crt"], "--tls-key", other_key)
    assert r.returncode == 2 and b"does not match" in r.stderr and other_key.encode() in r.stderr, r.stderr
    r = run_sluice("--target-tls", "--target-tls-ca", missing)
    assert r.returncode == 2 and missing.encode() in r.stderr, r.stderr
    out = subprocess.run([os.path.join(BUILD, "sluice"), "--target-host", "https://api.example", "--tls-cert",
                          pki["crt"], "--tls-key", pki["key"], "--check-config"], capture_output=True, timeout=20)
    assert out.returncode == 0, out.stderr
    cfg = json.loads(out.stdout)
    assert cfg["target_tls"] is True and cfg["target_port"] == 443 and cfg["tls_cert"] == pki["crt"]


def test_check_config_reads_the_tls_files_as_the_start_does(pki, tmp_path):
    """--check-config is the gate before a reload: a file that would stop the
    start (missing, a key that does not match, a CA that is no CA) fails it
    with the same one sentence and exit 2, and stdout stays empty."""
    missing = str(tmp_path / "nope.pem")
    _, _ = make_leaf(str(tmp_path), pki["ca_key"], pki["ca"], prefix="x")
    cases = [(["--tls-cert", missing, "--tls-key", pki["key"]], missing),
             (["--tls-cert", pki["crt"], "--tls-key", str(tmp_path / "x.key")], "does not match"),
             (["--target-tls", "--target-tls-ca", pki["key"]], pki["key"])]
    for args, words in cases:
        r = run_sluice("--check-config", *args)
        assert r.returncode == 2 and words.encode() in r.stderr, (args, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1 and r.stdout == b"", (args, r)


def test_encrypted_key_is_refused_not_prompted_for(pki, tmp_path):
    """An encrypted --tls-key would make OpenSSL ask for a pass phrase on the
    terminal (a hang at start, a stuck SIGHUP): it is refused with the fix,
    even with a terminal (script(1) gives sluice one)."""
    enc = str(tmp_path / "enc.key")
    subprocess.run(["openssl", "pkey", "-in", pki["key"], "-aes256", "-passout", "pass:secret", "-out", enc],
                   check=True, capture_output=True)
    cmd = " ".join([os.path.join(BUILD, "sluice"), "--target-host", "127.0.0.1", "--check-config", "--tls-cert",
                    pki["crt"], "--tls-key", enc])
    r = subprocess.run(["script", "-qec", cmd, "/dev/null"], capture_output=True, timeout=20, stdin=subprocess.DEVNULL)
    assert r.returncode == 2, r
    assert b"is encrypted" in r.stdout + r.stderr and b"pass phrase" not in r.stdout + r.stderr, r
