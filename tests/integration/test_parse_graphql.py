"""Parse Server's GraphQL API at /graphql on the query service
(docs/parse-compat.md "GraphQL", docs/parse-graphql.graphql): the Parse
headers (application id, session token) checked as on /parse, queries of
every class by id and as Relay connections (where, order, first / after,
skip, count), pointers resolved, the global id, the viewer, a restricted
viewer's store scope, and the error shapes: syntax errors and documents
that do not fit the schema (400, nothing run), refusals of the shared
query builder and objects not found (200, that field null, an error with
the Parse code). Data is seeded through /v1 and each test waits for it
with ?min_position= on a /v1 read.

Mutations (logIn, logOut, createTransaction, createOrder) go through the
facade's write path to /v1: a sale, an oversell refused with code 142 and
nothing written, an order, a clerk's write to another store refused, a
login and a logout."""

import base64
import json
import os
import time
import urllib.parse

import api
import client
import test_parse_write as parse_write
from client import request
from test_auth_matrix import user_with_role
from test_parse_rest import end_session_then_refused
from test_parse_rest import seed as parse_rest_seed

APP = "stockflow"  # STOCKFLOW_PARSE_APP_ID's default


def admin_token():
    token = os.environ.get("STOCKFLOW_TEST_TOKEN")
    assert token, "the runner did not log in as the admin"
    return token


def gql(ctx, query, variables=None, token=None, app=APP, op=None,
        headers=None, raw=None, method="POST"):
    """POST /graphql with Parse's headers (GET: the query string)."""
    hdrs = {"Authorization": None}
    if app is not None:
        hdrs["X-Parse-Application-Id"] = app
    tok = admin_token() if token is None else token
    if tok:
        hdrs["X-Parse-Session-Token"] = tok
    hdrs.update(headers or {})
    if method == "GET":
        params = {"query": query}
        if variables is not None:
            params["variables"] = json.dumps(variables)
        if op:
            params["operationName"] = op
        return request(ctx.qry, "GET",
                       "/graphql?" + urllib.parse.urlencode(params), None,
                       hdrs)
    body = {"query": query}
    if variables is not None:
        body["variables"] = variables
    if op is not None:
        body["operationName"] = op
    return request(ctx.qry, "POST", "/graphql",
                   raw if raw is not None else body, hdrs)


def data(r, what=""):
    """A 200 answer without errors: its data."""
    assert r.status == 200, f"{what}: {r!r}"
    assert isinstance(r.body, dict) and "errors" not in r.body, \
        f"{what}: {r!r}"
    return r.body["data"]


def rejected(r, status, code, what="", located=True):
    """A whole-request GraphQL error: {"errors": [{message, locations?,
    extensions: {code}}]} and no data."""
    assert r.status == status, f"{what}: want {status}, got {r!r}"
    assert isinstance(r.body, dict) and set(r.body) == {"errors"}, \
        f"{what}: {r!r}"
    errs = r.body["errors"]
    assert len(errs) == 1 and isinstance(errs[0]["message"], str) and \
        errs[0]["message"], r
    assert errs[0]["extensions"]["code"] == code, f"{what}: {r!r}"
    if located:
        loc = errs[0]["locations"][0]
        assert loc["line"] >= 1 and loc["column"] >= 1, r
    return errs[0]


def field_error(r, field, code, what=""):
    """200 with data[field] null and one error for field with the Parse
    code."""
    assert r.status == 200, f"{what}: {r!r}"
    assert r.body["data"][field] is None, f"{what}: {r!r}"
    errs = [e for e in r.body["errors"] if e.get("path") == [field]]
    assert len(errs) == 1, f"{what}: {r!r}"
    assert errs[0]["extensions"]["code"] == code, f"{what}: {r!r}"
    assert errs[0]["locations"][0]["line"] >= 1, r
    return errs[0]["message"]


def parse_error(r, status, code, what=""):
    assert r.status == status and r.body == {"code": code,
                                             "error": r.body.get("error")}, \
        f"{what}: {r!r}"
    return r.body["error"]


def typename(ctx, token):
    """The smallest query, as token's session."""
    return gql(ctx, "{ __typename }", token=token)


