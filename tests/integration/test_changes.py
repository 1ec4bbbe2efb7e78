"""GET /v1/changes on the query service: read-model changes pushed over
Server-Sent Events and WebSocket, filtered by store, resumable by id with
nothing lost or repeated."""

import base64
import hashlib
import json
import os
import socket
import time

import api
import client
from client import expect_problem, get

WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class Sse:
    """A Server-Sent Events reader on a raw socket (the stream has no
    Content-Length; a chunked one is de-chunked)."""

    def __init__(self, port, path, headers=None, timeout=10.0):
        self.sock = client.raw_connect(port, timeout)
        hdrs = {"Host": "it", "Accept": "text/event-stream"}
        hdrs.update(client._auth_headers())
        hdrs.update(headers or {})
        req = f"GET {path} HTTP/1.1\r\n" + "".join(
            f"{k}: {v}\r\n" for k, v in hdrs.items()) + "\r\n"
        self.sock.sendall(req.encode())
        self.buf = b""
        head = self._read_until(b"\r\n\r\n", timeout)
        lines = head.decode("latin-1").split("\r\n")
        self.status = client.parse_status(head)
        self.headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            self.headers[k.strip().lower()] = v.strip()
        self.chunked = "chunked" in self.headers.get("transfer-encoding", "")
        self.text = b""   # de-chunked event-stream bytes not yet parsed
        if self.status != 200:
            # An error answer: read its body for the test to inspect.
            n = int(self.headers.get("content-length", "0"))
            self.body = self._take(n, timeout)

    def _fill(self, deadline):
        self.sock.settimeout(max(0.05, deadline - time.monotonic()))
        try:
            chunk = self.sock.recv(65536)
        except socket.timeout:
            return False
        if not chunk:
            raise AssertionError("the server closed the event stream")
        self.buf += chunk
        return True

    def _read_until(self, marker, timeout):
        deadline = time.monotonic() + timeout
        while marker not in self.buf:
            if time.monotonic() >= deadline or not self._fill(deadline):
                raise AssertionError(f"no {marker!r} within {timeout}s: "
                                     f"{self.buf[:200]!r}")
        out, _, self.buf = self.buf.partition(marker)
        return out

    def _take(self, n, timeout):
        deadline = time.monotonic() + timeout
        while len(self.buf) < n:
            if time.monotonic() >= deadline or not self._fill(deadline):
                raise AssertionError("short body")
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def _more_text(self, deadline):
        if not self.chunked:
            if not self.buf and not self._fill(deadline):
                return False
            self.text += self.buf
            self.buf = b""
            return True
        while b"\r\n" not in self.buf:
            if not self._fill(deadline):
                return False
        size_line, _, rest = self.buf.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        while len(rest) < size + 2:
            self.buf = size_line + b"\r\n" + rest
            if not self._fill(deadline):
                return False
            size_line, _, rest = self.buf.partition(b"\r\n")
        self.text += rest[:size]
        self.buf = rest[size + 2:]
        return True

    def next_event(self, timeout=10.0):
        """The next event as (event type, id or None, parsed data); comments
        (heartbeats) are skipped. Raises AssertionError on timeout."""
        deadline = time.monotonic() + timeout
        while True:
            if b"\n\n" in self.text:
                frame, _, self.text = self.text.partition(b"\n\n")
                ev, eid, data = "message", None, []
                for line in frame.decode("utf-8").split("\n"):
                    if line.startswith(":") or not line:
                        continue
                    k, _, v = line.partition(":")
                    v = v[1:] if v.startswith(" ") else v
                    if k == "event":
                        ev = v
                    elif k == "id":
                        eid = v
                    elif k == "data":
                        data.append(v)
                if not data and eid is None and ev == "message":
                    continue  # a comment-only frame
                return ev, eid, json.loads("\n".join(data)) if data else None
            if time.monotonic() >= deadline or not self._more_text(deadline):
                if time.monotonic() >= deadline:
                    raise AssertionError(f"no event within {timeout}s")

    def close(self):
        self.sock.close()


