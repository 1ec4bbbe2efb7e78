"""HTTP helpers for the integration tests (stdlib only).

Normal requests go through http.client, one fresh connection per call, so a
test never inherits a connection that an earlier test left in a bad state.
Malformed requests go through raw sockets (raw_exchange), because
http.client refuses to send most of them.

Named client.py, not http.py: a module called http.py next to run.py would
shadow the standard library's http package.
"""

import http.client
import json
import os
import re
import socket
import threading
import time
import uuid

HOST = "127.0.0.1"
TIMEOUT = float(os.environ.get("STOCKFLOW_IT_HTTP_TIMEOUT", "30"))
UUID_RE = re.compile(
    r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
POSITION_RE = re.compile(r"^(catalog|stock)-[0-9]+-[0-9]+$")


class Response:
    """status (int), headers (dict, lower-case names), body (parsed JSON, or
    the raw text when it is not JSON), raw (bytes)."""

    def __init__(self, status, headers, raw):
        self.status = status
        self.headers = headers
        self.raw = raw
        ctype = headers.get("content-type", "")
        self.body = None
        if raw and "json" in ctype:
            try:
                self.body = json.loads(raw.decode("utf-8"))
            except (UnicodeDecodeError, ValueError):
                self.body = raw.decode("utf-8", "replace")
        elif raw:
            self.body = raw.decode("utf-8", "replace")

    def __iter__(self):
        # Lets a test write `status, headers, body = post(...)`.
        return iter((self.status, self.headers, self.body))

    def __repr__(self):
        text = self.raw[:400].decode("utf-8", "replace")
        return f"<HTTP {self.status} {text!r}>"


def _auth_headers():
    """The runner logs in as the bootstrap admin and puts the token here;
    every request carries it unless the test overrides Authorization."""
    token = os.environ.get("STOCKFLOW_TEST_TOKEN")
    return {"Authorization": f"Bearer {token}"} if token else {}


NO_AUTH = {"Authorization": None}


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


def request(port, method, path, body=None, headers=None, timeout=TIMEOUT):
    """One request on a new connection. body: dict/list (sent as JSON),
    bytes or str (sent as is), or None. Returns a Response."""
    hdrs = {"Connection": "close"}
    hdrs.update(_auth_headers())
    data = None
    if body is not None:
        if isinstance(body, (bytes, bytearray)):
            data = bytes(body)
        elif isinstance(body, str):
            data = body.encode("utf-8")
        else:
            data = json.dumps(body).encode("utf-8")
        hdrs["Content-Type"] = "application/json"
    if headers:
        hdrs.update(headers)
    # A header given as None is not sent (e.g. {"Authorization": None}).
    hdrs = {k: v for k, v in hdrs.items() if v is not None}
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request(method, path, body=data, headers=hdrs)
        resp = conn.getresponse()
        raw = resp.read()
        headers_out = {k.lower(): v for k, v in resp.getheaders()}
        return Response(resp.status, headers_out, raw)
    finally:
        conn.close()


def get(port, path, headers=None, timeout=TIMEOUT):
    return request(port, "GET", path, None, headers, timeout)


def post(port, path, body=None, headers=None, timeout=TIMEOUT):
    return request(port, "POST", path, body, headers, timeout)


def patch(port, path, body=None, headers=None, timeout=TIMEOUT):
    return request(port, "PATCH", path, body, headers, timeout)


def delete(port, path, headers=None, timeout=TIMEOUT):
    return request(port, "DELETE", path, None, headers, timeout)


def parallel(n, fn, timeout=120):
    """Runs fn(i) for i in 0..n-1 on n threads released together; returns
    the results (an exception object where a call raised)."""
    results = [None] * n
    start = threading.Barrier(n)

    def run(i):
        try:
            start.wait(20)
            results[i] = fn(i)
        except Exception as e:  # noqa: BLE001 - reported by the caller
            results[i] = e

    threads = [threading.Thread(target=run, args=(i,), daemon=True)
               for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout)
    return results


def with_position(path, position):
    """path with ?min_position=<position> (or &min_position=) appended."""
    sep = "&" if "?" in path else "?"
    return f"{path}{sep}min_position={position}"


def eventually(fn, timeout=15.0, interval=0.1, what="condition"):
    """Calls fn until it returns without raising AssertionError and returns
    its result. On timeout re-raises the last AssertionError with
    the elapsed time, so the reason of the last attempt is reported."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            return fn()
        except AssertionError as e:
            last = e
        if time.monotonic() >= deadline:
            raise AssertionError(
                f"{what} not reached within {timeout:.0f}s: {last}")
        time.sleep(interval)


def new_uuid():
    """A random (v4) UUID string: well-formed but unknown to the services."""
    return str(uuid.uuid4())


def unique(prefix):
    """A short unique string for names and skus."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


# ---- assertions that report the response they looked at ----

def expect_status(resp, status, what=""):
    statuses = status if isinstance(status, (tuple, list, set)) else (status,)
    if resp.status not in statuses:
        raise AssertionError(
            f"{what + ': ' if what else ''}expected HTTP {status}, got {resp!r}")
    return resp


def expect_json(resp, status, what=""):
    """Exact status, a JSON content type and an object body."""
    expect_status(resp, status, what)
    ctype = resp.headers.get("content-type", "")
    assert ctype.startswith("application/json"), \
        f"{what}: content-type {ctype!r} is not application/json: {resp!r}"
    assert isinstance(resp.body, dict), f"{what}: body is not an object: {resp!r}"
    return resp.body


def expect_problem(resp, status, code=None, what=""):
    """A problem+json answer with the given status and stable code (code may
    be a tuple of acceptable codes, or None to accept any non-empty code)."""
    expect_status(resp, status, what)
    ctype = resp.headers.get("content-type", "")
    assert ctype.startswith("application/problem+json"), \
        f"{what}: content-type {ctype!r} is not application/problem+json: {resp!r}"
    body = resp.body
    assert isinstance(body, dict), f"{what}: problem body is not an object: {resp!r}"
    for field in ("type", "title", "status", "detail", "code"):
        assert field in body, f"{what}: problem lacks {field!r}: {resp!r}"
    assert body["status"] == resp.status, \
        f"{what}: problem status {body['status']!r} != HTTP {resp.status}"
    assert isinstance(body["code"], str) and body["code"], \
        f"{what}: problem code empty: {resp!r}"
    if code is not None:
        codes = code if isinstance(code, (tuple, list, set)) else (code,)
        assert body["code"] in codes, \
            f"{what}: expected code {code!r}, got {body['code']!r}: {resp!r}"
    return body


def expect_uuid(value, what="id"):
    assert isinstance(value, str) and UUID_RE.match(value), \
        f"{what} {value!r} is not a lower-case UUID string"
    return value


def expect_position(value, what="position"):
    assert isinstance(value, str) and POSITION_RE.match(value), \
        f"{what} {value!r} is not a position token like stock-3-1234"
    return value


def position_offset(pos):
    """(kind, partition, offset) of a position token."""
    kind, part, off = pos.rsplit("-", 2)
    return kind, int(part), int(off)


# ---- raw sockets for malformed requests ----

def raw_connect(port, timeout=10.0):
    s = socket.create_connection((HOST, port), timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def read_until_close(sock, timeout=10.0, limit=1 << 20, until_close=False):
    """Reads until the peer closes, the timeout passes, limit bytes came or
    (unless until_close) one whole response came. Returns (bytes, closed):
    closed is True when the peer closed (EOF or reset)."""
    sock.settimeout(0.2)
    deadline = time.monotonic() + timeout
    buf = b""
    while time.monotonic() < deadline and len(buf) < limit:
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            continue
        except (ConnectionResetError, BrokenPipeError):
            return buf, True
        if not chunk:
            return buf, True
        buf += chunk
        if not until_close and _complete_response(buf):
            return buf, False
    return buf, False


def _complete_response(buf):
    """True when buf holds one whole response (headers and Content-Length
    body)."""
    head, sep, rest = buf.partition(b"\r\n\r\n")
    if not sep:
        return False
    m = re.search(rb"(?im)^content-length:\s*([0-9]+)\s*$", head)
    if not m:
        return False
    return len(rest) >= int(m.group(1))


def parse_status(raw):
    """Status code of the first response in raw bytes, or None if raw does
    not start with an HTTP/1.x status line."""
    m = re.match(rb"HTTP/1\.[01] ([0-9]{3}) ", raw)
    return int(m.group(1)) if m else None


def raw_exchange(port, data, timeout=10.0, shut_wr=False, until_close=False):
    """Sends data on a new connection (optionally half-closing after), reads
    the answer (and, if until_close, on until the server closes). Returns
    (status or None, raw bytes, closed). A reset while sending counts as
    closed."""
    s = raw_connect(port, timeout)
    try:
        try:
            s.sendall(data)
            if shut_wr:
                s.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            return None, b"", True
        raw, closed = read_until_close(s, timeout, until_close=until_close)
        return parse_status(raw), raw, closed
    finally:
        s.close()