def gid(cls, oid):
    return base64.b64encode(f"{cls}:{oid}".encode()).decode()


def cursor(n):
    return base64.b64encode(f"arrayconnection:{n}".encode()).decode()


def seed(ctx):
    """The /parse read tests' fixture (two stores, two products, stock
    movements, one order; the read model has them all), tagged "gql"."""
    return parse_rest_seed(ctx, tag="gql")


# ---- the envelope ----

def test_graphql_app_id_session_and_request_shape(ctx):
    q = "{ __typename }"
    assert data(gql(ctx, q), "typename") == {"__typename": "Query"}
    assert data(gql(ctx, q, method="GET"), "GET") == {"__typename": "Query"}
    # the application id and the master key: /parse's own answers
    for app in ("not-stockflow", None, ""):
        r = gql(ctx, q, app=app)
        assert (r.status, r.body) == (403, {"error": "unauthorized"}), \
            f"app id {app!r}: {r!r}"
    parse_error(gql(ctx, q, headers={"X-Parse-Master-Key": "k"}), 403, 119,
                "master key")
    # no session / an invalid one / a bearer header only
    msg = parse_error(gql(ctx, q, token=""), 403, 119, "no session")
    assert msg == "Permission denied, user needs to be authenticated.", msg
    for bad in ("x" * 43, "short"):
        msg = parse_error(gql(ctx, q, token=bad), 400, 209, "bad token")
        assert msg == "Invalid session token", msg
    r = request(ctx.qry, "POST", "/graphql", {"query": q},
                {"X-Parse-Application-Id": APP,
                 "Authorization": f"Bearer {admin_token()}"})
    parse_error(r, 403, 119, "bearer header only")
    # malformed requests
    for raw, what in (("{nope", "not JSON"), ("[1]", "an array"),
                      (json.dumps({"query": 5}), "query not a string"),
                      (json.dumps({"x": 1}), "no query"),
                      (json.dumps({"query": q, "variables": [1]}),
                       "variables not an object"),
                      (json.dumps({"query": q, "operationName": 3}),
                       "operationName not a string")):
        rejected(gql(ctx, q, raw=raw), 400, "BAD_REQUEST", what,
                 located=False)
    rejected(request(ctx.qry, "GET", "/graphql", None,
                     {"X-Parse-Application-Id": APP,
                      "X-Parse-Session-Token": admin_token()}),
             400, "BAD_REQUEST", "GET without query", located=False)
    r = request(ctx.qry, "GET",
                "/graphql?query=%7B__typename%7D&variables=%5B1%5D", None,
                {"X-Parse-Application-Id": APP,
                 "X-Parse-Session-Token": admin_token()})
    rejected(r, 400, "BAD_REQUEST", "GET variables not an object",
             located=False)


def test_graphql_syntax_errors(ctx):
    cases = [
        ("{ stores { count }", 1, 19, "Expected Name, found <EOF>"),
        ("{\n  stores(where: {name: {equalTo: \"abc}}) { count } }", 2, 53,
         "Unterminated string"),
        ("{ stores(first: 01) { count } }", 1, 18, "digit after 0"),
        ("{ stores % }", 1, 10, "Unexpected character"),
        ("{ stores @include(if: true) { count } }", 1, 10, "directives"),
        ("", 1, 1, "no operation"),
        ("type Store { name: String }", 1, 1, "executable"),
    ]
    for q, line, col, want in cases:
        e = rejected(gql(ctx, q), 400, "GRAPHQL_PARSE_FAILED", q)
        assert e["locations"] == [{"line": line, "column": col}], (q, e)
        assert want in e["message"], (q, e)
    # a depth bomb and a huge document are refused, not recursed into
    e = rejected(gql(ctx, "{ a(x: " + "[" * 5000 + " }"), 400,
                 "GRAPHQL_PARSE_FAILED", "depth bomb")
    assert "nests deeper" in e["message"], e
    r = gql(ctx, "{ " + "__typename " * 7000 + "}")
    assert r.status in (400, 413), r
    # several operations need a name; an unknown name is refused
    two = "query A { __typename } query B { s: __typename }"
    rejected(gql(ctx, two), 400, "GRAPHQL_PARSE_FAILED", "no name",
             located=False)
    rejected(gql(ctx, two, op="C"), 400, "GRAPHQL_PARSE_FAILED", "unknown",
             located=False)
    assert data(gql(ctx, two, op="B")) == {"s": "Query"}


