"""Bus intake: Avro StockCommand records published on the commands topic go
through the same rules as the HTTP API, and each outcome is published on
the results topic. The commands are written with fastavro (a non-C Avro
implementation) against schemas/command.avsc and published with kcat."""

import io
import json
import os
import subprocess
import tempfile

import api
import client
from client import get

HERE = os.path.dirname(os.path.abspath(__file__))
SCHEMA = os.path.join(HERE, "..", "..", "schemas", "command.avsc")


def _codec():
    import fastavro
    from fastavro import schema as s
    raw = json.load(open(SCHEMA))
    parsed = s.parse_schema(raw)
    fp = bytes.fromhex(s.fingerprint(s.to_parsing_canonical_form(raw),
                                     "CRC-64-AVRO"))
    return fastavro, parsed, fp


def _encode(store, product, movement, quantity, command_id=None, reason=None,
            correlation=None):
    fastavro, parsed, fp = _codec()
    rec = {"command_id": command_id or client.new_uuid(), "store_id": store,
           "product_id": product, "movement": movement, "quantity": quantity,
           "reason": reason, "reference": "bus-test", "actor": None,
           "correlation_id": correlation}
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, parsed, rec)
    return rec["command_id"], b"\xc3\x01" + fp + buf.getvalue()


def _publish(ctx, key, payload):
    with tempfile.NamedTemporaryFile(delete=False) as f:
        f.write(payload)
        path = f.name
    try:
        out = subprocess.run(
            ["kcat", "-P", "-b", ctx.env["STOCKFLOW_KAFKA_BROKERS"], "-t",
             ctx.env["STOCKFLOW_TOPIC_COMMANDS"], "-k", key, path],
            capture_output=True, timeout=30)
        assert out.returncode == 0, f"kcat -P: {out.stderr!r}"
    finally:
        os.unlink(path)


def _results(ctx):
    out = subprocess.run(
        ["kcat", "-C", "-b", ctx.env["STOCKFLOW_KAFKA_BROKERS"], "-t",
         ctx.env["STOCKFLOW_TOPIC_COMMAND_RESULTS"], "-o", "beginning", "-e",
         "-q", "-f", "%s\n"], capture_output=True, timeout=60)
    assert out.returncode == 0, f"kcat -C: {out.stderr!r}"
    return [json.loads(line) for line in out.stdout.decode().splitlines()
            if line.strip()]


def _result_of(ctx, command_id, count=1):
    def find():
        got = [r for r in _results(ctx) if r.get("command_id") == command_id]
        assert len(got) >= count, f"{len(got)} results for {command_id}"
        return got
    return client.eventually(find, timeout=30, interval=0.3,
                             what=f"result of {command_id}")


def _require_intake(ctx):
    assert ctx.env.get("STOCKFLOW_TOPIC_COMMANDS"), \
        "tests/run.sh passes no STOCKFLOW_TOPIC_COMMANDS"


def test_bus_command_applies_and_publishes_its_result(ctx):
    _require_intake(ctx)
    store, product = api.store_and_product(ctx)
    cid, payload = _encode(store, product, "receipt", 7, correlation="c-1")
    _publish(ctx, store, payload)
    res = _result_of(ctx, cid)[0]
    assert res["status"] == 201, res
    assert res["correlation_id"] == "c-1", res
    body = res["body"]
    assert (body["store_id"], body["product_id"], body["type"],
            body["quantity"], body["on_hand"], body["version"]) == \
        (store, product, "receipt", 7, 7, 1), body
    client.expect_position(body["position"])
    api.expect_stock(ctx, store, product, on_hand=7, version=1,
                     position=body["position"])
    # the same rules as the HTTP API: an oversell is refused
    cid2, payload2 = _encode(store, product, "sale", 8)
    _publish(ctx, store, payload2)
    res2 = _result_of(ctx, cid2)[0]
    assert res2["status"] == 409 and \
        res2["body"]["code"] == "insufficient_stock", res2
    # and the HTTP side sees the bus's write
    api.txn(ctx, store, product, "sale", 7, on_hand=0, version=2)


def test_redelivered_command_is_applied_once(ctx):
    _require_intake(ctx)
    store, product = api.store_and_product(ctx)
    cid, payload = _encode(store, product, "receipt", 3)
    _publish(ctx, store, payload)
    _publish(ctx, store, payload)  # a producer's retry: the same command
    got = _result_of(ctx, cid, count=2)
    assert [r["status"] for r in got[:2]] == [201, 201], got
    assert got[0]["body"] == got[1]["body"], "the replay differs"
    pos = got[0]["body"]["position"]
    api.expect_stock(ctx, store, product, on_hand=3, version=1, position=pos)
    hist = api.history(ctx, store, product, position=pos)
    assert len(hist) == 1, f"applied {len(hist)} times"
    # the same command id with other content is refused
    _, other = _encode(store, product, "receipt", 4, command_id=cid)
    _publish(ctx, store, other)
    got = _result_of(ctx, cid, count=3)
    assert got[2]["status"] == 422 and \
        got[2]["body"]["code"] == "idempotency_key_reused", got[2]


def test_malformed_message_gets_a_result_and_later_ones_apply(ctx):
    _require_intake(ctx)
    store, product = api.store_and_product(ctx)
    marker = client.new_uuid()
    _publish(ctx, store, b"not avro " + marker.encode())
    cid, payload = _encode(store, product, "receipt", 2)
    _publish(ctx, store, payload)
    res = _result_of(ctx, cid)[0]
    assert res["status"] == 201, res
    bad = [r for r in _results(ctx)
           if r.get("command_id") is None and r.get("status") == 400 and
           r.get("body", {}).get("code") == "malformed_command"]
    assert bad, "no result for the malformed message"
    metrics = get(ctx.cmd, "/metrics").body
    assert "stockflow_command_bus_malformed_total" in metrics, metrics[:300]
    # validation as over HTTP: an adjustment without a reason is 422
    cid3, p3 = _encode(store, product, "adjustment", -1)
    _publish(ctx, store, p3)
    r3 = _result_of(ctx, cid3)[0]
    assert r3["status"] == 422 and \
        r3["body"]["code"] == "validation_failed", r3
