"""The Parse facade's writes and sign-in (docs/parse-compat.md, "Writes"),
against the real query and command services: each Parse write is sent on
to /v1 and must pass its rules (no oversell, roles, idempotency), with
Parse's answers and error codes. Both request styles are used: REST
(X-Parse-* headers) and the JS SDK's (POST text/plain with _method,
_ApplicationId, _SessionToken in the body)."""

import json
import os
import random
import threading
import time

import api
import client
from client import expect_json, expect_uuid

APP_ID = "stockflow"  # STOCKFLOW_PARSE_APP_ID's default


def admin_token():
    token = os.environ.get("STOCKFLOW_TEST_TOKEN")
    assert token, "the runner did not log in as the admin"
    return token


def fresh_ip():
    """A client address of its own for each sign-in, so that the command
    service's per-address login limit (20 a minute) is not what a test
    measures: the facade names the client in X-Real-IP, which the test
    stack's command service believes from 127.0.0.1."""
    return "10.%d.%d.%d" % (random.randrange(256), random.randrange(256),
                            random.randrange(1, 255))


def rest(ctx, method, path, body=None, token=None, request_id=None,
         headers=None, query=""):
    """A REST-style Parse request to the query service's /parse."""
    hdrs = {"Authorization": None, "X-Parse-Application-Id": APP_ID,
            "X-Parse-REST-API-Key": "any", "X-Real-IP": fresh_ip()}
    if token:
        hdrs["X-Parse-Session-Token"] = token
    if request_id:
        hdrs["X-Parse-Request-Id"] = request_id
    if headers:
        hdrs.update(headers)
    return client.request(ctx.qry, method, "/parse" + path + query, body, hdrs)


def sdk(ctx, method, path, body=None, token=None, request_id=None):
    """The JS SDK's style: always POST, text/plain, the envelope in the
    body."""
    payload = dict(body or {})
    payload.update({"_method": method, "_ApplicationId": APP_ID,
                    "_JavaScriptKey": "any", "_ClientVersion": "js5.3.0",
                    "_InstallationId": "it-" + client.new_uuid()})
    if token:
        payload["_SessionToken"] = token
    hdrs = {"Authorization": None, "Content-Type": "text/plain",
            "X-Real-IP": fresh_ip()}
    if request_id:
        hdrs["X-Parse-Request-Id"] = request_id
    return client.request(ctx.qry, "POST", "/parse" + path,
                          json.dumps(payload), hdrs)


def expect_parse_error(r, status, code, what=""):
    """Parse's error shape: {"code": N, "error": "..."} with status."""
    assert r.status == status, f"{what}: want {status}, got {r!r}"
    assert isinstance(r.body, dict), f"{what}: body is not an object: {r!r}"
    assert r.body.get("code") == code, \
        f"{what}: want code {code}, got {r.body!r}"
    assert isinstance(r.body.get("error"), str) and r.body["error"], \
        f"{what}: no error message: {r.body!r}"
    return r.body


def ptr(cls, object_id):
    return {"__type": "Pointer", "className": cls, "objectId": object_id}


def parse_txn(store, product, type_, quantity, **extra):
    body = {"store": ptr("Store", store), "product": ptr("Product", product),
            "type": type_, "quantity": quantity}
    body.update(extra)
    return body


def sign_up(ctx, prefix="pw"):
    """A new user through Parse; returns (username, password, body)."""
    username = client.unique(prefix).lower().replace("_", "-")[:60]
    password = "pw-" + client.new_uuid()
    r = rest(ctx, "POST", "/users", {"username": username,
                                     "password": password,
                                     "email": f"{username}@example.com"})
    body = expect_json(r, 201, "Parse sign-up")
    expect_uuid(body.get("objectId"), "objectId")
    assert isinstance(body.get("createdAt"), str) and \
        body["createdAt"].endswith("Z"), f"createdAt: {body}"
    assert isinstance(body.get("sessionToken"), str) and \
        len(body["sessionToken"]) >= 32, f"sessionToken: {body}"
    assert set(body) == {"objectId", "createdAt", "sessionToken"}, body
    return username, password, body


