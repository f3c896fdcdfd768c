"""Differential tests of framing: what sluice forwards, re-parsed by a strict
RFC 9112 parser of our own (strict_http, not llhttp), and what each client
then reads, parsed the same way.

Request side: for each payload class (the HTTP Garden / request-smuggling
families: Content-Length and Transfer-Encoding obfuscations, line endings,
folding, chunk framing, hop-by-hop tricks, absolute-form), the requests the
upstream parses must be exactly the ones sluice answered for, and a refused
request must never reach the upstream whole.

Response side: for each way an upstream can mis-frame an answer, every
client must read exactly the answers meant for it: the next request on the
same client connection and the next client through the same pool get their
own answers.
"""
import socket
import time

import pytest

import rawpeer
from rawpeer import RawUpstream, exchange, ok_answer
from strict_http import parse_requests


CHUNKED = b"Transfer-Encoding: chunked\r\n"


@pytest.fixture
def raw_upstream():
    ups = []

    def make(responder=ok_answer):
        u = RawUpstream(responder)
        ups.append(u)
        return u

    yield make
    for u in ups:
        u.close()


def post(headers, body=b"", target=b"/p"):
    return b"POST " + target + b" HTTP/1.1\r\nHost: t\r\n" + headers + b"\r\n" + body


SMUGGLED = b"GET /SMUGGLED HTTP/1.1\r\nHost: t\r\n\r\n"