def expect_change(ev, store, product, cause, on_hand, version, txn_id):
    kind, eid, data = ev
    assert kind == "change", f"event type {kind!r}: {data}"
    assert data.get("type") == "change", data
    assert eid is not None and str(data.get("id")) == eid, \
        f"SSE id {eid!r} and data id {data.get('id')!r} differ"
    got = (data.get("store_id"), data.get("product_id"), data.get("cause"),
           data.get("on_hand"), data.get("available"), data.get("version"),
           data.get("transaction_id"))
    want = (store, product, cause, on_hand, on_hand, version, txn_id)
    assert got == want, f"change {got} != {want}"
    return int(eid)


def new_store(ctx):
    """A fresh store and the position of its creation: a stream request
    names the store, so it must wait until the read model knows it."""
    st = api.create_store(ctx)
    return st["id"], st["position"]


def test_sse_live_filtered_and_resumed(ctx):
    s2, _ = new_store(ctx)
    p = api.create_product(ctx, reorder_level=0)["id"]  # no crossings
    s1, pos = new_store(ctx)
    stream = Sse(ctx.qry, f"/v1/changes?store_id={s1}&min_position={pos}")
    try:
        assert stream.status == 200, \
            f"SSE answer {stream.status}: {getattr(stream, 'body', b'')!r}"
        assert stream.headers.get("content-type", "").startswith(
            "text/event-stream"), stream.headers
        # Another store's change must not reach this stream.
        api.txn(ctx, s2, p, "receipt", 9, on_hand=9, version=1)
        t1 = api.txn(ctx, s1, p, "receipt", 5, on_hand=5, version=1)
        t2 = api.txn(ctx, s1, p, "sale", 2, on_hand=3, version=2)
        id1 = expect_change(stream.next_event(), s1, p, "receipt", 5, 1,
                            t1["transaction_id"])
        id2 = expect_change(stream.next_event(), s1, p, "sale", 3, 2,
                            t2["transaction_id"])
        assert id2 > id1, (id1, id2)
    finally:
        stream.close()

    # Changes made while nobody listens are delivered on resume, once.
    t3 = api.txn(ctx, s1, p, "return", 1, on_hand=4, version=3)
    t4 = api.txn(ctx, s1, p, "sale", 4, on_hand=0, version=4)
    for how, path, hdrs in (
            ("Last-Event-ID", f"/v1/changes?store_id={s1}",
             {"Last-Event-ID": str(id2)}),
            ("?after=", f"/v1/changes?store_id={s1}&after={id2}", {})):
        stream = Sse(ctx.qry, path, hdrs)
        try:
            assert stream.status == 200, (how, stream.status)
            id3 = expect_change(stream.next_event(), s1, p, "return", 4, 3,
                                t3["transaction_id"])
            id4 = expect_change(stream.next_event(), s1, p, "sale", 0, 4,
                                t4["transaction_id"])
            assert id2 < id3 < id4, (how, id2, id3, id4)
            try:
                extra = stream.next_event(timeout=1.0)
            except AssertionError:
                extra = None
            assert extra is None, f"{how}: a change was repeated: {extra}"
        finally:
            stream.close()


def test_changes_bad_requests(ctx):
    s, pos = new_store(ctx)
    r = get(ctx.qry, f"/v1/changes?store_id={s}&min_position={pos}",
            headers={"Accept": "application/json"})
    expect_problem(r, 406, "not_acceptable", "no event-stream, no upgrade")
    for what, q, status, code in (
            ("unknown store", f"store_id={client.new_uuid()}", 404,
             "not_found"),
            ("malformed store", "store_id=nope", 422, "validation_failed")):
        stream = Sse(ctx.qry, f"/v1/changes?{q}")
        try:
            assert stream.status == status, (what, stream.status)
            body = json.loads(stream.body)
            assert body.get("code") == code, (what, body)
        finally:
            stream.close()
    r = get(ctx.qry, f"/v1/changes?store_id={s}&min_position={pos}",
            headers={"Upgrade": "websocket", "Connection": "Upgrade",
                     "Sec-WebSocket-Key": base64.b64encode(
                         os.urandom(16)).decode(),
                     "Sec-WebSocket-Version": "8"})
    expect_problem(r, 426, "upgrade_required", "WebSocket version 8")
    api.healthz_all(ctx)