# ---- queries ----

def test_graphql_every_class(ctx):
    w = seed(ctx)
    A, B, P1, P2 = w["A"], w["B"], w["P1"], w["P2"]
    # one object by objectId and by global id: the same answer
    q = """query S($id: ID!) { store(id: $id) { id objectId name location
            closed createdAt updatedAt __typename } }"""
    s1 = data(gql(ctx, q, {"id": A}))["store"]
    s2 = data(gql(ctx, q, {"id": gid("Store", A)}))["store"]
    assert s1 == s2, (s1, s2)
    assert (s1["id"], s1["objectId"], s1["name"], s1["location"],
            s1["closed"], s1["__typename"]) == \
        (gid("Store", A), A, w["a"]["name"], w["a"]["location"], False,
         "Store"), s1
    api.expect_time(s1["createdAt"], "createdAt")
    p = data(gql(ctx, """{ product(id: "%s") { objectId sku name category
                 price reorderLevel discontinued } }""" % P2))["product"]
    assert p == {"objectId": P2, "sku": w["p2"]["sku"],
                 "name": w["p2"]["name"], "category": "gql-it",
                 "price": 0.1, "reorderLevel": 50,
                 "discontinued": False}, p
    inv = data(gql(ctx, """{ inventory(id: "%s_%s") { objectId onHand
                   reserved available version store { objectId name }
                   product { sku price } } }""" % (A, P2)))["inventory"]
    assert inv == {"objectId": f"{A}_{P2}", "onHand": 5, "reserved": 2,
                   "available": 3, "version": 2,
                   "store": {"objectId": A, "name": w["a"]["name"]},
                   "product": {"sku": w["p2"]["sku"], "price": 0.1}}, inv
    tid = w["t"]["a1_sale"]["transaction_id"]
    t = data(gql(ctx, """{ transaction(id: "%s") { objectId type quantity
                 delta reason reference store { objectId }
                 product { objectId } } }""" % tid))["transaction"]
    assert t == {"objectId": tid, "type": "sale", "quantity": 3,
                 "delta": -3, "reason": "walk-in", "reference": None,
                 "store": {"objectId": A}, "product": {"objectId": P1}}, t
    o = data(gql(ctx, """{ order(id: "%s") { objectId status reference
                 lines store { name manager { objectId } } } }"""
                 % w["order"]))["order"]
    assert (o["objectId"], o["status"], o["reference"],
            o["store"]["name"]) == (w["order"], "placed", "gql-order",
                                    w["a"]["name"]), o
    assert o["lines"] == [{"product": {"__type": "Pointer",
                                       "className": "Product",
                                       "objectId": P2}, "quantity": 2}], o
    # several roots with aliases in one request, in order
    d = data(gql(ctx, """{ a: store(id: "%s") { name } b: store(id: "%s")
                 { name } t: __typename }""" % (A, B)))
    assert list(d) == ["a", "b", "t"], d
    assert d == {"a": {"name": w["a"]["name"]},
                 "b": {"name": w["b"]["name"]}, "t": "Query"}, d
    # not found: that field null, code 101, the other fields answered
    for bad in (client.new_uuid(), "not-a-uuid", gid("Product", A),
                f"{P1}_{A}"):
        r = gql(ctx, """{ store(id: "%s") { name } ok: store(id: "%s")
                { name } }""" % (bad, A))
        msg = field_error(r, "store", 101, bad)
        assert msg == "Object not found.", msg
        assert r.body["data"]["ok"] == {"name": w["a"]["name"]}, r


