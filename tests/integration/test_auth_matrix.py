"""The accounts issue's acceptance tests, against the real services: the
role x endpoint matrix (API.md "Roles", docs/security.md and
sf_auth_allows in common/src/auth.c), logout and role changes taking effect
on both services within a second, token expiry (a second command instance
with a short STOCKFLOW_SESSION_TTL_S), equal answers and cost for a wrong
password and an unknown user, the login limiter, and no passwords or tokens
in the logs or on the event topics (and the manager's id as the events'
actor).

Mind the login limiter (5 failed logins a minute per username, 20 per client
address, and every test logs in from 127.0.0.1): this file makes 15 failed
logins in all, the guessing test is the last one that fails logins, and the
admin account never fails one. Passwords and tokens used here are recorded
in SECRETS so that the last test can look for them in the logs and events.
"""

import datetime
import json
import os
import socket
import statistics
import subprocess
import sys
import time

import api
import client
import stack as stackmod
from client import (NO_AUTH, bearer, delete, expect_json, expect_problem, get,
                    patch, post)

HERE = os.path.dirname(os.path.abspath(__file__))
AVRO_DECODE = os.path.join(HERE, "..", "tools", "avro_decode.py")

# Every password and token this module used (the secrets test scans for
# them). Module state on purpose: the runner runs the tests of a module in
# one process, in source order.
SECRETS = set()
# A token of the right shape that no session has.
BAD_TOKEN = "x" * 43
# The roles a signed-in test user gets, and the two ways of not being one.
ROLES = ("admin", "manager", "clerk", "viewer")
ANON = ("none", "bad")


def require_auth(ctx):
    assert ctx.auth_enabled(), \
        "the command service has no accounts (STOCKFLOW_ADMIN_USERNAME is " \
        "not in its --help)"


def admin_headers():
    token = os.environ.get("STOCKFLOW_TEST_TOKEN")
    assert token, "the runner did not log in as the admin"
    return bearer(token)


def new_password():
    pw = client.unique("pw-secret")
    SECRETS.add(pw)
    return pw


def login(ctx, username, password, port=None):
    """POST /v1/sessions that must succeed; returns (token, body)."""
    r = post(port or ctx.cmd, "/v1/sessions",
             {"username": username, "password": password}, headers=NO_AUTH)
    body = expect_json(r, 201, f"login as {username}")
    token = body.get("token")
    assert isinstance(token, str) and len(token) == 43, \
        f"login answer has no 43-character token: {body}"
    SECRETS.add(token)
    return token, body


def sign_up(ctx, prefix):
    """A new viewer with no stores: (user, username, password)."""
    name = client.unique(prefix).lower()
    password = new_password()
    r = post(ctx.cmd, "/v1/users",
             {"username": name, "email": f"{name}@example.com",
              "password": password}, headers=NO_AUTH)
    user = expect_json(r, 201, f"sign-up of {name}")
    api.expect_uuid(user.get("id"), "user id")
    assert (user.get("role"), user.get("store_ids")) == ("viewer", []), user
    return user, name, password


def set_role(ctx, user_id, role, store_ids):
    r = patch(ctx.cmd, f"/v1/users/{user_id}",
              {"role": role, "store_ids": store_ids}, headers=admin_headers())
    body = expect_json(r, 200, f"admin makes {user_id} a {role}")
    assert (body.get("id"), body.get("role"), body.get("store_ids")) == \
        (user_id, role, store_ids), f"PATCH answer: {body}"
    return body


def user_with_role(ctx, role, store_ids):
    """Signs up, gets role and stores from the admin, logs in. Returns
    {"id", "username", "password", "token"}."""
    user, name, password = sign_up(ctx, role)
    set_role(ctx, user["id"], role, store_ids)
    token, body = login(ctx, name, password)
    assert (body["user"].get("id"), body["user"].get("role"),
            body["user"].get("store_ids")) == (user["id"], role, store_ids), \
        f"login answer's user: {body}"
    return {"id": user["id"], "username": name, "password": password,
            "token": token}


