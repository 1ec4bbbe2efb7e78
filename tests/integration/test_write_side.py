"""The write side under pressure: concurrent oversell attempts, orders
against sales, idempotent retries (also across a restart), If-Match,
bulk batches, a crash during load, and fencing of a second writer."""

import os
import signal
import threading
import time

import api
import client
import stack as stackmod
from client import expect_json, expect_problem, get, post


def _responses(results):
    errors = [r for r in results if not isinstance(r, client.Response)]
    assert not errors, f"{len(errors)} requests failed: {errors[:3]}"
    return results


def test_200_concurrent_sales_of_100(ctx):
    store, product = api.store_and_product(ctx)
    api.txn(ctx, store, product, "receipt", 100, on_hand=100, version=1)
    res = _responses(client.parallel(
        200, lambda i: api.post_txn(ctx, store, product, "sale", 1)))
    ok = [r for r in res if r.status == 201]
    refused = [r for r in res if r.status == 409]
    assert (len(ok), len(refused)) == (100, 100), \
        f"{len(ok)} accepted, {len(refused)} refused, others " \
        f"{[r for r in res if r.status not in (201, 409)][:3]}"
    for r in refused:
        expect_problem(r, 409, "insufficient_stock")
    last = max(ok, key=lambda r: r.body["version"]).body
    assert last["on_hand"] == 0 and last["version"] == 101, last
    api.expect_stock(ctx, store, product, on_hand=0, version=101,
                     position=last["position"])
    hist = api.history(ctx, store, product, type_="sale",
                       position=last["position"])
    assert len(hist) == 100, f"history has {len(hist)} sales"


def _place_order(ctx, store, lines, headers=None):
    return post(ctx.cmd, f"/v1/stores/{store}/orders",
                {"lines": [{"product_id": p, "quantity": q} for p, q in lines]},
                headers)


def test_orders_and_sales_never_oversell(ctx):
    store, product = api.store_and_product(ctx)
    api.txn(ctx, store, product, "receipt", 30, on_hand=30, version=1)

    def one(i):
        if i % 2:
            return _place_order(ctx, store, [(product, 2)])
        return api.post_txn(ctx, store, product, "sale", 2)

    res = _responses(client.parallel(40, one))
    ok = [r for r in res if r.status == 201]
    assert len(ok) == 15, f"{len(ok)} of 40 accepted (30 units / 2)"
    for r in res:
        if r.status != 201:
            expect_problem(r, 409, "insufficient_stock")
    last = max(ok, key=lambda r: int(r.body["position"].split("-")[-1])).body
    row = expect_json(get(ctx.qry, client.with_position(
        f"/v1/stores/{store}/inventory/{product}", last["position"])), 200)
    orders = [r for r in ok if "order_id" in r.body]
    sales = [r for r in ok if "transaction_id" in r.body]
    assert row["reserved"] == 2 * len(orders), row
    assert row["on_hand"] == 30 - 2 * len(sales), row
    assert row["available"] == 0, row


def test_order_place_fulfil_cancel(ctx):
    store, product = api.store_and_product(ctx)
    _, p2 = None, api.create_product(ctx)["id"]
    api.txn(ctx, store, product, "receipt", 10, on_hand=10, version=1)
    # all lines or none: p2 has no stock, so nothing is reserved
    r = _place_order(ctx, store, [(product, 3), (p2, 1)])
    prob = expect_problem(r, 409, "insufficient_stock")
    assert [l["product_id"] for l in prob.get("lines", [])] == [p2], prob
    r = _place_order(ctx, store, [(product, 3)])
    order = expect_json(r, 201, "place")
    assert order["status"] == "placed" and order["lines"] == [
        {"product_id": product, "quantity": 3}], order
    api.expect_stock(ctx, store, product, on_hand=10, version=2, reserved=3,
                     position=order["position"])
    # the reservation holds: a sale of 8 of 10 on hand is refused
    expect_problem(api.post_txn(ctx, store, product, "sale", 8), 409,
                   "insufficient_stock")
    f = expect_json(post(ctx.cmd, f"/v1/orders/{order['order_id']}/fulfil"),
                    200, "fulfil")
    assert f["status"] == "fulfilled", f
    api.expect_stock(ctx, store, product, on_hand=7, version=3, reserved=0,
                     position=f["position"])
    expect_problem(post(ctx.cmd, f"/v1/orders/{order['order_id']}/fulfil"),
                   409, "invalid_state")
    expect_problem(post(ctx.cmd, f"/v1/orders/{order['order_id']}/cancel"),
                   409, "invalid_state")
    # cancel releases
    o2 = expect_json(_place_order(ctx, store, [(product, 7)]), 201)
    expect_problem(api.post_txn(ctx, store, product, "sale", 1), 409,
                   "insufficient_stock")
    c = expect_json(post(ctx.cmd, f"/v1/orders/{o2['order_id']}/cancel"), 200)
    assert c["status"] == "cancelled", c
    api.txn(ctx, store, product, "sale", 7, on_hand=0, version=6)
    # bad input
    expect_problem(post(ctx.cmd, f"/v1/orders/{client.new_uuid()}/fulfil"),
                   404, "not_found")
    expect_problem(_place_order(ctx, store, []), 422, "validation_failed")
    expect_problem(_place_order(ctx, store, [(product, 1), (product, 1)]), 422,
                   "validation_failed")
    expect_problem(_place_order(ctx, store, [(product, 0)]), 422,
                   "validation_failed")


