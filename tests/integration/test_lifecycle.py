"""Catalog changes (PATCH, DELETE) and transfers between stores, through the
command service, checked on the read side."""

import api
from client import (delete, expect_json, expect_problem, get, new_uuid, patch,
                    post, with_position)


def positions_ok(pos):
    """A write touching several partitions answers a comma-separated list of
    position tokens."""
    parts = pos.split(",")
    for p in parts:
        api.expect_position(p)
    return parts


def test_patch_and_discontinue_product(ctx):
    p = api.create_product(ctx, price="10.00", reorder_level=3)
    pid = p["id"]
    r = patch(ctx.cmd, f"/v1/products/{pid}",
              {"name": "Renamed", "price": "12.50"})
    body = expect_json(r, 200, "PATCH product")
    assert (body.get("id"), body.get("name"), body.get("price"),
            body.get("sku"), body.get("reorder_level"), body.get("version")) \
        == (pid, "Renamed", "12.50", p["sku"], 3, 2), body
    positions_ok(body.get("position", ""))
    r = get(ctx.qry, with_position(f"/v1/products/{pid}", body["position"]))
    read = expect_json(r, 200, "GET product after PATCH")
    assert (read.get("name"), float(read.get("price")), read.get("version")) \
        == ("Renamed", 12.5, 2), read

    for what, bad in {"empty body": {}, "price number": {"price": 3},
                      "name empty": {"name": ""},
                      "reorder_level -1": {"reorder_level": -1},
                      "unknown field": {"colour": "red"}}.items():
        expect_problem(patch(ctx.cmd, f"/v1/products/{pid}", bad), 422,
                       "validation_failed", f"PATCH {what}")
    expect_problem(patch(ctx.cmd, f"/v1/products/{new_uuid()}",
                         {"name": "x"}), 404, "not_found", "PATCH unknown")

    # Discontinue: no more receipts, stock on hand can still be sold.
    store = api.create_store(ctx)["id"]
    api.txn(ctx, store, pid, "receipt", 5, on_hand=5, version=1)
    r = delete(ctx.cmd, f"/v1/products/{pid}")
    body = expect_json(r, 200, "DELETE product")
    gone_at = body["position"]
    assert (body.get("discontinued"), body.get("version")) == (True, 3), body
    expect_problem(api.post_txn(ctx, store, pid, "receipt", 1), 409,
                   "product_discontinued", "receipt of a discontinued product")
    expect_problem(delete(ctx.cmd, f"/v1/products/{pid}"), 409,
                   "invalid_state", "second DELETE")
    t = api.txn(ctx, store, pid, "sale", 2, on_hand=3, version=2)
    # Both the catalog event and the sale must be applied: a list of
    # positions waits for every one.
    r = get(ctx.qry, with_position(f"/v1/products/{pid}",
                                   f"{gone_at},{t['position']}"))
    read = expect_json(r, 200, "GET discontinued product")
    assert (read.get("discontinued"), read.get("total_on_hand")) == (True, 3), \
        read
    expect_problem(delete(ctx.cmd, f"/v1/products/{new_uuid()}"), 404,
                   "not_found", "DELETE unknown product")


