"""The event log is a public contract: events read from the topics decode
with a non-C Avro implementation (fastavro, tests/tools/avro_decode.py)
against schemas/, and carry the CloudEvents Kafka-binding headers."""

import api
import client
import eventlog
from client import expect_json, post


def _events(ctx, topic, key):
    """(headers, decoded event) of every message of topic with key, read
    committed, in offset order per partition."""
    return [(m.headers, m.event)
            for m in eventlog.read_topic(ctx, topic, keys={key})]


def test_events_decode_with_fastavro_and_carry_cloudevents(ctx):
    store = api.create_store(ctx)["id"]
    product = api.create_product(ctx, reorder_level=0)["id"]  # no crossings
    other = api.create_store(ctx)["id"]
    r1 = api.txn(ctx, store, product, "receipt", 5, on_hand=5, version=1)
    r2 = expect_json(post(ctx.cmd, "/v1/transfers",
                          {"from_store_id": store, "to_store_id": other,
                           "product_id": product, "quantity": 2}), 201)
    o = expect_json(post(ctx.cmd, f"/v1/stores/{store}/orders",
                         {"lines": [{"product_id": product, "quantity": 1}]}),
                    201)
    evs = _events(ctx, ctx.env["STOCKFLOW_TOPIC_STOCK"], store)
    types = [e["event_type"] for _, e in evs]
    assert types == ["StockMoved", "TransferOut", "OrderPlaced"], types
    heads = [h for h, _ in evs]
    for h, e in evs:
        assert h.get("ce_specversion") == "1.0", h
        assert h.get("ce_id") == e["event_id"], (h, e["event_id"])
        assert h.get("ce_type") == "stockflow." + e["event_type"], h
        assert h.get("content-type") == "application/avro", h
        assert e["store_id"] == store, e
        client.expect_uuid(e["command_id"], "command_id")
    moved = evs[0][1]
    assert moved["event_id"] == r1["transaction_id"], moved
    assert moved["product_id"] == product and moved["stream_version"] == 1
    p = moved["payload"]
    assert (p["movement"], p["quantity"], p["delta"], p["on_hand"],
            p["reserved"]) == ("receipt", 5, 5, 5, 0), p
    out = evs[1][1]["payload"]
    assert (out["delta"], out["on_hand"], out["counterpart_store_id"]) == \
        (-2, 3, other), out
    placed = evs[2][1]["payload"]
    assert placed["order_id"] == o["order_id"], placed
    assert placed["lines"][0]["product_id"] == product and \
        placed["lines"][0]["reserved"] == 1, placed
    assert heads[0].get("ce_subject") == \
        f"stores/{store}/products/{product}", heads[0]
    # the other leg, in the destination store's partition
    legs = _events(ctx, ctx.env["STOCKFLOW_TOPIC_STOCK"], other)
    assert [e["event_type"] for _, e in legs] == ["TransferIn"], legs
    assert legs[0][1]["payload"]["transfer_id"] == r2["transfer_id"]
    # the catalog event of the store
    cat = _events(ctx, ctx.env["STOCKFLOW_TOPIC_CATALOG"], store)
    assert [e["event_type"] for _, e in cat] == ["StoreOpened"], cat
