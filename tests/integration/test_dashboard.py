"""The live dashboard (SPEC §8, issue 5): GET /proxy-dashboard serves one
self-contained HTML page (src/dashboard.html, embedded in the binary) that
polls /proxy-metrics and draws its charts on <canvas>.

Static checks read the served page. The browser test runs Debian's chromium
headless against a real sluice under load (8 clients against a limit of 4 and
a queue of 2, so some requests are rejected) and asserts that the page really
drew: the page counts its successful polls in <body data-polls> and each chart
canvas the points it drew in data-points; a 1280x800 screenshot is decoded
(stdlib zlib PNG decoder below) and every chart area must hold coloured
pixels. Finally sluice is stopped and the page must say "sluice unreachable".

The browser is driven over the DevTools protocol with a small stdlib
websocket client, so the waits are real time (--virtual-time-budget would
fast-forward the 1 s poll timer and show a few milliseconds of load).
The machine may have no network: the flags keep chromium from calling home.
"""
import base64
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import time
import urllib.request
import zlib

import pytest

from conftest import BUILD, ROOT, free_port, http_get

DASHBOARD_SRC = os.path.join(ROOT, "src", "dashboard.html")
CHARTS = ["chart-throughput", "chart-latency", "chart-rejections", "chart-active", "chart-queued",
          "chart-breaker", "chart-outcomes"]
MAX_SIZE = 40 * 1024
VIEWPORT = (1280, 800)

CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--no-default-browser-check", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--disable-default-apps", "--disable-extensions", "--disable-breakpad",
    "--disable-domain-reliability", "--metrics-recording-only", "--mute-audio", "--hide-scrollbars",
    "--force-device-scale-factor=1", "--run-all-compositor-stages-before-draw",
    "--window-size=1280,800", "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0",
]


# --------------------------------------------------------------------------
# static checks


def external_refs(html):
    """Everything in the page that would make the browser leave the origin."""
    bad = []
    for m in re.finditer(r"(?i)(https?:)?//[a-z0-9.\-]+\.[a-z]{2,}", html):
        bad.append(m.group(0))
    for m in re.finditer(r"(?i)\b(src|href|action|srcset|poster|data)\s*=\s*[\"']?\s*([^\"'\s>]*)", html):
        val = m.group(2)
        if val.startswith("//") or re.match(r"(?i)[a-z][a-z0-9+.\-]*:", val):
            bad.append(m.group(0))
    for m in re.finditer(r"(?i)(@import|url\s*\()\s*[\"']?([^\"')\s]*)", html):
        if not m.group(2).startswith(("#", "data:")):
            bad.append(m.group(0))
    for s in ("http://", "https://", "ws://", "wss://"):
        if s in html:
            bad.append(s)
    return bad


def check_page(html):
    assert len(html.encode()) < MAX_SIZE, "dashboard is %d bytes" % len(html.encode())
    assert html.lstrip().lower().startswith("<!doctype html>")
    assert external_refs(html) == []
    assert not re.search(r"(?i)<script[^>]*\bsrc\s*=", html), "external script"
    assert not re.search(r"(?i)<link\b", html), "external stylesheet or font"
    assert not re.search(r"(?i)<(img|iframe|object|embed)\b", html)
    for tid in CHARTS:
        assert re.search(r'<canvas[^>]*data-testid="%s"' % tid, html), "no canvas %s" % tid
    for tid in ("status", "breaker-state", "unreachable", "tile-rps", "tile-success", "tile-p99"):
        assert 'data-testid="%s"' % tid in html
    assert '"/proxy-metrics"' in html, "the page must poll /proxy-metrics on its own origin"


def test_dashboard_source_is_self_contained():
    with open(DASHBOARD_SRC, encoding="utf-8") as f:
        check_page(f.read())


def test_external_ref_checker_catches_urls():
    assert external_refs('<script src="//cdn.example.com/x.js"></script>')
    assert external_refs('<link href="https://fonts.example.org/a.css">')
    assert external_refs("body { background: url(http://x.example.net/a.png) }")
    assert external_refs('<img src="data:image/png;base64,AAAA">') != []  # any scheme in src is refused
    assert external_refs('<canvas data-testid="x"></canvas><a href="#top">') == []


