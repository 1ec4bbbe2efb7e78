"""Business rules against the real stack (issue 12, part 2): reservations
that expire, low-stock crossings as events of their own, per-product
policies set by an admin, and the conservation check of the projector."""

import subprocess
import time

import api
import client
import test_changes
import test_event_contract
import test_read_side_more
from client import expect_json, expect_problem, get, post

psql = test_read_side_more.psql


def events(ctx, key, catalog=False):
    """The decoded events keyed by key, in offset order."""
    topic = ctx.env["STOCKFLOW_TOPIC_CATALOG" if catalog else
                    "STOCKFLOW_TOPIC_STOCK"]
    return [e for _, e in test_event_contract._events(ctx, topic, key)]


def until(fn, what, timeout=20):
    """Waits until fn() is true (client.eventually wants an assertion)."""
    def check():
        v = fn()
        assert v, f"{what}: not yet ({v!r})"
        return v
    return client.eventually(check, timeout=timeout, what=what)


def put_policy(ctx, product, body, headers=None):
    return client.request(ctx.cmd, "PUT", f"/v1/products/{product}/policy",
                          body, headers)


# ---- low-stock crossings ----

def test_crossings_once_per_crossing_on_topic_read_model_and_stream(ctx):
    store, pos = _new_store(ctx)
    product = api.create_product(ctx, reorder_level=5)["id"]
    stream = test_changes.Sse(ctx.qry, f"/v1/changes?store_id={store}&min_position={pos}")
    try:
        assert stream.status == 200, stream.status
        api.txn(ctx, store, product, "receipt", 10, on_hand=10, version=1)
        api.txn(ctx, store, product, "sale", 4, on_hand=6, version=2)
        s3 = api.txn(ctx, store, product, "sale", 2, on_hand=4, version=3)
        api.txn(ctx, store, product, "sale", 1, on_hand=3, version=4)
        r5 = api.txn(ctx, store, product, "receipt", 5, on_hand=8, version=5)
        got = []
        while len(got) < 7:
            kind, _, data = stream.next_event(timeout=15)
            assert kind == "change", (kind, data)
            got.append(data)
        try:
            extra = stream.next_event(timeout=1.0)
        except AssertionError:
            extra = None
        assert extra is None, f"a crossing was streamed twice: {extra}"
    finally:
        stream.close()
    causes = [(c["cause"], c["version"]) for c in got]
    moves = [x for x in causes if x[0] in ("receipt", "sale")]
    assert moves == [("receipt", 1), ("sale", 2), ("sale", 3), ("sale", 4),
                     ("receipt", 5)], causes
    crossings = [c for c in got if c["cause"] in ("below_reorder", "restored")]
    assert [(c["cause"], c["version"], c["on_hand"], c["available"])
            for c in crossings] == [("below_reorder", 3, 4, 4),
                                    ("restored", 5, 8, 8)], crossings
    # each crossing's change follows the change of the movement that crossed
    assert causes.index(("below_reorder", 3)) > causes.index(("sale", 3))
    assert causes.index(("restored", 5)) > causes.index(("receipt", 5))

    evs = events(ctx, store)
    types = [e["event_type"] for e in evs]
    assert types == ["StockMoved", "StockMoved", "StockMoved",
                     "StockBelowReorder", "StockMoved", "StockMoved",
                     "StockRestored"], types
    below, moved3 = evs[3], evs[2]
    assert moved3["event_id"] == s3["transaction_id"]
    assert below["command_id"] == moved3["command_id"], (below, moved3)
    assert below["stream_version"] == 3 and below["product_id"] == product
    assert below["payload"] == {"type": "StockBelowReorder", "on_hand": 4,
                                "reserved": 0, "reorder_level": 5}, below
    assert evs[6]["command_id"] == evs[5]["command_id"]
    assert evs[5]["event_id"] == r5["transaction_id"]
    rows = psql(ctx, "select kind, version, on_hand from stock_crossings "
                f"where store_id = '{store}' order by version")
    assert rows.split("\n") == ["below_reorder|3|4", "restored|5|8"], rows
    # the inventory row is what the movements made it
    api.expect_stock(ctx, store, product, on_hand=8, version=5,
                     position=r5["position"])