def within(call, want, seconds, what):
    """Calls call() until its status is want, for at most `seconds` after
    the first attempt (the last attempt starts before the deadline).
    Returns (response, the earlier responses)."""
    t0 = time.monotonic()
    before = []
    while True:
        r = call()
        elapsed = time.monotonic() - t0
        if r.status == want:
            return r, before
        before.append(r)
        if elapsed >= seconds:
            raise AssertionError(
                f"{what}: still HTTP {r.status} after {elapsed:.2f}s "
                f"(want {want} within {seconds}s): {r!r}")
        time.sleep(0.02)


def merge_positions(positions):
    """One min_position list: the largest offset per (topic, partition)."""
    best = {}
    for p in positions:
        kind, part, off = client.position_offset(p)
        if best.get((kind, part), -1) < off:
            best[(kind, part)] = off
    return ",".join(f"{k}-{p}-{o}" for (k, p), o in sorted(best.items()))


def stream_head(port, path, headers):
    """GET path with Accept: text/event-stream on a raw socket: returns
    (status, headers, body) of the answer's head (and of its body when it
    has a Content-Length), then closes the connection."""
    hdrs = {"Host": "it", "Accept": "text/event-stream"}
    hdrs.update(headers)
    req = f"GET {path} HTTP/1.1\r\n" + "".join(
        f"{k}: {v}\r\n" for k, v in hdrs.items() if v is not None) + "\r\n"
    s = client.raw_connect(port, 10)
    try:
        s.sendall(req.encode())
        buf = b""
        deadline = time.monotonic() + 10
        while b"\r\n\r\n" not in buf:
            assert time.monotonic() < deadline, f"no answer head: {buf!r}"
            s.settimeout(max(0.05, deadline - time.monotonic()))
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                continue
            assert chunk, f"closed before the head: {buf!r}"
            buf += chunk
        head, _, rest = buf.partition(b"\r\n\r\n")
        status = client.parse_status(head)
        out = {}
        for line in head.decode("latin-1").split("\r\n")[1:]:
            k, _, v = line.partition(":")
            out[k.strip().lower()] = v.strip()
        n = int(out.get("content-length", "0") or 0)
        while len(rest) < n and time.monotonic() < deadline:
            s.settimeout(max(0.05, deadline - time.monotonic()))
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                continue
            if not chunk:
                break
            rest += chunk
        return status, out, rest[:n]
    finally:
        s.close()


# ---- 1. the role x endpoint matrix ----

class World:
    """Stores A and B, a product with stock in both, and one user per role
    (manager, clerk and viewer of A; the runner's admin)."""

    def __init__(self, ctx):
        self.a = api.create_store(ctx)["id"]
        b = api.create_store(ctx)
        self.b = b["id"]
        prod = api.create_product(ctx)
        self.p = prod["id"]
        self.positions = [b["position"], prod["position"]]
        for store in (self.a, self.b):
            r = api.txn(ctx, store, self.p, "receipt", 1000, on_hand=1000,
                        version=1)
            self.positions.append(r["position"])
        # Orders the matrix cancels: one at A per role, one at B.
        self.orders_a = {role: self.order(ctx, self.a) for role in ROLES}
        self.order_b = self.order(ctx, self.b)
        me = expect_json(get(ctx.cmd, "/v1/users/me",
                             headers=admin_headers()), 200, "admin's me")
        self.admin_id = me["id"]
        self.users = {role: user_with_role(ctx, role, [self.a])
                      for role in ("manager", "clerk", "viewer")}

    def order(self, ctx, store, headers=None):
        r = post(ctx.cmd, f"/v1/stores/{store}/orders",
                 {"lines": [{"product_id": self.p, "quantity": 1}]},
                 headers=headers or admin_headers())
        body = expect_json(r, 201, "admin places an order")
        self.positions.append(body["position"])
        return body["order_id"]

    def headers(self, who):
        if who == "admin":
            return admin_headers()
        if who == "none":
            return NO_AUTH
        if who == "bad":
            return bearer(BAD_TOKEN)
        return bearer(self.users[who]["token"])


def check(r, want, what):
    """want: an HTTP status; 401 and 403 must be the contract's problems."""
    if want == 401:
        expect_problem(r, 401, "unauthorized", what)
        assert r.headers.get("www-authenticate", "").startswith("Bearer"), \
            f"{what}: 401 without WWW-Authenticate: Bearer: {r.headers}"
    elif want == 403:
        expect_problem(r, 403, "forbidden", what)
    else:
        expect_json(r, want, what)