def test_dashboard_served(upstream, start_sluice):
    sl = start_sluice(upstream.port)
    status, headers, body = http_get(sl.url + "/proxy-dashboard")
    assert status == 200
    assert headers.get("Content-Type", "").startswith("text/html")
    html = body.decode("utf-8")
    check_page(html)
    with open(DASHBOARD_SRC, encoding="utf-8") as f:
        assert html == f.read(), "the served page differs from src/dashboard.html"
    status, headers, body = http_get(sl.url + "/proxy-metrics")
    assert status == 200 and isinstance(json.loads(body), dict)


def test_dashboard_on_admin_port(upstream, start_sluice):
    admin = free_port()
    start_sluice(upstream.port, admin_port=admin)
    deadline = time.time() + 5
    while True:
        try:
            status, headers, body = http_get("http://127.0.0.1:%d/proxy-dashboard" % admin)
            break
        except OSError:
            if time.time() > deadline:
                raise
            time.sleep(0.05)
    assert status == 200 and headers.get("Content-Type", "").startswith("text/html")
    check_page(body.decode("utf-8"))
    status, _, body = http_get("http://127.0.0.1:%d/proxy-metrics" % admin)
    assert status == 200 and isinstance(json.loads(body), dict)


# --------------------------------------------------------------------------
# chromium over the DevTools protocol


def find_chromium():
    """Path of Debian's chromium, installing it when possible, else None."""
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    if os.path.exists("/usr/bin/chromium"):
        return "/usr/bin/chromium"
    if os.geteuid() == 0 and shutil.which("apt-get"):
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        try:
            subprocess.run(["apt-get", "install", "-y", "-q", "chromium"], env=env, timeout=600,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        except (OSError, subprocess.TimeoutExpired):
            pass
    return "/usr/bin/chromium" if os.path.exists("/usr/bin/chromium") else None


class CDP:
    """Minimal DevTools-protocol client over a stdlib websocket (RFC 6455)."""

    def __init__(self, ws_url, timeout=15):
        assert ws_url.startswith("ws://")
        hostport, path = ws_url[5:].split("/", 1)
        host, port = hostport.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(("GET /%s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                           "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n"
                           % (path, hostport, key)).encode())
        head = b""
        while b"\r\n\r\n" not in head:
            b = self.sock.recv(4096)
            if not b:
                raise ConnectionError("websocket handshake: connection closed")
            head += b
        head, self.buf = head.split(b"\r\n\r\n", 1)
        if b" 101 " not in head.split(b"\r\n", 1)[0]:
            raise ConnectionError("websocket handshake refused: %r" % head[:300])
        self.next_id = 0

    def _read(self, n):
        while len(self.buf) < n:
            b = self.sock.recv(1 << 20)
            if not b:
                raise ConnectionError("websocket closed")
            self.buf += b
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def _send(self, opcode, payload):
        n = len(payload)
        if n < 126:
            hdr = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
        elif n < 65536:
            hdr = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
        else:
            hdr = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i & 3] for i, b in enumerate(payload))
        self.sock.sendall(hdr + mask + masked)

    def _message(self):
        data = b""
        while True:
            b0, b1 = self._read(2)
            op, n = b0 & 0x0F, b1 & 0x7F
            if n == 126:
                n = struct.unpack("!H", self._read(2))[0]
            elif n == 127:
                n = struct.unpack("!Q", self._read(8))[0]
            mask = self._read(4) if b1 & 0x80 else None
            payload = self._read(n)
            if mask:
                payload = bytes(b ^ mask[i & 3] for i, b in enumerate(payload))
            if op == 0x8:
                raise ConnectionError("websocket closed by the browser")
            if op == 0x9:
                self._send(0xA, payload)
                continue
            if op == 0xA:
                continue
            data += payload
            if b0 & 0x80:
                return json.loads(data.decode())

    def call(self, method, **params):
        self.next_id += 1
        self._send(0x1, json.dumps({"id": self.next_id, "method": method, "params": params}).encode())
        while True:
            msg = self._message()
            if msg.get("id") == self.next_id:
                if "error" in msg:
                    raise RuntimeError("%s: %s" % (method, msg["error"]))
                return msg.get("result", {})

    def eval(self, expr):
        r = self.call("Runtime.evaluate", expression=expr, returnByValue=True)
        if "exceptionDetails" in r:
            raise RuntimeError("JS exception in %r: %s" % (expr, r["exceptionDetails"]))
        return r["result"].get("value")

    def screenshot(self):
        return base64.b64decode(self.call("Page.captureScreenshot", format="png")["data"])

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


