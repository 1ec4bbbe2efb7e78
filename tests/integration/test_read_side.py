"""The query service's read endpoints over what the command service wrote."""

import time

import api
from client import expect_json, expect_problem, get, new_uuid, with_position
from client import unique as client_unique


def test_store_inventory_row_history_and_totals(ctx):
    s1 = api.create_store(ctx)["id"]
    s2 = api.create_store(ctx)["id"]
    pa = api.create_product(ctx)
    pb = api.create_product(ctx)
    a, b = pa["id"], pb["id"]
    api.txn(ctx, s1, a, "receipt", 10, on_hand=10, version=1)
    api.txn(ctx, s1, b, "receipt", 4, on_hand=4, version=1)
    api.txn(ctx, s1, a, "sale", 2, on_hand=8, version=2)
    api.txn(ctx, s2, a, "receipt", 5, on_hand=5, version=1)
    last_s1 = api.txn(ctx, s1, b, "return", 1, on_hand=5, version=2)
    last_s2 = api.txn(ctx, s2, a, "sale", 1, on_hand=4, version=2)

    # Store inventory lists both products with their stock.
    items = api.list_all(ctx, f"/v1/stores/{s1}/inventory",
                         last_s1["position"])
    rows = {i.get("product_id"): i for i in items}
    assert set(rows) == {a, b}, f"store inventory products: {list(rows)}"
    assert (rows[a].get("on_hand"), rows[a].get("version")) == (8, 2), rows[a]
    assert (rows[b].get("on_hand"), rows[b].get("version")) == (5, 2), rows[b]
    assert rows[a].get("sku") == pa["sku"] and rows[a].get("name") == pa["name"]
    for r in rows.values():
        assert r.get("available") == r["on_hand"] - r.get("reserved", 0), r

    # One row, with its ETag.
    api.expect_stock(ctx, s1, a, on_hand=8, version=2)

    # History, newest first, and filtered by type.
    hist = api.history(ctx, s1)
    got = [(i.get("product_id"), i.get("type"), i.get("quantity")) for i in hist]
    assert got == [(b, "return", 1), (a, "sale", 2), (b, "receipt", 4),
                   (a, "receipt", 10)], got
    sales = api.history(ctx, s1, type_="sale")
    assert [(i.get("product_id"), i.get("delta")) for i in sales] == \
        [(a, -2)], sales
    receipts = api.history(ctx, s1, product_id=a, type_="receipt")
    assert [i.get("quantity") for i in receipts] == [10], receipts

    # Product with the total on hand across both stores.
    r = get(ctx.qry, with_position(f"/v1/products/{a}", last_s2["position"]))
    body = expect_json(r, 200, "GET product")
    assert body.get("total_on_hand") == 8 + 4, body
    assert body.get("total_available") == 8 + 4, body

    # One row per store holding the product, plus totals.
    r = get(ctx.qry, f"/v1/products/{a}/inventory")
    body = expect_json(r, 200, "GET product inventory")
    per_store = {i.get("store_id"): (i.get("on_hand"), i.get("version"))
                 for i in body.get("items", [])}
    assert per_store == {s1: (8, 2), s2: (4, 2)}, per_store
    assert (body.get("total_on_hand"), body.get("total_available")) == \
        (12, 12), body

    # Unknown ids.
    for path in (f"/v1/stores/{new_uuid()}/inventory",
                 f"/v1/stores/{s1}/inventory/{new_uuid()}",
                 f"/v1/stores/{new_uuid()}/inventory/{a}",
                 f"/v1/stores/{new_uuid()}/transactions",
                 f"/v1/products/{new_uuid()}",
                 "/v1/stores/nope/inventory"):
        expect_problem(get(ctx.qry, path), 404, "not_found", path)