def expect_by_role(admin, manager, clerk, viewer):
    return {"admin": admin, "manager": manager, "clerk": clerk,
            "viewer": viewer, "none": 401, "bad": 401}


def test_role_matrix_of_writes(ctx):
    """Command service: every write endpoint for every role, for store A
    (the users' store) and store B (not theirs), and without a valid
    token."""
    require_auth(ctx)
    w = World(ctx)
    a, b, p = w.a, w.b, w.p

    def txn(store, type_, quantity, reason=None):
        body = {"product_id": p, "type": type_, "quantity": quantity}
        if reason:
            body["reason"] = reason
        return lambda h: post(ctx.cmd, f"/v1/stores/{store}/transactions",
                              body, headers=h)

    def order(store):
        return lambda h: post(ctx.cmd, f"/v1/stores/{store}/orders",
                              {"lines": [{"product_id": p, "quantity": 1}]},
                              headers=h)

    def transfer(src, dst):
        return lambda h: post(ctx.cmd, "/v1/transfers",
                              {"from_store_id": src, "to_store_id": dst,
                               "product_id": p, "quantity": 1}, headers=h)

    only_admin = expect_by_role(201, 403, 403, 403)
    rows = [
        ("POST /v1/products", lambda h: post(ctx.cmd, "/v1/products",
                                             api.product_body(), headers=h),
         only_admin),
        ("POST /v1/stores", lambda h: post(ctx.cmd, "/v1/stores",
                                           api.store_body(), headers=h),
         only_admin),
        ("PATCH /v1/products/{id}",
         lambda h: patch(ctx.cmd, f"/v1/products/{p}", {"reorder_level": 7},
                         headers=h),
         expect_by_role(200, 403, 403, 403)),
        ("receipt at A", txn(a, "receipt", 1), expect_by_role(201, 201, 201, 403)),
        ("sale at A", txn(a, "sale", 1), expect_by_role(201, 201, 201, 403)),
        ("return at A", txn(a, "return", 1), expect_by_role(201, 201, 201, 403)),
        ("count at A", txn(a, "count", 900), expect_by_role(201, 201, 403, 403)),
        ("adjustment at A", txn(a, "adjustment", -1, "damage"),
         expect_by_role(201, 201, 403, 403)),
        ("receipt at B", txn(b, "receipt", 1), only_admin),
        ("sale at B", txn(b, "sale", 1), only_admin),
        ("count at B", txn(b, "count", 700), only_admin),
        ("adjustment at B", txn(b, "adjustment", 1, "found"), only_admin),
        ("order at A", order(a), expect_by_role(201, 201, 201, 403)),
        ("order at B", order(b), only_admin),
        ("transfer A->B", transfer(a, b), only_admin),
        ("transfer B->A", transfer(b, a), only_admin),
        ("cancel an order of A",
         lambda h, who: post(
             ctx.cmd, f"/v1/orders/{w.orders_a.get(who, w.orders_a['viewer'])}"
             "/cancel", None, headers=h),
         expect_by_role(200, 200, 200, 403)),
        ("cancel an order of B",
         lambda h: post(ctx.cmd, f"/v1/orders/{w.order_b}/cancel", None,
                        headers=h),
         expect_by_role(200, 403, 403, 403)),
        ("PATCH /v1/users/{id}",
         lambda h: patch(ctx.cmd, f"/v1/users/{w.users['clerk']['id']}",
                         {"role": "admin"}, headers=h),
         expect_by_role(None, 403, 403, 403)),
    ]
    # Admin last per row, so that B's stock (admin writes only) is known.
    order_of = ("none", "bad", "viewer", "clerk", "manager", "admin")
    for what, call, want in rows:
        for who in order_of:
            if want[who] is None:
                continue
            h = w.headers(who)
            # (the cancel-of-A row also needs who: its own order per role)
            r = call(h, who) if call.__code__.co_argcount == 2 else call(h)
            check(r, want[who], f"{what} as {who}")
            if r.status in (200, 201) and isinstance(r.body, dict) and \
                    r.body.get("position"):
                w.positions.append(r.body["position"])
    # None of the refused writes touched B: its stock is what the admin's
    # writes alone make: 1000, receipt +1, sale -1, count to 700,
    # adjustment +1, +1 in from A, -1 out to A -> 701; reserved: the setup
    # order (cancelled by the admin) and the matrix's order (kept) -> 1.
    # Then this receipt: 702.
    r = api.post_txn(ctx, b, p, "receipt", 1, headers=admin_headers())
    body = expect_json(r, 201, "admin receipt at B after the matrix")
    assert (body["on_hand"], body["reserved"]) == (702, 1), \
        f"B after the matrix: want on_hand 702 reserved 1, got {body}"
    # The clerk's own order at A was placed; the clerk may cancel it.
    r = order(a)(w.headers("clerk"))
    placed = expect_json(r, 201, "clerk order at A")
    r = post(ctx.cmd, f"/v1/orders/{placed['order_id']}/cancel", None,
             headers=w.headers("clerk"))
    expect_json(r, 200, "clerk cancels its order")


