"""The Parse facade's reads on the query service (docs/parse-compat.md):
the envelope in both of Parse's request styles, the application id, the
session token, every class listed and got by id, where with every
supported operator (pointers, $in, dates), order, limit, skip, count,
keys, include, store scoping of a restricted viewer, and the refusals with
Parse's exact status and code.

Every read is sent twice, REST style (GET, X-Parse-* headers, parameters in
the query string) and JS SDK style (POST text/plain JSON with _method=GET,
_ApplicationId, _SessionToken and the parameters in the body), and both
answers must be the same. Data is seeded through /v1 and each test waits
for it with ?min_position= on a /v1 read."""

import json
import os
import urllib.parse

import api
import client
from client import expect_json, get, post, request, with_position
from test_auth_matrix import merge_positions, user_with_role

APP = "stockflow"  # STOCKFLOW_PARSE_APP_ID's default


def admin_token():
    token = os.environ.get("STOCKFLOW_TEST_TOKEN")
    assert token, "the runner did not log in as the admin"
    return token


# ---- the two request styles ----

def rest(ctx, path, params=None, token=None, app=APP, method="GET",
         headers=None):
    """REST style: the method as is, X-Parse-* headers, the query string
    (where as JSON text)."""
    query = ""
    if params:
        enc = {k: (json.dumps(v) if k == "where" and not isinstance(v, str)
                   else v) for k, v in params.items()}
        query = "?" + urllib.parse.urlencode(enc)
    hdrs = {"Authorization": None, "X-Parse-REST-API-Key": "any"}
    if app is not None:
        hdrs["X-Parse-Application-Id"] = app
    if token is not None:
        hdrs["X-Parse-Session-Token"] = token
    hdrs.update(headers or {})
    return request(ctx.qry, method, "/parse" + path + query, None, hdrs)


def sdk(ctx, path, params=None, token=None, app=APP, method="GET",
        raw=None, extra=None):
    """The Parse JS SDK's style: POST, text/plain, everything in a JSON
    body."""
    body = {"_method": method, "_JavaScriptKey": "js",
            "_ClientVersion": "js5.3.0", "_InstallationId": "inst-1"}
    if app is not None:
        body["_ApplicationId"] = app
    if token is not None:
        body["_SessionToken"] = token
    body.update(params or {})
    body.update(extra or {})
    data = raw if raw is not None else json.dumps(body)
    return request(ctx.qry, "POST", "/parse" + path, data,
                   {"Authorization": None, "Content-Type": "text/plain"})


def both(ctx, path, params=None, token=None, **kw):
    """Sends the read in both styles; they must answer alike. Returns the
    REST style's response."""
    a = rest(ctx, path, params, token, **kw)
    b = sdk(ctx, path, params, token, **kw)
    assert (a.status, a.body) == (b.status, b.body), \
        f"{path} {params}: REST answered {a!r}, SDK style {b!r}"
    assert "json" in a.headers.get("content-type", ""), a.headers
    return a


def ok(ctx, path, params=None, token=None):
    r = both(ctx, path, params, token or admin_token())
    assert r.status == 200, f"{path} {params}: {r!r}"
    return r.body


def results(ctx, cls, params=None, token=None):
    body = ok(ctx, f"/classes/{cls}", params, token)
    assert isinstance(body.get("results"), list), body
    return body["results"]


def ids(objs):
    return [o["objectId"] for o in objs]


def parse_error(r, status, code, what=""):
    """The answer is exactly {"code": code, "error": <text>}."""
    assert r.status == status, \
        f"{what}: want HTTP {status} code {code}, got {r!r}"
    assert isinstance(r.body, dict) and set(r.body) == {"code", "error"}, \
        f"{what}: not a Parse error: {r!r}"
    assert r.body["code"] == code, f"{what}: want code {code}, got {r!r}"
    assert isinstance(r.body["error"], str) and r.body["error"], r
    return r.body["error"]


