"""The gateway (deploy/local/gateway.sh: nginx) as the one entry point: the
requests of these tests go to its port only (ctx.gw), never to a service's
(but for the login-limit test, which plays the gateway itself).
Writes must reach the command service, reads and change streams the query
service; headers and answers pass unchanged; CORS follows the allow-list
(tests/run.sh sets STOCKFLOW_CORS_ORIGINS); the gateway's own errors are
problem+json."""

import json
import os
import signal
import sys
from concurrent.futures import ThreadPoolExecutor

import api
import client
from client import (NO_AUTH, bearer, delete, expect_json, expect_problem, get,
                    post)
from test_changes import Sse, expect_change

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "tools"))
import ws_client  # noqa: E402

DISALLOWED = "https://evil.example"
EXPOSED = ("etag", "location", "retry-after", "idempotent-replayed")
PREFLIGHT_HEADERS = ("authorization", "content-type", "idempotency-key",
                     "if-match", "last-event-id", "x-min-position")


class ViaGateway:
    """A Ctx whose command and query ports are both the gateway's, so that
    the api helpers (which write to ctx.cmd and read from ctx.qry) go
    through it."""

    def __init__(self, ctx):
        self._ctx = ctx
        self.cmd = self.qry = ctx.gw

    def __getattr__(self, name):
        return getattr(self._ctx, name)


def allowed_origins(ctx):
    origins = [o.strip() for o in
               ctx.env.get("STOCKFLOW_CORS_ORIGINS", "").split(",")
               if o.strip()]
    assert origins, "the runner gave the gateway no STOCKFLOW_CORS_ORIGINS " \
        "(tests/run.sh sets one): the CORS tests cannot run"
    return origins


class GatewayToken:
    """Logs in as the bootstrap admin through the gateway and makes the
    helpers' requests carry that token (the runner's is put back after)."""

    def __init__(self, ctx):
        self.ctx = ctx

    def __enter__(self):
        user, password = self.ctx.admin_credentials()
        r = post(self.ctx.gw, "/v1/sessions",
                 {"username": user, "password": password}, headers=NO_AUTH)
        body = expect_json(r, 201, "login through the gateway")
        self.token = body["token"]
        self.saved = os.environ.get("STOCKFLOW_TEST_TOKEN")
        os.environ["STOCKFLOW_TEST_TOKEN"] = self.token
        return self

    def __exit__(self, *exc):
        if self.saved is None:
            os.environ.pop("STOCKFLOW_TEST_TOKEN", None)
        else:
            os.environ["STOCKFLOW_TEST_TOKEN"] = self.saved


def test_walk_through_the_gateway(ctx):
    gw = ViaGateway(ctx)
    r = get(ctx.gw, "/readyz", headers=NO_AUTH)
    assert r.status == 200, f"gateway /readyz with both services up: {r!r}"
    with GatewayToken(ctx) as t:
        # GET /v1/users/me is the command service's, not a query read.
        me = expect_json(get(ctx.gw, "/v1/users/me"), 200, "users/me")
        assert me.get("username") == ctx.admin_credentials()[0], me
        store = api.create_store(gw)["id"]
        product = api.create_product(gw, reorder_level=0)["id"]
        api.txn(gw, store, product, "receipt", 10, on_hand=10, version=1)
        key = client.unique("gw-sale")
        body = {"product_id": product, "type": "sale", "quantity": 3}
        first = post(ctx.gw, api.txn_path(store), body,
                     headers={"Idempotency-Key": key})
        sale = expect_json(first, 201, "sale through the gateway")
        assert sale["on_hand"] == 7 and sale["version"] == 2, sale
        again = post(ctx.gw, api.txn_path(store), body,
                     headers={"Idempotency-Key": key})
        assert (again.status, again.raw) == (first.status, first.raw), \
            f"replay differs: {first!r} then {again!r}"
        assert again.headers.get("idempotent-replayed") == "true", \
            f"Idempotent-Replayed lost on the way: {again.headers}"
        # Oversell: the command service's 409 comes back as it is.
        expect_problem(api.post_txn(gw, store, product, "sale", 8), 409,
                       "insufficient_stock", "oversell through the gateway")
        # Read-your-writes through the gateway, with the ETag.
        r = get(ctx.gw, client.with_position(
            f"/v1/stores/{store}/inventory/{product}", sale["position"]))
        row = expect_json(r, 200, "inventory row")
        assert (row["on_hand"], row["version"]) == (7, 2), row
        assert r.headers.get("etag") == '"2"', f"ETag: {r.headers}"
        # The header form of min_position passes too.
        r = get(ctx.gw, f"/v1/stores/{store}/inventory/{product}",
                headers={"X-Min-Position": sale["position"]})
        assert expect_json(r, 200, "X-Min-Position")["version"] == 2
        # If-Match reaches the command service: a stale version is 412.
        r = post(ctx.gw, api.txn_path(store),
                 {"product_id": product, "type": "receipt", "quantity": 1},
                 headers={"If-Match": '"1"'})
        expect_problem(r, 412, "version_conflict", "stale If-Match")
        txns = expect_json(get(ctx.gw, f"/v1/stores/{store}/transactions"),
                           200, "transactions")
        assert [x["type"] for x in txns["items"]] == ["sale", "receipt"], \
            txns
        prod = expect_json(get(ctx.gw, f"/v1/products/{product}"), 200,
                           "product")
        assert prod.get("total_on_hand") == 7, prod
        # Logout through the gateway: the token stops on both services
        # (the contract: within a second).
        r = delete(ctx.gw, "/v1/sessions/current")
        assert r.status == 204, f"logout: {r!r}"
        for what, path in (("command", "/v1/users/me"),
                           ("query", "/v1/stores")):
            client.eventually(lambda: expect_problem(
                get(ctx.gw, path, headers=bearer(t.token)), 401,
                "unauthorized", f"{what} read after logout"),
                timeout=3, what=f"the token refused by the {what} service")


