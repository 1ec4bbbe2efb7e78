"""The issue's scenario, through the HTTP APIs only: receipt 10, sale 3,
sale 8 rejected, read model 7; every service killed with SIGKILL and started
again; the state survives, the oversell is still refused, a sale of exactly
7 is accepted, and the history holds each accepted transaction once."""

import api
from client import expect_problem


def test_receipt_sale_oversell_crash_restart(ctx):
    store, product = api.store_and_product(ctx)

    t1 = api.txn(ctx, store, product, "receipt", 10, on_hand=10, version=1)
    t2 = api.txn(ctx, store, product, "sale", 3, on_hand=7, version=2)
    r = api.post_txn(ctx, store, product, "sale", 8)
    problem = expect_problem(r, 409, "insufficient_stock", "sale 8 of 7")
    assert "detail" in problem
    api.expect_stock(ctx, store, product, on_hand=7, version=2,
                     position=t2["position"])

    # Crash everything at once, then start again.
    ctx.stack.kill()
    for name in ("command", "projector", "query"):
        assert ctx.stack[name].last_exit == -9, \
            f"{name} was not killed by SIGKILL: {ctx.stack[name].last_exit}"
    ctx.stack.start()

    # The read model survived (no min_position: what is there now) ...
    api.expect_stock(ctx, store, product, on_hand=7, version=2)
    # ... and the position of the last write is still known as applied.
    api.expect_stock(ctx, store, product, on_hand=7, version=2,
                     position=t2["position"])
    # The command service rebuilt its state from the log.
    r = api.post_txn(ctx, store, product, "sale", 8)
    expect_problem(r, 409, "insufficient_stock", "sale 8 of 7 after restart")
    t3 = api.txn(ctx, store, product, "sale", 7, on_hand=0, version=3)
    api.expect_stock(ctx, store, product, on_hand=0, version=3,
                     position=t3["position"])

    # The history: exactly the three accepted transactions, each once,
    # newest first, with the right deltas.
    items = api.history(ctx, store, product, position=t3["position"])
    got = [(api.txn_item_id(i), i.get("type"), i.get("quantity"),
            i.get("delta"), i.get("on_hand"), i.get("version")) for i in items]
    want = [(t3["transaction_id"], "sale", 7, -7, 0, 3),
            (t2["transaction_id"], "sale", 3, -3, 7, 2),
            (t1["transaction_id"], "receipt", 10, 10, 10, 1)]
    assert got == want, f"history {got} != {want}"
    # Same answer for the whole store (only this product was moved there).
    items = api.history(ctx, store, position=t3["position"])
    assert [api.txn_item_id(i) for i in items] == [w[0] for w in want], \
        f"store history {items}"