def end_session_then_refused(ctx, token, probe, logout=None):
    """Ends token's session, by logout(token) or else DELETE
    /v1/sessions/current, then waits until probe(token) (a request with
    that token) is refused 400 code 209: a revoked token is refused
    everywhere within a second (docs/security.md), here within 5 s."""
    if logout is None:
        r = request(ctx.cmd, "DELETE", "/v1/sessions/current", None,
                    {"Authorization": f"Bearer {token}"})
        assert r.status in (200, 204), r
    else:
        logout(token)

    def gone():
        parse_error(probe(token), 400, 209, "after logout")
    client.eventually(gone, timeout=5, what="logged-out token refused")


def refused(ctx, path, params, status, code, token=None, what=""):
    """Both styles refuse alike."""
    r = both(ctx, path, params, token or admin_token())
    return parse_error(r, status, code, what or f"{path} {params}")


def ptr(cls, oid):
    return {"__type": "Pointer", "className": cls, "objectId": oid}


def date(iso):
    return {"__type": "Date", "iso": iso}


# ---- seeding through /v1 ----

def seed(ctx, tag="parse"):
    """Two stores, two products (one cheap with a 0.10 price), stock
    movements and one order; waits until the read model has them all."""
    positions = []
    a = api.create_store(ctx)
    b = api.create_store(ctx)
    p1 = api.create_product(ctx, price="12.50", category=f"{tag}-it")
    p2 = api.create_product(ctx, price="0.10", category=f"{tag}-it",
                            reorder_level=50)
    for x in (a, b, p1, p2):
        positions.append(x["position"])
    A, B, P1, P2 = a["id"], b["id"], p1["id"], p2["id"]
    t = {}
    t["a1_receipt"] = api.txn(ctx, A, P1, "receipt", 10, on_hand=10,
                              version=1, reference="po-1")
    t["a2_receipt"] = api.txn(ctx, A, P2, "receipt", 5, on_hand=5,
                              version=1)
    t["b1_receipt"] = api.txn(ctx, B, P1, "receipt", 7, on_hand=7,
                              version=1)
    t["a1_sale"] = api.txn(ctx, A, P1, "sale", 3, on_hand=7, version=2,
                           reason="walk-in")
    for x in t.values():
        positions.append(x["position"])
    r = post(ctx.cmd, f"/v1/stores/{A}/orders",
             {"lines": [{"product_id": P2, "quantity": 2}],
              "reference": f"{tag}-order"})
    order = expect_json(r, 201, "place order")
    positions.append(order["position"])
    pos = merge_positions(positions)
    expect_json(get(ctx.qry, with_position(f"/v1/stores/{A}", pos)), 200,
                "store A in the read model")
    return {"A": A, "B": B, "P1": P1, "P2": P2, "t": t,
            "order": order["order_id"], "a": a, "b": b, "p1": p1, "p2": p2}


# ---- the envelope ----

def test_envelope_app_id_master_key_session(ctx):
    r = get(ctx.qry, "/parse/health", headers={"Authorization": None})
    assert (r.status, r.body) == (200, {"status": "ok"}), r
    tok = admin_token()
    # wrong or missing application id: Parse Server's own answer
    for app in ("not-stockflow", None, ""):
        for r in (rest(ctx, "/classes/Store", token=tok, app=app),
                  sdk(ctx, "/classes/Store", token=tok, app=app)):
            assert (r.status, r.body) == (403, {"error": "unauthorized"}), \
                f"app id {app!r}: {r!r}"
    # a wrong app id is refused before anything else (even bad JSON where)
    r = rest(ctx, "/classes/Store", {"where": "{nope"}, tok, app="x")
    assert (r.status, r.body) == (403, {"error": "unauthorized"}), r
    # the master key is refused, in a header or in the body
    parse_error(rest(ctx, "/classes/Store", token=tok,
                     headers={"X-Parse-Master-Key": "k"}), 403, 119,
                "master key header")
    parse_error(sdk(ctx, "/classes/Store", token=tok,
                    extra={"_MasterKey": "k"}), 403, 119, "_MasterKey")
    # no session token / an invalid one
    msg = parse_error(both(ctx, "/classes/Store"), 403, 119, "no token")
    assert msg == "Permission denied, user needs to be authenticated.", msg
    for bad in ("x" * 43, "short", "Bearer " + tok):
        msg = parse_error(both(ctx, "/classes/Store", token=bad), 400, 209,
                          f"bad token {bad[:8]}")
        assert msg == "Invalid session token", msg
    # the Authorization header is not a Parse credential
    r = request(ctx.qry, "GET", "/parse/classes/Store", None,
                {"X-Parse-Application-Id": APP,
                 "Authorization": f"Bearer {tok}"})
    parse_error(r, 403, 119, "bearer header only")
    # a body that is not JSON, or not an object; any content type is read
    parse_error(sdk(ctx, "/classes/Store", raw="{not json"), 400, 107,
                "malformed body")
    parse_error(sdk(ctx, "/classes/Store", raw="[1,2]"), 400, 107,
                "array body")
    parse_error(sdk(ctx, "/classes/Store", raw=json.dumps(
        {"_method": 5, "_ApplicationId": APP, "_SessionToken": tok})),
        400, 107, "_method not a string")
    # malformed where JSON (REST: the query string)
    r = rest(ctx, "/classes/Store", {"where": "{\"name\": "}, tok)
    parse_error(r, 400, 107, "malformed where")
    # an unknown class; a method a path does not serve
    refused(ctx, "/classes/Widget", None, 400, 103, what="unknown class")
    refused(ctx, "/classes/_User", None, 400, 103, what="_User class")
    parse_error(rest(ctx, "/users", token=tok), 405, 119, "GET /users")
    parse_error(sdk(ctx, "/users/me", token=tok, method="DELETE"), 405, 119,
                "DELETE /users/me")
    parse_error(sdk(ctx, "/classes/Store", token=tok, method="PATCH"), 405,
                119, "_method PATCH")