def _new_store(ctx):
    """A fresh store and the position of its creation."""
    st = api.create_store(ctx)
    return st["id"], st["position"]


def test_crossings_from_orders_batches_and_transfers(ctx):
    store = api.create_store(ctx)["id"]
    other = api.create_store(ctx)["id"]
    product = api.create_product(ctx, reorder_level=5)["id"]
    quiet = api.create_product(ctx, reorder_level=0)["id"]
    api.txn(ctx, store, product, "receipt", 8, on_hand=8, version=1)
    api.txn(ctx, store, quiet, "receipt", 1, on_hand=1, version=1)
    # an order reserving 4 leaves 4 available: below; its cancel restores
    o = expect_json(post(ctx.cmd, f"/v1/stores/{store}/orders",
                         {"lines": [{"product_id": product, "quantity": 4},
                                    {"product_id": quiet, "quantity": 1}]}),
                    201)
    expect_json(post(ctx.cmd, f"/v1/orders/{o['order_id']}/cancel"), 200)
    # a batch whose second sale crosses
    r = post(ctx.cmd, "/v1/batches", {"transactions": [
        {"store_id": store, "product_id": product, "type": "sale",
         "quantity": 2},
        {"store_id": store, "product_id": product, "type": "sale",
         "quantity": 2}]})
    body = expect_json(r, 200, "batch")
    assert [x["status"] for x in body["results"]] == [201, 201], body
    # a transfer: the source (4 -> 1) is already below, the destination
    # (0 -> 3) crosses at its first event
    expect_json(post(ctx.cmd, "/v1/transfers",
                     {"from_store_id": store, "to_store_id": other,
                      "product_id": product, "quantity": 3}), 201)
    types = [(e["event_type"], e["stream_version"]) for e in events(ctx, store)
             if e["product_id"] in (product, None)]
    assert types == [("StockMoved", 1), ("OrderPlaced", 1),
                     ("StockBelowReorder", 2), ("OrderCancelled", 2),
                     ("StockRestored", 3), ("StockMoved", 4),
                     ("StockMoved", 5), ("StockBelowReorder", 5),
                     ("TransferOut", 6)], types
    # the product without a reorder level never crosses
    assert not [e for e in events(ctx, store)
                if e["event_type"].startswith("Stock") and
                e["event_type"] != "StockMoved" and e["product_id"] == quiet]
    dest = [e["event_type"] for e in events(ctx, other)]
    assert dest == ["TransferIn", "StockBelowReorder"], dest


# ---- policies ----