# name -> (payload, statuses the client reads, requests the upstream parses
#          as (method, target, body))
REQUEST_CASES = {
    # Connection cannot remove the framing: the length sluice parsed is sent.
    "connection_names_content_length": (
        post(b"Connection: Content-Length\r\nContent-Length: 35\r\n", SMUGGLED),
        [200], [(b"POST", b"/p", SMUGGLED)]),
    "connection_names_transfer_encoding": (
        post(b"Connection: Transfer-Encoding\r\n" + CHUNKED, b"23\r\n" + SMUGGLED + b"\r\n0\r\n\r\n"),
        [200], [(b"POST", b"/p", SMUGGLED)]),
    "connection_names_host": (
        b"GET /h HTTP/1.1\r\nHost: t\r\nConnection: Host, close\r\n\r\n", [200], [(b"GET", b"/h", b"")]),
    # CONNECT carries no body
    "connect_with_content_length": (
        b"CONNECT t:443 HTTP/1.1\r\nHost: t:443\r\nContent-Length: 40\r\n\r\n", [400], []),
    "connect_with_transfer_encoding": (
        b"CONNECT t:443 HTTP/1.1\r\nHost: t:443\r\n" + CHUNKED + b"\r\n0\r\n\r\n", [400], []),
    # CR is a line end only before LF (llhttp 8.1 takes CR + any byte)
    "cr_then_byte_ends_head": (
        b"GET /a HTTP/1.1\r\nHost: t\r\n\rZGET /SMUGGLED HTTP/1.1\r\nHost: t\r\n\r\n", [400], []),
    "cr_inside_header_line": (b"GET /a HTTP/1.1\r\nHost: t\rX: y\r\n\r\n", [400], []),
    "cr_in_chunk_size_line": (post(CHUNKED, b"5\r\r;ABCD\r\nhello\r\n0\r\n\r\n"), [400], []),
    "cr_then_byte_after_chunk_size": (post(CHUNKED, b"5\rXhello\r\n0\r\n\r\n"), [400], []),
    "cr_in_chunk_extension": (post(CHUNKED, b"5;a\rb\r\nhello\r\n0\r\n\r\n"), [400], []),
    "cr_then_byte_in_trailers": (post(CHUNKED, b"5\r\nhello\r\n0\r\n\rX" + SMUGGLED), [400], []),
    "bare_lf_line_ends": (b"GET /a HTTP/1.1\nHost: t\n\n", [400], []),
    "bare_lf_before_te": (post(b"X: X\nTransfer-Encoding: chunked\r\n", b"0\r\n\r\n"), [400], []),
    "lf_inside_te_name": (post(b"Transfer-Encoding\n: chunked\r\n", b"0\r\n\r\n"), [400], []),
    # obsolete line folding, also with an empty first line
    "fold_of_empty_te": (post(b"Transfer-Encoding:\r\n chunked\r\n", b"0\r\n\r\n"), [400], []),
    "fold_of_empty_value": (b"GET /a HTTP/1.1\r\nHost: t\r\nX:\r\n b\r\n\r\n", [400], []),
    "leading_space_te_line": (post(b"X: a\r\n Transfer-Encoding: chunked\r\n", b"0\r\n\r\n"), [400], []),
    # Transfer-Encoding obfuscations
    "te_and_cl": (post(b"Content-Length: 6\r\n" + CHUNKED, b"0\r\n\r\nG"), [400], []),
    "cl_and_te": (post(CHUNKED + b"Content-Length: 4\r\n", b"5c\r\nGPOST / HTTP/1.1\r\n\r\n0\r\n\r\n"), [400], []),
    "te_xchunked": (post(b"Transfer-Encoding: xchunked\r\n", b"0\r\n\r\n"), [501], []),
    "te_xchunked_with_cl": (post(b"Transfer-Encoding: xchunked\r\nContent-Length: 5\r\n", b"hello"), [400], []),
    "te_space_before_colon": (post(b"Transfer-Encoding : chunked\r\n", b"0\r\n\r\n"), [400], []),
    "te_twice": (post(CHUNKED + b"Transfer-Encoding: x\r\n", b"0\r\n\r\n"), [400, 501], []),
    "te_chunked_identity": (post(b"Transfer-Encoding: chunked, identity\r\n", b"0\r\n\r\n"), [400, 501], []),
    "te_quoted": (post(b"Transfer-Encoding: \"chunked\"\r\n", b"0\r\n\r\n"), [400, 501], []),
    "te_tab_before_value": (post(b"Transfer-Encoding:\tchunked\r\n", b"5\r\nhello\r\n0\r\n\r\n"),
                            [200], [(b"POST", b"/p", b"hello")]),
    "te_upper_case": (post(b"Transfer-Encoding: CHUNKED\r\n", b"5\r\nhello\r\n0\r\n\r\n"),
                      [200], [(b"POST", b"/p", b"hello")]),
    "te_in_http10": (b"POST /a HTTP/1.0\r\n" + CHUNKED + b"Connection: keep-alive\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
                     b"GET /second HTTP/1.1\r\nHost: t\r\n\r\n", [400], []),
    # Content-Length obfuscations and limits
    "cl_plus": (post(b"Content-Length: +5\r\n", b"hello"), [400], []),
    "cl_hex": (post(b"Content-Length: 0x5\r\n", b"hello"), [400], []),
    "cl_decimal": (post(b"Content-Length: 5.0\r\n", b"hello"), [400], []),
    "cl_list": (post(b"Content-Length: 5, 5\r\n", b"hello"), [400], []),
    "cl_repeated_same": (post(b"Content-Length: 5\r\nContent-Length: 5\r\n", b"hello"), [400], []),
    "cl_2_64_minus_1": (post(b"Content-Length: 18446744073709551615\r\n", b"hello"), [400], []),
    "cl_2_63": (post(b"Content-Length: 9223372036854775808\r\n", b"hello"), [400], []),
    "cl_leading_zeros": (post(b"Content-Length: 0005\r\n", b"hello"), [200], [(b"POST", b"/p", b"hello")]),
    "cl_on_get": (b"GET /g HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc", [200], [(b"GET", b"/g", b"abc")]),
    # chunk framing
    "chunk_size_hex_prefix": (post(CHUNKED, b"0x5\r\nhello\r\n0\r\n\r\n"), [400], []),
    "chunk_size_plus": (post(CHUNKED, b"+5\r\nhello\r\n0\r\n\r\n"), [400], []),
    "chunk_size_negative": (post(CHUNKED, b"-5\r\nhello\r\n0\r\n\r\n"), [400], []),
    "chunk_size_overflow": (post(CHUNKED, b"10000000000000005\r\nhello\r\n0\r\n\r\n"), [400], []),
    "chunk_size_trailing_space": (post(CHUNKED, b"5 \r\nhello\r\n0\r\n\r\n"), [400], []),
    "chunk_size_bare_lf": (post(CHUNKED, b"5\nhello\r\n0\r\n\r\n"), [400], []),
    "chunk_data_too_long": (post(CHUNKED, b"5\r\nhelloXX0\r\n\r\n"), [400], []),
    "chunk_ext_nul": (post(CHUNKED, b"5;a=\x00\r\nhello\r\n0\r\n\r\n"), [400], []),
    "chunk_ext_valid": (post(CHUNKED, b"5;a=b;c=\"d;e\"\r\nhello\r\n0;z\r\n\r\n"), [200], [(b"POST", b"/p", b"hello")]),
    "chunk_ext_bws": (post(CHUNKED, b"5 ;a = b\r\nhello\r\n0\r\n\r\n"), [200], [(b"POST", b"/p", b"hello")]),
    "trailer_with_framing_fields": (post(CHUNKED, b"5\r\nhello\r\n0\r\nContent-Length: 99\r\nTransfer-Encoding: x\r\n\r\n"),
                                    [200], [(b"POST", b"/p", b"hello")]),
    "trailer_without_colon": (post(CHUNKED, b"5\r\nhello\r\n0\r\nX\r\n\r\n"), [400], []),
    "trailer_folded": (post(CHUNKED, b"5\r\nhello\r\n0\r\nX: a\r\n b\r\n\r\n"), [400], []),
    # names, values, request lines
    "empty_header_name": (b"GET /a HTTP/1.1\r\nHost: t\r\n: x\r\n\r\n", [400], []),
    "colon_only_line": (b"GET /a HTTP/1.1\r\nHost: t\r\n:\r\n\r\n", [400], []),
    "tab_in_name": (b"GET /a HTTP/1.1\r\nHost: t\r\nX\t: y\r\n\r\n", [400], []),
    "nul_in_value": (b"GET /a HTTP/1.1\r\nHost: t\r\nX: a\x00b\r\n\r\n", [400], []),
    "del_in_value": (b"GET /a HTTP/1.1\r\nHost: t\r\nX: a\x7fb\r\n\r\n", [400], []),
    "del_in_target": (b"GET /a\x7f HTTP/1.1\r\nHost: t\r\n\r\n", [400], []),
    "double_space_request_line": (b"GET  /a HTTP/1.1\r\nHost: t\r\n\r\n", [400], []),
    "trailing_space_request_line": (b"GET /a HTTP/1.1 \r\nHost: t\r\n\r\n", [400], []),
    "tab_request_line": (b"GET\t/a HTTP/1.1\r\nHost: t\r\n\r\n", [400], []),
    "userinfo_in_absolute_form": (b"GET http://u@t/a HTTP/1.1\r\nHost: t\r\n\r\n", [400], []),
    "absolute_form_without_host": (b"GET http:///a HTTP/1.1\r\nHost: t\r\n\r\n", [400], []),
    "pipelined_pair": (b"GET /1 HTTP/1.1\r\nHost: t\r\n\r\nGET /2 HTTP/1.1\r\nHost: t\r\n\r\n",
                       [200, 200], [(b"GET", b"/1", b""), (b"GET", b"/2", b"")]),
    "leading_empty_line": (b"\r\nGET /e HTTP/1.1\r\nHost: t\r\n\r\n", [200], [(b"GET", b"/e", b"")]),
}