def test_graphql_where_order_connections(ctx):
    w = seed(ctx)
    A, B, P1, P2 = w["A"], w["B"], w["P1"], w["P2"]
    both = [A, B]
    q = """query L($w: StoreWhereInput, $first: Int, $after: String) {
             stores(where: $w, order: [createdAt_ASC], first: $first,
                    after: $after) {
               count
               edges { cursor node { objectId } }
               pageInfo { hasNextPage hasPreviousPage endCursor } } }"""
    where = {"objectId": {"in": both}}
    page = data(gql(ctx, q, {"w": where, "first": 1}))["stores"]
    assert page["count"] == 2, page
    assert [e["node"]["objectId"] for e in page["edges"]] == [A], page
    assert page["edges"][0]["cursor"] == cursor(0), page
    assert page["pageInfo"] == {"hasNextPage": True,
                                "hasPreviousPage": False,
                                "endCursor": cursor(0)}, page
    page2 = data(gql(ctx, q, {"w": where, "first": 1,
                              "after": page["pageInfo"]["endCursor"]}))
    page2 = page2["stores"]
    assert [e["node"]["objectId"] for e in page2["edges"]] == [B], page2
    assert page2["pageInfo"] == {"hasNextPage": False,
                                 "hasPreviousPage": True,
                                 "endCursor": cursor(1)}, page2
    # skip, descending order, first 0 (only the count)
    d = data(gql(ctx, """{ stores(where: {objectId: {in: ["%s", "%s"]}},
                 order: createdAt_DESC, skip: 1) { edges { node
                 { objectId } } } z: stores(first: 0, where: {objectId:
                 {equalTo: "%s"}}) { count edges { cursor } } }"""
                 % (A, B, A)))
    assert [e["node"]["objectId"] for e in d["stores"]["edges"]] == [A], d
    assert d["z"] == {"count": 1, "edges": []}, d
    # pointers: have objectId, and the objects they point to
    inv = data(gql(ctx, """{ inventories(where: {store: {have: {objectId:
               {equalTo: "%s"}}}, product: {have: {objectId: {in: ["%s",
               "%s"]}}}}, order: [onHand_DESC]) { count edges { node {
               id onHand store { objectId } product { objectId sku } } } }
               }""" % (A, P1, P2)))["inventories"]
    assert inv["count"] == 2, inv
    assert [(e["node"]["product"]["objectId"], e["node"]["onHand"])
            for e in inv["edges"]] == [(P1, 7), (P2, 5)], inv
    assert inv["edges"][0]["node"]["id"] == gid("Inventory", f"{A}_{P1}")
    assert inv["edges"][0]["node"]["product"]["sku"] == w["p1"]["sku"]
    # comparisons, exists, notIn, dates
    tx = data(gql(ctx, """{ transactions(where: {store: {have: {objectId:
              {equalTo: "%s"}}}, quantity: {greaterThanOrEqualTo: 3,
              lessThan: 10}, type: {notIn: ["transfer_in"]}, reason:
              {exists: true}, createdAt: {greaterThan:
              "2000-01-01T00:00:00Z"}}) { count edges { node { objectId
              type } } } }""" % A))["transactions"]
    assert tx["count"] == 1 and tx["edges"][0]["node"] == \
        {"objectId": w["t"]["a1_sale"]["transaction_id"], "type": "sale"}, tx
    pr = data(gql(ctx, """{ products(where: {category: {equalTo: "gql-it"},
              price: {lessThan: 1}, objectId: {in: ["%s", "%s"]}}) {
              edges { node { objectId } } } }""" % (P1, P2)))["products"]
    assert [e["node"]["objectId"] for e in pr["edges"]] == [P2], pr
    # fragments and inline fragments
    fr = data(gql(ctx, """query { store(id: "%s") { ...F ... on Store {
              location } } } fragment F on Store { objectId n: name }"""
              % A))["store"]
    assert fr == {"objectId": A, "n": w["a"]["name"],
                  "location": w["a"]["location"]}, fr