def test_policy_set_enforced_and_rebuilt(ctx):
    store = api.create_store(ctx)["id"]
    product = api.create_product(ctx, reorder_level=0)["id"]
    api.txn(ctx, store, product, "receipt", 100, on_hand=100, version=1)
    r = put_policy(ctx, product, {"max_sale_quantity": 5,
                                  "max_negative_adjustment": 3,
                                  "count_requires_reason": True})
    body = expect_json(r, 200, "put policy")
    assert body["policy"] == {"max_sale_quantity": 5,
                              "max_negative_adjustment": 3,
                              "count_requires_reason": True}, body
    assert body["version"] == 2 and body["id"] == product, body
    client.expect_position(body["position"])

    def refused(type_, q, code, reason=None):
        r = api.post_txn(ctx, store, product, type_, q, reason=reason)
        p = expect_problem(r, 409, code, f"{type_} {q}")
        assert "polic" in p["detail"] or "max_" in p["detail"], p

    refused("sale", 6, "policy_max_sale_quantity")
    api.txn(ctx, store, product, "sale", 5, on_hand=95, version=2)
    refused("adjustment", -4, "policy_max_negative_adjustment", reason="lost")
    api.txn(ctx, store, product, "adjustment", -3, on_hand=92, version=3,
            reason="lost")
    api.txn(ctx, store, product, "adjustment", 50, on_hand=142, version=4,
            reason="found")
    refused("count", 140, "policy_reason_required")
    api.txn(ctx, store, product, "count", 140, on_hand=140, version=5,
            delta=-2, reason="audit")
    # batch items and the bus follow the same rules
    r = post(ctx.cmd, "/v1/batches", {"transactions": [
        {"store_id": store, "product_id": product, "type": "sale",
         "quantity": 7}]})
    item = expect_json(r, 200, "batch")["results"][0]
    assert item["status"] == 409 and \
        item["body"]["code"] == "policy_max_sale_quantity", item

    # the policy is catalog data: on the catalog topic, in the read model,
    # and rebuilt from the log by a restarted command service
    evs = events(ctx, product, catalog=True)
    assert [e["event_type"] for e in evs] == ["ProductCreated",
                                              "ProductPolicySet"], evs
    assert evs[1]["payload"] == {
        "type": "ProductPolicySet", "product_id": product,
        "max_sale_quantity": 5, "max_negative_adjustment": 3,
        "count_requires_reason": True}, evs[1]
    until(lambda: psql(ctx, "select max_sale_quantity, "
                       "max_negative_adjustment, count_requires_reason, "
                       f"version from products where id = '{product}'")
          == "5|3|t|2", "policy in the products read model")
    until(lambda: get(ctx.qry, f"/v1/products/{product}").body.get("policy")
          == {"max_sale_quantity": 5, "max_negative_adjustment": 3,
              "count_requires_reason": True}, "policy on the query side")
    ctx.stack.restart(["command"])
    refused("sale", 6, "policy_max_sale_quantity")
    # a new policy replaces the whole policy
    body = expect_json(put_policy(ctx, product, {"max_sale_quantity": None}),
                       200)
    assert body["policy"] == {"max_sale_quantity": None,
                              "max_negative_adjustment": None,
                              "count_requires_reason": False}, body
    api.txn(ctx, store, product, "sale", 40, on_hand=100, version=6)
    api.txn(ctx, store, product, "count", 90, on_hand=90, version=7,
            delta=-10)


def test_policy_bad_requests(ctx):
    product = api.create_product(ctx)["id"]
    for bad, what in (({"max_sale_quantity": 0}, "zero max sale"),
                      ({"max_sale_quantity": "5"}, "string"),
                      ({"max_sale_quantity": 1.5}, "real"),
                      ({"max_negative_adjustment": -1}, "negative bound"),
                      ({"count_requires_reason": "yes"}, "not a boolean"),
                      ({"max_sale": 5}, "unknown key")):
        expect_problem(put_policy(ctx, product, bad), 422,
                       "validation_failed", what)
    expect_problem(put_policy(ctx, client.new_uuid(), {}), 404, "not_found")
    expect_problem(put_policy(ctx, "not-a-uuid", {}), 404, "not_found")
    r = client.request(ctx.cmd, "PUT", f"/v1/products/{product}/policy",
                       "{", {"Content-Type": "application/json"})
    expect_problem(r, 400, "malformed_json")
    r = client.request(ctx.cmd, "PUT", f"/v1/products/{product}/policy",
                       "{}", {"Content-Type": "text/plain"})
    expect_problem(r, 415)
    if ctx.auth_enabled():
        expect_problem(put_policy(ctx, product, {}, client.NO_AUTH), 401)
    # nothing was written by any of them
    evs = events(ctx, product, catalog=True)
    assert [e["event_type"] for e in evs] == ["ProductCreated"], evs


# ---- expiry of reservations ----