def test_role_matrix_of_reads(ctx):
    """Query service (and GET /v1/users/me): reads of A for every role, of
    B for the admin only, the filtered store list, the change stream of B,
    and 401 without a valid token."""
    require_auth(ctx)
    w = World(ctx)
    a, b, p = w.a, w.b, w.p
    # An order at A placed by the clerk, to read back.
    clerk_order = w.order(ctx, a, headers=w.headers("clerk"))
    mp = merge_positions(w.positions)

    def q(path):
        sep = "&" if "?" in path else "?"
        return lambda h: get(ctx.qry, f"{path}{sep}min_position={mp}",
                             headers=h)

    all_read = expect_by_role(200, 200, 200, 200)
    only_admin = expect_by_role(200, 403, 403, 403)
    rows = [
        ("GET /v1/products/{id}", q(f"/v1/products/{p}"), all_read),
        ("GET /v1/products", q("/v1/products"), all_read),
        ("GET /v1/stores/A", q(f"/v1/stores/{a}"), all_read),
        ("GET /v1/stores/A/inventory", q(f"/v1/stores/{a}/inventory"), all_read),
        ("GET /v1/stores/A/inventory/P", q(f"/v1/stores/{a}/inventory/{p}"),
         all_read),
        ("GET /v1/stores/A/transactions", q(f"/v1/stores/{a}/transactions"),
         all_read),
        ("GET /v1/stores/A/orders", q(f"/v1/stores/{a}/orders"), all_read),
        ("GET /v1/orders/{order at A}", q(f"/v1/orders/{clerk_order}"),
         all_read),
        ("GET /v1/stores/B", q(f"/v1/stores/{b}"), only_admin),
        ("GET /v1/stores/B/inventory", q(f"/v1/stores/{b}/inventory"),
         only_admin),
        ("GET /v1/stores/B/inventory/P", q(f"/v1/stores/{b}/inventory/{p}"),
         only_admin),
        ("GET /v1/stores/B/transactions", q(f"/v1/stores/{b}/transactions"),
         only_admin),
        ("GET /v1/stores/B/orders", q(f"/v1/stores/{b}/orders"), only_admin),
        ("GET /v1/orders/{order at B}", q(f"/v1/orders/{w.order_b}"),
         only_admin),
        ("GET /v1/stores", q("/v1/stores?limit=500"), all_read),
    ]
    for what, call, want in rows:
        for who in ROLES + ANON:
            check(call(w.headers(who)), want[who], f"{what} as {who}")

    # The store list is filtered: only A for the users of A; the admin
    # sees both.
    for who in ("manager", "clerk", "viewer"):
        r = q("/v1/stores?limit=500")(w.headers(who))
        body = expect_json(r, 200, f"store list as {who}")
        ids = [s.get("id") for s in body["items"]]
        assert ids == [a] and body["next_cursor"] is None, \
            f"store list as {who}: want only A {a}, got {ids}"
    seen = set()
    cursor = None
    for _ in range(100):
        path = "/v1/stores?limit=500" + (f"&cursor={cursor}" if cursor else "")
        body = expect_json(q(path)(admin_headers()), 200, "admin store list")
        seen.update(s.get("id") for s in body["items"])
        cursor = body["next_cursor"]
        if not cursor:
            break
    assert {a, b} <= seen, "the admin's store list lacks A or B"
    # A product's per-store rows are filtered too (docs/security.md).
    r = q(f"/v1/products/{p}/inventory")(w.headers("clerk"))
    body = expect_json(r, 200, "product inventory as clerk")
    assert isinstance(body.get("items"), list), \
        f"product inventory has no rows: {body}"
    stores = {row.get("store_id") for row in body["items"]}
    assert stores == {a}, f"clerk sees the rows of {stores}, want only A"

    # The change stream: B is refused to its non-readers; A opens.
    for who in ROLES + ANON:
        status, hdrs, body = stream_head(
            ctx.qry, f"/v1/changes?store_id={b}", w.headers(who))
        want = 200 if who == "admin" else 401 if who in ANON else 403
        assert status == want, \
            f"/v1/changes?store_id=B as {who}: HTTP {status}, want {want} " \
            f"({body!r})"
        if want != 200:
            code = "unauthorized" if want == 401 else "forbidden"
            assert f'"code":"{code}"'.encode() in body.replace(b" ", b""), \
                f"/v1/changes?store_id=B as {who}: body {body!r}"
        else:
            assert hdrs.get("content-type", "").startswith(
                "text/event-stream"), f"admin stream of B: {hdrs}"
    for who in ("manager", "clerk", "viewer"):
        status, hdrs, body = stream_head(
            ctx.qry, f"/v1/changes?store_id={a}", w.headers(who))
        assert status == 200 and hdrs.get("content-type", "").startswith(
            "text/event-stream"), \
            f"/v1/changes?store_id=A as {who}: HTTP {status} {hdrs} {body!r}"

    # GET /v1/users/me: each user's own role and stores; 401 without one.
    for who in ("manager", "clerk", "viewer"):
        u = w.users[who]
        r = get(ctx.cmd, "/v1/users/me", headers=w.headers(who))
        me = expect_json(r, 200, f"me as {who}")
        assert (me.get("id"), me.get("username"), me.get("role"),
                me.get("store_ids")) == (u["id"], u["username"], who, [a]), \
            f"me as {who}: {me}"
        assert not any("password" in k or "hash" in k for k in me), me
    for who in ANON:
        check(get(ctx.cmd, "/v1/users/me", headers=w.headers(who)), 401,
              f"me as {who}")