# ---- every class ----

def test_get_each_class_by_id(ctx):
    w = seed(ctx)
    A, P1, P2 = w["A"], w["P1"], w["P2"]
    s = ok(ctx, f"/classes/Store/{A}")
    assert s["objectId"] == A and s["name"] == w["a"]["name"], s
    assert s["location"] == w["a"]["location"] and s["closed"] is False, s
    api.expect_time(s["createdAt"], "Store createdAt")
    api.expect_time(s["updatedAt"], "Store updatedAt")
    assert "manager" not in s and "__type" not in s, s
    p = ok(ctx, f"/classes/Product/{P1}")
    assert (p["objectId"], p["sku"], p["price"], p["reorderLevel"],
            p["discontinued"], p["category"]) == \
        (P1, w["p1"]["sku"], 12.5, 5, False, "parse-it"), p
    # the exact decimal text as a JSON number
    raw = rest(ctx, f"/classes/Product/{P2}", token=admin_token()).raw
    assert b'"price":0.10' in raw, raw
    inv = ok(ctx, f"/classes/Inventory/{A}_{P1}")
    assert inv["objectId"] == f"{A}_{P1}", inv
    assert inv["store"] == ptr("Store", A), inv
    assert inv["product"] == ptr("Product", P1), inv
    assert (inv["onHand"], inv["reserved"], inv["available"],
            inv["version"]) == (7, 0, 7, 2), inv
    tid = w["t"]["a1_sale"]["transaction_id"]
    t = ok(ctx, f"/classes/Transaction/{tid}")
    assert (t["objectId"], t["store"], t["product"], t["type"],
            t["quantity"], t["delta"], t["reason"]) == \
        (tid, ptr("Store", A), ptr("Product", P1), "sale", 3, -3,
         "walk-in"), t
    assert "reference" not in t and t["createdAt"] == t["updatedAt"], t
    o = ok(ctx, f"/classes/Order/{w['order']}")
    assert (o["objectId"], o["store"], o["status"], o["reference"]) == \
        (w["order"], ptr("Store", A), "placed", "parse-order"), o
    assert o["lines"] == [{"product": ptr("Product", P2), "quantity": 2}], o
    # the order reserved 2 of P2 at A
    inv2 = ok(ctx, f"/classes/Inventory/{A}_{P2}")
    assert (inv2["onHand"], inv2["reserved"], inv2["available"]) == \
        (5, 2, 3), inv2
    # unknown and malformed ids: 404 code 101 "Object not found."
    for path in (f"/classes/Store/{client.new_uuid()}",
                 "/classes/Store/not-a-uuid",
                 f"/classes/Inventory/{A}",
                 f"/classes/Inventory/{A}_{client.new_uuid()}",
                 f"/classes/Inventory/{P1}_{A}",
                 f"/classes/Order/{tid}",
                 f"/classes/Transaction/{w['order']}"):
        msg = refused(ctx, path, None, 404, 101, what=path)
        assert msg == "Object not found.", msg
    # keys and include on a get
    g = ok(ctx, f"/classes/Inventory/{A}_{P1}",
           {"keys": "onHand,product", "include": "product"})
    assert set(g) == {"objectId", "onHand", "product", "createdAt",
                      "updatedAt"}, g
    assert g["product"]["__type"] == "Object", g
    assert g["product"]["className"] == "Product", g
    assert (g["product"]["objectId"], g["product"]["price"]) == (P1, 12.5), g