def _command_with_ttl(ctx, ttl):
    """Restarts the command service with STOCKFLOW_ORDER_TTL_S = ttl (None:
    as the run configured it); returns the service."""
    svc = ctx.stack["command"]
    if not hasattr(svc, "_env_before_ttl"):
        svc._env_before_ttl = svc.env
    svc.env = dict(svc._env_before_ttl)
    if ttl is not None:
        svc.env["STOCKFLOW_ORDER_TTL_S"] = str(ttl)
    svc.kill()
    svc.start()
    svc.wait_ready(60)
    return svc


def _order(ctx, order):
    """The order (a placement's answer) as the read model has it, read at
    or after the placement's position: a read that comes before the
    projector applied the placement would be 404."""
    return expect_json(get(ctx.qry, client.with_position(
        f"/v1/orders/{order['order_id']}", order["position"])), 200, "order")


def test_reservations_expire_and_survive_a_restart(ctx):
    store = api.create_store(ctx)["id"]
    product = api.create_product(ctx, reorder_level=0)["id"]
    api.txn(ctx, store, product, "receipt", 10, on_hand=10, version=1)
    svc = _command_with_ttl(ctx, 2)
    try:
        def place(q):
            return expect_json(post(ctx.cmd, f"/v1/stores/{store}/orders",
                                    {"lines": [{"product_id": product,
                                                "quantity": q}]}), 201)
        a, b, c = place(4), place(3), place(2)
        expect_json(post(ctx.cmd, f"/v1/orders/{b['order_id']}/fulfil"), 200)
        expect_json(post(ctx.cmd, f"/v1/orders/{c['order_id']}/cancel"), 200)
        until(lambda: _order(ctx, a)["status"] == "cancelled",
              "order A expired")
        oa = _order(ctx, a)
        assert oa["cancel_cause"] == "expired", oa
        ob, oc = _order(ctx, b), _order(ctx, c)
        assert (ob["status"], ob["cancel_cause"]) == ("fulfilled", None), ob
        assert (oc["status"], oc["cancel_cause"]) == ("cancelled", None), oc
        # the expiry released A's 4 units: fulfil B took 3 of 10
        api.expect_stock(ctx, store, product, on_hand=7, version=7)
        # a second fulfil or cancel of the expired order is refused
        expect_problem(post(ctx.cmd, f"/v1/orders/{a['order_id']}/fulfil"),
                       409, "invalid_state")

        # an order placed, then the service killed before its time: the
        # restarted service expires it from the log's placement time
        d = place(1)
        svc.kill()
        time.sleep(2.5)
        svc.start()
        svc.wait_ready(60)
        until(lambda: _order(ctx, d).get("cancel_cause") ==
              "expired", "order D expired after a restart")
        time.sleep(1.5)  # more sweeps: nothing expires twice
    finally:
        _command_with_ttl(ctx, None)
    evs = events(ctx, store)
    cancels = [(e["payload"]["order_id"], e["payload"].get("cause"))
               for e in evs if e["event_type"] == "OrderCancelled"]
    assert sorted(cancels) == sorted([(a["order_id"], "expired"),
                                      (c["order_id"], None),
                                      (d["order_id"], "expired")]), cancels
    expired = [e for e in evs if e["event_type"] == "OrderCancelled" and
               e["payload"].get("cause") == "expired"]
    assert all(e["actor"] is None and e["idempotency_key"] is None
               for e in expired), expired
    hist = psql(ctx, "select count(*) from transactions where store_id = "
                f"'{store}' and type = 'order_expired'")
    assert hist == "2", hist
    # with the ttl back at its default (0), nothing expires
    e = expect_json(post(ctx.cmd, f"/v1/stores/{store}/orders",
                         {"lines": [{"product_id": product, "quantity": 1}]}),
                    201)
    time.sleep(3)
    assert _order(ctx, e)["status"] == "placed"


# ---- the conservation check ----