def test_graphql_viewer_and_store_scope(ctx):
    w = seed(ctx)
    A, B, P1 = w["A"], w["B"], w["P1"]
    viewer = user_with_role(ctx, "viewer", [A])
    tok = viewer["token"]
    d = data(gql(ctx, """{ viewer { sessionToken user { objectId username
                 role storeIds } } }""", token=tok))
    # the token as logIn and /parse hand it out ("r:" + the bearer token),
    # whether it was sent bare or with the prefix
    assert d == {"viewer": {"sessionToken": "r:" + tok, "user": {
        "objectId": viewer["id"], "username": viewer["username"],
        "role": "viewer", "storeIds": [A]}}}, d
    d = data(gql(ctx, "{ viewer { sessionToken } }", token="r:" + tok))
    assert d == {"viewer": {"sessionToken": "r:" + tok}}, d
    q = """{ stores(where: {objectId: {in: ["%s", "%s"]}}) { count edges {
           node { objectId } } } inventories(where: {product: {have:
           {objectId: {equalTo: "%s"}}}}) { edges { node { objectId } } }
           }""" % (A, B, P1)
    d = data(gql(ctx, q, token=tok))
    assert d["stores"]["count"] == 1, d
    assert [e["node"]["objectId"] for e in d["stores"]["edges"]] == [A], d
    assert [e["node"]["objectId"] for e in d["inventories"]["edges"]] == \
        [f"{A}_{P1}"], d
    # another store's objects do not exist for this user
    r = gql(ctx, """{ store(id: "%s") { name } }""" % B, token=tok)
    assert field_error(r, "store", 101) == "Object not found."
    r = gql(ctx, """{ transaction(id: "%s") { objectId } }"""
            % w["t"]["b1_receipt"]["transaction_id"], token=tok)
    field_error(r, "transaction", 101)
    # the admin sees both
    d = data(gql(ctx, q))
    assert d["stores"]["count"] == 2, d
    # a logged-out token is refused at once
    end_session_then_refused(ctx, tok, lambda t: typename(ctx, t))


# ---- bad queries ----

def test_graphql_bad_queries(ctx):
    w = seed(ctx)
    A = w["A"]
    # documents that do not fit the schema: 400, nothing run
    invalid = [
        ("{ widgets { count } }", "Cannot query field \"widgets\""),
        ("{ stores { edges { node { nope } } } }",
         "Cannot query field \"nope\" on type \"Store\""),
        ("{ stores { count { x } } }", "must not have a selection"),
        ("{ stores }", "must have a selection"),
        ("{ stores(first: \"ten\") { count } }", "Argument \"first\""),
        ("{ stores(where: 3) { count } }", "Argument \"where\""),
        ("{ stores(order: [nope_ASC]) { count } }", "StoreOrder"),
        ("{ stores(limit: 3) { count } }", "Unknown argument \"limit\""),
        ("{ store { name } }", "\"id\" of type \"ID!\" is required"),
        ("{ stores(first: $n) { count } }", "Variable \"$n\" is not defined"),
        ("{ __schema { types { name } } }", "Introspection is not served"),
        ("{ stores { edges { node { ...F } } } } fragment F on Product "
         "{ sku }", "can never be of type"),
        ("mutation { deleteStore(input: {}) { ok } }",
         "Cannot query field \"deleteStore\" on type \"Mutation\""),
        ("mutation { logIn(input: {username: 5, password: \"x\"}) {"
         " viewer { sessionToken } } }", "username and password"),
        ("mutation { createTransaction(input: {fields: {}}) { nope } }",
         "Cannot query field \"nope\""),
        ("mutation { createTransaction(input: {other: 1}) { clientMutationId"
         " } }", "not defined by its type"),
        ("mutation { createTransaction { clientMutationId } }",
         "\"input\" is required"),
        ("subscription { stores { count } }", "Subscriptions"),
    ]
    for q, want in invalid:
        e = rejected(gql(ctx, q), 400, "GRAPHQL_VALIDATION_FAILED", q)
        assert want in e["message"], (q, e)
    rejected(gql(ctx, "query Q($n: Int!) { stores(first: $n) { count } }"),
             400, "GRAPHQL_VALIDATION_FAILED", "required variable missing")
    # refusals of the shared query builder: that field null, Parse's code
    refusals = [
        ('{ stores(where: {name: {matchesRegex: "x"}}) { count } }', 102),
        ("{ stores(where: {OR: [{closed: {equalTo: true}}]}) { count } }",
         102),
        ('{ stores(where: {nope: {equalTo: 1}}) { count } }', 105),
        ('{ stores(where: {closed: {equalTo: "yes"}}) { count } }', 111),
        ('{ stores(where: {name: "x"}) { count } }', 111),
        ('{ inventories(where: {onHand: {in: "x"}}) { count } }', 111),
        ('{ stores(after: "bm9wZQ==") { count } }', 102),
        ("{ stores(first: 5000) { count } }", 102),
        ("{ stores(skip: 20000) { count } }", 102),
    ]
    for q, code in refusals:
        r = gql(ctx, q + "")
        field_error(r, "stores" if "stores" in q else "inventories", code, q)
    # one refused root does not stop the others
    r = gql(ctx, """{ stores(where: {name: {text: {}}}) { count }
            s: store(id: "%s") { objectId } }""" % A)
    field_error(r, "stores", 102)
    assert r.body["data"]["s"] == {"objectId": A}, r