def test_list_each_class(ctx):
    w = seed(ctx)
    A, B, P1, P2 = w["A"], w["B"], w["P1"], w["P2"]
    stores = results(ctx, "Store", {"where": {"objectId": {"$in": [A, B]}}})
    assert sorted(ids(stores)) == sorted([A, B]), stores
    prods = results(ctx, "Product", {"where": {"objectId": {"$in": [P1, P2]}}})
    assert sorted(ids(prods)) == sorted([P1, P2]), prods
    inv = results(ctx, "Inventory", {"where": {"store": ptr("Store", A)}})
    assert sorted(ids(inv)) == sorted([f"{A}_{P1}", f"{A}_{P2}"]), inv
    txns = results(ctx, "Transaction", {"where": {"store": ptr("Store", A)}})
    types = sorted(t["type"] for t in txns)
    assert "receipt" in types and "sale" in types, types
    assert all(t["store"] == ptr("Store", A) for t in txns), txns
    # default order: objectId, which is time order for movements (UUIDv7)
    assert ids(txns) == sorted(ids(txns)), txns
    orders = results(ctx, "Order", {"where": {"store": ptr("Store", A)}})
    assert ids(orders) == [w["order"]], orders
    assert results(ctx, "Order", {"where": {"store": ptr("Store", B)}}) == []


# ---- where ----