def test_patch_and_close_store(ctx):
    s = api.create_store(ctx, name="Old name", location="Old town")
    sid = s["id"]
    r = patch(ctx.cmd, f"/v1/stores/{sid}", {"location": "New town"})
    body = expect_json(r, 200, "PATCH store")
    assert (body.get("name"), body.get("location"), body.get("version")) == \
        ("Old name", "New town", 2), body
    r = get(ctx.qry, with_position(f"/v1/stores/{sid}", body["position"]))
    read = expect_json(r, 200, "GET store after PATCH")
    assert (read.get("location"), read.get("version")) == ("New town", 2), read

    product = api.create_product(ctx)["id"]
    receipt = api.txn(ctx, sid, product, "receipt", 5, on_hand=5, version=1)
    body = expect_json(delete(ctx.cmd, f"/v1/stores/{sid}"), 200,
                       "DELETE store")
    assert (body.get("closed"), body.get("version")) == (True, 3), body
    for type_, q, reason in (("receipt", 1, None), ("sale", 1, None),
                             ("adjustment", -1, "damage")):
        r = api.post_txn(ctx, sid, product, type_, q, reason=reason)
        expect_problem(r, 409, "store_closed", f"{type_} in a closed store")
    expect_problem(delete(ctx.cmd, f"/v1/stores/{sid}"), 409,
                   "invalid_state", "second DELETE store")
    expect_problem(patch(ctx.cmd, f"/v1/stores/{new_uuid()}", {"name": "x"}),
                   404, "not_found", "PATCH unknown store")
    r = get(ctx.qry, with_position(f"/v1/stores/{sid}", body["position"]))
    assert expect_json(r, 200, "GET closed store").get("closed") is True
    # History kept: the receipt is still there.
    items = api.history(ctx, sid, product, position=receipt["position"])
    assert [(i.get("type"), i.get("quantity")) for i in items] == \
        [("receipt", 5)], items


def test_transfer_both_legs_or_neither(ctx):
    a = api.create_store(ctx)["id"]
    b = api.create_store(ctx)["id"]
    product = api.create_product(ctx)["id"]
    api.txn(ctx, a, product, "receipt", 10, on_hand=10, version=1)

    r = post(ctx.cmd, "/v1/transfers",
             {"from_store_id": a, "to_store_id": b, "product_id": product,
              "quantity": 4, "reference": "T-1"})
    t = expect_json(r, 201, "transfer 4")
    api.expect_uuid(t.get("transfer_id"), "transfer_id")
    assert (t.get("from_store_id"), t.get("to_store_id"), t.get("quantity")) \
        == (a, b, 4), t
    assert (t["from"].get("on_hand"), t["from"].get("version")) == (6, 2), t
    assert (t["to"].get("on_hand"), t["to"].get("version")) == (4, 1), t
    positions_ok(t.get("position", ""))
    # Read-your-writes on both legs with the one position the write gave.
    api.expect_stock(ctx, a, product, on_hand=6, version=2,
                     position=t["position"])
    api.expect_stock(ctx, b, product, on_hand=4, version=1,
                     position=t["position"])
    out = api.history(ctx, a, product)
    inn = api.history(ctx, b, product)
    assert [(i.get("type"), i.get("delta"), i.get("transaction_id"))
            for i in out][0] == \
        ("transfer_out", -4, t["from"]["transaction_id"]), out
    assert [(i.get("type"), i.get("delta"), i.get("transaction_id"))
            for i in inn] == \
        [("transfer_in", 4, t["to"]["transaction_id"])], inn

    # Refused transfers change nothing on either side.
    bad = [
        ("more than available", {"from_store_id": a, "to_store_id": b,
                                 "product_id": product, "quantity": 7},
         409, "insufficient_stock"),
        ("same store", {"from_store_id": a, "to_store_id": a,
                        "product_id": product, "quantity": 1},
         422, "validation_failed"),
        ("quantity 0", {"from_store_id": a, "to_store_id": b,
                        "product_id": product, "quantity": 0},
         422, "validation_failed"),
        ("unknown target", {"from_store_id": a, "to_store_id": new_uuid(),
                            "product_id": product, "quantity": 1},
         404, "not_found"),
        ("unknown product", {"from_store_id": a, "to_store_id": b,
                             "product_id": new_uuid(), "quantity": 1},
         404, "not_found"),
        ("to missing", {"from_store_id": a, "product_id": product,
                        "quantity": 1}, 422, "validation_failed"),
    ]
    for what, body, status, code in bad:
        expect_problem(post(ctx.cmd, "/v1/transfers", body), status, code,
                       f"transfer {what}")
    ta = api.txn(ctx, a, product, "sale", 6, on_hand=0, version=3)
    tb = api.txn(ctx, b, product, "sale", 4, on_hand=0, version=2)
    api.expect_stock(ctx, a, product, on_hand=0, version=3,
                     position=ta["position"])
    api.expect_stock(ctx, b, product, on_hand=0, version=2,
                     position=tb["position"])