def methods_of(payload, n):
    """The methods of the first n requests of a payload, for reading answers."""
    ms = [line.split(b" ", 1)[0] for line in payload.split(b"\r\n") if b" HTTP/1." in line and not line.startswith(b"HTTP")]
    return (ms + [b"GET"] * n)[:n]


@pytest.mark.parametrize("name", sorted(REQUEST_CASES))
def test_request_framing_differential(raw_upstream, start_sluice, name):
    payload, statuses, expected = REQUEST_CASES[name]
    up = raw_upstream()
    sl = start_sluice(up.port, workers=1, max_retries=0)
    answers, _, closed, _ = exchange(sl.port, payload, methods_of(payload, len(statuses)), timeout=3)
    got = [a.status for a in answers]
    if len(statuses) == 2 and len(expected) == 0:  # either refusal is right: "400 or 501"
        assert len(got) == 1 and got[0] in statuses, "%s: client read %r" % (name, got)
    else:
        assert got == statuses, "%s: client read %r" % (name, got)
    if got and got[0] >= 400:
        assert closed, "%s: connection kept after a refusal" % name
    # the pool is not poisoned: a second client gets its own answer
    after, _, _, _ = exchange(sl.port, b"GET /after HTTP/1.1\r\nHost: t\r\n\r\n", ["GET"])
    assert [a.body for a in after] == [b"GET /after 0"], name
    seen = [(m.method, m.target, m.body) for m in up.requests()]
    assert seen == expected + [(b"GET", b"/after", b"")], "%s: the upstream parsed %r" % (name, seen)
    assert up.errors() == [], name
    for req in up.requests():
        assert len(req.get_all("host")) == 1
    for answer, (_, _, body) in zip(answers, expected):
        assert answer.body.split(b" ")[-1] == b"%d" % len(body)