def ws_read_frame(sock, timeout=10.0):
    """(opcode, payload) of the next server frame (unmasked)."""
    sock.settimeout(timeout)

    def take(n):
        out = b""
        while len(out) < n:
            chunk = sock.recv(n - len(out))
            if not chunk:
                raise AssertionError("WebSocket closed by the server")
            out += chunk
        return out
    b0, b1 = take(2)
    assert not b1 & 0x80, "a server frame must not be masked"
    n = b1 & 0x7F
    if n == 126:
        n = int.from_bytes(take(2), "big")
    elif n == 127:
        n = int.from_bytes(take(8), "big")
    return b0 & 0x0F, take(n)


def ws_send(sock, opcode, payload=b""):
    mask = os.urandom(4)
    head = bytes([0x80 | opcode])
    n = len(payload)
    if n < 126:
        head += bytes([0x80 | n])
    else:
        head += bytes([0x80 | 126]) + n.to_bytes(2, "big")
    sock.sendall(head + mask + bytes(c ^ mask[i % 4]
                                     for i, c in enumerate(payload)))


def test_websocket_live(ctx):
    p = api.create_product(ctx, reorder_level=0)["id"]  # no crossings
    s, pos = new_store(ctx)
    key = base64.b64encode(os.urandom(16)).decode()
    sock = client.raw_connect(ctx.qry)
    try:
        hdrs = {"Host": "it", "Upgrade": "websocket", "Connection": "Upgrade",
                "Sec-WebSocket-Key": key, "Sec-WebSocket-Version": "13"}
        hdrs.update(client._auth_headers())
        sock.sendall((f"GET /v1/changes?store_id={s}&min_position={pos} "
                      "HTTP/1.1\r\n" + "".join(
            f"{k}: {v}\r\n" for k, v in hdrs.items()) + "\r\n").encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = sock.recv(4096)
            assert chunk, f"closed during the handshake: {head!r}"
            head += chunk
        head, _, rest = head.partition(b"\r\n\r\n")
        assert client.parse_status(head) == 101, f"handshake: {head!r}"
        fields = {}
        for line in head.decode("latin-1").split("\r\n")[1:]:
            k, _, v = line.partition(":")
            fields[k.strip().lower()] = v.strip()
        accept = base64.b64encode(hashlib.sha1(
            (key + WS_GUID).encode()).digest()).decode()
        assert fields.get("sec-websocket-accept") == accept, \
            f"Sec-WebSocket-Accept {fields.get('sec-websocket-accept')!r}, " \
            f"want {accept!r}"
        assert not rest, f"unexpected bytes after the handshake: {rest!r}"
        t = api.txn(ctx, s, p, "receipt", 7, on_hand=7, version=1)
        while True:
            op, payload = ws_read_frame(sock)
            if op == 0x9:          # ping: answer and go on
                ws_send(sock, 0xA, payload)
                continue
            break
        assert op == 0x1, f"opcode {op}, want a text frame: {payload[:200]!r}"
        data = json.loads(payload)
        got = (data.get("type"), data.get("store_id"), data.get("product_id"),
               data.get("cause"), data.get("on_hand"), data.get("version"),
               data.get("transaction_id"))
        assert got == ("change", s, p, "receipt", 7, 1, t["transaction_id"]), \
            got
        ws_send(sock, 0x8, (1000).to_bytes(2, "big"))
        op, _ = ws_read_frame(sock)
        assert op == 0x8, f"no close frame in answer to ours (opcode {op})"
    finally:
        sock.close()
    api.healthz_all(ctx)