# ---- 2. and 3. revocation within a second on both services ----

def test_logout_takes_effect_at_once_on_both_services(ctx):
    require_auth(ctx)
    store = api.create_store(ctx)
    u = user_with_role(ctx, "viewer", [store["id"]])
    h = bearer(u["token"])
    path = f"/v1/stores/{store['id']}?min_position={store['position']}"
    # Both services have the session cached before the logout.
    expect_json(get(ctx.cmd, "/v1/users/me", headers=h), 200, "me")
    expect_json(get(ctx.qry, path, headers=h), 200, "read of its store")
    r = delete(ctx.cmd, "/v1/sessions/current", headers=h)
    assert r.status == 204 and not r.raw, f"logout: {r!r}"
    within(lambda: get(ctx.cmd, "/v1/users/me", headers=h), 401, 1.0,
           "command service after logout")
    within(lambda: get(ctx.qry, path, headers=h), 401, 1.0,
           "query service after logout")
    check(get(ctx.cmd, "/v1/users/me", headers=h), 401, "command, logged out")
    check(get(ctx.qry, "/v1/stores", headers=h), 401, "query, logged out")
    check(delete(ctx.cmd, "/v1/sessions/current", headers=h), 401,
          "a second logout")
    # Another session of the same user is untouched.
    token2, _ = login(ctx, u["username"], u["password"])
    expect_json(get(ctx.qry, path, headers=bearer(token2)), 200,
                "the user's other session")


