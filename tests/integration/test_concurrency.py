"""Concurrent writers cannot oversell: the single writer serialises them."""

import api
import client


def test_50_concurrent_sales_of_20(ctx):
    store, product = api.store_and_product(ctx)
    api.txn(ctx, store, product, "receipt", 20, on_hand=20, version=1)
    results = client.parallel(
        50, lambda i: api.post_txn(ctx, store, product, "sale", 1), 60)
    errors = [r for r in results if not isinstance(r, client.Response)]
    assert not errors, f"{len(errors)} requests failed: {errors[:3]}"
    ok = [r for r in results if r.status == 201]
    refused = [r for r in results if r.status == 409]
    other = [r for r in results if r.status not in (201, 409)]
    assert not other, f"unexpected answers: {other[:3]}"
    assert (len(ok), len(refused)) == (20, 30), \
        f"{len(ok)} accepted, {len(refused)} refused"
    for r in refused:
        client.expect_problem(r, 409, "insufficient_stock")
    # Each accepted sale took the next version and left one less.
    seen = sorted((r.body["version"], r.body["on_hand"]) for r in ok)
    assert seen == [(v, 21 - v) for v in range(2, 22)], seen
    last = max(ok, key=lambda r: r.body["version"]).body
    api.expect_stock(ctx, store, product, on_hand=0, version=21,
                     position=last["position"])
    hist = api.history(ctx, store, product, type_="sale",
                       position=last["position"])
    assert sorted(api.txn_item_id(i) for i in hist) == \
        sorted(r.body["transaction_id"] for r in ok), "history != accepted sales"
