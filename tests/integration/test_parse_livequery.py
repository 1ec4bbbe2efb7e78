"""Parse LiveQuery on GET /parse of the query service (issue 11 part 3): the
protocol the Parse JS SDK's query.subscribe() speaks, fed by the change
stream, with the stream's gap-free resume underneath."""

import base64
import json
import os
import socket
import time

import api
import client
from client import bearer, expect_json, patch
from test_auth import require_auth, sign_up
from test_changes import ws_read_frame, ws_send
from test_read_side_more import post_batch

APP_ID = "stockflow"


class LiveQuery:
    """A raw WebSocket client of /parse speaking JSON text messages."""

    def __init__(self, ctx, rcvbuf=None):
        if rcvbuf:
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            self.sock.settimeout(10)
            self.sock.connect((client.HOST, ctx.qry))
        else:
            self.sock = client.raw_connect(ctx.qry)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((
            "GET /parse HTTP/1.1\r\nHost: it\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
            f"Sec-WebSocket-Key: {key}\r\n\r\n").encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(4096)
            assert chunk, f"closed during the handshake: {head!r}"
            head += chunk
        head, _, rest = head.partition(b"\r\n\r\n")
        assert client.parse_status(head) == 101, f"handshake: {head!r}"
        assert not rest, rest

    def send(self, msg):
        data = msg if isinstance(msg, bytes) else json.dumps(msg).encode()
        ws_send(self.sock, 0x1, data)

    def recv(self, timeout=10.0):
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            assert left > 0, "no LiveQuery message in time"
            op, payload = ws_read_frame(self.sock, left)
            if op == 0x9:
                ws_send(self.sock, 0xA, payload)
                continue
            assert op == 0x1, f"opcode {op}: {payload[:200]!r}"
            return json.loads(payload)

    def expect_silence(self, seconds):
        try:
            msg = self.recv(timeout=seconds)
        except (AssertionError, OSError):
            return
        raise AssertionError(f"unexpected message: {msg}")

    def connect(self, token, installation_id=None, app_id=APP_ID):
        m = {"op": "connect", "applicationId": app_id,
             "javascriptKey": "any", "sessionToken": token}
        if installation_id:
            m["installationId"] = installation_id
        self.send(m)
        return self.recv()

    def subscribe(self, request_id, where=None, class_name="Inventory",
                  keys=None):
        q = {"className": class_name, "where": where or {}}
        if keys:
            q["keys"] = keys
        self.send({"op": "subscribe", "requestId": request_id, "query": q})
        return self.recv()

    def close(self):
        try:
            ws_send(self.sock, 0x8, (1000).to_bytes(2, "big"))
        except OSError:
            pass
        self.sock.close()


def admin_token():
    token = os.environ.get("STOCKFLOW_TEST_TOKEN")
    assert token, "the runner logs in as the admin (accounts are on)"
    return token


def pointer(cls, oid):
    return {"__type": "Pointer", "className": cls, "objectId": oid}


def expect_event(msg, op, request_id, store, product, on_hand, version,
                 original_on_hand=None):
    assert msg.get("op") == op and msg.get("requestId") == request_id, \
        f"want {op} for request {request_id}: {msg}"
    o = msg.get("object") or {}
    want = {"className": "Inventory", "objectId": f"{store}_{product}",
            "store": pointer("Store", store),
            "product": pointer("Product", product), "onHand": on_hand,
            "reserved": 0, "available": on_hand, "version": version}
    got = {k: o.get(k) for k in want}
    assert got == want, f"{op} object {got} != {want}"
    api.expect_time(o.get("updatedAt"), "updatedAt")
    if original_on_hand is None:
        assert "original" not in msg, msg
    else:
        assert (msg.get("original") or {}).get("onHand") == \
            original_on_hand, msg


def connected(lq, token, installation_id=None):
    m = lq.connect(token, installation_id)
    assert m.get("op") == "connected" and isinstance(m.get("clientId"), int), m
    return m["clientId"]


def test_parse_livequery_events(ctx):
    require_auth(ctx)
    p = api.create_product(ctx, reorder_level=0)["id"]
    s = api.create_store(ctx)["id"]
    lq = LiveQuery(ctx)
    try:
        cid = connected(lq, admin_token())
        m = lq.subscribe(1, {"store": pointer("Store", s)})
        assert m == {"op": "subscribed", "clientId": cid, "requestId": 1}, m
        m = lq.subscribe(2, {"store": pointer("Store", s),
                             "onHand": {"$gte": 5}})
        assert m.get("op") == "subscribed" and m.get("requestId") == 2, m
        api.txn(ctx, s, p, "receipt", 10, on_hand=10, version=1)
        got = sorted((lq.recv(), lq.recv()), key=lambda x: x["requestId"])
        expect_event(got[0], "create", 1, s, p, 10, 1)
        expect_event(got[1], "create", 2, s, p, 10, 1)
        assert got[0]["object"].get("createdAt"), got[0]
        api.txn(ctx, s, p, "sale", 3, on_hand=7, version=2)
        got = sorted((lq.recv(), lq.recv()), key=lambda x: x["requestId"])
        expect_event(got[0], "update", 1, s, p, 7, 2, original_on_hand=10)
        expect_event(got[1], "update", 2, s, p, 7, 2, original_on_hand=10)
        api.txn(ctx, s, p, "sale", 4, on_hand=3, version=3)
        got = sorted((lq.recv(), lq.recv()), key=lambda x: x["requestId"])
        expect_event(got[0], "update", 1, s, p, 3, 3, original_on_hand=7)
        expect_event(got[1], "leave", 2, s, p, 3, 3, original_on_hand=7)
        # below the bar: only the unfiltered subscription hears of it
        api.txn(ctx, s, p, "sale", 1, on_hand=2, version=4)
        expect_event(lq.recv(), "update", 1, s, p, 2, 4, original_on_hand=3)
        api.txn(ctx, s, p, "receipt", 6, on_hand=8, version=5)
        got = sorted((lq.recv(), lq.recv()), key=lambda x: x["requestId"])
        expect_event(got[0], "update", 1, s, p, 8, 5, original_on_hand=2)
        expect_event(got[1], "enter", 2, s, p, 8, 5, original_on_hand=2)
        # unsubscribe: request 2 hears nothing more
        lq.send({"op": "unsubscribe", "requestId": 2})
        m = lq.recv()
        assert m == {"op": "unsubscribed", "clientId": cid,
                     "requestId": 2}, m
        api.txn(ctx, s, p, "sale", 1, on_hand=7, version=6)
        expect_event(lq.recv(), "update", 1, s, p, 7, 6, original_on_hand=8)
        lq.expect_silence(1.0)
    finally:
        lq.close()


def test_parse_livequery_keys_and_in(ctx):
    require_auth(ctx)
    p1 = api.create_product(ctx, reorder_level=0)["id"]
    p2 = api.create_product(ctx, reorder_level=0)["id"]
    s = api.create_store(ctx)["id"]
    lq = LiveQuery(ctx)
    try:
        connected(lq, admin_token())
        m = lq.subscribe(7, {"product": {"$in": [pointer("Product", p2)]},
                             "store": s}, keys=["onHand"])
        assert m.get("op") == "subscribed", m
        api.txn(ctx, s, p1, "receipt", 4, on_hand=4, version=1)
        api.txn(ctx, s, p2, "receipt", 9, on_hand=9, version=1)
        m = lq.recv()
        assert m.get("op") == "create" and m.get("requestId") == 7, m
        o = m["object"]
        assert o.get("objectId") == f"{s}_{p2}" and o.get("onHand") == 9, o
        assert "reserved" not in o and "store" not in o, f"keys ignored: {o}"
        lq.expect_silence(1.0)
    finally:
        lq.close()


def test_parse_livequery_store_scope(ctx):
    require_auth(ctx)
    p = api.create_product(ctx, reorder_level=0)["id"]
    mine = api.create_store(ctx)["id"]
    other = api.create_store(ctx)["id"]
    user, token = sign_up(ctx, "lqviewer")
    r = patch(ctx.cmd, f"/v1/users/{user['id']}",
              {"role": "viewer", "store_ids": [mine]})
    expect_json(r, 200, "admin makes a viewer of one store")
    client.eventually(lambda: expect_json(
        client.get(ctx.qry, f"/v1/stores/{mine}", headers=bearer(token)),
        200, "viewer reads its store"), timeout=5, what="viewer role")
    lq = LiveQuery(ctx)
    try:
        connected(lq, token)
        assert lq.subscribe(1).get("op") == "subscribed"
        assert lq.subscribe(2, {"store": pointer("Store", other)}).get(
            "op") == "subscribed"
        api.txn(ctx, other, p, "receipt", 5, on_hand=5, version=1)
        api.txn(ctx, mine, p, "receipt", 3, on_hand=3, version=1)
        expect_event(lq.recv(), "create", 1, mine, p, 3, 1)
        lq.expect_silence(1.5)
    finally:
        lq.close()


def expect_error(m, code, what, reconnect=False, request_id=None):
    assert m.get("op") == "error" and m.get("code") == code, \
        f"{what}: want error {code}: {m}"
    assert m.get("reconnect") is reconnect and isinstance(
        m.get("error"), str) and m["error"], f"{what}: {m}"
    if request_id is not None:
        assert m.get("requestId") == request_id, f"{what}: {m}"


def test_parse_livequery_refusals(ctx):
    require_auth(ctx)
    lq = LiveQuery(ctx)
    try:
        expect_error(lq.connect(admin_token(), app_id="not-mine"), 4,
                     "wrong application id")
        lq.send({"op": "subscribe", "requestId": 1,
                 "query": {"className": "Inventory", "where": {}}})
        expect_error(lq.recv(), 2, "subscribe before connect",
                     request_id=1)
        expect_error(lq.connect(None), 209, "no session token")
        expect_error(lq.connect("not-a-real-token-" + "x" * 20), 209,
                     "unknown session token")
        lq.send(b"{not json")
        expect_error(lq.recv(), 107, "malformed JSON")
        lq.send(b"[1,2]")
        expect_error(lq.recv(), 1, "not an object")
        lq.send({"op": "dance"})
        expect_error(lq.recv(), 3, "unknown op")
        connected(lq, admin_token())
        expect_error(lq.subscribe(3, class_name="Store"), 119,
                     "other class", request_id=3)
        expect_error(lq.subscribe(4, {"onHand": {"$regex": "1"}}), 102,
                     "unsupported operator", request_id=4)
        expect_error(lq.subscribe(5, {"$or": []}), 102, "$or",
                     request_id=5)
        expect_error(lq.subscribe(6, {"colour": "red"}), 105,
                     "unknown key", request_id=6)
        expect_error(lq.subscribe(7, {"onHand": "ten"}), 111,
                     "wrong type", request_id=7)
        lq.send({"op": "subscribe", "query": {"className": "Inventory"}})
        expect_error(lq.recv(), 1, "no requestId")
        lq.send({"op": "unsubscribe", "requestId": 99})
        expect_error(lq.recv(), 2, "unknown subscription", request_id=99)
        # the connection survived all of it
        m = lq.subscribe(8)
        assert m.get("op") == "subscribed" and m.get("requestId") == 8, m
    finally:
        lq.close()
    api.healthz_all(ctx)


def test_parse_livequery_resume(ctx):
    require_auth(ctx)
    p = api.create_product(ctx, reorder_level=0)["id"]
    s = api.create_store(ctx)["id"]
    inst = client.new_uuid()
    where = {"store": pointer("Store", s)}
    lq = LiveQuery(ctx)
    try:
        connected(lq, admin_token(), inst)
        assert lq.subscribe(1, where).get("op") == "subscribed"
        api.txn(ctx, s, p, "receipt", 20, on_hand=20, version=1)
        expect_event(lq.recv(), "create", 1, s, p, 20, 1)
    finally:
        lq.sock.close()  # a dropped connection, no close handshake
    for i in range(5):
        api.txn(ctx, s, p, "sale", 1, on_hand=19 - i, version=2 + i)
    lq = LiveQuery(ctx)
    try:
        connected(lq, admin_token(), inst)
        assert lq.subscribe(1, where).get("op") == "subscribed"
        for i in range(5):
            expect_event(lq.recv(), "update", 1, s, p, 19 - i, 2 + i,
                         original_on_hand=20 - i)
        api.txn(ctx, s, p, "sale", 2, on_hand=13, version=7)
        expect_event(lq.recv(), "update", 1, s, p, 13, 7,
                     original_on_hand=15)
        lq.expect_silence(1.0)
    finally:
        lq.close()
    r = client.get(ctx.qry, "/metrics")
    assert r.status == 200, r
    resumed = [line for line in str(r.body).splitlines()
               if line.startswith("stockflow_query_livequery_resumed_total ")]
    assert resumed and int(resumed[0].split()[1]) >= 1, resumed
    # another installation does not resume: it starts from now
    lq = LiveQuery(ctx)
    try:
        connected(lq, admin_token(), client.new_uuid())
        assert lq.subscribe(1, where).get("op") == "subscribed"
        lq.expect_silence(1.0)
    finally:
        lq.close()


def test_parse_livequery_update_op(ctx):
    require_auth(ctx)
    p = api.create_product(ctx, reorder_level=0)["id"]
    s1 = api.create_store(ctx)["id"]
    s2 = api.create_store(ctx)["id"]
    lq = LiveQuery(ctx)
    try:
        connected(lq, admin_token())
        assert lq.subscribe(1, {"store": pointer("Store", s1)}).get(
            "op") == "subscribed"
        lq.send({"op": "update", "requestId": 1,
                 "query": {"className": "Inventory",
                           "where": {"store": pointer("Store", s2)}}})
        m = lq.recv()
        assert m.get("op") == "subscribed" and m.get("requestId") == 1, m
        api.txn(ctx, s1, p, "receipt", 2, on_hand=2, version=1)
        api.txn(ctx, s2, p, "receipt", 3, on_hand=3, version=1)
        expect_event(lq.recv(), "create", 1, s2, p, 3, 1)
        lq.expect_silence(1.0)
        lq.send({"op": "update", "requestId": 9,
                 "query": {"className": "Inventory"}})
        expect_error(lq.recv(), 2, "update of an unknown request",
                     request_id=9)
    finally:
        lq.close()


def test_parse_livequery_handshake_and_logout(ctx):
    require_auth(ctx)
    r = client.get(ctx.qry, "/parse")
    client.expect_problem(r, 400, "bad_request", "GET /parse without upgrade")
    store = api.create_store(ctx)["id"]
    p = api.create_product(ctx, reorder_level=0)["id"]
    _, token = sign_up(ctx, "lqlogout")
    lq = LiveQuery(ctx)
    try:
        connected(lq, token, client.new_uuid())
        # a viewer without stores may subscribe; it just hears nothing
        assert lq.subscribe(1).get("op") == "subscribed"
        api.txn(ctx, store, p, "receipt", 1, on_hand=1, version=1)
        lq.expect_silence(1.0)
        r = client.delete(ctx.cmd, "/v1/sessions/current",
                          headers=bearer(token))
        assert r.status == 204, f"logout: {r!r}"
        deadline = time.monotonic() + 3
        closed = None
        while time.monotonic() < deadline and closed is None:
            op, payload = ws_read_frame(lq.sock, deadline - time.monotonic())
            if op == 0x8:
                closed = int.from_bytes(payload[:2], "big")
        assert closed == 1008, f"no close 1008 after the logout: {closed}"
    finally:
        lq.sock.close()
    lq = LiveQuery(ctx)
    try:
        expect_error(lq.connect(token), 209, "connect after logout")
    finally:
        lq.close()


def test_parse_livequery_slow_client_cut_off(ctx):
    """A client that stops reading is closed with 1008 once its unsent
    bytes pass STOCKFLOW_STREAM_MAX_BUFFER; what it got is in order."""
    require_auth(ctx)
    limit = int(ctx.stack["query"].setting("STOCKFLOW_STREAM_MAX_BUFFER")
                or 1048576)
    store = api.create_store(ctx)["id"]
    product = api.create_product(ctx, reorder_level=0)["id"]
    inst = client.new_uuid()
    where = {"store": pointer("Store", store)}
    lq = LiveQuery(ctx, rcvbuf=4096)
    try:
        connected(lq, admin_token(), inst)
        assert lq.subscribe(1, where).get("op") == "subscribed"
        # enough to pass the limit plus the kernel's buffers twice over; an
        # update with its original is about 900 bytes
        with open("/proc/sys/net/ipv4/tcp_wmem") as f:
            wmem_max = int(f.read().split()[2])
        per_batch = 1000
        batches = max(4, 2 * (limit + wmem_max) // (900 * per_batch) + 1)
        for _ in range(batches):
            post_batch(ctx, [{"store_id": store, "product_id": product,
                              "type": "receipt", "quantity": 1}
                             for _ in range(per_batch)])
        total = per_batch * batches
        # now read everything: events in order, then a close 1008
        versions, close_code = [], None
        deadline = time.monotonic() + 120
        while close_code is None:
            left = deadline - time.monotonic()
            assert left > 0, f"still open after {len(versions)} events"
            try:
                op, payload = ws_read_frame(lq.sock, left)
            except AssertionError:
                break  # closed without a close frame
            if op == 0x8:
                close_code = int.from_bytes(payload[:2], "big")
            elif op == 0x1:
                m = json.loads(payload)
                assert m.get("op") in ("create", "update"), m
                versions.append(m["object"]["version"])
    finally:
        lq.sock.close()
    ctx.log(f"slow LiveQuery client got {len(versions)} of {total} events")
    assert close_code == 1008, f"closed with {close_code}, not 1008"
    assert 0 < len(versions) < total, (len(versions), total)
    assert versions == list(range(1, len(versions) + 1)), \
        "the events skipped or repeated a change"
    # It reconnects and resumes: the rest, from exactly where it was cut
    lq = LiveQuery(ctx)
    try:
        connected(lq, admin_token(), inst)
        assert lq.subscribe(1, where).get("op") == "subscribed"
        want = len(versions) + 1
        while want <= total:
            m = lq.recv(timeout=30)
            assert m.get("op") == "update" and \
                m["object"]["version"] == want, \
                f"after the cut-off, want version {want}: {m}"
            want += 1
        lq.expect_silence(1.0)
    finally:
        lq.close()
    api.healthz_all(ctx)