# ---- sign-up, login, logout ----

def test_parse_signup_login_logout(ctx):
    username, password, up = sign_up(ctx)
    token = up["sessionToken"]
    # The session token is a stockflow bearer token.
    me = expect_json(client.get(ctx.cmd, "/v1/users/me",
                                headers=client.bearer(token)), 200, "me")
    assert me["id"] == up["objectId"] and me["role"] == "viewer", me

    # Login, SDK style (POST with the credentials in the body).
    r = sdk(ctx, "POST", "/login", {"username": username,
                                   "password": password})
    body = expect_json(r, 200, "SDK login")
    assert body["objectId"] == up["objectId"], body
    assert body["username"] == username and body["role"] == "viewer", body
    assert body["storeIds"] == [], body
    t2 = body["sessionToken"]
    assert t2 != token, "a login opens a session of its own"
    # Login, REST style (GET with the query string).
    r = rest(ctx, "GET", "/login",
             query=f"?username={username}&password={password}")
    t3 = expect_json(r, 200, "REST login")["sessionToken"]

    # Bad credentials: Parse's 404 code 101.
    r = rest(ctx, "POST", "/login", {"username": username,
                                     "password": "wrong-password"})
    body = expect_parse_error(r, 404, 101, "wrong password")
    assert body["error"] == "Invalid username/password.", body
    r = sdk(ctx, "GET", "/login", {"username": "nobody-" + client.new_uuid(),
                                  "password": "whatever1"})
    expect_parse_error(r, 404, 101, "unknown user")
    expect_parse_error(rest(ctx, "POST", "/login", {"username": username}),
                       400, 201, "login without password")
    expect_parse_error(rest(ctx, "POST", "/login", {"password": "x"}),
                       400, 200, "login without username")

    # Sign-up refusals.
    r = rest(ctx, "POST", "/users", {"username": username,
                                     "password": "another-pass1",
                                     "email": "x@example.com"})
    expect_parse_error(r, 400, 202, "username taken")
    expect_parse_error(rest(ctx, "POST", "/users", {"password": "secret123"}),
                       400, 200, "sign-up without username")
    expect_parse_error(rest(ctx, "POST", "/users", {"username": "abc-x"}),
                       400, 201, "sign-up without password")
    expect_parse_error(rest(ctx, "POST", "/users",
                            {"username": "abc-y", "password": "secret123",
                             "email": "e@x.io", "role": "admin"}),
                       400, 105, "sign-up choosing its role")

    # Logout (SDK style) ends the token at once, on /v1 and on /parse.
    r = sdk(ctx, "POST", "/logout", {}, token=t2)
    assert expect_json(r, 200, "logout") == {}, r
    r = client.get(ctx.cmd, "/v1/users/me", headers=client.bearer(t2))
    client.expect_problem(r, 401, "unauthorized", "token after logout")
    expect_parse_error(rest(ctx, "GET", "/users/me", token=t2), 400, 209,
                       "Parse read after logout")
    # The other sessions live on; logout without a session is 209.
    expect_json(client.get(ctx.cmd, "/v1/users/me",
                           headers=client.bearer(t3)), 200, "other session")
    expect_parse_error(rest(ctx, "POST", "/logout"), 400, 209,
                       "logout without a session")
    expect_parse_error(rest(ctx, "POST", "/logout", token="x" * 43), 400, 209,
                       "logout with an unknown token")
    # REST logout of the first session.
    expect_json(rest(ctx, "POST", "/logout", token=token), 200, "logout")
    client.expect_problem(client.get(ctx.cmd, "/v1/users/me",
                                     headers=client.bearer(token)),
                          401, "unauthorized", "first token after logout")


# ---- catalog and stock ----