def test_batch_limit_larger_than_other_bodies(ctx):
    gw = ViaGateway(ctx)
    store, product = api.store_and_product(gw)
    items = [{"store_id": store, "product_id": product, "type": "receipt",
              "quantity": 1, "reference": f"gw-batch-{i:04d}"}
             for i in range(600)]
    raw = json.dumps({"transactions": items}).encode()
    assert len(raw) > 65536, f"the batch is only {len(raw)} bytes"
    r = post(ctx.gw, "/v1/batches", raw)
    body = expect_json(r, 200, f"a {len(raw)}-byte batch")
    assert [x["status"] for x in body["results"]] == [201] * 600, \
        body["results"][:3]
    # The same size anywhere else is over the limit: the gateway's 413.
    r = post(ctx.gw, "/v1/products", raw)
    expect_problem(r, 413, "payload_too_large", "70 KB product body")
    api.expect_stock(gw, store, product, on_hand=600, version=600,
                     position=body["results"][-1]["body"]["position"])


def test_sse_through_the_gateway(ctx):
    gw = ViaGateway(ctx)
    product = api.create_product(gw, reorder_level=0)["id"]
    st = api.create_store(gw)
    store = st["id"]
    stream = Sse(ctx.gw, f"/v1/changes?store_id={store}"
                 f"&min_position={st['position']}")
    try:
        assert stream.status == 200, \
            f"SSE through the gateway: {stream.status} " \
            f"{getattr(stream, 'body', b'')!r}"
        assert stream.headers.get("content-type", "").startswith(
            "text/event-stream"), stream.headers
        t1 = api.txn(gw, store, product, "receipt", 5, on_hand=5, version=1)
        id1 = expect_change(stream.next_event(), store, product, "receipt",
                            5, 1, t1["transaction_id"])
        t2 = api.txn(gw, store, product, "sale", 1, on_hand=4, version=2)
        expect_change(stream.next_event(), store, product, "sale", 4, 2,
                      t2["transaction_id"])
    finally:
        stream.close()
    # Last-Event-ID reaches the query service: resume after the first.
    stream = Sse(ctx.gw, f"/v1/changes?store_id={store}",
                 {"Last-Event-ID": str(id1)})
    try:
        assert stream.status == 200, stream.status
        expect_change(stream.next_event(), store, product, "sale", 4, 2,
                      t2["transaction_id"])
    finally:
        stream.close()