class Browser:
    """Headless chromium showing one URL, with a fresh profile in a temp dir."""

    def __init__(self, chromium, url, workdir, timeout=20):
        self.profile = tempfile.mkdtemp(prefix="sluice-chromium-", dir=workdir)
        self.log = open(os.path.join(workdir, "chromium.log"), "wb")
        self.proc = subprocess.Popen([chromium] + CHROMIUM_FLAGS + ["--user-data-dir=" + self.profile, url],
                                     stdout=self.log, stderr=self.log, start_new_session=True)
        self.cdp = None
        try:
            port = self._devtools_port(timeout)
            ws = self._page_ws(port, url, timeout)
            self.cdp = CDP(ws)
            # --window-size sizes the window, not the viewport: pin the viewport
            self.cdp.call("Emulation.setDeviceMetricsOverride", width=VIEWPORT[0], height=VIEWPORT[1],
                          deviceScaleFactor=1, mobile=False)
        except Exception:
            self.close()
            raise

    def _devtools_port(self, timeout):
        path = os.path.join(self.profile, "DevToolsActivePort")
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("chromium exited with %s, see %s" % (self.proc.returncode, self.log.name))
            try:
                with open(path) as f:
                    first = f.readline().strip()
                if first:
                    return int(first)
            except (OSError, ValueError):
                pass
            time.sleep(0.05)
        raise RuntimeError("chromium wrote no DevToolsActivePort within %ss" % timeout)

    def _page_ws(self, port, url, timeout):
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                with urllib.request.urlopen("http://127.0.0.1:%d/json/list" % port, timeout=2) as r:
                    targets = json.loads(r.read())
                for t in targets:
                    if t.get("type") == "page" and t.get("webSocketDebuggerUrl"):
                        return t["webSocketDebuggerUrl"]
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError("no page target in chromium within %ss" % timeout)

    def wait_for(self, expr, timeout, what):
        deadline = time.time() + timeout
        last = None
        while time.time() < deadline:
            # the page may not be there yet (about:blank has no body): errors mean "not yet"
            last = self.cdp.eval("(() => { try { return (%s); } catch (e) { return null; } })()" % expr)
            if last:
                return last
            time.sleep(0.1)
        raise AssertionError("%s: still %r after %ss" % (what, last, timeout))

    def close(self):
        if self.cdp:
            self.cdp.close()
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log.close()
        shutil.rmtree(self.profile, ignore_errors=True)


# --------------------------------------------------------------------------
# PNG decoding (8-bit RGB/RGBA, non-interlaced: what chromium writes)