def test_role_change_takes_effect_at_once(ctx):
    require_auth(ctx)
    a = api.create_store(ctx)
    product = api.create_product(ctx)["id"]
    u = user_with_role(ctx, "manager", [a["id"]])
    h = bearer(u["token"])
    r = api.post_txn(ctx, a["id"], product, "receipt", 10, headers=h)
    body = expect_json(r, 201, "manager receipt at A")
    read = f"/v1/stores/{a['id']}?min_position={a['position']}"
    expect_json(get(ctx.qry, read, headers=h), 200, "manager reads A")
    # Demoted to viewer: no more writes to A, reads of A still fine.
    set_role(ctx, u["id"], "viewer", [a["id"]])
    refused, slipped = within(
        lambda: api.post_txn(ctx, a["id"], product, "receipt", 1, headers=h),
        403, 1.0, "receipt by the demoted manager")
    check(refused, 403, "receipt by the demoted manager")
    assert all(x.status == 201 for x in slipped), \
        f"before the refusal: {slipped}"
    check(api.post_txn(ctx, a["id"], product, "count", 0, headers=h), 403,
          "count by the demoted manager")
    me = expect_json(get(ctx.cmd, "/v1/users/me", headers=h), 200, "me")
    assert (me.get("role"), me.get("store_ids")) == ("viewer", [a["id"]]), me
    expect_json(get(ctx.qry, read, headers=h), 200, "viewer reads A")
    # A taken away: the query service refuses its reads within a second.
    set_role(ctx, u["id"], "viewer", [])
    within(lambda: get(ctx.qry, read, headers=h), 403, 1.0,
           "read of A after the store was taken away")
    # Only the receipts answered 201 happened; none of the refused ones.
    r = api.post_txn(ctx, a["id"], product, "receipt", 1,
                     headers=admin_headers())
    after = expect_json(r, 201, "admin receipt")
    want = body["on_hand"] + len(slipped) + 1
    assert (after["on_hand"], after["version"]) == \
        (want, body["version"] + len(slipped) + 1), \
        f"A after the demotion: want on_hand {want}, got {after}"


# ---- 5. wrong password and unknown user: same answer, same cost ----

def test_wrong_password_and_unknown_user_look_the_same(ctx):
    require_auth(ctx)
    n = 5
    known = [sign_up(ctx, "known") for _ in range(n)]

    def attempt(name):
        pw = new_password()  # never anyone's password
        t0 = time.monotonic()
        r = post(ctx.cmd, "/v1/sessions", {"username": name, "password": pw},
                 headers=NO_AUTH)
        return r, time.monotonic() - t0

    wrong, unknown = [], []
    for i in range(n):  # interleaved, so that load hits both alike
        wrong.append(attempt(known[i][1]))
        unknown.append(attempt(client.unique("nobody").lower()))
    shapes = set()
    for r, _ in wrong + unknown:
        body = expect_problem(r, 401, "unauthorized", "failed login")
        assert r.headers.get("www-authenticate", "").startswith("Bearer"), \
            f"failed login without WWW-Authenticate: {r.headers}"
        shapes.add((r.headers.get("content-type"),
                    r.headers.get("www-authenticate"),
                    tuple(sorted((k, v) for k, v in body.items()
                                 if k != "request_id"))))
    assert len(shapes) == 1, \
        f"a wrong password and an unknown user answer differently: {shapes}"
    mw = statistics.median(t for _, t in wrong)
    mu = statistics.median(t for _, t in unknown)
    ctx.log(f"median login failure: wrong password {mw * 1000:.1f} ms, "
            f"unknown user {mu * 1000:.1f} ms")
    assert max(mw, mu) <= 3 * min(mw, mu), \
        f"login failures take different times: wrong password " \
        f"{mw * 1000:.1f} ms, unknown user {mu * 1000:.1f} ms (median of {n})"


# ---- 4. expired tokens ----