def parse_store_and_product(ctx):
    """A Store and a Product created through Parse by the admin."""
    admin = admin_token()
    r = rest(ctx, "POST", "/classes/Store",
             {"name": client.unique("PStore"), "location": "Parse St 1"},
             token=admin)
    store = expect_json(r, 201, "Parse create Store")
    expect_uuid(store.get("objectId"))
    assert set(store) == {"objectId", "createdAt"}, store
    r = sdk(ctx, "POST", "/classes/Product",
            {"sku": client.unique("PSKU"), "name": "Parse mug",
             "category": "it", "price": 7.5, "reorderLevel": 2}, token=admin)
    product = expect_json(r, 201, "Parse create Product")
    expect_uuid(product.get("objectId"))
    # The /v1 side has them, price as the exact decimal.
    p = expect_json(client.get(
        ctx.qry, client.with_position(f"/v1/products/{product['objectId']}",
                                      _catalog_position(ctx))),
        200, "product on /v1")
    assert p["price"] in ("7.5", "7.50"), p
    return store["objectId"], product["objectId"]


def _catalog_position(ctx):
    """The catalog's latest position: a product made on /v1 now is after
    every earlier catalog write."""
    return api.create_product(ctx)["position"]


def test_parse_sale_oversell_and_catalog(ctx):
    admin = admin_token()
    store, product = parse_store_and_product(ctx)
    r = sdk(ctx, "POST", "/classes/Transaction",
            parse_txn(store, product, "receipt", 10, reference="po-1"),
            token=admin)
    body = expect_json(r, 201, "Parse receipt")
    expect_uuid(body["objectId"])
    assert (body["onHand"], body["available"], body["version"]) == \
        (10, 10, 1), body
    r = rest(ctx, "POST", "/classes/Transaction",
             parse_txn(store, product, "sale", 3), token=admin)
    sale = expect_json(r, 201, "Parse sale")
    assert (sale["onHand"], sale["delta"], sale["version"]) == (7, -3, 2), sale
    assert sale["createdAt"].endswith("Z") and len(sale["createdAt"]) == 24, \
        sale
    # Oversell: 400 code 142, nothing written.
    r = rest(ctx, "POST", "/classes/Transaction",
             parse_txn(store, product, "sale", 8), token=admin)
    err = expect_parse_error(r, 400, 142, "oversell")
    assert "below zero" in err["error"] or "stock" in err["error"], err
    # Nothing written: the next movement finds 7 at version 2.
    last = api.txn(ctx, store, product, "receipt", 1, on_hand=8, version=3)
    hist = api.history(ctx, store, product, position=last["position"])
    assert [(i["type"], i["quantity"], i.get("reference")) for i in hist] == \
        [("receipt", 1, None), ("sale", 3, None), ("receipt", 10, "po-1")], \
        hist

    # Store update and delete (close): then movements are refused.
    r = rest(ctx, "PUT", f"/classes/Store/{store}", {"name": "Renamed"},
             token=admin)
    upd = expect_json(r, 200, "Parse update Store")
    assert set(upd) == {"updatedAt"}, upd
    r = rest(ctx, "PUT", f"/classes/Product/{product}", {"price": "8.25"},
             token=admin)
    expect_json(r, 200, "Parse update Product")
    expect_parse_error(rest(ctx, "PUT", f"/classes/Product/{product}",
                            {"sku": "NEW"}, token=admin),
                       400, 105, "sku cannot change")
    assert expect_json(rest(ctx, "DELETE", f"/classes/Store/{store}",
                            token=admin), 200, "close store") == {}
    expect_parse_error(rest(ctx, "POST", "/classes/Transaction",
                            parse_txn(store, product, "sale", 1), token=admin),
                       400, 142, "sale in a closed store")
    expect_parse_error(rest(ctx, "DELETE", f"/classes/Store/{store}",
                            token=admin), 400, 142, "closing twice")