# ---- mutations ----

def test_graphql_mutations_sale_oversell_order(ctx):
    store, product = api.store_and_product(ctx)
    tx = """mutation T($s: ID!, $p: ID!, $type: String!, $q: Int!) {
              createTransaction(input: {clientMutationId: "c-1", fields: {
                  store: {link: $s}, product: {link: $p}, type: $type,
                  quantity: $q, reference: "gql-po"}}) {
                clientMutationId
                transaction { objectId type quantity delta reference
                              store { objectId name } product { objectId }
                              __typename }
              } }"""
    d = data(gql(ctx, tx, {"s": store, "p": product, "type": "receipt",
                           "q": 10}), "receipt")
    t = d["createTransaction"]
    assert t["clientMutationId"] == "c-1", t
    client.expect_uuid(t["transaction"]["objectId"])
    assert {k: v for k, v in t["transaction"].items() if k != "objectId"} \
        == {"type": "receipt", "quantity": 10, "delta": 10,
            "reference": "gql-po", "store": {"objectId": store,
                                             "name": t["transaction"]
                                             ["store"]["name"]},
            "product": {"objectId": product},
            "__typename": "Transaction"}, t
    # a sale, with global ids as links
    d = data(gql(ctx, tx, {"s": gid("Store", store),
                           "p": gid("Product", product), "type": "sale",
                           "q": 3}), "sale")
    assert d["createTransaction"]["transaction"]["delta"] == -3, d
    # the oversell: that field null, code 142, nothing written
    r = gql(ctx, tx, {"s": store, "p": product, "type": "sale", "q": 8})
    msg = field_error(r, "createTransaction", 142, "oversell")
    assert msg, r
    last = api.txn(ctx, store, product, "receipt", 1, on_hand=8, version=3)
    hist = api.history(ctx, store, product, position=last["position"])
    assert [(i["type"], i["quantity"]) for i in hist] == \
        [("receipt", 1), ("sale", 3), ("receipt", 10)], hist
    # an order reserves stock
    d = data(gql(ctx, """mutation { createOrder(input: {fields: {
                 store: {link: "%s"}, lines: [{product: {link: "%s"},
                 quantity: 2}], reference: "gql-web"}}) { order { objectId
                 status reference lines store { objectId } } } }"""
                 % (store, product)), "order")
    o = d["createOrder"]["order"]
    client.expect_uuid(o["objectId"])
    assert (o["status"], o["reference"], o["store"]) == \
        ("placed", "gql-web", {"objectId": store}), o
    assert o["lines"] == [{"product": {"__type": "Pointer",
                                       "className": "Product",
                                       "objectId": product},
                           "quantity": 2}], o
    inv = data(gql(ctx, """{ inventory(id: "%s_%s") { onHand reserved
                   available } }""" % (store, product)))["inventory"]
    assert inv == {"onHand": 8, "reserved": 2, "available": 6}, inv
    # a sale through GraphQL, then at once a read: it sees the sale (the
    # mutation's read-back already waited for it; that the session's reads
    # wait by themselves is test_graphql_read_waits_for_the_sessions_write)
    d = data(gql(ctx, tx, {"s": store, "p": product, "type": "sale",
                           "q": 1}), "sale 1")
    inv = data(gql(ctx, """{ inventory(id: "%s_%s") { onHand version } }"""
                   % (store, product)))["inventory"]
    assert inv["onHand"] == 7, inv
    # the write path's refusals come back with their Parse code
    r = gql(ctx, tx, {"s": store, "p": product, "type": "teleport",
                      "q": 1})
    field_error(r, "createTransaction", 142, "unknown type")
    r = gql(ctx, tx, {"s": client.new_uuid(), "p": product,
                      "type": "receipt", "q": 1})
    assert r.body["data"]["createTransaction"] is None, r
    assert r.body["errors"][0]["extensions"]["code"] in (101, 142), r


