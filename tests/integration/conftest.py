"""Shared fixtures for the integration tests: real sluice and sluice-upstream
processes on loopback ports, raw-socket helpers, and the teardown checks that
catch sanitizer reports and unclean exits.

Binaries come from $SLUICE_BUILD (the Makefile sets it: build/ or build-asan/).
"""
import json
import os
import signal
import socket
import subprocess
import time
import urllib.request

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.environ.get("SLUICE_BUILD", os.path.join(ROOT, "build"))
SANITIZER_MARKS = (b"ERROR: AddressSanitizer", b"runtime error:", b"ERROR: LeakSanitizer",
                   b"WARNING: ThreadSanitizer", b"ERROR: ThreadSanitizer")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(port, proc, timeout=10.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("process exited early with %s" % proc.returncode)
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError("port %d not listening after %.0fs" % (port, timeout))


class Proc:
    """A child process whose stderr goes to a file, checked at stop()."""

    def __init__(self, argv, port, name, tmp_path, env=None, wait=True):
        self.argv = argv
        self.port = port
        self.name = name
        self.errpath = os.path.join(str(tmp_path), "%s-%d.stderr" % (name, port))
        self.errfile = open(self.errpath, "wb")
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=self.errfile,
                                     env=env or os.environ.copy())
        self.pid = self.proc.pid
        self.stopped = False
        if wait:
            wait_listening(port, self.proc)

    @property
    def url(self):
        return "http://127.0.0.1:%d" % self.port

    def stderr(self):
        if not self.errfile.closed:
            self.errfile.flush()
        with open(self.errpath, "rb") as f:
            return f.read()

    def signal(self, sig):
        self.proc.send_signal(sig)

    def stop(self, expect_code=0, timeout=30):
        """SIGTERM, wait, and check: exit code, no sanitizer report."""
        self.stopped = True
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError("%s did not exit within %ss of SIGTERM" % (self.name, timeout))
        self.errfile.close()
        err = self.stderr()
        for mark in SANITIZER_MARKS:
            assert mark not in err, "%s reported:\n%s" % (self.name, err.decode(errors="replace")[-6000:])
        if expect_code is not None:
            assert code == expect_code, "%s exited %s:\n%s" % (self.name, code, err.decode(errors="replace")[-3000:])
        return code


@pytest.fixture
def procs(tmp_path):
    """Registry of started processes; all are stopped and checked at teardown."""
    started = []
    yield started
    errors = []
    for p in reversed(started):
        if not p.stopped:
            try:
                p.stop(expect_code=getattr(p, "expect_code", 0))
            except AssertionError as e:
                errors.append(str(e))
    if errors:
        pytest.fail("\n".join(errors))


@pytest.fixture
def start_upstream(procs, tmp_path):
    """start_upstream(workers=1, *extra_args) -> Proc running sluice-upstream."""

    def start(*extra, workers=1):
        port = free_port()
        argv = [os.path.join(BUILD, "sluice-upstream"), "--port", str(port), "--workers", str(workers)]
        argv += [str(a) for a in extra]
        p = Proc(argv, port, "sluice-upstream", tmp_path)
        procs.append(p)
        return p

    return start


@pytest.fixture
def upstream(start_upstream):
    return start_upstream()


@pytest.fixture
def start_sluice(procs, tmp_path):
    """start_sluice(upstream_port, **options) -> Proc running sluice.

    Options are sluice flags with '_' for '-': start_sluice(p, read_timeout=1).
    A value of True passes the bare flag. workers defaults to 2."""

    def start(target_port, wait=True, **opts):
        port = opts.pop("listen_port", None) or free_port()
        opts.setdefault("workers", 2)
        argv = [os.path.join(BUILD, "sluice"), "--listen-host", "127.0.0.1", "--listen-port", str(port),
                "--target-host", opts.pop("target_host", "127.0.0.1"), "--target-port", str(target_port)]
        for k, v in opts.items():
            flag = "--" + k.replace("_", "-")
            argv += [flag] if v is True else [flag, str(v)]
        p = Proc(argv, port, "sluice", tmp_path, wait=wait)
        procs.append(p)
        return p

    return start


def http_get(url, timeout=10, headers=None, method="GET", data=None):
    """(status, headers, body) without raising on 4xx/5xx."""
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def upstream_stats(up):
    status, _, body = http_get(up.url + "/__stats")
    assert status == 200
    return json.loads(body)


def raw_exchange(port, data, timeout=5.0, shut_write=False):
    """Sends raw bytes, returns every byte received until the peer closes or
    `timeout` passes with nothing new."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        if shut_write:
            s.shutdown(socket.SHUT_WR)
        chunks = []
        while True:
            try:
                b = s.recv(65536)
            except (socket.timeout, ConnectionResetError):
                break
            if not b:
                break
            chunks.append(b)
        return b"".join(chunks)


def status_of(response_bytes):
    """Status code of the first response in raw bytes, or None."""
    if not response_bytes.startswith(b"HTTP/1."):
        return None
    return int(response_bytes.split(b" ", 2)[1])
