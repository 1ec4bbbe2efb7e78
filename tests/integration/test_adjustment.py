"""Adjustments, returns and counts: signed changes that never take available
stock below zero."""

import api
from client import expect_problem


def test_adjustment_up_down_and_below_zero(ctx):
    store, product = api.store_and_product(ctx)
    api.txn(ctx, store, product, "adjustment", 5, reason="found in backroom",
            on_hand=5, version=1)
    api.txn(ctx, store, product, "adjustment", -3, reason="damage",
            on_hand=2, version=2)
    r = api.post_txn(ctx, store, product, "adjustment", -3, reason="damage")
    expect_problem(r, 409, "insufficient_stock", "adjustment -3 of 2")
    t = api.txn(ctx, store, product, "adjustment", -2, reason="theft",
                on_hand=0, version=3)
    api.expect_stock(ctx, store, product, on_hand=0, version=3,
                     position=t["position"])
    items = api.history(ctx, store, product, position=t["position"])
    got = [(i.get("type"), i.get("quantity"), i.get("delta"), i.get("reason"))
           for i in items]
    assert got == [("adjustment", -2, -2, "theft"),
                   ("adjustment", -3, -3, "damage"),
                   ("adjustment", 5, 5, "found in backroom")], got


def test_return_and_count(ctx):
    store, product = api.store_and_product(ctx)
    api.txn(ctx, store, product, "receipt", 10, on_hand=10, version=1)
    api.txn(ctx, store, product, "return", 2, on_hand=12, version=2)
    # A count sets on_hand; the event records the delta.
    api.txn(ctx, store, product, "count", 9, delta=-3, on_hand=9, version=3)
    api.txn(ctx, store, product, "count", 9, delta=0, on_hand=9, version=4)
    t = api.txn(ctx, store, product, "count", 0, delta=-9, on_hand=0,
                version=5)
    api.expect_stock(ctx, store, product, on_hand=0, version=5,
                     position=t["position"])
    r = api.post_txn(ctx, store, product, "sale", 1)
    expect_problem(r, 409, "insufficient_stock", "sale of 1 after count 0")


def test_sale_of_nothing_and_first_event(ctx):
    """A pair that never had an event holds 0: a sale is refused, and the
    refused sale does not create the pair's stream."""
    store, product = api.store_and_product(ctx)
    r = api.post_txn(ctx, store, product, "sale", 1)
    expect_problem(r, 409, "insufficient_stock", "sale from an empty pair")
    api.txn(ctx, store, product, "receipt", 1, on_hand=1, version=1)