def test_where_operators(ctx):
    w = seed(ctx)
    A, B, P1, P2 = w["A"], w["B"], w["P1"], w["P2"]
    mine = {"product": {"$in": [ptr("Product", P1), ptr("Product", P2)]}}

    def inv(extra):
        where = dict(mine)
        where.update(extra)
        return sorted(ids(results(ctx, "Inventory", {"where": where})))
    a1, a2, b1 = f"{A}_{P1}", f"{A}_{P2}", f"{B}_{P1}"
    # A x P1 on hand 7, A x P2 5 (reserved 2), B x P1 7
    assert inv({}) == sorted([a1, a2, b1])
    assert inv({"onHand": 7}) == sorted([a1, b1])
    assert inv({"onHand": {"$eq": 5}}) == [a2]
    assert inv({"onHand": {"$ne": 7}}) == [a2]
    assert inv({"onHand": {"$lt": 7}}) == [a2]
    assert inv({"onHand": {"$lte": 7}}) == sorted([a1, a2, b1])
    assert inv({"onHand": {"$gt": 5}}) == sorted([a1, b1])
    assert inv({"onHand": {"$gte": 5, "$lt": 6}}) == [a2]
    assert inv({"available": {"$in": [3, 100]}}) == [a2]
    assert inv({"reserved": {"$nin": [2]}}) == sorted([a1, b1])
    assert inv({"reserved": {"$exists": True}}) == sorted([a1, a2, b1])
    assert inv({"reserved": {"$exists": False}}) == []
    # pointers: equality, $ne, $in
    assert inv({"store": ptr("Store", B)}) == [b1]
    assert inv({"store": {"$ne": ptr("Store", B)}}) == sorted([a1, a2])
    assert inv({"product": ptr("Product", P2)}) == [a2]
    assert inv({"store": {"$in": [ptr("Store", A)]},
                "product": ptr("Product", P1)}) == [a1]
    # objectId of Inventory is "<store>_<product>"
    assert inv({"objectId": a2}) == [a2]
    assert inv({"objectId": {"$in": [a1, b1, "nope"]}}) == sorted([a1, b1])
    # strings, numbers with decimals, booleans, null / $exists on text
    prods = {"objectId": {"$in": [P1, P2]}}

    def prod(extra):
        where = dict(prods)
        where.update(extra)
        return sorted(ids(results(ctx, "Product", {"where": where})))
    assert prod({"price": 0.1}) == [P2]
    assert prod({"price": {"$gte": 0.1, "$lt": 12.5}}) == [P2]
    assert prod({"price": {"$gt": 12.49}}) == [P1]
    assert prod({"sku": w["p1"]["sku"]}) == [P1]
    assert prod({"sku": {"$in": [w["p1"]["sku"], "none"]}}) == [P1]
    assert prod({"discontinued": False}) == sorted([P1, P2])
    assert prod({"discontinued": True}) == []
    assert prod({"category": {"$exists": True}}) == sorted([P1, P2])
    assert prod({"category": None}) == []
    assert prod({"reorderLevel": {"$gte": 50}}) == [P2]
    # movements: type $in / $nin, reason, reference null, dates
    sale = w["t"]["a1_sale"]
    by_a = {"store": ptr("Store", A)}

    def txn(extra):
        where = dict(by_a)
        where.update(extra)
        return sorted(ids(results(ctx, "Transaction", {"where": where})))
    receipts = sorted([w["t"]["a1_receipt"]["transaction_id"],
                       w["t"]["a2_receipt"]["transaction_id"]])
    assert txn({"type": "receipt"}) == receipts
    assert txn({"type": {"$in": ["sale"]}}) == [sale["transaction_id"]]
    assert sale["transaction_id"] not in txn({"type": {"$nin": ["sale"]}})
    assert txn({"reason": "walk-in"}) == [sale["transaction_id"]]
    assert txn({"reference": "po-1"}) == \
        [w["t"]["a1_receipt"]["transaction_id"]]
    assert sale["transaction_id"] in txn({"reference": None})
    got = ok(ctx, f"/classes/Transaction/{sale['transaction_id']}")
    at = got["createdAt"]
    assert txn({"createdAt": date(at)}) == [sale["transaction_id"]]
    assert txn({"createdAt": {"$gte": date(at)},
                "type": {"$in": ["receipt", "sale"]}}) == \
        [sale["transaction_id"]]
    assert sale["transaction_id"] not in txn({"createdAt": {"$lt": date(at)}})
    assert txn({"createdAt": {"$gt": date("2099-01-01T00:00:00Z")}}) == []
    assert txn({"updatedAt": {"$gte": date("2000-01-01T00:00:00.000Z")},
                "quantity": 3, "delta": -3}) == [sale["transaction_id"]]
    # orders by status and by a date of now or later
    assert ids(results(ctx, "Order", {"where": {
        "store": ptr("Store", A), "status": {"$in": ["placed"]}}})) == \
        [w["order"]]
    assert results(ctx, "Order", {"where": {
        "store": ptr("Store", A), "status": "fulfilled"}}) == []


# ---- order, limit, skip, count, keys, include ----