def test_list_paging(ctx):
    store, product = api.store_and_product(ctx)
    for i in range(7):
        last = api.txn(ctx, store, product, "receipt", 1, on_hand=i + 1,
                       version=i + 1)
    seen = []
    cursor = None
    pages = 0
    while True:
        path = f"/v1/stores/{store}/transactions?limit=3"
        if cursor:
            path += f"&cursor={cursor}"
        path = with_position(path, last["position"])
        body = expect_json(get(ctx.qry, path), 200, "page")
        pages += 1
        assert len(body["items"]) <= 3, body
        seen += [i.get("version") for i in body["items"]]
        cursor = body.get("next_cursor")
        if not cursor:
            break
        assert pages < 10, "paging does not end"
    assert seen == [7, 6, 5, 4, 3, 2, 1], seen
    assert pages == 3, pages
    for bad, status, code in (("limit=abc", 422, "validation_failed"),
                              ("limit=-1", 422, "validation_failed"),
                              ("limit=0", 422, "validation_failed"),
                              ("limit=501", 422, "validation_failed"),
                              ("cursor=garbage", 400, "bad_cursor"),
                              # a NUL in the target: refused by the HTTP layer
                              ("cursor=%00x", 400, ("bad_request",
                                                    "bad_cursor"))):
        r = get(ctx.qry, f"/v1/stores/{store}/transactions?{bad}")
        expect_problem(r, status, code, bad)
    # A cursor of another list is refused too.
    inv = expect_json(get(ctx.qry, f"/v1/stores/{store}/inventory?limit=1"),
                      200, "inventory page")
    assert inv["next_cursor"] is None, inv   # one product: one page
    page = expect_json(get(ctx.qry, f"/v1/stores/{store}/transactions?limit=1"),
                       200, "transactions page")
    r = get(ctx.qry, f"/v1/products?cursor={page['next_cursor']}")
    expect_problem(r, 400, "bad_cursor", "a transactions cursor on products")


def test_min_position_timeout(ctx):
    """A position far in the future is never applied: 504 after the wait
    limit, and a malformed position is refused."""
    store, _ = api.store_and_product(ctx)
    t0 = time.monotonic()
    r = get(ctx.qry, f"/v1/stores/{store}/inventory?min_position=stock-0-999999999")
    expect_problem(r, 504, "position_timeout", "unreachable position")
    assert time.monotonic() - t0 < 30, "504 took too long"
    for bad in ("bogus", "stock-x-1", "orders-0-1", "stock-0--1"):
        r = get(ctx.qry, f"/v1/stores/{store}/inventory?min_position={bad}")
        expect_problem(r, 400, "bad_position", f"min_position={bad}")
    r = get(ctx.qry, f"/v1/stores/{store}/inventory",
            headers={"X-Min-Position": "bogus"})
    expect_problem(r, 400, "bad_position", "X-Min-Position: bogus")


def test_list_filters(ctx):
    """?category= on products and ?below_reorder= on a store's inventory
    return exactly the matching rows."""
    category = client_unique("cat")
    store = api.create_store(ctx)["id"]
    low = api.create_product(ctx, category=category, reorder_level=5)
    high = api.create_product(ctx, category=category, reorder_level=5)
    other = api.create_product(ctx, category=client_unique("cat"))
    api.txn(ctx, store, low["id"], "receipt", 3, on_hand=3, version=1)
    api.txn(ctx, store, high["id"], "receipt", 9, on_hand=9, version=1)
    last = api.txn(ctx, store, other["id"], "receipt", 1, on_hand=1,
                   version=1)
    items = api.list_all(ctx, f"/v1/products?category={category}",
                         last["position"])
    got = sorted((i.get("id"), i.get("total_on_hand")) for i in items)
    assert got == sorted([(low["id"], 3), (high["id"], 9)]), got
    items = api.list_all(ctx, f"/v1/stores/{store}/inventory?below_reorder=true")
    got = sorted(i.get("product_id") for i in items)
    # other has reorder_level 5 by default (api.product_body) and holds 1.
    assert got == sorted([low["id"], other["id"]]), got
    r = get(ctx.qry, f"/v1/stores/{store}/inventory?below_reorder=maybe")
    expect_problem(r, 422, "validation_failed", "below_reorder=maybe")