def parse_time(text):
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_expired_token_is_refused_by_both_services(ctx):
    require_auth(ctx)
    main = ctx.stack["command"]
    assert "STOCKFLOW_SESSION_TTL_S" in main.help_text(), \
        "the command service's --help does not show STOCKFLOW_SESSION_TTL_S"
    ttl = 60  # the smallest the setting accepts
    store = api.create_store(ctx)
    u = user_with_role(ctx, "viewer", [store["id"]])
    # A second command instance with a short TTL. Its own transactional id:
    # one with the main instance's id would fence the main instance. It
    # shares PostgreSQL, so its sessions are the main services' sessions.
    env = dict(main.env)
    port = main.port + 57
    env["STOCKFLOW_COMMAND_LISTEN"] = f"127.0.0.1:{port}"
    env["STOCKFLOW_SESSION_TTL_S"] = str(ttl)
    env["STOCKFLOW_COMMAND_INTAKE"] = "false"  # one bus consumer: the main one
    env["STOCKFLOW_COMMAND_TXN_ID"] = \
        env.get("STOCKFLOW_COMMAND_TXN_ID", "sf-it") + "-ttl"
    state = os.path.dirname(os.path.dirname(main.log_path))
    second = stackmod.Service("command", main.binary, env, state)
    second.log_path = os.path.join(state, "logs", "command-ttl.log")
    second.pid_path = os.path.join(state, "pids", "command-ttl.pid")
    second.port = port
    second.start()
    try:
        second.wait_ready(90)
        token, body = login(ctx, u["username"], u["password"], port=port)
        code, graceful = second.stop()
        assert graceful and code == 0, \
            f"the short-TTL command instance did not exit cleanly: " \
            f"{stackmod.describe_exit(code)}\n{second.log_tail(20)}"
    finally:
        if second.alive():
            second.stop()
    expires = parse_time(body["expires_at"])
    left = (expires - datetime.datetime.now(datetime.timezone.utc)) \
        .total_seconds()
    assert ttl - 10 <= left <= ttl + 1, \
        f"expires_at {body['expires_at']} is {left:.1f}s away, want ~{ttl}s"
    h = bearer(token)
    read = f"/v1/stores/{store['id']}?min_position={store['position']}"
    expect_json(get(ctx.qry, read, headers=h), 200, "query before expiry")
    expect_json(get(ctx.cmd, "/v1/users/me", headers=h), 200,
                "command before expiry")
    # The explicit TTL wait (the one fixed sleep), then at most a second.
    left = (expires - datetime.datetime.now(datetime.timezone.utc)) \
        .total_seconds()
    time.sleep(max(0.0, left))
    within(lambda: get(ctx.qry, read, headers=h), 401, 1.0,
           "query service after expiry")
    within(lambda: get(ctx.cmd, "/v1/users/me", headers=h), 401, 1.0,
           "command service after expiry")
    check(get(ctx.qry, read, headers=h), 401, "query, expired")
    check(get(ctx.cmd, "/v1/users/me", headers=h), 401, "command, expired")
    # The user itself is fine: a new login works.
    token2, _ = login(ctx, u["username"], u["password"])
    expect_json(get(ctx.qry, read, headers=bearer(token2)), 200,
                "a fresh session")


# ---- 6. the limiter (the last test that fails logins) ----

def test_guessing_is_limited_per_username(ctx):
    require_auth(ctx)
    victim, victim_name, victim_pw = sign_up(ctx, "victim")
    other = user_with_role(ctx, "viewer", [])
    for i in range(5):
        r = post(ctx.cmd, "/v1/sessions",
                 {"username": victim_name, "password": new_password()},
                 headers=NO_AUTH)
        expect_problem(r, 401, "unauthorized", f"guess {i + 1}")
    r = post(ctx.cmd, "/v1/sessions",
             {"username": victim_name, "password": new_password()},
             headers=NO_AUTH)
    expect_problem(r, 429, "too_many_requests", "guess 6")
    ra = r.headers.get("retry-after", "")
    assert ra.isdigit() and 1 <= int(ra) <= 60, f"Retry-After {ra!r}"
    # Locked for the right password too, for the rest of the window.
    r = post(ctx.cmd, "/v1/sessions",
             {"username": victim_name, "password": victim_pw},
             headers=NO_AUTH)
    expect_problem(r, 429, "too_many_requests", "right password, locked")
    # Another user logs in at once, from the same address.
    token, body = login(ctx, other["username"], other["password"])
    assert body["user"]["id"] == other["id"], body
    expect_json(get(ctx.qry, "/v1/stores", headers=bearer(token)), 200,
                "the other user reads")