def test_forwarded_heads_are_rebuilt(raw_upstream, start_sluice):
    """The Host a request is for, framing from the parsed length, names with
    '_' dropped: what the upstream reads is what sluice decided."""
    up = raw_upstream()
    sl = start_sluice(up.port, workers=1, max_retries=0)
    cases = [
        (b"GET http://good.example/x HTTP/1.1\r\nHost: evil.example\r\n\r\n", b"host", [b"good.example"]),
        (b"GET /x HTTP/1.0\r\n\r\n", b"host", [b"127.0.0.1:%d" % up.port]),
        (post(b"Content-Length: 0005\r\n", b"hello"), b"content-length", [b"5"]),
        (post(b"Content_Length: 99\r\nContent-Length: 5\r\n", b"hello"), b"content_length", []),
        (b"GET /x HTTP/1.1\r\nHost: t\r\nX_Forwarded_For: 6.6.6.6\r\n\r\n", b"x_forwarded_for", []),
        (b"GET /x HTTP/1.1\r\nHost: t\r\nX_Forwarded_For: 6.6.6.6\r\n\r\n", b"x-forwarded-for", [b"127.0.0.1"]),
    ]
    for i, (payload, header, values) in enumerate(cases):
        answers, _, _, _ = exchange(sl.port, payload, methods_of(payload, 1))
        assert [a.status for a in answers] == [200], payload
        req = up.requests()[-1]
        assert req.get_all(header) == values, (payload, req.headers)
        assert req.version == (1, 1)
    assert up.errors() == []


# ---- the response side --------------------------------------------------------

GOOD = b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\ngood"

