"""A strict HTTP/1.1 message parser (RFC 9112), independent of llhttp, for the
differential tests: what sluice sends either way is re-parsed here, and any
byte that a strict recipient would read differently from a lenient one is an
error, not a guess.

Stricter than a server needs to be on purpose: no bare CR or LF, no obsolete
line folding, no control characters, exactly one framing, chunk lines without
whitespace, 1xx and 204 without framing headers. sluice's output must pass
all of it.
"""
import re

TCHAR = set(b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
REQUEST_LINE = re.compile(rb"^([!#$%&'*+\-.^_`|~0-9A-Za-z]+) ([\x21-\x7e\x80-\xff]+) HTTP/([0-9])\.([0-9])$")
STATUS_LINE = re.compile(rb"^HTTP/([0-9])\.([0-9]) ([0-9]{3}) ([\t\x20-\x7e\x80-\xff]*)$")
CHUNK_LINE = re.compile(rb"^([0-9A-Fa-f]+)((?:;[!#$%&'*+\-.^_`|~0-9A-Za-z]+(?:=(?:[!#$%&'*+\-.^_`|~0-9A-Za-z]+|"
                        rb"\"(?:[\t \x21\x23-\x5b\x5d-\x7e\x80-\xff]|\\[\t \x21-\x7e\x80-\xff])*\"))?)*)$")


class StrictError(Exception):
    """The bytes are not one strict reading of HTTP/1.1."""


class Message:
    def __init__(self):
        self.method = None
        self.target = None
        self.status = None
        self.reason = None
        self.version = None
        self.headers = []  # [(name, value)] as bytes, in order
        self.body = b""
        self.trailers = []
        self.interim = []  # responses: the 1xx before this final answer
        self.raw = b""     # the bytes of the whole message

    def get_all(self, name):
        name = name.lower().encode() if isinstance(name, str) else name.lower()
        return [v for n, v in self.headers if n.lower() == name]

    def get(self, name):
        values = self.get_all(name)
        if len(values) > 1:
            raise StrictError("%r repeated" % name)
        return values[0] if values else None

    def __repr__(self):
        first = (self.method or b"") + b" " + (self.target or b"") if self.method else b"%d" % (self.status or 0)
        return "<%s body=%d>" % (first.decode(errors="replace"), len(self.body))


def _check_field_lines(lines):
    fields = []
    for line in lines:
        if not line:
            raise StrictError("empty line inside a head")
        if line[:1] in (b" ", b"\t"):
            raise StrictError("obsolete line folding: %r" % line)
        name, sep, value = line.partition(b":")
        if not sep or not name or any(c not in TCHAR for c in name):
            raise StrictError("bad field line %r" % line)
        value = value.strip(b" \t")
        if any((c < 0x20 and c != 0x09) or c == 0x7F for c in value):
            raise StrictError("control character in %r" % line)
        fields.append((name, value))
    return fields


def _split_head(data, pos):
    """(lines, end) of the head starting at pos, or None while incomplete."""
    end = data.find(b"\r\n\r\n", pos)
    if end < 0:
        if b"\n" in data[pos:].replace(b"\r\n", b""):
            raise StrictError("bare LF in a head")
        return None
    head = data[pos:end]
    if b"\r" in head.replace(b"\r\n", b"") or b"\n" in head.replace(b"\r\n", b""):
        raise StrictError("bare CR or LF in a head: %r" % head[:200])
    return head.split(b"\r\n"), end + 4


def _content_length(msg):
    values = msg.get_all("content-length")
    if not values:
        return None
    if len(values) > 1:
        raise StrictError("Content-Length repeated")
    if not re.fullmatch(rb"[0-9]{1,18}", values[0]):
        raise StrictError("bad Content-Length %r" % values[0])
    return int(values[0])


def _chunked(msg):
    te = msg.get_all("transfer-encoding")
    if not te:
        return False
    if len(te) != 1 or te[0].lower() != b"chunked":
        raise StrictError("Transfer-Encoding %r" % te)
    if msg.get_all("content-length"):
        raise StrictError("both Content-Length and Transfer-Encoding")
    return True


def _read_chunked(data, pos, msg):
    """Returns the position after the body, or None while incomplete."""
    body = []
    while True:
        eol = data.find(b"\r\n", pos)
        if eol < 0:
            if b"\n" in data[pos:] or (b"\r" in data[pos:-1]):
                raise StrictError("bad chunk line %r" % data[pos:pos + 40])
            return None
        line = data[pos:eol]
        m = CHUNK_LINE.match(line)
        if not m:
            raise StrictError("bad chunk line %r" % line)
        size = int(m.group(1), 16)
        pos = eol + 2
        if size == 0:
            break
        if len(data) < pos + size + 2:
            return None
        body.append(data[pos:pos + size])
        if data[pos + size:pos + size + 2] != b"\r\n":
            raise StrictError("chunk data not followed by CRLF")
        pos += size + 2
    lines = []
    while True:
        eol = data.find(b"\r\n", pos)
        if eol < 0:
            return None
        line = data[pos:eol]
        pos = eol + 2
        if not line:
            break
        lines.append(line)
    msg.trailers = _check_field_lines(lines)
    msg.body = b"".join(body)
    return pos


def parse_requests(data):
    """All complete requests in data: ([Message], bytes left over). Raises
    StrictError at the first byte a strict server would refuse."""
    out, pos = [], 0
    while pos < len(data):
        split = _split_head(data, pos)
        if split is None:
            break
        lines, body_at = split
        m = REQUEST_LINE.match(lines[0])
        if not m:
            raise StrictError("bad request line %r" % lines[0])
        msg = Message()
        msg.method, msg.target = m.group(1), m.group(2)
        msg.version = (int(m.group(3)), int(m.group(4)))
        if msg.version not in ((1, 0), (1, 1)):
            raise StrictError("version %r" % (msg.version,))
        msg.headers = _check_field_lines(lines[1:])
        if msg.version == (1, 1) and len(msg.get_all("host")) != 1:
            raise StrictError("Host missing or repeated")
        if _chunked(msg):
            end = _read_chunked(data, body_at, msg)
            if end is None:
                break
        else:
            n = _content_length(msg) or 0
            if len(data) < body_at + n:
                break
            msg.body = data[body_at:body_at + n]
            end = body_at + n
        msg.raw = data[pos:end]
        out.append(msg)
        pos = end
    return out, data[pos:]


def parse_responses(data, methods, eof=True):
    """The responses in data to requests with these methods, in order:
    ([Message], bytes left over). 1xx answers are collected into the next
    final answer's `interim`. A 2xx to CONNECT ends the HTTP part. With eof,
    a close-delimited body ends at the end of data."""
    out, pos, interim = [], 0, []
    methods = [m.encode() if isinstance(m, str) else m for m in methods]
    while pos < len(data) and len(out) < len(methods):
        split = _split_head(data, pos)
        if split is None:
            break
        lines, body_at = split
        m = STATUS_LINE.match(lines[0])
        if not m:
            raise StrictError("bad status line %r" % lines[0])
        msg = Message()
        msg.version = (int(m.group(1)), int(m.group(2)))
        msg.status, msg.reason = int(m.group(3)), m.group(4)
        if msg.version not in ((1, 0), (1, 1)) or not 100 <= msg.status <= 599:
            raise StrictError("bad status line %r" % lines[0])
        msg.headers = _check_field_lines(lines[1:])
        method = methods[len(out)]
        if msg.status < 200 or msg.status == 204:
            if msg.get_all("content-length") or msg.get_all("transfer-encoding"):
                raise StrictError("%d with framing headers" % msg.status)
        if msg.status < 200:
            if msg.status == 101:
                raise StrictError("101 Switching Protocols")
            msg.raw = data[pos:body_at]
            interim.append(msg)
            pos = body_at
            continue
        msg.interim, interim = interim, []
        chunked = _chunked(msg)
        length = _content_length(msg)
        if method == b"CONNECT" and msg.status < 300:
            msg.raw = data[pos:body_at]
            out.append(msg)
            return out, data[body_at:]
        if method == b"HEAD" or msg.status in (204, 304):
            end = body_at
        elif chunked:
            end = _read_chunked(data, body_at, msg)
            if end is None:
                break
        elif length is not None:
            if len(data) < body_at + length:
                break
            msg.body = data[body_at:body_at + length]
            end = body_at + length
        else:
            if not eof:
                break
            msg.body = data[body_at:]
            end = len(data)
        msg.raw = data[pos:end]
        out.append(msg)
        pos = end
    return out, data[pos:]