# ---- 7. no secrets in logs or events; the actor of events ----

def kcat(ctx, topic, fmt):
    brokers = ctx.env["STOCKFLOW_KAFKA_BROKERS"]
    out = subprocess.run(
        ["kcat", "-C", "-b", brokers, "-t", topic, "-o", "beginning", "-e",
         "-q", "-f", fmt], capture_output=True, timeout=120)
    assert out.returncode == 0, \
        f"kcat on {topic}: exit {out.returncode}: {out.stderr[-400:]!r}"
    return out.stdout


def split_length_prefixed(raw):
    """kcat -f '%R%s': each message as a 4-byte big-endian length, then the
    bytes."""
    msgs, i = [], 0
    while i < len(raw):
        assert i + 4 <= len(raw), "truncated kcat length prefix"
        n = int.from_bytes(raw[i:i + 4], "big")
        msgs.append(raw[i + 4:i + 4 + n])
        i += 4 + n
    return msgs


def test_no_secrets_in_logs_or_events(ctx):
    require_auth(ctx)
    a = api.create_store(ctx)["id"]
    product = api.create_product(ctx)["id"]
    manager = user_with_role(ctx, "manager", [a])
    ref = client.unique("by-manager")
    r = api.post_txn(ctx, a, product, "receipt", 3, reference=ref,
                     headers=bearer(manager["token"]))
    written = expect_json(r, 201, "manager receipt")
    r = delete(ctx.cmd, "/v1/sessions/current",
               headers=bearer(manager["token"]))
    assert r.status == 204, f"logout: {r!r}"
    secrets = sorted(SECRETS)
    assert manager["password"] in secrets and manager["token"] in secrets

    state = os.path.dirname(os.path.dirname(ctx.stack["command"].log_path))
    logs = {n: ctx.stack[n].log_text(since_start=False)
            for n in stackmod.SERVICES}
    ttl_log = os.path.join(state, "logs", "command-ttl.log")
    if os.path.exists(ttl_log):
        with open(ttl_log, "rb") as f:
            logs["command-ttl"] = f.read().decode("utf-8", "replace")
    assert "logged in" in logs["command"], \
        "the command log has no login lines: is it the right log?"
    for name, text in logs.items():
        leaked = [s for s in secrets if s in text]
        assert not leaked, f"{len(leaked)} secrets in the {name} log, " \
            f"e.g. {leaked[0][:8]}..."

    topics = [ctx.env[k] for k in ("STOCKFLOW_TOPIC_CATALOG",
                                   "STOCKFLOW_TOPIC_STOCK")]
    raw_all = b""
    stock_raw = b""
    for topic in topics:
        raw = kcat(ctx, topic, "%R%s")
        raw_all += raw
        if topic == ctx.env["STOCKFLOW_TOPIC_STOCK"]:
            stock_raw = raw
    assert ref.encode() in raw_all, \
        "the manager's receipt is not on the stock topic"
    leaked = [s for s in secrets if s.encode() in raw_all]
    assert not leaked, f"{len(leaked)} secrets on the event topics"

    # The actor of the manager's event is the manager's user id.
    msgs = split_length_prefixed(stock_raw)
    hex_in = "\n".join(m.hex() for m in msgs if ref.encode() in m) + "\n"
    out = subprocess.run([sys.executable, AVRO_DECODE, "--hex"],
                         input=hex_in.encode(), capture_output=True,
                         timeout=60)
    assert out.returncode == 0, f"avro_decode: {out.stderr[-400:]!r}"
    events = [json.loads(line) for line in out.stdout.decode().splitlines()
              if line.strip()]
    mine = [e for e in events
            if isinstance(e.get("payload"), dict)
            and e["payload"].get("reference") == ref]
    assert len(mine) == 1, f"want one event with reference {ref}: {events}"
    ev = mine[0]
    assert ev.get("actor") == manager["id"], \
        f"event actor {ev.get('actor')!r}, want the manager {manager['id']}"
    assert (ev.get("store_id"), ev.get("product_id"),
            ev["payload"].get("type"), ev["payload"].get("quantity")) == \
        (a, product, "StockMoved", 3), f"the manager's event: {ev}"
    assert written["store_id"] == a, written