# name -> (what the upstream answers to GET /bad, what the client must read
#          for it: (status, body, interim statuses) or None for a cut connection)
RESPONSE_CASES = {
    "100_announcing_a_body": (
        b"HTTP/1.1 100 Continue\r\nContent-Length: 58\r\n\r\n"
        b"HTTP/1.1 200 OK\r\nX-Injected: 1\r\nContent-Length: 5\r\n\r\nPWNED" + GOOD,
        (200, b"PWNED", [100])),
    "chunked_102_announcing_a_body": (
        b"HTTP/1.1 102 Processing\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nPWNED\r\n0\r\n\r\n" + GOOD,
        None),
    "two_103_then_200": (
        b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </b>\r\n\r\n" + GOOD,
        (200, b"good", [103, 103])),
    "204_with_length_and_bytes": (b"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\nPWNED", (204, b"", [])),
    "204_chunked": (b"HTTP/1.1 204 No Content\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nPWNED\r\n0\r\n\r\n",
                    (204, b"", [])),
    "304_with_length_no_body": (b"HTTP/1.1 304 Not Modified\r\nContent-Length: 1234\r\n\r\n", (304, b"", [])),
    "status_two_digits": (b"HTTP/1.1 20 OK\r\nContent-Length: 0\r\n\r\n" + GOOD, (502, None, [])),
    "status_zero": (b"HTTP/1.1 0 OK\r\nContent-Length: 0\r\n\r\n" + GOOD, (502, None, [])),
    "status_099": (b"HTTP/1.1 099 OK\r\nContent-Length: 0\r\n\r\n" + GOOD, (502, None, [])),
    "status_600": (b"HTTP/1.1 600 OK\r\nContent-Length: 0\r\n\r\n", (502, None, [])),
    "framing_error_behind_head": (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", (502, None, [])),
    "framing_error_after_first_chunk": (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\n", None),
    "cr_in_reason": (b"HTTP/1.1 200 O\rK\r\nContent-Length: 0\r\n\r\n", (502, None, [])),
    "bare_lf_head": (b"HTTP/1.1 200 OK\nContent-Length: 0\n\n", (502, None, [])),
    "connection_names_content_length": (
        b"HTTP/1.1 200 OK\r\nConnection: Content-Length\r\nContent-Length: 5\r\n\r\nhello", (200, b"hello", [])),
    "gzip_then_chunked": (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
                          (502, None, [])),
    "cl_2_64_minus_1": (b"HTTP/1.1 200 OK\r\nContent-Length: 18446744073709551615\r\n\r\nhello", (502, None, [])),
    "chunk_size_then_spaces": (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5  \r\nhello\r\n0\r\n\r\n",
                               (200, b"hello", [])),
    "extra_bytes_after_answer": (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
                                 b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nSPLICE", (200, b"ok", [])),
    "http10_chunked": (b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: keep-alive\r\n\r\n"
                       b"5\r\nhello\r\n0\r\n\r\n", (200, b"hello", [])),
    "trailer_in_answer": (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n"
                          b"Content-Length: 99\r\n\r\n", (200, b"hello", [])),
}


def scripted(bad_answers):
    def respond(msg, conn):
        if msg.target.startswith(b"/bad"):
            return bad_answers[msg.target]
        return ok_answer(msg, conn)
    return respond


@pytest.mark.parametrize("name", sorted(RESPONSE_CASES))
def test_response_framing_differential(raw_upstream, start_sluice, name):
    answer, want = RESPONSE_CASES[name]
    up = raw_upstream(scripted({b"/bad": answer}))
    sl = start_sluice(up.port, workers=1, max_retries=0, read_timeout=3)
    with socket.create_connection(("127.0.0.1", sl.port), timeout=5) as s:
        s.sendall(b"GET /bad HTTP/1.1\r\nHost: t\r\n\r\n")
        got = read_answers(s, ["GET"])
        if want is None:
            # no way to relay it faithfully once its head is out: a cut, or a
            # clean 502 before anything reached the client
            assert len(got) == 0 or got[0].status == 502, "%s: %r" % (name, got)
        else:
            status, body, interim = want
            assert len(got) == 1, "%s: client read %r" % (name, got)
            assert got[0].status == status, name
            if body is not None:
                assert got[0].body == body, name
            assert [i.status for i in got[0].interim] == interim, name
        # the same client connection, if still open, carries its next answer
        started = time.monotonic()
        try:
            s.sendall(b"GET /next HTTP/1.1\r\nHost: t\r\n\r\n")
            nxt = read_answers(s, ["GET"])
        except (BrokenPipeError, ConnectionResetError):
            nxt = []
        kept = got and not any(v.lower() == b"close" for v in got[0].get_all("connection"))
        if kept or nxt:
            assert [n.body for n in nxt] == [b"GET /next 0"], "%s: the next answer was %r" % (name, nxt)
            assert time.monotonic() - started < 1.5, "%s: the next answer waited" % name
    other, _, _, _ = exchange(sl.port, b"GET /other HTTP/1.1\r\nHost: t\r\n\r\n", ["GET"])
    assert [o.body for o in other] == [b"GET /other 0"], "%s: another client read %r" % (name, other)
    assert up.errors() == [], name


def read_answers(s, methods, timeout=3.0):
    return rawpeer.read_answers(s, methods, timeout)[0]  # within `timeout` in all


def test_interim_answers_not_sent_to_http10(raw_upstream, start_sluice):
    answer = b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n" + GOOD
    up = raw_upstream(scripted({b"/bad": answer}))
    sl = start_sluice(up.port, workers=1, max_retries=0)
    answers, _, _, _ = exchange(sl.port, b"GET /bad HTTP/1.0\r\n\r\n", ["GET"])
    assert [(a.status, a.body, a.interim) for a in answers] == [(200, b"good", [])]


def test_head_answer_with_length_ends_at_its_head(raw_upstream, start_sluice):
    up = raw_upstream(lambda m, c: b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n" if m.method == b"HEAD"
                      else ok_answer(m, c))
    sl = start_sluice(up.port, workers=1, max_retries=0, read_timeout=3)
    started = time.monotonic()
    answers, _, _, _ = exchange(sl.port, b"HEAD /h HTTP/1.1\r\nHost: t\r\n\r\nGET /n HTTP/1.1\r\nHost: t\r\n\r\n",
                                ["HEAD", "GET"])
    assert [(a.status, a.get("content-length"), a.body) for a in answers] == \
        [(200, b"10", b""), (200, b"8", b"GET /n 0")]
    assert time.monotonic() - started < 1.5


def test_refused_connect_never_pools_its_connection(raw_upstream, start_sluice):
    """A CONNECT refused with a kept-alive answer: the next request, from
    another client, must not ride the connection the CONNECT went out on."""
    def respond(msg, conn):
        if msg.method == b"CONNECT":
            return b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n"
        return ok_answer(msg, conn)
    up = raw_upstream(respond)
    sl = start_sluice(up.port, workers=1, max_retries=0)
    answers, _, closed, _ = exchange(sl.port, b"CONNECT t:443 HTTP/1.1\r\nHost: t:443\r\n\r\n", ["CONNECT"])
    assert [a.status for a in answers] == [403]
    assert closed
    victim, _, _, _ = exchange(sl.port, b"GET /victim HTTP/1.1\r\nHost: t\r\n\r\n", ["GET"])
    assert [v.body for v in victim] == [b"GET /victim 0"]
    by_conn = {c.id: [m.method for m in c.requests] for c in up.conns}
    assert sorted(by_conn.values()) == [[b"CONNECT"], [b"GET"]], by_conn
    assert up.errors() == []


def test_http10_chunked_answer_is_not_reused(raw_upstream, start_sluice):
    def respond(msg, conn):
        if msg.target == b"/old":
            return b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: keep-alive\r\n\r\n2\r\nok\r\n0\r\n\r\n"
        return ok_answer(msg, conn)
    up = raw_upstream(respond)
    sl = start_sluice(up.port, workers=1, max_retries=0)
    for target in (b"/old", b"/new"):
        exchange(sl.port, b"GET " + target + b" HTTP/1.1\r\nHost: t\r\n\r\n", ["GET"])
    assert [[m.target for m in c.requests] for c in up.conns] == [[b"/old"], [b"/new"]]


def test_huge_length_is_413_with_a_body_limit(raw_upstream, start_sluice):
    up = raw_upstream()
    sl = start_sluice(up.port, workers=1, max_body_size=1000)
    answers, _, closed, _ = exchange(sl.port, post(b"Content-Length: 18446744073709551615\r\n", b"x"), ["POST"])
    assert [a.status for a in answers] == [413] and closed
    assert up.requests() == []


def test_strict_parser_refuses_what_it_should():
    """The harness itself: the strict parser must see the bad framings."""
    from strict_http import StrictError
    for bad in (b"GET / HTTP/1.1\r\nHost: t\r\n\rZ\r\n\r\n", b"GET / HTTP/1.1\r\nHost: t\r\nX:\r\n y\r\n\r\n",
                b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\n" + CHUNKED + b"\r\n0\r\n\r\n",
                b"POST / HTTP/1.1\r\nHost: t\r\n" + CHUNKED + b"\r\n5 \r\nhello\r\n0\r\n\r\n",
                b"GET / HTTP/1.1\r\n\r\n"):
        with pytest.raises(StrictError):
            parse_requests(bad)
    msgs, rest = parse_requests(b"GET /a HTTP/1.1\r\nHost: t\r\n\r\nPOST /b HTTP/1.1\r\nHost: t\r\n" + CHUNKED +
                                b"\r\n3\r\nabc\r\n0\r\n\r\nGET /c HTTP/1.1\r\n")
    assert [(m.target, m.body) for m in msgs] == [(b"/a", b""), (b"/b", b"abc")] and rest.startswith(b"GET /c")