def _check(ctx):
    """Runs stockflow-projector --check with the projector's settings;
    returns (exit status, stdout)."""
    svc = ctx.stack["projector"]
    out = subprocess.run([svc.binary, "--check"], env=svc.env,
                         stdin=subprocess.DEVNULL, capture_output=True,
                         timeout=120)
    return out.returncode, out.stdout.decode("utf-8", "replace") + \
        out.stderr.decode("utf-8", "replace")[-2000:]


def test_conservation_check_passes_and_catches_a_tampered_row(ctx):
    store = api.create_store(ctx)["id"]
    other = api.create_store(ctx)["id"]
    product = api.create_product(ctx)["id"]
    api.txn(ctx, store, product, "receipt", 20, on_hand=20, version=1)
    api.txn(ctx, store, product, "sale", 3, on_hand=17, version=2)
    expect_json(post(ctx.cmd, "/v1/transfers",
                     {"from_store_id": store, "to_store_id": other,
                      "product_id": product, "quantity": 5}), 201)
    o = expect_json(post(ctx.cmd, f"/v1/stores/{store}/orders",
                         {"lines": [{"product_id": product, "quantity": 2}]}),
                    201)
    r = expect_json(post(ctx.cmd, f"/v1/orders/{o['order_id']}/fulfil"), 200)
    # the check reads the read model at the projector's offsets, so it
    # holds while the projector is behind; wait anyway so that the row
    # tampered with below exists
    api.expect_stock(ctx, store, product, on_hand=10, version=5,
                     position=r["position"])
    code, text = _check(ctx)
    assert code == 0, f"check on a sound read model: exit {code}\n{text}"
    assert "check: ok" in text and "stores " in text, text

    before = psql(ctx, "select on_hand from inventory where store_id = "
                  f"'{store}' and product_id = '{product}'")
    assert before == "10", before
    psql(ctx, "update inventory set on_hand = on_hand + 1 where store_id = "
         f"'{store}' and product_id = '{product}'")
    try:
        code, text = _check(ctx)
        assert code == 1, f"check on a tampered row: exit {code}\n{text}"
        lines = [x for x in text.splitlines() if x.startswith("difference:")]
        assert any(store in x and product in x and "on_hand 11" in x and
                   "10 and 0 from the log" in x for x in lines), text
        assert any(f"product {product}" in x for x in lines), text
        assert "check: DIFFERENCES" in text, text
    finally:
        psql(ctx, f"update inventory set on_hand = {before} where store_id ="
             f" '{store}' and product_id = '{product}'")
    code, text = _check(ctx)
    assert code == 0, f"check after the restore: exit {code}\n{text}"
    # a row the read model lost is a difference too
    psql(ctx, "delete from inventory where store_id = "
         f"'{other}' and product_id = '{product}'")
    try:
        code, text = _check(ctx)
        assert code == 1 and other in text and "lacks the row" in text, text
    finally:
        psql(ctx, "insert into inventory (store_id, product_id, on_hand, "
             f"reserved, version, updated_at) values ('{other}', "
             f"'{product}', 5, 0, 1, now())")
    code, text = _check(ctx)
    assert code == 0, f"check after the second restore: exit {code}\n{text}"


def test_conservation_check_errors(ctx):
    svc = ctx.stack["projector"]
    env = dict(svc.env, STOCKFLOW_PG_DSN="host=127.0.0.1 port=1 "
               "dbname=none connect_timeout=2")
    out = subprocess.run([svc.binary, "--check"], env=env,
                         stdin=subprocess.DEVNULL, capture_output=True,
                         timeout=60)
    assert out.returncode == 2, (out.returncode, out.stderr[-500:])
    env = dict(svc.env, STOCKFLOW_TOPIC_STOCK="no.such.topic")
    out = subprocess.run([svc.binary, "--check"], env=env,
                         stdin=subprocess.DEVNULL, capture_output=True,
                         timeout=60)
    assert out.returncode == 2, (out.returncode, out.stderr[-500:])