def test_parse_concurrent_sales_of_10(ctx):
    admin = admin_token()
    store, product = api.store_and_product(ctx)
    api.txn(ctx, store, product, "receipt", 10, on_hand=10, version=1)
    results = [None] * 20
    start = threading.Barrier(20)

    def sell(i):
        try:
            start.wait(10)
            send = sdk if i % 2 else rest
            results[i] = send(ctx, "POST", "/classes/Transaction",
                              parse_txn(store, product, "sale", 1),
                              token=admin)
        except Exception as e:  # noqa: BLE001 - reported below
            results[i] = e

    threads = [threading.Thread(target=sell, args=(i,), daemon=True)
               for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    errors = [r for r in results if not isinstance(r, client.Response)]
    assert not errors, f"{len(errors)} requests failed: {errors[:3]}"
    ok = [r for r in results if r.status == 201]
    refused = [r for r in results if r.status == 400]
    assert len(ok) + len(refused) == 20, [r for r in results
                                          if r.status not in (201, 400)][:3]
    assert (len(ok), len(refused)) == (10, 10), \
        f"{len(ok)} accepted, {len(refused)} refused"
    for r in refused:
        expect_parse_error(r, 400, 142, "concurrent oversell")
    assert sorted(r.body["onHand"] for r in ok) == list(range(10)), \
        [r.body for r in ok]
    client.eventually(lambda: api.expect_stock(ctx, store, product,
                                               on_hand=0, version=11),
                      what="read model after the concurrent sales")


def test_parse_request_id_applied_once(ctx):
    admin = admin_token()
    store, product = api.store_and_product(ctx)
    api.txn(ctx, store, product, "receipt", 5, on_hand=5, version=1)
    rid = client.new_uuid()
    first = rest(ctx, "POST", "/classes/Transaction",
                 parse_txn(store, product, "sale", 2), token=admin,
                 request_id=rid)
    b1 = expect_json(first, 201, "first send")
    # The SDK retries with the same request id (its own style here).
    again = sdk(ctx, "POST", "/classes/Transaction",
                parse_txn(store, product, "sale", 2), token=admin,
                request_id=rid)
    b2 = expect_json(again, 201, "retried send")
    assert b1 == b2, f"a retry is answered the same: {b1} vs {b2}"
    # Same id, another request: 159.
    r = rest(ctx, "POST", "/classes/Transaction",
             parse_txn(store, product, "sale", 1), token=admin,
             request_id=rid)
    expect_parse_error(r, 400, 159, "request id reused")
    # Applied once: 5 - 2.
    last = api.txn(ctx, store, product, "receipt", 1, on_hand=4, version=3)
    api.expect_stock(ctx, store, product, on_hand=4, version=3,
                     position=last["position"])
    # A request id that cannot be an Idempotency-Key.
    r = rest(ctx, "POST", "/classes/Transaction",
             parse_txn(store, product, "sale", 1), token=admin,
             request_id="x" * 300)
    expect_parse_error(r, 400, 142, "request id too long")


def test_parse_inventory_increment_and_refusals(ctx):
    admin = admin_token()
    store, product = api.store_and_product(ctx)
    api.txn(ctx, store, product, "receipt", 4, on_hand=4, version=1)
    oid = f"{store}_{product}"
    r = rest(ctx, "PUT", f"/classes/Inventory/{oid}",
             {"onHand": {"__op": "Increment", "amount": 3},
              "reason": "found in backroom"}, token=admin)
    body = expect_json(r, 200, "Increment")
    assert body["onHand"] == 7 and body["version"] == 2, body
    assert "updatedAt" in body, body
    r = sdk(ctx, "PUT", f"/classes/Inventory/{oid}",
            {"onHand": {"__op": "Increment", "amount": -2}}, token=admin)
    assert expect_json(r, 200, "negative Increment")["onHand"] == 5
    expect_parse_error(rest(ctx, "PUT", f"/classes/Inventory/{oid}",
                            {"onHand": {"__op": "Increment", "amount": -9}},
                            token=admin), 400, 142, "Increment below zero")
    # Every other Inventory write: 400 code 119, nothing written.
    for method, path, b in (
            ("PUT", f"/classes/Inventory/{oid}", {"onHand": 100}),
            ("PUT", f"/classes/Inventory/{oid}",
             {"reserved": {"__op": "Increment", "amount": 1}}),
            ("PUT", f"/classes/Inventory/{oid}",
             {"onHand": {"__op": "Increment", "amount": 1}, "version": 9}),
            ("POST", "/classes/Inventory", {"onHand": 1}),
            ("DELETE", f"/classes/Inventory/{oid}", None)):
        expect_parse_error(rest(ctx, method, path, b, token=admin), 400, 119,
                           f"{method} {path} {b}")
    last = api.txn(ctx, store, product, "receipt", 1, on_hand=6, version=4)
    hist = api.history(ctx, store, product, position=last["position"])
    got = [(i["type"], i["quantity"], i.get("reason")) for i in hist]
    assert got == [("receipt", 1, None),
                   ("adjustment", -2, "parse increment"),
                   ("adjustment", 3, "found in backroom"),
                   ("receipt", 4, None)], got


def test_parse_write_refusals(ctx):
    """No session, a bad session, a viewer, unknown ids, malformed bodies:
    Parse-shaped errors and nothing written."""
    admin = admin_token()
    store, product = api.store_and_product(ctx)
    api.txn(ctx, store, product, "receipt", 3, on_hand=3, version=1)
    sale = parse_txn(store, product, "sale", 1)
    expect_parse_error(rest(ctx, "POST", "/classes/Transaction", sale),
                       400, 209, "no session")
    expect_parse_error(rest(ctx, "POST", "/classes/Transaction", sale,
                            token="not-a-token"), 400, 209, "bad session")
    _, _, viewer = sign_up(ctx, "pview")
    expect_parse_error(sdk(ctx, "POST", "/classes/Transaction", sale,
                           token=viewer["sessionToken"]),
                       400, 119, "a viewer's sale")
    expect_parse_error(rest(ctx, "POST", "/classes/Store",
                            {"name": "x", "location": "y"},
                            token=viewer["sessionToken"]),
                       400, 119, "a viewer's store")
    # Unknown or impossible ids: 101.
    for body in (parse_txn(client.new_uuid(), product, "sale", 1),
                 parse_txn(store, client.new_uuid(), "sale", 1),
                 parse_txn("../../v1/users", product, "sale", 1)):
        expect_parse_error(rest(ctx, "POST", "/classes/Transaction", body,
                                token=admin), 404, 101, f"unknown id {body}")
    expect_parse_error(rest(ctx, "PUT", f"/classes/Order/{client.new_uuid()}",
                            {"status": "fulfilled"}, token=admin),
                       404, 101, "unknown order")
    expect_parse_error(rest(ctx, "DELETE",
                            f"/classes/Product/{client.new_uuid()}",
                            token=admin), 404, 101, "unknown product")
    # Malformed and wrong types.
    expect_parse_error(rest(ctx, "POST", "/classes/Transaction",
                            b'{"store": ', token=admin), 400, 107,
                       "malformed JSON")
    expect_parse_error(rest(ctx, "POST", "/classes/Transaction",
                            dict(sale, quantity="1"), token=admin),
                       400, 111, "quantity as a string")
    expect_parse_error(rest(ctx, "POST", "/classes/Transaction",
                            dict(sale, store=store), token=admin),
                       400, 111, "store as a plain id")
    expect_parse_error(rest(ctx, "POST", "/classes/Transaction",
                            dict(sale, type="gift"), token=admin),
                       400, 142, "unknown type")
    expect_parse_error(rest(ctx, "POST", "/classes/Transaction",
                            dict(sale, colour="red"), token=admin),
                       400, 105, "unknown key")
    expect_parse_error(rest(ctx, "PUT", f"/classes/Transaction/{store}",
                            {"quantity": 2}, token=admin),
                       400, 119, "changing a movement")
    expect_parse_error(rest(ctx, "POST", "/classes/Wombat", {"a": 1},
                            token=admin), 400, 103, "unknown class")
    # Oversized: the query service's body limit.
    big = dict(sale, reference="r" * 70000)
    r = rest(ctx, "POST", "/classes/Transaction", big, token=admin)
    assert r.status == 413, r
    # Nothing was written by any of them.
    last = api.txn(ctx, store, product, "receipt", 1, on_hand=4, version=2)
    api.expect_stock(ctx, store, product, on_hand=4, version=2,
                     position=last["position"])


def test_parse_orders(ctx):
    admin = admin_token()
    store, product = api.store_and_product(ctx)
    api.txn(ctx, store, product, "receipt", 5, on_hand=5, version=1)
    r = sdk(ctx, "POST", "/classes/Order",
            {"store": ptr("Store", store),
             "lines": [{"product": ptr("Product", product), "quantity": 2}],
             "reference": "web-1"}, token=admin)
    order = expect_json(r, 201, "Parse order")
    expect_uuid(order["objectId"])
    assert order["status"] == "placed", order
    expect_parse_error(rest(ctx, "PUT", f"/classes/Order/{order['objectId']}",
                            {"status": "shipped"}, token=admin),
                       400, 142, "unknown status")
    r = rest(ctx, "PUT", f"/classes/Order/{order['objectId']}",
             {"status": "fulfilled"}, token=admin)
    done = expect_json(r, 200, "fulfil")
    assert done["status"] == "fulfilled" and "updatedAt" in done, done
    expect_parse_error(rest(ctx, "PUT", f"/classes/Order/{order['objectId']}",
                            {"status": "cancelled"}, token=admin),
                       400, 142, "cancel after fulfil")
    expect_parse_error(rest(ctx, "DELETE",
                            f"/classes/Order/{order['objectId']}",
                            token=admin), 400, 119, "delete an order")
    # Too much: nothing reserved.
    expect_parse_error(rest(ctx, "POST", "/classes/Order",
                            {"store": ptr("Store", store),
                             "lines": [{"product": ptr("Product", product),
                                        "quantity": 9}]}, token=admin),
                       400, 142, "order beyond stock")
    # Placed (v2) and fulfilled (v3): 5 - 2 left, nothing else.
    last = api.txn(ctx, store, product, "receipt", 1, on_hand=4, version=4)
    api.expect_stock(ctx, store, product, on_hand=4, version=4,
                     position=last["position"])


def test_parse_batch(ctx):
    admin = admin_token()
    store, product = api.store_and_product(ctx)
    oid = f"{store}_{product}"
    requests = [
        {"method": "POST", "path": "/parse/classes/Transaction",
         "body": parse_txn(store, product, "receipt", 5)},
        {"method": "POST", "path": "/classes/Transaction",
         "body": parse_txn(store, product, "sale", 100)},
        {"method": "GET", "path": "/parse/classes/Store"},
        {"method": "POST", "path": "/classes/Transaction",
         "body": parse_txn(store, product, "sale", 2)},
        {"method": "PUT", "path": f"/parse/classes/Inventory/{oid}",
         "body": {"onHand": 3}},
        {"method": "PUT", "path": f"/classes/Inventory/{oid}",
         "body": {"onHand": {"__op": "Increment", "amount": 1}}},
        {"method": "POST", "path": "/classes/Transaction",
         "body": parse_txn(client.new_uuid(), product, "sale", 1)},
    ]
    r = sdk(ctx, "POST", "/batch", {"requests": requests}, token=admin)
    assert r.status == 200 and isinstance(r.body, list), r
    got = [("success" if "success" in i else i["error"]["code"])
           for i in r.body]
    assert got == ["success", 142, 119, "success", 119, "success", 101], \
        r.body
    assert r.body[0]["success"]["onHand"] == 5, r.body
    assert r.body[3]["success"]["onHand"] == 3, r.body
    assert r.body[5]["success"]["onHand"] == 4, r.body
    for i in (1, 2, 4, 6):
        assert isinstance(r.body[i]["error"]["error"], str), r.body[i]
    last = api.txn(ctx, store, product, "receipt", 1, on_hand=5, version=4)
    api.expect_stock(ctx, store, product, on_hand=5, version=4,
                     position=last["position"])
    # A retried batch with the same request id is applied once.
    rid = client.new_uuid()
    one = [{"method": "POST", "path": "/classes/Transaction",
            "body": parse_txn(store, product, "sale", 1)}]
    b1 = rest(ctx, "POST", "/batch", {"requests": one}, token=admin,
              request_id=rid)
    b2 = rest(ctx, "POST", "/batch", {"requests": one}, token=admin,
              request_id=rid)
    assert b1.status == b2.status == 200 and b1.body == b2.body, (b1, b2)
    last = api.txn(ctx, store, product, "receipt", 1, on_hand=5, version=6)
    # Limits and shape.
    many = one * 51
    expect_parse_error(rest(ctx, "POST", "/batch", {"requests": many},
                            token=admin), 400, 107, "51 requests")
    expect_parse_error(rest(ctx, "POST", "/batch", {"requests": {}},
                            token=admin), 400, 107, "requests not an array")
    expect_parse_error(rest(ctx, "POST", "/batch", {}, token=admin), 400, 107,
                       "no requests")
    r = rest(ctx, "POST", "/batch", {"requests": [{"path": 3}, 7]},
             token=admin)
    assert r.status == 200 and [i["error"]["code"] for i in r.body] == \
        [107, 107], r
    api.expect_stock(ctx, store, product, on_hand=5, version=6,
                     position=last["position"])


def test_parse_read_your_writes(ctx):
    """A write through the facade, then at once a Parse read by the same
    session: the read waits for the write's position."""
    admin = admin_token()
    store, product = api.store_and_product(ctx)
    oid = f"{store}_{product}"
    for i in range(5):
        r = rest(ctx, "POST", "/classes/Transaction",
                 parse_txn(store, product, "receipt", 1), token=admin)
        expect_json(r, 201, "receipt")
        r = rest(ctx, "GET", f"/classes/Inventory/{oid}", token=admin)
        body = expect_json(r, 200, "read after write")
        assert body.get("onHand") == i + 1, \
            f"read {i} does not see its write: {body}"
    # A new Store is readable at once, too (catalog position).
    r = rest(ctx, "POST", "/classes/Store",
             {"name": client.unique("RYW"), "location": "here"}, token=admin)
    sid = expect_json(r, 201, "store")["objectId"]
    r = rest(ctx, "GET", f"/classes/Store/{sid}", token=admin)
    assert expect_json(r, 200, "store read after create")["objectId"] == sid


def test_parse_command_service_down(ctx):
    admin = admin_token()
    store, product = api.store_and_product(ctx)
    api.txn(ctx, store, product, "receipt", 3, on_hand=3, version=1)
    svc = ctx.stack["command"]
    svc.stop()
    try:
        r = rest(ctx, "POST", "/classes/Transaction",
                 parse_txn(store, product, "sale", 1), token=admin)
        expect_parse_error(r, 503, 100, "command service stopped")
        assert r.headers.get("retry-after"), r.headers
        r = rest(ctx, "POST", "/login", {"username": "a", "password": "b"})
        expect_parse_error(r, 503, 100, "login while stopped")
    finally:
        ctx.stack.start(["command"])
    # Serving again once it is back (keep-alive connections were dropped).
    deadline = time.time() + 30
    while True:
        r = rest(ctx, "POST", "/classes/Transaction",
                 parse_txn(store, product, "sale", 1), token=admin)
        if r.status != 503 or time.time() > deadline:
            break
        time.sleep(0.2)
    assert expect_json(r, 201, "sale after restart")["onHand"] == 2, r.body