def test_graphql_read_waits_for_the_sessions_write(ctx):
    """Read-your-writes on /graphql is a wait for the session's last write,
    not luck: with the projector stopped, a sale through the facade (the
    /parse write path that GraphQL's mutations share) leaves the read model
    stale; another session's GraphQL read answers the stale stock at once,
    while the writing session's read waits for its write and times out
    (504, code 124). Once the projector is back, that read sees the sale."""
    store, product = api.store_and_product(ctx)
    t = api.txn(ctx, store, product, "receipt", 2, on_hand=2, version=1)
    api.expect_stock(ctx, store, product, on_hand=2, version=1,
                     position=t["position"])
    manager = user_with_role(ctx, "manager", [store])
    tok = manager["token"]
    q = """{ inventory(id: "%s_%s") { onHand } }""" % (store, product)
    proj = ctx.stack["projector"]
    proj.stop()
    try:
        r = parse_write.rest(ctx, "POST", "/classes/Transaction",
                             parse_write.parse_txn(store, product, "sale", 1),
                             token=tok)
        assert client.expect_json(r, 201, "the sale")["onHand"] == 1, r
        # another session: no write of its own to wait for, the old stock
        inv = data(gql(ctx, q, token=admin_token()), "admin")["inventory"]
        assert inv == {"onHand": 2}, inv
        started = time.monotonic()
        r = gql(ctx, q, token=tok)
        waited = time.monotonic() - started
        assert r.status == 504 and r.body["data"] is None and \
            r.body["errors"][0]["extensions"]["code"] == 124, r
        assert waited >= 1.0, f"the read did not wait ({waited:.2f}s)"
    finally:
        ctx.stack.start(["projector"])
    inv = data(gql(ctx, q, token=tok), "after")["inventory"]
    assert inv == {"onHand": 1}, inv


def test_graphql_mutations_login_logout_and_roles(ctx):
    store, product = api.store_and_product(ctx)
    other, _ = api.store_and_product(ctx)
    clerk = user_with_role(ctx, "clerk", [store])
    login = """mutation L($u: String!, $p: String!) { logIn(input: {
                 username: $u, password: $p}) { viewer { sessionToken
                 user { objectId username role } } } }"""
    # no session needed to log in
    d = data(gql(ctx, login, {"u": clerk["username"],
                              "p": clerk["password"]}, token=""), "login")
    v = d["logIn"]["viewer"]
    assert v["user"] == {"objectId": clerk["id"],
                         "username": clerk["username"], "role": "clerk"}, v
    tok = v["sessionToken"]
    # the token as /parse hands it out ("r:" + the bearer token, so that
    # the Parse SDK takes it as revocable); /graphql takes it as it is
    assert isinstance(tok, str) and tok.startswith("r:") and \
        len(tok) == 45, v
    # wrong password: code 101, as Parse
    r = gql(ctx, login, {"u": clerk["username"], "p": "wrong-password"},
            token="")
    assert field_error(r, "logIn", 101) == "Invalid username/password."
    # other mutations need a session
    tx = """mutation { createTransaction(input: {fields: {store: {link:
            "%s"}, product: {link: "%s"}, type: "receipt", quantity: 2}})
            { transaction { objectId } } }"""
    parse_error(gql(ctx, tx % (store, product), token=""), 403, 119,
                "no session")
    # the clerk writes to its store, not to another one
    d = data(gql(ctx, tx % (store, product), token=tok), "clerk receipt")
    client.expect_uuid(d["createTransaction"]["transaction"]["objectId"])
    r = gql(ctx, tx % (other, product), token=tok)
    field_error(r, "createTransaction", 119, "another store")
    # logOut ends the session at once

    def log_out(t):
        d = data(gql(ctx, "mutation { logOut(input: {}) { ok } }", token=t))
        assert d == {"logOut": {"ok": True}}, d
    end_session_then_refused(ctx, tok, lambda t: typename(ctx, t),
                             logout=log_out)