def test_order_limit_skip_count_keys_include(ctx):
    w = seed(ctx)
    A, B, P1, P2 = w["A"], w["B"], w["P1"], w["P2"]
    where = {"product": {"$in": [ptr("Product", P1), ptr("Product", P2)]}}
    a1, a2, b1 = f"{A}_{P1}", f"{A}_{P2}", f"{B}_{P1}"
    r = results(ctx, "Inventory", {"where": where, "order": "onHand"})
    assert ids(r)[0] == a2 and sorted(ids(r)[1:]) == sorted([a1, b1]), r
    r = results(ctx, "Inventory", {"where": where, "order": "-onHand,store"})
    want_top = sorted([a1, b1], key=lambda x: x.split("_")[0])
    assert ids(r) == want_top + [a2], r
    # objectId breaks ties: the order is total
    r = results(ctx, "Inventory", {"where": where, "order": "-onHand"})
    assert ids(r) == sorted([a1, b1]) + [a2], r
    full = ids(results(ctx, "Inventory", {"where": where,
                                          "order": "objectId"}))
    assert full == sorted([a1, a2, b1])
    assert ids(results(ctx, "Inventory", {"where": where, "limit": 2,
                                          "order": "objectId"})) == full[:2]
    assert ids(results(ctx, "Inventory", {"where": where, "skip": 1,
                                          "order": "objectId"})) == full[1:]
    assert ids(results(ctx, "Inventory", {"where": where, "skip": 1,
                                          "limit": 1,
                                          "order": "-objectId"})) == [full[1]]
    assert results(ctx, "Inventory", {"where": where, "skip": 3}) == []
    # count=1: the total whatever the page; limit=0 counts only
    body = ok(ctx, "/classes/Inventory", {"where": where, "count": 1,
                                          "limit": 1})
    assert body["count"] == 3 and len(body["results"]) == 1, body
    body = ok(ctx, "/classes/Inventory", {"where": where, "count": 1,
                                          "limit": 0})
    assert body == {"results": [], "count": 3}, body
    body = ok(ctx, "/classes/Inventory", {"where": where, "count": 1,
                                          "skip": 10})
    assert body == {"results": [], "count": 3}, body
    body = ok(ctx, "/classes/Inventory", {"where": where})
    assert "count" not in body, body
    # keys: only those (and objectId, createdAt, updatedAt)
    r = results(ctx, "Inventory", {"where": where, "keys": "onHand,store"})
    for o in r:
        assert set(o) == {"objectId", "onHand", "store", "createdAt",
                          "updatedAt"}, o
    # include: the pointed objects, one level; others stay Pointers
    r = results(ctx, "Inventory", {"where": {"objectId": a1},
                                   "include": "store,product"})
    assert len(r) == 1, r
    st, pr = r[0]["store"], r[0]["product"]
    assert (st["__type"], st["className"], st["objectId"], st["name"]) == \
        ("Object", "Store", A, w["a"]["name"]), st
    assert (pr["__type"], pr["className"], pr["objectId"], pr["price"]) == \
        ("Object", "Product", P1, 12.5), pr
    r = results(ctx, "Order", {"where": {"objectId": w["order"]},
                               "include": "store"})
    assert r[0]["store"]["name"] == w["a"]["name"], r
    assert r[0]["lines"][0]["product"] == ptr("Product", P2), r


# ---- who sees what ----

def test_viewer_sees_only_their_store(ctx):
    w = seed(ctx)
    A, B, P1 = w["A"], w["B"], w["P1"]
    viewer = user_with_role(ctx, "viewer", [A])
    tok = viewer["token"]
    stores = results(ctx, "Store", {"where": {"objectId": {"$in": [A, B]}}},
                     tok)
    assert ids(stores) == [A], stores
    body = ok(ctx, "/classes/Store", {"where": {"objectId": {"$in": [A, B]}},
                                      "count": 1}, tok)
    assert body["count"] == 1, body
    inv = results(ctx, "Inventory", {"where": {"product": ptr("Product", P1)}},
                  tok)
    assert ids(inv) == [f"{A}_{P1}"], inv
    assert results(ctx, "Transaction", {"where": {"store": ptr("Store", B)}},
                   tok) == []
    assert results(ctx, "Order", {"where": {"store": ptr("Store", B)}},
                   tok) == []
    # another store's objects do not exist for this user
    for path in (f"/classes/Store/{B}", f"/classes/Inventory/{B}_{P1}",
                 f"/classes/Transaction/"
                 f"{w['t']['b1_receipt']['transaction_id']}"):
        msg = refused(ctx, path, None, 404, 101, token=tok, what=path)
        assert msg == "Object not found.", msg
    # an included store is one of theirs; products are the catalog
    ok(ctx, f"/classes/Store/{A}", None, tok)
    ok(ctx, f"/classes/Product/{P1}", None, tok)
    # /users/me: their own account, with the token echoed
    me = ok(ctx, "/users/me", None, tok)
    assert (me["objectId"], me["username"], me["role"], me["storeIds"],
            me["sessionToken"]) == \
        (viewer["id"], viewer["username"], "viewer", [A], "r:" + tok), me
    assert me["email"] == f"{viewer['username']}@example.com", me
    api.expect_time(me["createdAt"], "me createdAt")
    parse_error(both(ctx, "/users/me"), 403, 119, "me without a token")
    parse_error(both(ctx, "/users/me", token="y" * 43), 400, 209,
                "me with a bad token")
    # a logged-out token is invalid at once
    end_session_then_refused(
        ctx, tok, lambda t: both(ctx, "/classes/Store", token=t))


