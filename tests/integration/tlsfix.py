"""Throwaway TLS material for the tests, made with the openssl command line:
a CA, and leaf certificates it signs (for a name and 127.0.0.1), plus a
small threaded HTTPS server that answers like sluice-upstream's default
route. Nothing here is used outside the tests."""
import hashlib
import http.server
import os
import socket
import ssl
import subprocess
import threading


def make_ca(dirpath, name="sluice test CA"):
    key, crt = os.path.join(dirpath, "ca.key"), os.path.join(dirpath, "ca.crt")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
                    "/CN=%s" % name, "-keyout", key, "-out", crt], check=True, capture_output=True)
    return key, crt


def make_leaf(dirpath, ca_key, ca_crt, name="localhost", prefix="leaf"):
    """A key and certificate for `name` (and 127.0.0.1), signed by the CA."""
    key, csr, crt = (os.path.join(dirpath, prefix + ext) for ext in (".key", ".csr", ".crt"))
    ext = os.path.join(dirpath, prefix + ".ext")
    with open(ext, "w") as f:
        f.write("subjectAltName=DNS:%s,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n" % name)
    subprocess.run(["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=%s" % name, "-keyout", key,
                    "-out", csr], check=True, capture_output=True)
    subprocess.run(["openssl", "x509", "-req", "-in", csr, "-CA", ca_crt, "-CAkey", ca_key, "-CAcreateserial",
                    "-days", "2", "-extfile", ext, "-out", crt], check=True, capture_output=True)
    return key, crt


class HttpsServer:
    """A threaded HTTPS/1.1 server on 127.0.0.1. Keep-alive, so one TLS
    connection carries many requests. Routes:
      GET  /...?delay_ms=N      "ok <path>" after N ms
      GET  /size?n=N            N bytes (helpers.pattern), Content-Length
      GET  /stream?n=K&gap_ms=G K chunks of "chunk i\n", G ms apart (chunked)
      GET  /abort?n=N           announces N bytes, sends half, closes without close_notify
      GET  /eof?n=N[&notify=1]  N bytes framed by the close (no length), then
                                close_notify (notify=1) or a bare TCP close
      POST /count               the body's length and SHA-256, as "LEN HEX"
    Every answer says X-Session-Reused (the TLS session was resumed) and
    X-Conn (the connection's number). `connections` and `resumed` count the
    connections that completed a handshake and those that resumed one."""

    def __init__(self, key, crt, idle_timeout=None):
        server = self
        self.connections = 0
        self.resumed = 0
        self.lock = threading.Lock()

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            timeout = idle_timeout  # an idle keep-alive connection is closed (no close_notify) after it

            def setup(self):
                super().setup()
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                with server.lock:
                    server.connections += 1
                    self.conn_no = server.connections
                    if self.connection.session_reused:
                        server.resumed += 1

            def _head(self, status=200, length=None, chunked=False):
                self.send_response(status)
                self.send_header("X-Session-Reused", str(bool(self.connection.session_reused)).lower())
                self.send_header("X-Conn", str(self.conn_no))
                if chunked:
                    self.send_header("Transfer-Encoding", "chunked")
                elif length is not None:
                    self.send_header("Content-Length", str(length))
                self.end_headers()

            def do_GET(self):
                import time
                import urllib.parse
                u = urllib.parse.urlsplit(self.path)
                q = urllib.parse.parse_qs(u.query)
                n = int(q.get("n", ["0"])[0])
                if u.path == "/size":
                    self._head(length=n)
                    sent = 0
                    while sent < n:
                        step = min(1 << 20, n - sent)
                        self.wfile.write(pattern(step, sent))
                        sent += step
                    return
                if u.path == "/stream":
                    self._head(chunked=True)
                    for i in range(n):
                        piece = b"chunk %d\n" % i
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                        self.wfile.flush()
                        time.sleep(int(q.get("gap_ms", ["0"])[0]) / 1000)
                    self.wfile.write(b"0\r\n\r\n")
                    return
                if u.path == "/abort":
                    self._head(length=n)
                    self.wfile.write(pattern(n // 2))
                    self.wfile.flush()
                    time.sleep(0.1)
                    # a TCP close with no close_notify: Python's close() sends none
                    self.connection.shutdown(socket.SHUT_RDWR)
                    self.close_connection = True
                    return
                if u.path == "/eof":
                    self.send_response(200)
                    self.send_header("Connection", "close")
                    self.end_headers()
                    self.wfile.write(pattern(n))
                    self.wfile.flush()
                    self.close_connection = True
                    if q.get("notify"):
                        try:
                            self.connection.unwrap()  # close_notify
                        except (OSError, ValueError):
                            pass
                    else:
                        self.connection.shutdown(socket.SHUT_RDWR)
                    return
                time.sleep(int(q.get("delay_ms", ["0"])[0]) / 1000)
                body = b"ok " + self.path.encode()
                self._head(length=len(body))
                self.wfile.write(body)

            def do_POST(self):
                n = int(self.headers.get("Content-Length", "0"))
                h, left = hashlib.sha256(), n
                while left:
                    b = self.rfile.read(min(left, 1 << 20))
                    if not b:
                        break
                    h.update(b)
                    left -= len(b)
                body = b"%d %s" % (n - left, h.hexdigest().encode())
                self._head(length=len(body))
                self.wfile.write(body)

            def log_message(self, *a):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(crt, key)
        self.httpd.socket = self.ctx.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def pattern(n, offset=0):
    """The same bytes as helpers.pattern: byte i is 'a' + i % 26."""
    cycle = bytes(range(97, 97 + 26))
    start = offset % 26
    return (cycle * ((start + n) // 26 + 1))[start:start + n]