def test_idempotent_replay_survives_restart(ctx):
    store, product = api.store_and_product(ctx)
    key = {"Idempotency-Key": client.unique("idem")}
    first = api.post_txn(ctx, store, product, "receipt", 5, headers=key)
    expect_json(first, 201, "first")
    again = api.post_txn(ctx, store, product, "receipt", 5, headers=key)
    assert again.status == 201 and again.raw == first.raw, (first, again)
    assert again.headers.get("idempotent-replayed") == "true", again.headers
    expect_problem(api.post_txn(ctx, store, product, "receipt", 6,
                                headers=key), 422, "idempotency_key_reused")
    # a refusal is remembered too
    key2 = {"Idempotency-Key": client.unique("idem")}
    no = api.post_txn(ctx, store, product, "sale", 50, headers=key2)
    expect_problem(no, 409, "insufficient_stock")
    api.txn(ctx, store, product, "receipt", 100, on_hand=105, version=2)
    no2 = api.post_txn(ctx, store, product, "sale", 50, headers=key2)
    assert no2.status == 409 and no2.raw == no.raw, no2
    # after a crash, the committed command's answer comes back byte for byte
    ctx.stack.kill(("command",))
    ctx.stack.start(("command",))
    after = api.post_txn(ctx, store, product, "receipt", 5, headers=key)
    assert after.status == 201 and after.raw == first.raw, (first.raw, after.raw)
    assert after.headers.get("idempotent-replayed") == "true"
    api.expect_stock(ctx, store, product, on_hand=105, version=2,
                     position=first.body["position"])
    hist = api.history(ctx, store, product, type_="receipt",
                       position=first.body["position"])
    assert len(hist) == 2, f"the retried receipt was applied twice: {hist}"
    expect_problem(post(ctx.cmd, api.txn_path(store),
                        {"product_id": product, "type": "receipt",
                         "quantity": 1},
                        {"Idempotency-Key": "x" * 256}), 400,
                   "bad_idempotency_key")


def test_stale_if_match_is_412(ctx):
    store, product = api.store_and_product(ctx)
    api.txn(ctx, store, product, "receipt", 5, on_hand=5, version=1)
    r = api.post_txn(ctx, store, product, "sale", 1,
                     headers={"If-Match": '"1"'})
    expect_json(r, 201, "If-Match current")
    r = api.post_txn(ctx, store, product, "sale", 1,
                     headers={"If-Match": '"1"'})
    expect_problem(r, 412, "version_conflict")
    assert r.headers.get("etag") == '"2"', r.headers
    expect_problem(api.post_txn(ctx, store, product, "sale", 1,
                                headers={"If-Match": "nope"}), 422,
                   "validation_failed")


def test_batch_of_1000_with_invalid_lines(ctx):
    store, product = api.store_and_product(ctx)
    items = []
    for i in range(1000):
        if i % 100 == 7:
            items.append({"store_id": store, "product_id": product,
                          "type": "sale", "quantity": 10 ** 6})
        elif i % 100 == 8:
            items.append({"store_id": store, "product_id": product,
                          "type": "bogus", "quantity": 1})
        else:
            items.append({"store_id": store, "product_id": product,
                          "type": "receipt", "quantity": 1})
    r = post(ctx.cmd, "/v1/batches", {"transactions": items})
    body = expect_json(r, 200, "batch")
    res = body["results"]
    assert [x["index"] for x in res] == list(range(1000))
    ok = [x for x in res if x["status"] == 201]
    assert len(ok) == 980, len(ok)
    for x in res:
        if x["index"] % 100 == 7:
            assert x["status"] == 409 and \
                x["body"]["code"] == "insufficient_stock", x
        elif x["index"] % 100 == 8:
            assert x["status"] == 422 and \
                x["body"]["code"] == "validation_failed", x
    assert ok[-1]["body"]["on_hand"] == 980, ok[-1]
    api.expect_stock(ctx, store, product, on_hand=980, version=980,
                     position=ok[-1]["body"]["position"])