# ---- bad queries ----

def test_bad_queries(ctx):
    w = seed(ctx)
    P1 = w["P1"]
    cases = [
        ({"where": {"nope": 1}}, 105),
        ({"where": {"$or": [{"onHand": 1}]}}, 102),
        ({"where": {"onHand": {"$regex": "^A"}}}, 102),
        ({"where": {"onHand": {"$foo": 1}}}, 102),
        ({"where": {"onHand": {"$select": {}}}}, 102),
        ({"where": [1, 2]}, 102),
        ({"where": {"onHand": "seven"}}, 111),
        ({"where": {"onHand": {"$lt": True}}}, 111),
        ({"where": {"store": "not-a-pointer"}}, 111),
        ({"where": {"store": ptr("Product", P1)}}, 111),
        ({"where": {"store": ptr("Store", "abc")}}, 111),
        ({"where": {"updatedAt": {"$gt": date("last tuesday")}}}, 111),
        ({"where": {"onHand": {"$in": 7}}}, 111),
        ({"where": {"onHand": {"$exists": "yes"}}}, 111),
        ({"order": "nope"}, 105),
        ({"order": "-onHand,store;drop"}, 105),
        ({"keys": "onHand,secret"}, 105),
        ({"include": "onHand"}, 102),
        ({"include": "warehouse"}, 105),
        ({"limit": 1001}, 102),
        ({"limit": -1}, 102),
        ({"limit": "many"}, 102),
        ({"skip": 10001}, 102),
        ({"skip": -5}, 102),
        ({"count": 2}, 102),
    ]
    for params, code in cases:
        refused(ctx, "/classes/Inventory", params, 400, code,
                what=f"Inventory {params}")
    refused(ctx, "/classes/Order", {"where": {"lines": []}}, 400, 102,
            what="query on Order lines")
    refused(ctx, "/classes/Store", {"where": {"objectId": "short"}}, 400, 111,
            what="Store objectId not a UUID")
    # the bounds themselves are served
    body = ok(ctx, "/classes/Inventory", {"limit": 1000, "skip": 10000,
                                          "where": {"product": ptr(
                                              "Product", P1)}})
    assert body == {"results": []}, body
    # a value is data, never SQL
    assert results(ctx, "Product", {"where": {
        "sku": "x' OR '1'='1"}}) == []
    assert results(ctx, "Product", {"where": {
        "name": {"$in": ["\"); DROP TABLE products; --"]}}}) == []
    ok(ctx, f"/classes/Product/{P1}")


def test_sizes_and_paths_outside_the_facade(ctx):
    """What the HTTP server answers before the facade sees a request, and
    the size bounds of a query."""
    tok = admin_token()
    # a body over STOCKFLOW_MAX_BODY: the server's 413, nothing read
    big = {"where": {"name": "x" * 70000}}
    r = sdk(ctx, "/classes/Store", big, tok)
    assert r.status == 413, r
    # a path the facade does not serve (Cloud Code, files, ...): 404
    for path in ("/parse/functions/hello", "/parse/files/a.txt",
                 "/parse/classes", "/parse/users/abc/extra"):
        r = request(ctx.qry, "POST", path, json.dumps(
            {"_method": "GET", "_ApplicationId": APP, "_SessionToken": tok}),
            {"Authorization": None, "Content-Type": "text/plain"})
        assert r.status == 404, f"{path}: {r!r}"
    # $in: 1,000 values are served, 1,001 refused
    vals = [client.new_uuid() for _ in range(1001)]
    r = sdk(ctx, "/classes/Store",
            {"where": {"objectId": {"$in": vals[:1000]}}}, tok)
    assert (r.status, r.body) == (200, {"results": []}), r
    parse_error(sdk(ctx, "/classes/Store",
                    {"where": {"objectId": {"$in": vals}}}, tok),
                400, 102, "$in of 1001")
    # a long string value is refused, not truncated
    parse_error(sdk(ctx, "/classes/Store", {"where": {"name": "n" * 2000}},
                    tok), 400, 102, "2000-character value")
