"""Domain helpers for the integration tests: create products and stores,
post stock transactions, read the read model, each checking the answer's
shape against the HTTP contract (/work/shared/API.md, docs/api.md)."""

import re
import urllib.parse

import client
from client import (expect_json, expect_position, expect_uuid, get, post,
                    with_position)

RFC3339_RE = re.compile(
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?"
    r"(Z|[+-][0-9]{2}:[0-9]{2})$")
TXN_FIELDS = ("transaction_id", "store_id", "product_id", "type", "quantity",
              "delta", "on_hand", "reserved", "available", "version",
              "position", "created_at")


def expect_time(value, what="time"):
    assert isinstance(value, str) and RFC3339_RE.match(value), \
        f"{what} {value!r} is not an RFC 3339 time"
    return value


def expect_int(value, what):
    assert isinstance(value, int) and not isinstance(value, bool), \
        f"{what} {value!r} is not an integer"
    return value


# ---- catalog ----

def product_body(**over):
    body = {"sku": client.unique("SKU"), "name": client.unique("Product"),
            "category": "it", "price": "19.99", "reorder_level": 5}
    body.update(over)
    return {k: v for k, v in body.items() if v is not None}


def create_product(ctx, **over):
    """POST /v1/products with a fresh sku; returns the 201 body (checked:
    fields echoed, UUID id, position token)."""
    sent = product_body(**over)
    r = post(ctx.cmd, "/v1/products", sent)
    body = expect_json(r, 201, "create product")
    expect_uuid(body.get("id"), "product id")
    for k in ("sku", "name", "category", "price", "reorder_level"):
        if k in sent:
            assert body.get(k) == sent[k], \
                f"product {k}: sent {sent[k]!r}, answer has {body.get(k)!r}"
    expect_position(body.get("position"), "product position")
    return body


def store_body(**over):
    body = {"name": client.unique("Store"), "location": "Aisle 9, Testville"}
    body.update(over)
    return {k: v for k, v in body.items() if v is not None}


def create_store(ctx, **over):
    sent = store_body(**over)
    r = post(ctx.cmd, "/v1/stores", sent)
    body = expect_json(r, 201, "create store")
    expect_uuid(body.get("id"), "store id")
    for k in ("name", "location"):
        assert body.get(k) == sent[k], \
            f"store {k}: sent {sent[k]!r}, answer has {body.get(k)!r}"
    expect_position(body.get("position"), "store position")
    return body


def store_and_product(ctx):
    return create_store(ctx)["id"], create_product(ctx)["id"]


# ---- stock ----

def txn_path(store_id):
    return f"/v1/stores/{store_id}/transactions"


def post_txn(ctx, store_id, product_id, type_, quantity, reason=None,
             reference=None, headers=None):
    """POST a stock transaction; returns the raw Response."""
    body = {"product_id": product_id, "type": type_, "quantity": quantity}
    if reason is not None:
        body["reason"] = reason
    if reference is not None:
        body["reference"] = reference
    return post(ctx.cmd, txn_path(store_id), body, headers)


def txn(ctx, store_id, product_id, type_, quantity, *, on_hand, version,
        delta=None, reason=None, reference=None, headers=None):
    """POST a stock transaction that must be accepted (201); checks every
    field of the answer, including the expected on_hand and version after
    it. Returns the body."""
    r = post_txn(ctx, store_id, product_id, type_, quantity, reason,
                 reference, headers)
    body = expect_json(r, 201, f"{type_} {quantity}")
    for f in TXN_FIELDS:
        assert f in body, f"transaction answer lacks {f!r}: {r!r}"
    expect_uuid(body["transaction_id"], "transaction_id")
    assert body["store_id"] == store_id, f"store_id: {body['store_id']!r}"
    assert body["product_id"] == product_id, \
        f"product_id: {body['product_id']!r}"
    assert body["type"] == type_, f"type: {body['type']!r}"
    assert body["quantity"] == quantity, f"quantity: {body['quantity']!r}"
    if delta is None:
        delta = {"receipt": quantity, "return": quantity,
                 "sale": -quantity, "adjustment": quantity}[type_]
    assert body["delta"] == delta, f"delta: want {delta}, got {body['delta']!r}"
    assert body["on_hand"] == on_hand, \
        f"on_hand after {type_} {quantity}: want {on_hand}, got {body['on_hand']!r}"
    expect_int(body["reserved"], "reserved")
    assert body["available"] == body["on_hand"] - body["reserved"], \
        f"available {body['available']!r} != on_hand - reserved"
    assert body["version"] == version, \
        f"version after {type_} {quantity}: want {version}, got {body['version']!r}"
    expect_position(body["position"])
    assert body["position"].startswith("stock-"), \
        f"a stock write's position is on the stock topic: {body['position']!r}"
    expect_time(body["created_at"], "created_at")
    return body


# ---- reads (query service) ----

def inventory_row(ctx, store_id, product_id, position=None):
    path = f"/v1/stores/{store_id}/inventory/{product_id}"
    if position:
        path = with_position(path, position)
    return get(ctx.qry, path)


def expect_stock(ctx, store_id, product_id, *, on_hand, version,
                 position=None, reserved=0):
    """Reads one inventory row (after position, if given) and checks it.
    Returns the body."""
    r = inventory_row(ctx, store_id, product_id, position)
    body = expect_json(r, 200, "inventory row")
    assert body.get("on_hand") == on_hand, \
        f"read model on_hand: want {on_hand}, got {body.get('on_hand')!r} ({body})"
    assert body.get("version") == version, \
        f"read model version: want {version}, got {body.get('version')!r} ({body})"
    assert body.get("reserved") == reserved, \
        f"read model reserved: want {reserved}, got {body.get('reserved')!r}"
    assert body.get("available") == on_hand - reserved, \
        f"read model available: {body.get('available')!r}"
    etag = r.headers.get("etag")
    assert etag == f'"{version}"', f"ETag {etag!r}, want '\"{version}\"'"
    return body


def list_all(ctx, path, position=None, limit=500, max_pages=50):
    """Follows next_cursor through a list endpoint; returns all items."""
    items = []
    cursor = None
    for _ in range(max_pages):
        q = {"limit": str(limit)}
        if cursor:
            q["cursor"] = cursor
        if position:
            q["min_position"] = position
        sep = "&" if "?" in path else "?"
        r = get(ctx.qry, f"{path}{sep}{urllib.parse.urlencode(q)}")
        body = expect_json(r, 200, f"list {path}")
        assert isinstance(body.get("items"), list), f"no items list: {r!r}"
        assert "next_cursor" in body, f"no next_cursor: {r!r}"
        items.extend(body["items"])
        cursor = body["next_cursor"]
        if not cursor:
            return items
    raise AssertionError(f"{path}: more than {max_pages} pages")


def txn_item_id(item):
    """The id of a transaction in the history list."""
    return expect_uuid(item.get("transaction_id"), "history transaction_id")


def history(ctx, store_id, product_id=None, type_=None, position=None):
    q = {}
    if product_id:
        q["product_id"] = product_id
    if type_:
        q["type"] = type_
    path = f"/v1/stores/{store_id}/transactions"
    if q:
        path += "?" + urllib.parse.urlencode(q)
    return list_all(ctx, path, position)


def healthz_all(ctx):
    """Every service answers GET /healthz 200 {"status":"ok"}."""
    for name, port in ctx.ports().items():
        r = get(port, "/healthz", timeout=5)
        body = expect_json(r, 200, f"{name} /healthz")
        assert body.get("status") == "ok", f"{name} /healthz body {body!r}"