def decode_png(data):
    """(width, height, channels, rows) with rows a list of bytes objects."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, ihdr = 8, [], None
    while pos < len(data):
        n, kind = struct.unpack("!I4s", data[pos:pos + 8])
        chunk = data[pos + 8:pos + 8 + n]
        pos += 12 + n
        if kind == b"IHDR":
            ihdr = struct.unpack("!IIBBBBB", chunk)
        elif kind == b"IDAT":
            idat.append(chunk)
        elif kind == b"IEND":
            break
    width, height, depth, ctype, _, _, interlace = ihdr
    assert depth == 8 and ctype in (2, 6) and interlace == 0, "unsupported PNG %r" % (ihdr,)
    ch = 3 if ctype == 2 else 4
    raw = zlib.decompress(b"".join(idat))
    stride = width * ch
    rows, prev, p = [], bytearray(stride), 0
    for _ in range(height):
        ftype, line = raw[p], bytearray(raw[p + 1:p + 1 + stride])
        p += 1 + stride
        if ftype == 1:
            for i in range(ch, stride):
                line[i] = (line[i] + line[i - ch]) & 0xFF
        elif ftype == 2:
            for i in range(stride):
                line[i] = (line[i] + prev[i]) & 0xFF
        elif ftype == 3:
            for i in range(stride):
                left = line[i - ch] if i >= ch else 0
                line[i] = (line[i] + ((left + prev[i]) >> 1)) & 0xFF
        elif ftype == 4:
            for i in range(stride):
                a = line[i - ch] if i >= ch else 0
                b = prev[i]
                c = prev[i - ch] if i >= ch else 0
                pa, pb, pc = abs(b - c), abs(a - c), abs(a + b - 2 * c)
                pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                line[i] = (line[i] + pred) & 0xFF
        rows.append(bytes(line))
        prev = line
    return width, height, ch, rows


def region_stats(png, rect):
    """(distinct colours, coloured pixels) inside rect {x, y, w, h}; a pixel is
    'coloured' when it is clearly not grey: axes, grid and labels are grey,
    every data series is drawn in a saturated colour."""
    width, height, ch, rows = png
    x0, y0 = max(0, int(rect["x"])), max(0, int(rect["y"]))
    x1, y1 = min(width, int(rect["x"] + rect["w"])), min(height, int(rect["y"] + rect["h"]))
    colours, coloured = set(), 0
    for y in range(y0, y1):
        row = rows[y]
        for x in range(x0, x1):
            r, g, b = row[x * ch], row[x * ch + 1], row[x * ch + 2]
            colours.add((r, g, b))
            if max(r, g, b) - min(r, g, b) > 60:
                coloured += 1
    return len(colours), coloured


# --------------------------------------------------------------------------
# the browser test

PAGE_STATE = """(() => {
  const q = s => document.querySelector(s);
  const charts = {};
  document.querySelectorAll('canvas[data-testid]').forEach(c => {
    const r = c.getBoundingClientRect();
    charts[c.dataset.testid] = {points: +c.dataset.points, x: r.x, y: r.y, w: r.width, h: r.height,
                                pw: c.width, ph: c.height};
  });
  return JSON.stringify({
    charts: charts, polls: +document.body.dataset.polls, errors: +document.body.dataset.errors,
    down: document.body.classList.contains('down'),
    banner: getComputedStyle(q('[data-testid=unreachable]')).display !== 'none',
    bannerText: q('[data-testid=unreachable]').textContent,
    status: q('[data-testid=status]').textContent, breaker: q('[data-testid=breaker-state]').textContent,
    target: q('[data-testid=target]').textContent, rps: q('#t-rps').textContent,
    rejected: q('#t-rej-s').textContent, success: q('#t-succ').textContent,
    active: q('#t-act').textContent, queued: q('#t-q').textContent,
    dpr: window.devicePixelRatio, vw: innerWidth, vh: innerHeight,
    scroll: document.documentElement.scrollHeight
  });
})()"""


def page_state(br):
    return json.loads(br.cdp.eval(PAGE_STATE))


def run_dashboard_under_load(start_upstream, start_sluice, workdir, watch_seconds=4.5,
                             load_seconds=60, screenshot_path=None):
    chromium = find_chromium()
    if not chromium:
        pytest.skip("chromium is not installed (/usr/bin/chromium) and could not be installed "
                    "with apt-get install chromium; the browser test needs Debian's chromium")
    up = start_upstream(workers=2)
    sl = start_sluice(up.port, max_concurrent_requests=4, max_queue_size=2, workers=2)
    load_log = open(os.path.join(str(workdir), "load.out"), "wb")
    load = subprocess.Popen([os.path.join(BUILD, "sluice-load"), "--url", sl.url + "/?delay_ms=20",
                             "--concurrent", "8", "--duration", str(load_seconds), "--timeout", "10"],
                            stdout=load_log, stderr=subprocess.STDOUT)
    br = None
    try:
        br = Browser(chromium, sl.url + "/proxy-dashboard", str(workdir))
        br.wait_for("+document.body.dataset.polls >= 1", 10, "first successful poll")
        time.sleep(watch_seconds)
        state = page_state(br)
        shot = br.cdp.screenshot()
        if screenshot_path:
            with open(screenshot_path, "wb") as f:
                f.write(shot)
        return sl, br, load, state, shot
    except BaseException:
        if br:
            br.close()
        raise
    finally:
        load_log.close()


def test_dashboard_draws_in_chromium(start_upstream, start_sluice, tmp_path):
    sl, br, load, state, shot = run_dashboard_under_load(
        start_upstream, start_sluice, tmp_path, screenshot_path=str(tmp_path / "dashboard.png"))
    try:
        # the page polled and drew every chart
        assert state["polls"] >= 3, state
        assert state["errors"] == 0 and not state["down"] and not state["banner"], state
        charts = state["charts"]
        assert sorted(charts) == sorted(CHARTS), charts
        for tid in CHARTS:
            c = charts[tid]
            assert c["points"] >= 2, "%s drew %s points" % (tid, c["points"])
            assert c["w"] >= 200 and c["h"] >= 20, "%s is %sx%s" % (tid, c["w"], c["h"])
            # backing store follows devicePixelRatio
            assert abs(c["pw"] - c["w"] * state["dpr"]) <= 1 and abs(c["ph"] - c["h"] * state["dpr"]) <= 1, c
        # it fits a 1280x800 screen without scrolling
        assert state["vw"] == 1280 and state["vh"] == 800, state
        assert state["scroll"] <= 800, "page is %spx tall at 1280x800" % state["scroll"]
        # the numbers are sluice's: a target, a status, a closed breaker, traffic flowing
        assert state["status"] in ("healthy", "degraded", "unhealthy"), state
        assert state["breaker"] == "closed", state
        assert "127.0.0.1:" in state["target"], state
        assert float(state["rps"].rstrip("k")) > 0, state

        # the screenshot is a 1280x800 PNG in which every chart has coloured data
        png = decode_png(shot)
        assert (png[0], png[1]) == (1280, 800), png[:2]
        page_colours, _ = region_stats(png, {"x": 0, "y": 0, "w": 1280, "h": 800})
        assert page_colours > 50, "screenshot has only %d colours" % page_colours
        for tid in CHARTS:
            c = charts[tid]
            # the plot area, right of the y-axis labels
            colours, coloured = region_stats(png, {"x": c["x"] + 46, "y": c["y"], "w": c["w"] - 46, "h": c["h"]})
            if tid in ("chart-rejections",):
                # 8 clients vs 4 slots + 2 queue places: rejections are likely, not certain
                continue
            assert coloured >= 20, "%s: %d coloured pixels, %d colours" % (tid, coloured, colours)

        # requests were really rejected and the page saw them; the load runs
        # until here (a slow browser start under sanitizers must not outlast it)
        load.terminate()
        load.wait(15)
        total_rejected = json.loads(http_get(sl.url + "/proxy-metrics")[2])["requests"]["rejected"]
        if total_rejected:
            br.wait_for("document.querySelector('#t-rej-s').textContent.split(' ')[0] !== '0'", 3,
                        "rejected total on the page")

        # the connection tile: clients held against max_connections (10000 by default)
        br.wait_for("/ \\/ 10\\.0k$/.test(document.querySelector('#t-conn').textContent)", 3,
                    "connections / limit on the page")

        # sluice goes away: the page says so and keeps polling
        polls = page_state(br)["polls"]
        sl.stop()
        br.wait_for("document.body.classList.contains('down')", 5, "unreachable banner")
        state = page_state(br)
        assert state["banner"] and "sluice unreachable" in state["bannerText"], state
        assert state["status"] == "unreachable", state
        br.wait_for("+document.body.dataset.errors >= 2", 5, "polling continues while unreachable")
        assert page_state(br)["polls"] == polls
    finally:
        br.close()
        if load.poll() is None:
            load.kill()
        load.wait()