def test_websocket_through_the_gateway(ctx):
    gw = ViaGateway(ctx)
    product = api.create_product(gw, reorder_level=0)["id"]
    st = api.create_store(gw)
    store = st["id"]
    sock = client.raw_connect(ctx.gw)
    try:
        auth = [f"{k}: {v}" for k, v in client._auth_headers().items()]
        status, head, _ = ws_client.handshake(
            sock, "127.0.0.1", ctx.gw,
            f"/v1/changes?store_id={store}&min_position={st['position']}",
            auth)
        assert status == 101, f"WebSocket handshake through the gateway: " \
            f"{head.splitlines()[0] if head else head!r}"
        t = api.txn(gw, store, product, "receipt", 7, on_hand=7, version=1)
        sock.settimeout(10)
        while True:
            fin, op, payload = ws_client.read_frame(sock)
            if op == 0x9:  # a heartbeat ping: answer it and read on
                ws_client.send_frame(sock, 0xA, payload)
                continue
            break
        assert op == 0x1 and fin, f"opcode {op}: {payload[:200]!r}"
        data = json.loads(payload)
        got = (data.get("type"), data.get("store_id"), data.get("product_id"),
               data.get("cause"), data.get("on_hand"),
               data.get("transaction_id"))
        assert got == ("change", store, product, "receipt", 7,
                       t["transaction_id"]), got
        ws_client.send_frame(sock, 0x8, (1000).to_bytes(2, "big"))
        _, op, _ = ws_client.read_frame(sock)
        assert op == 0x8, f"no close frame in answer to ours (opcode {op})"
    finally:
        sock.close()


PARSE_PATHS = ("/parse", "/parse/classes/Store", "/parse/classes/Inventory",
               "/parse/login", "/parse/users/me", "/parse/batch", "/graphql")
PARSE_HEADERS = ("x-parse-application-id", "x-parse-rest-api-key",
                 "x-parse-javascript-key", "x-parse-session-token",
                 "x-parse-request-id", "x-parse-installation-id",
                 "x-parse-client-version", "x-parse-revocable-session")


def access_log(ctx, marker):
    """The gateway's access-log records (stack.py points its access log
    into the runner's state folder) whose URI carries marker; at least one
    (AssertionError otherwise, for client.eventually)."""
    path = os.path.join(ctx.args.state_dir, "logs", "gateway-access.log")
    out = []
    with open(path) as f:
        for line in f:
            if marker in line:
                out.append(json.loads(line))
    assert out, f"no access-log record with {marker}"
    return out


def test_parse_paths_reach_the_query_service(ctx):
    """Every method of /parse, /parse/... and /graphql is proxied to the
    query service (the Parse SDK sends everything as POST; the facade in the
    query service passes writes on): the upstream in the gateway's access
    log is the query service's address, whatever the service answers."""
    marker = client.unique("parse-route").replace(" ", "")
    sent = 0
    for path in PARSE_PATHS:
        for method in ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"):
            body = "{}" if method in ("POST", "PUT", "PATCH") else None
            r = client.request(
                ctx.gw, method, f"{path}?m={marker}", body,
                headers={"Content-Type": "text/plain",
                         "X-Parse-Application-Id": "wrong-app-id"})
            sent += 1
            assert r.status not in (502, 503, 504), \
                f"{method} {path}: the gateway could not reach its " \
                f"upstream: {r!r}"
    want = f"127.0.0.1:{ctx.qry}"

    def logged():
        got = access_log(ctx, marker)
        assert len(got) == sent, f"{len(got)} of {sent} logged"
        return got
    records = client.eventually(logged, timeout=5,
                                what=f"{sent} access-log records")
    wrong = [(x["method"], x["uri"], x["upstream"]) for x in records
             if x["upstream"] != want]
    assert not wrong, f"sent to another upstream than the query " \
        f"service ({want}): {wrong}"
    # A neighbour of the prefixes is not the facade's: the gateway's 404.
    for path in ("/parsefoo", "/graphql/x"):
        expect_problem(post(ctx.gw, path, {}), 404, "not_found", path)


def test_parse_livequery_upgrade_through_the_gateway(ctx):
    """LiveQuery's WebSocket upgrade on /parse reaches the query service and
    is served there (101, then Parse's connect / connected)."""
    marker = client.unique("parse-ws").replace(" ", "")
    app_id = ctx.env.get("STOCKFLOW_PARSE_APP_ID", "stockflow")
    sock = client.raw_connect(ctx.gw)
    try:
        sock.settimeout(10)
        status, head, _ = ws_client.handshake(
            sock, "127.0.0.1", ctx.gw, f"/parse?m={marker}", [])
        rec = client.eventually(lambda: access_log(ctx, marker), timeout=5,
                                what="the upgrade's access-log record") \
            if status != 101 else None
        if rec:
            assert rec[0]["upstream"] == f"127.0.0.1:{ctx.qry}", rec
        assert status == 101, \
            f"WebSocket upgrade on /parse through the gateway answered " \
            f"{head.splitlines()[0] if head else head!r}: the query " \
            f"service does not serve Parse LiveQuery on /parse " \
            f"(issue 11 part 3)"
        # The facade's LiveQuery wants a session (the runner's admin token:
        # a session token is a stockflow bearer token).
        token = os.environ.get("STOCKFLOW_TEST_TOKEN", "")
        assert token, "the runner logged in as no one (STOCKFLOW_TEST_TOKEN)"
        ws_client.send_frame(sock, 0x1, json.dumps(
            {"op": "connect", "applicationId": app_id,
             "sessionToken": token}).encode())
        while True:
            fin, op, payload = ws_client.read_frame(sock)
            if op == 0x9:
                ws_client.send_frame(sock, 0xA, payload)
                continue
            break
        assert op == 0x1, f"opcode {op}: {payload[:200]!r}"
        assert json.loads(payload).get("op") == "connected", payload
    finally:
        sock.close()
    # The connection ended: its record names the query service.
    rec = client.eventually(lambda: access_log(ctx, marker), timeout=5,
                            what="the upgrade's access-log record")
    assert rec[0]["upstream"] == f"127.0.0.1:{ctx.qry}", rec