def test_atomic_batch_all_or_none(ctx):
    store, product = api.store_and_product(ctx)
    api.txn(ctx, store, product, "receipt", 3, on_hand=3, version=1)
    items = [{"store_id": store, "product_id": product, "type": "sale",
              "quantity": 1} for _ in range(5)]
    r = post(ctx.cmd, "/v1/batches?atomic=true", {"transactions": items})
    prob = expect_problem(r, 409, "batch_rejected")
    codes = [x["body"]["code"] for x in prob["results"]]
    assert codes == ["not_applied"] * 3 + ["insufficient_stock"] * 2, codes
    # nothing was written: the next sale sees version 1 and 3 on hand
    api.txn(ctx, store, product, "sale", 3, on_hand=0, version=2)


def test_crash_during_load_loses_and_repeats_nothing(ctx):
    store, product = api.store_and_product(ctx)
    keys = [client.unique("crash") for _ in range(120)]
    acked = {}
    stop = threading.Event()

    def writer(w):
        for k in keys[w::4]:
            if stop.is_set():
                return
            for _ in range(200):
                try:
                    r = api.post_txn(ctx, store, product, "receipt", 1,
                                     headers={"Idempotency-Key": k})
                    if r.status == 201:
                        acked[k] = r.body["transaction_id"]
                        break
                except OSError:
                    pass
                time.sleep(0.1)

    threads = [threading.Thread(target=writer, args=(w,), daemon=True)
               for w in range(4)]
    for t in threads:
        t.start()
    time.sleep(1.0)
    ctx.stack.kill(("command",))
    ctx.stack.start(("command",))
    for t in threads:
        t.join(180)
    assert len(acked) == len(keys), f"only {len(acked)} of {len(keys)} acked"
    assert len(set(acked.values())) == len(keys), "two keys share a transaction"
    # every acknowledged command is in the log exactly once
    last = api.txn(ctx, store, product, "receipt", 1, on_hand=len(keys) + 1,
                   version=len(keys) + 1)
    hist = api.history(ctx, store, product, position=last["position"])
    ids = [api.txn_item_id(i) for i in hist]
    assert len(ids) == len(set(ids)) == len(keys) + 1, len(ids)
    assert set(acked.values()) <= set(ids), "an acknowledged receipt is missing"


def test_second_writer_fences_the_first(ctx):
    first = ctx.stack["command"]
    env = dict(first.env)
    port = first.port + 50
    env["STOCKFLOW_COMMAND_LISTEN"] = f"127.0.0.1:{port}"
    env["STOCKFLOW_COMMAND_INTAKE"] = "false"  # one bus consumer: the main one
    state = os.path.dirname(os.path.dirname(first.log_path))
    second = stackmod.Service("command", first.binary, env, state)
    second.log_path = os.path.join(state, "logs", "command-fencer.log")
    second.pid_path = os.path.join(state, "pids", "command-fencer.pid")
    second.port = port
    store, product = api.store_and_product(ctx)
    api.txn(ctx, store, product, "receipt", 2, on_hand=2, version=1)
    second.start()
    try:
        second.wait_ready(90)
        # The first instance's next commit is fenced: it answers 503, says
        # so in its log, and exits non-zero (a supervisor restarts it); the
        # second one takes writes.
        r = api.post_txn(ctx, store, product, "receipt", 1)
        assert r.status == 503, f"first instance still writes: {r!r}"
        assert r.headers.get("retry-after"), "503 without Retry-After"

        def exited():
            code = first.exit_code()
            assert code is not None, "the fenced instance still runs"
            return code
        code = client.eventually(exited, timeout=30,
                                 what="fenced instance exits")
        assert code not in (0, None) and code > 0, \
            f"fenced instance exited with {code}, want non-zero"
        text = first.log_text().lower()
        assert "fenced" in text, "no fencing log line"
        assert "supervisor" in text, "the log does not say why it exits"
        r = post(port, api.txn_path(store),
                 {"product_id": product, "type": "receipt", "quantity": 1})
        expect_json(r, 201, "second instance writes")
    finally:
        second.stop()
        first.kill()  # reaps the exited process (or kills a survivor)
        first.start()
        first.wait_ready(90)
