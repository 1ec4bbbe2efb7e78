"""Idempotency-Key on writes: the same key with the same body answers the
first response again (status and body, with Idempotent-Replayed: true) and
has no further effect, also after the command service was killed and
started again; the same key with another body is refused."""

import api
import client
from client import expect_json, expect_problem, post


def key_hdr(key):
    return {"Idempotency-Key": key}


def test_replay_reuse_and_restart(ctx):
    store, product = api.store_and_product(ctx)
    key = client.unique("idem")
    first = api.txn(ctx, store, product, "receipt", 5, on_hand=5, version=1,
                    headers=key_hdr(key))
    assert "idempotent-replayed" not in \
        {k.lower() for k in first}, "a first answer is not a replay"

    def replay():
        r = api.post_txn(ctx, store, product, "receipt", 5,
                         headers=key_hdr(key))
        body = expect_json(r, 201, "replay")
        assert r.headers.get("idempotent-replayed") == "true", \
            f"no Idempotent-Replayed: true on a replay: {r.headers}"
        assert body == first, f"replayed body differs:\n{body}\n{first}"
    replay()
    r = api.post_txn(ctx, store, product, "receipt", 6, headers=key_hdr(key))
    expect_problem(r, 422, "idempotency_key_reused", "same key, other body")

    # A refusal is an answer too: replayed as it was, even once the stock
    # would allow the sale.
    k2 = client.unique("idem")
    r = api.post_txn(ctx, store, product, "sale", 50, headers=key_hdr(k2))
    expect_problem(r, 409, "insufficient_stock", "sale 50 of 5")
    api.txn(ctx, store, product, "receipt", 100, on_hand=105, version=2)
    r = api.post_txn(ctx, store, product, "sale", 50, headers=key_hdr(k2))
    expect_problem(r, 409, "insufficient_stock", "replayed refusal")
    assert r.headers.get("idempotent-replayed") == "true", r.headers

    # Keys survive a crash of the command service (within the retention).
    ctx.stack.restart(["command"])
    replay()
    last = api.txn(ctx, store, product, "sale", 5, on_hand=100, version=3)
    api.expect_stock(ctx, store, product, on_hand=100, version=3,
                     position=last["position"])
    items = api.history(ctx, store, product, position=last["position"])
    assert [(i.get("type"), i.get("quantity")) for i in items] == \
        [("sale", 5), ("receipt", 100), ("receipt", 5)], items


def test_catalog_replay_and_bad_keys(ctx):
    key = client.unique("idem")
    body = api.product_body()
    r1 = post(ctx.cmd, "/v1/products", body, headers=key_hdr(key))
    p1 = expect_json(r1, 201, "create product with a key")
    r2 = post(ctx.cmd, "/v1/products", body, headers=key_hdr(key))
    p2 = expect_json(r2, 201, "replayed create (not duplicate_sku)")
    assert p2 == p1 and r2.headers.get("idempotent-replayed") == "true", \
        (p1, p2, r2.headers)
    store, product = api.store_and_product(ctx)
    for what, k in (("256 characters", "k" * 256), ("empty", ""),
                    ("non-ASCII", "kéy")):
        r = api.post_txn(ctx, store, product, "receipt", 1,
                         headers=key_hdr(k.encode().decode("latin-1")))
        expect_problem(r, 400, "bad_idempotency_key", f"key {what}")
    # A control character makes the header itself malformed: the HTTP
    # layer refuses the request before the handler sees it.
    r = api.post_txn(ctx, store, product, "receipt", 1,
                     headers=key_hdr("a\x01b"))
    expect_problem(r, 400, ("bad_request", "bad_idempotency_key"),
                   "key with a control character")
    ok = api.txn(ctx, store, product, "receipt", 1, on_hand=1, version=1,
                 headers=key_hdr("k" * 255))
    assert ok["quantity"] == 1