def preflight(ctx, origin, method="POST", path="/v1/stores",
              asked="authorization, content-type, idempotency-key"):
    hdrs = {"Access-Control-Request-Method": method,
            "Access-Control-Request-Headers": asked,
            "Authorization": None}
    if origin is not None:
        hdrs["Origin"] = origin
    return client.request(ctx.gw, "OPTIONS", path, headers=hdrs)


def test_cors(ctx):
    origins = allowed_origins(ctx)
    for origin in origins:
        r = preflight(ctx, origin)
        assert r.status == 204, f"preflight from {origin}: {r!r}"
        h = r.headers
        assert h.get("access-control-allow-origin") == origin, h
        methods = {m.strip() for m in
                   h.get("access-control-allow-methods", "").split(",")}
        assert {"GET", "POST", "PATCH", "DELETE"} <= methods, h
        allowed = {x.strip().lower() for x in
                   h.get("access-control-allow-headers", "").split(",")}
        missing = set(PREFLIGHT_HEADERS) - allowed
        assert not missing, f"Allow-Headers lacks {missing}: {h}"
        assert int(h.get("access-control-max-age", "0")) > 0, h
        assert "origin" in h.get("vary", "").lower(), h
        assert "access-control-allow-credentials" not in h, h
    # A preflight of a read path is answered the same (never forwarded).
    r = preflight(ctx, origins[0], "GET", "/v1/changes")
    assert r.status == 204, r
    # A Parse app's preflight: its X-Parse-* headers are allowed.
    r = preflight(ctx, origins[0], "POST", "/parse/classes/Transaction",
                  ", ".join(PARSE_HEADERS))
    assert r.status == 204, r
    allowed = {x.strip().lower() for x in r.headers.get(
        "access-control-allow-headers", "").split(",")}
    missing = set(PARSE_HEADERS) - allowed
    assert not missing, f"Allow-Headers lacks Parse's {missing}: {r.headers}"
    assert r.headers.get("access-control-allow-origin") == origins[0], r
    # An origin not on the list: 403, no CORS header (the browser blocks).
    for bad in (DISALLOWED, origins[0] + ".evil.example",
                origins[0].replace("https://", "http://", 1) + ":1"):
        r = preflight(ctx, bad)
        expect_problem(r, 403, "origin_not_allowed", f"preflight from {bad}")
        leaked = [k for k in r.headers if k.startswith("access-control-")]
        assert not leaked, f"CORS headers for {bad}: {r.headers}"
        assert "origin" in r.headers.get("vary", "").lower(), r.headers
    # An actual request from an allowed origin: the answer (any status)
    # carries the origin, Vary and the exposed headers.
    with GatewayToken(ctx):
        st = api.create_store(ViaGateway(ctx))
        r = get(ctx.gw, f"/v1/stores/{st['id']}",
                headers={"Origin": origins[0],
                         "X-Min-Position": st["position"]})
        expect_json(r, 200, "store read with an Origin")
        assert r.headers.get("access-control-allow-origin") == origins[0], \
            r.headers
        assert "origin" in r.headers.get("vary", "").lower(), r.headers
        exposed = {x.strip().lower() for x in r.headers.get(
            "access-control-expose-headers", "").split(",")}
        assert set(EXPOSED) <= exposed, f"Expose-Headers: {r.headers}"
        r = post(ctx.gw, "/v1/products", {"sku": ""},
                 headers={"Origin": origins[0]})
        assert r.status == 422, r
        assert r.headers.get("access-control-allow-origin") == origins[0], \
            f"an error answer lacks CORS headers: {r.headers}"
        # From another origin the answer is the same, without CORS headers.
        r = get(ctx.gw, f"/v1/stores/{st['id']}",
                headers={"Origin": DISALLOWED})
        expect_json(r, 200, "store read from a disallowed origin")
        assert "access-control-allow-origin" not in r.headers, r.headers
        assert "origin" in r.headers.get("vary", "").lower(), r.headers


