"""Throwaway TLS material for the tests, made with the openssl command line:
a CA, and leaf certificates it signs (for a name and 127.0.0.1), plus a
small threaded HTTPS server that answers like sluice-upstream's default
route. Nothing here is used outside the tests."""
import http.server
import os
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
    """A threaded HTTPS/1.1 server on 127.0.0.1: GET /?delay_ms=N answers
    "ok <path>" after N ms. Keep-alive, so one TLS connection carries many."""

    def __init__(self, key, crt):
        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                import time
                import urllib.parse
                q = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
                time.sleep(int(q.get("delay_ms", ["0"])[0]) / 1000)
                body = b"ok " + self.path.encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(crt, key)
        self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()