def test_gateway_own_answers(ctx):
    r = get(ctx.gw, "/healthz", headers=NO_AUTH)
    assert expect_json(r, 200, "gateway /healthz").get("status") == "ok"
    for path in ("/nope", "/v1", "/metrics", "/_gateway/options"):
        expect_problem(get(ctx.gw, path, headers=NO_AUTH), 404, "not_found",
                       f"GET {path}")
    # An unknown /v1 path is the service's own 404 (reads: query; writes:
    # command).
    expect_problem(get(ctx.gw, "/v1/nope"), 404, "not_found", "GET /v1/nope")
    expect_problem(post(ctx.gw, "/v1/nope", {}), 404, "not_found",
                   "POST /v1/nope")
    # A body over 64 KiB: refused at the gateway, like the service would.
    r = post(ctx.gw, "/v1/stores", b"{" + b" " * 70000 + b"}")
    expect_problem(r, 413, "payload_too_large", "70 KB store body")
    # The client's X-Request-Id reaches the service and comes back.
    r = get(ctx.gw, f"/v1/stores/{client.new_uuid()}",
            headers={"X-Request-Id": "gw-check-1"})
    body = expect_problem(r, 404, "not_found", "unknown store")
    assert body.get("request_id") == "gw-check-1", body
    assert r.headers.get("x-request-id") == "gw-check-1", r.headers


def test_upstream_down_is_503(ctx):
    gw = ViaGateway(ctx)
    store = api.create_store(gw)["id"]
    query = ctx.stack["query"]
    query.kill(signal.SIGTERM)
    try:
        r = get(ctx.gw, f"/v1/stores/{store}")
        body = expect_problem(r, 503, "unavailable", "read, query down")
        assert r.headers.get("retry-after", "").isdigit(), \
            f"503 without Retry-After: {r.headers}"
        assert str(ctx.qry) in body["detail"], body
        r = get(ctx.gw, "/readyz", headers=NO_AUTH)
        expect_problem(r, 503, "unavailable", "gateway /readyz, query down")
        assert r.headers.get("retry-after"), r.headers
        # Writes do not need the query service.
        api.create_product(gw)
    finally:
        query.start()
        query.wait_ready(ctx.stack.ready_timeout)
    client.eventually(
        lambda: client.expect_status(get(ctx.gw, "/readyz", headers=NO_AUTH),
                                     200, "gateway /readyz"),
        timeout=10, what="gateway ready again")
    expect_json(get(ctx.gw, f"/v1/stores/{store}"), 200, "read, query back")


def test_login_limit_counts_each_client_behind_the_gateway(ctx):
    """The gateway connects from 127.0.0.1 and names the client in
    X-Real-IP; with STOCKFLOW_TRUSTED_PROXIES=127.0.0.1 the command service
    counts failed logins against that client, so one client's guesses do
    not lock out the others behind the same gateway. (Talks to the command
    service directly, as the gateway would: through the gateway every test
    client is 127.0.0.1.)"""
    assert ctx.stack["command"].setting("STOCKFLOW_TRUSTED_PROXIES") == \
        "127.0.0.1", "the command service does not run with " \
        "STOCKFLOW_TRUSTED_PROXIES=127.0.0.1 (tests/run.sh sets it)"

    def guess(addr):
        return post(ctx.cmd, "/v1/sessions",
                    {"username": client.unique("nobody").lower(),
                     "password": "wrong password"},
                    headers={"Authorization": None, "X-Real-IP": addr})
    # Attempts count when they start: 20 at once fill the client's window
    # however slow the password checks are (sanitizer build).
    with ThreadPoolExecutor(max_workers=20) as pool:
        answers = list(pool.map(guess, ["198.51.100.7"] * 20))
    for i, r in enumerate(answers):
        expect_problem(r, 401, "unauthorized", f"guess {i + 1}")
    r = guess("198.51.100.7")
    expect_problem(r, 429, "too_many_requests", "guess 21 of one client")
    assert r.headers.get("retry-after", "").isdigit(), r.headers
    expect_problem(guess("198.51.100.8"), 401, "unauthorized",
                   "another client behind the same gateway")
    # A client that names no address counts as the peer: the admin still
    # logs in through the gateway.
    with GatewayToken(ctx):
        pass
