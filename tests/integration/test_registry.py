"""The Confluent wire format against the real stack (docs/events.md): a
second command service writes its events as magic byte 0 + the 4-byte id
its schema got in the schema registry (Apicurio Registry, started by
tests/run.sh); a stock Python consumer (confluent-kafka's
DeserializingConsumer with its AvroDeserializer and the registry client)
reads every event type; the projector applies them; a log that mixes both
formats is projected and rebuilt correctly; an unreachable registry keeps
the command service not ready without crashing it; and examples/analytics
computes the sales per store per hour that the test made."""

import contextlib
import http.server
import io
import json
import os
import subprocess
import sys
import threading
import time
import types
import urllib.error
import urllib.request
import uuid

import fastavro

import api
import client
import eventlog
import stack as stackmod
import test_read_side_more
from client import expect_json, expect_problem, get, post

from confluent_kafka import DeserializingConsumer, Producer, TopicPartition
from confluent_kafka.error import ValueDeserializationError
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import StringDeserializer

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
ANALYTICS = os.path.join(ROOT, "examples", "analytics", "sales_per_hour.py")
PORT_OFFSET = 40  # the confluent instance listens on the command port + 40

metric = test_read_side_more.metric
psql = test_read_side_more.psql

ALL_TYPES = {"ProductCreated", "ProductUpdated", "ProductDiscontinued",
             "ProductPolicySet", "StoreOpened", "StoreUpdated", "StoreClosed",
             "StockMoved", "TransferOut", "TransferIn", "OrderPlaced",
             "OrderFulfilled", "OrderCancelled", "StockBelowReorder",
             "StockRestored"}


def registry_url(ctx):
    url = ctx.env.get("STOCKFLOW_SCHEMA_REGISTRY_URL")
    assert url, "tests/run.sh sets STOCKFLOW_SCHEMA_REGISTRY_URL"
    return url


def confluent_service(ctx, name="command-confluent", **extra_env):
    """A second command service writing the Confluent wire format (not
    started). Its own transactional id (no fencing of the main one), no bus
    intake (one bus consumer: the main one)."""
    first = ctx.stack["command"]
    env = dict(first.env)
    port = first.port + PORT_OFFSET
    env["STOCKFLOW_COMMAND_LISTEN"] = f"127.0.0.1:{port}"
    env["STOCKFLOW_COMMAND_INTAKE"] = "false"
    env["STOCKFLOW_COMMAND_TXN_ID"] = env["STOCKFLOW_COMMAND_TXN_ID"] + "-cf"
    env["STOCKFLOW_EVENT_FORMAT"] = "confluent"
    env.update(extra_env)
    state = os.path.dirname(os.path.dirname(first.log_path))
    svc = stackmod.Service("command", first.binary, env, state)
    svc.log_path = os.path.join(state, "logs", f"{name}.log")
    svc.pid_path = os.path.join(state, "pids", f"{name}.pid")
    svc.port = port
    return svc


@contextlib.contextmanager
def confluent_instance(ctx, name="command-confluent", **extra_env):
    """Runs confluent_service(...) until the block ends; yields (service,
    a ctx whose writes go to it). It must then stop cleanly (exit 0 on
    SIGTERM), registration thread and all."""
    svc = confluent_service(ctx, name, **extra_env)
    svc.start()
    try:
        svc.wait_ready(90)
        yield svc, via(ctx, svc)
    except BaseException:
        svc.stop()
        raise
    code, graceful = svc.stop()
    assert graceful and code == 0, \
        f"{name} exited {code} on SIGTERM (graceful: {graceful})"


def via(ctx, svc):
    """A ctx whose api.* writes go to svc (reads stay on the query
    service)."""
    return types.SimpleNamespace(cmd=svc.port, qry=ctx.qry, proj=ctx.proj,
                                 env=ctx.env, stack=ctx.stack)


def schema_ids(ctx):
    """{topic: id} of the subjects <topic>-value in the registry."""
    reg = SchemaRegistryClient({"url": registry_url(ctx)})
    out = {}
    for t in (ctx.env["STOCKFLOW_TOPIC_CATALOG"],
              ctx.env["STOCKFLOW_TOPIC_STOCK"]):
        out[t] = reg.get_latest_version(f"{t}-value").schema_id
    return out


def consume(ctx, keys, want, timeout=60.0):
    """Reads both topics from the beginning with a stock DeserializingConsumer
    (AvroDeserializer + the registry client) until every event id of want
    was seen. Returns ([event dict of a message keyed by one of keys],
    number of messages the deserializer refused: the other format)."""
    url = registry_url(ctx)
    deser = AvroDeserializer(SchemaRegistryClient({"url": url}))
    c = DeserializingConsumer({
        "bootstrap.servers": ctx.env["STOCKFLOW_KAFKA_BROKERS"],
        "group.id": "it-registry-" + uuid.uuid4().hex,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        "isolation.level": "read_committed",
        "key.deserializer": StringDeserializer("utf_8"),
        "value.deserializer": deser,
    })
    topics = [ctx.env["STOCKFLOW_TOPIC_CATALOG"],
              ctx.env["STOCKFLOW_TOPIC_STOCK"]]
    tps = []
    for t in topics:
        for p in c.list_topics(t, timeout=10).topics[t].partitions:
            tps.append(TopicPartition(t, p, 0))
    c.assign(tps)
    got, refused, seen = [], 0, set()
    deadline = time.monotonic() + timeout
    try:
        while not set(want) <= seen:
            assert time.monotonic() < deadline, \
                f"events never read: {sorted(set(want) - seen)}"
            try:
                m = c.poll(1.0)
            except ValueDeserializationError:
                refused += 1  # single-object: not this deserializer's format
                continue
            if m is None or m.error():
                continue
            if m.key() in keys:
                ev = m.value()
                got.append(ev)
                seen.add(str(ev["event_id"]))  # a UUID: logicalType uuid
    finally:
        c.close()
    return got, refused


def test_every_event_type_in_confluent_format(ctx):
    dlq_before = metric(ctx, "stockflow_projector_dlq_total")
    with confluent_instance(ctx) as (svc, cf):
        ids = schema_ids(ctx)
        # catalog: stores opened, updated, closed; products created,
        # updated, policy set, discontinued
        s1 = api.create_store(cf)["id"]
        s2 = api.create_store(cf)["id"]
        s3 = api.create_store(cf)["id"]
        expect_json(client.patch(svc.port, f"/v1/stores/{s2}",
                                 {"name": client.unique("Renamed")}), 200)
        expect_status_ok(client.delete(svc.port, f"/v1/stores/{s3}"))
        product = api.create_product(cf, reorder_level=5)["id"]
        gone = api.create_product(cf)["id"]
        expect_json(client.patch(svc.port, f"/v1/products/{product}",
                                 {"name": client.unique("Tea")}), 200)
        expect_json(client.request(svc.port, "PUT",
                                   f"/v1/products/{product}/policy",
                                   {"max_sale_quantity": 50}), 200)
        expect_status_ok(client.delete(svc.port, f"/v1/products/{gone}"))
        # stock: every movement, a transfer, orders, both crossings
        api.txn(cf, s1, product, "receipt", 10, on_hand=10, version=1)
        api.txn(cf, s1, product, "sale", 2, on_hand=8, version=2)
        api.txn(cf, s1, product, "return", 1, on_hand=9, version=3)
        api.txn(cf, s1, product, "adjustment", -1, on_hand=8, version=4,
                reason="damaged")
        api.txn(cf, s1, product, "count", 8, on_hand=8, version=5, delta=0)
        expect_json(post(svc.port, "/v1/transfers",
                         {"from_store_id": s1, "to_store_id": s2,
                          "product_id": product, "quantity": 1}), 201)
        o1 = expect_json(post(svc.port, f"/v1/stores/{s1}/orders",
                              {"lines": [{"product_id": product,
                                          "quantity": 3}]}), 201)
        expect_json(post(svc.port, f"/v1/orders/{o1['order_id']}/cancel"), 200)
        o2 = expect_json(post(svc.port, f"/v1/stores/{s1}/orders",
                              {"lines": [{"product_id": product,
                                          "quantity": 1}]}), 201)
        done = expect_json(post(svc.port,
                                f"/v1/orders/{o2['order_id']}/fulfil"), 200)

        # the log as the service wrote it: every message of these keys is
        # in the Confluent format with the registry's id for its topic
        keys = {s1, s2, s3, product, gone}
        raw = []
        for t in ids:
            raw += [(t, m) for m in eventlog.read_topic(ctx, t, keys=keys)]
        for t, m in raw:
            assert m.wire == "confluent", f"{t} {m}: {m.wire}"
            assert m.schema_id == ids[t], (t, m.schema_id, ids)
        want = {m.event["event_id"] for _, m in raw}
        assert ALL_TYPES == {m.event["event_type"] for _, m in raw}, \
            ALL_TYPES ^ {m.event["event_type"] for _, m in raw}

        # a stock consumer reads every one of them
        got, _ = consume(ctx, keys, want)
        types_read = {e["event_type"] for e in got}
        assert types_read == ALL_TYPES, ALL_TYPES ^ types_read
        moves = {e["payload"]["movement"] for e in got
                 if e["event_type"] == "StockMoved"}
        assert moves == {"receipt", "sale", "return", "adjustment", "count"}, \
            moves
        sale = [e for e in got if e["event_type"] == "StockMoved"
                and e["payload"]["movement"] == "sale"]
        assert len(sale) == 1 and sale[0]["payload"]["quantity"] == 2 and \
            sale[0]["payload"]["on_hand"] == 8, sale
        fulfilled = [e for e in got if e["event_type"] == "OrderFulfilled"]
        assert str(fulfilled[0]["payload"]["order_id"]) == o2["order_id"], \
            fulfilled

        # the projector applied them all: stock (8 - 1 transferred, order
        # of 1 fulfilled), the transfer's destination, the catalog
        api.expect_stock(ctx, s1, product, on_hand=6, version=10,
                         position=done["position"])
        api.expect_stock(ctx, s2, product, on_hand=1, version=1,
                         position=done["position"])
        p = expect_json(get(ctx.qry, client.with_position(
            f"/v1/products/{product}", done["position"])), 200)
        assert p.get("policy", {}).get("max_sale_quantity") == 50, p
        assert metric(ctx, "stockflow_projector_dlq_total") == dlq_before, \
            "a Confluent-framed event was dead-lettered"


def expect_status_ok(r):
    assert 200 <= r.status < 300, f"want 2xx, got {r!r}"


def test_mixed_log_projected_and_rebuilt(ctx):
    """Single-object events (the main service), then Confluent ones (the
    second service) for one store x product: the projector applies both in
    order, and a command service rebuilding from the mixed log folds both
    (a sale beyond the stock both left is refused)."""
    store, product = api.store_and_product(ctx)
    api.txn(ctx, store, product, "receipt", 5, on_hand=5, version=1)
    with confluent_instance(ctx) as (svc, cf):
        api.txn(cf, store, product, "sale", 2, on_hand=3, version=2)
        r = api.txn(cf, store, product, "receipt", 4, on_hand=7, version=3)
        api.expect_stock(ctx, store, product, on_hand=7, version=3,
                         position=r["position"])
        wires = [m.wire for m in eventlog.read_topic(
            ctx, ctx.env["STOCKFLOW_TOPIC_STOCK"], keys={store})
            if m.event["event_type"] == "StockMoved"]  # not the crossings
        assert wires == ["single-object", "confluent", "confluent"], wires
        # a restart rebuilds the state from the mixed log
        svc.stop()
        svc.start()
        svc.wait_ready(90)
        r = api.txn(cf, store, product, "sale", 7, on_hand=0, version=4)
        expect_problem(api.post_txn(cf, store, product, "sale", 1), 409,
                       "insufficient_stock")
        api.expect_stock(ctx, store, product, on_hand=0, version=4,
                         position=r["position"])


def test_unreachable_registry_is_not_ready(ctx):
    """Confluent format with a registry nobody answers at: not ready (503
    naming the registry), writes refused, no crash; a bad format is a
    usage error."""
    svc = confluent_service(
        ctx, "command-noregistry",
        STOCKFLOW_SCHEMA_REGISTRY_URL="http://127.0.0.1:9/apis/ccompat/v7")
    svc.start()
    try:
        def not_ready_for_the_registry():
            try:
                r = get(svc.port, "/readyz", headers=client.NO_AUTH)
            except OSError as e:  # not listening yet
                raise AssertionError(f"/readyz: {e}") from e
            assert r.status == 503, r
            assert "registry" in r.raw.decode().lower(), r
            return r
        client.eventually(not_ready_for_the_registry, timeout=60,
                          what="503 naming the schema registry")
        time.sleep(2)
        assert svc.alive(), "the command service died"
        r = post(svc.port, "/v1/stores", api.store_body())
        assert r.status == 503, r
    finally:
        svc.stop()
    out = subprocess.run([ctx.stack["command"].binary],
                         env=dict(ctx.stack["command"].env,
                                  STOCKFLOW_EVENT_FORMAT="avro-json"),
                         capture_output=True, timeout=30)
    assert out.returncode != 0, out
    assert b"event format" in out.stderr, out.stderr[-400:]


def test_analytics_example_sales_per_hour(ctx):
    """examples/analytics/sales_per_hour.py against the real topic: the
    sales of two stores, written in both formats, per hour."""
    s1, product = api.store_and_product(ctx)
    s2 = api.create_store(ctx)["id"]
    api.txn(ctx, s1, product, "receipt", 20, on_hand=20, version=1)
    api.txn(ctx, s2, product, "receipt", 20, on_hand=20, version=1)
    api.txn(ctx, s1, product, "sale", 3, on_hand=17, version=2)
    with confluent_instance(ctx) as (svc, cf):
        api.txn(cf, s1, product, "sale", 4, on_hand=13, version=3)
        api.txn(cf, s1, product, "return", 1, on_hand=14, version=4)
        api.txn(cf, s2, product, "sale", 5, on_hand=15, version=2)
        o = expect_json(post(svc.port, f"/v1/stores/{s2}/orders",
                             {"lines": [{"product_id": product,
                                         "quantity": 2}]}), 201)
        expect_json(post(svc.port, f"/v1/orders/{o['order_id']}/fulfil"), 200)
    out = subprocess.run(
        [sys.executable, ANALYTICS, "--json", "--store", s1, "--store", s2,
         "--brokers", ctx.env["STOCKFLOW_KAFKA_BROKERS"],
         "--topic", ctx.env["STOCKFLOW_TOPIC_STOCK"],
         "--registry-url", registry_url(ctx)],
        capture_output=True, timeout=120)
    assert out.returncode == 0, out.stderr.decode()[-800:]
    res = json.loads(out.stdout)
    per_store = {}
    for row in res["rows"]:
        t = per_store.setdefault(row["store_id"], [0, 0, set()])
        t[0] += row["sold"]
        t[1] += row["returned"]
        t[2].add(row["hour"])
    # s1: sales 3 (single-object) + 4 (confluent), 1 returned; s2: 5 + an
    # order of 2 fulfilled
    assert per_store[s1][:2] == [7, 1], (per_store, res)
    assert per_store[s2][:2] == [7, 0], (per_store, res)
    for s in (s1, s2):  # written within a minute or two: one or two hours
        assert 1 <= len(per_store[s][2]) <= 2, per_store[s]
    # other tests' deliberate poison messages are skipped, nothing else
    assert res["events"] > 0 and res["skipped"] <= res["events"], res


class RegistryProxy:
    """A local HTTP proxy in front of the registry that can play dead (503
    to everything) while down is set: the projector's look-ups go through
    it."""

    def __init__(self, upstream):
        proxy = self
        self.down = threading.Event()
        self.refused = 0

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _forward(self, method):
                if proxy.down.is_set():
                    proxy.refused += 1
                    self.send_error(503, "registry down (test)")
                    return
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else None
                req = urllib.request.Request(
                    upstream + self.path, data=body, method=method,
                    headers={k: v for k, v in self.headers.items()
                             if k.lower() in ("accept", "content-type")})
                try:
                    with urllib.request.urlopen(req, timeout=10) as r:
                        status, data = r.status, r.read()
                except urllib.error.HTTPError as e:
                    status, data = e.code, e.read()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                self._forward("GET")

            def do_POST(self):
                self._forward("POST")

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                                      Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever,
                                       daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def newer_envelope():
    """schemas/envelope.avsc with one more optional field: a newer writer
    schema, which gets an id of its own in the registry."""
    with open(os.path.join(ROOT, "schemas", "envelope.avsc")) as f:
        raw = json.load(f)
    raw["fields"].append({"name": "it_added", "type": ["null", "string"],
                          "default": None})
    return raw


def test_projector_waits_for_the_registry(ctx):
    """An event whose schema id the projector has not learnt, while the
    registry does not answer: the projector waits (logs it, retries), does
    not dead-letter it, and applies it once the registry is back."""
    topic = ctx.env["STOCKFLOW_TOPIC_STOCK"]
    store, product = api.create_store(ctx)["id"], \
        api.create_product(ctx, reorder_level=0)["id"]
    raw = newer_envelope()
    reg = SchemaRegistryClient({"url": registry_url(ctx)})
    # under a subject of its own: <topic>-value keeps the current schema
    with open(os.path.join(ROOT, "schemas", "envelope.avsc")) as f:
        current = reg.register_schema(f"{topic}-it-newer",
                                      Schema(f.read(), "AVRO"))
    sid = reg.register_schema(f"{topic}-it-newer",
                              Schema(json.dumps(raw), "AVRO"))
    assert sid != current, "the newer schema got no id of its own"
    # a receipt as another producer with the newer schema would write it
    ev = {"event_id": client.new_uuid(), "event_type": "StockMoved",
          "occurred_at": int(time.time() * 1e6), "store_id": store,
          "product_id": product, "stream_version": 1, "actor": None,
          "command_id": client.new_uuid(), "idempotency_key": None,
          "correlation_id": None, "request_hash": None,
          "payload": ("stockflow.events.StockMoved",
                      {"movement": "receipt", "quantity": 3, "delta": 3,
                       "on_hand": 3, "reserved": 0, "reason": None,
                       "reference": None}),
          "it_added": "x"}
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, fastavro.parse_schema(raw), ev)
    value = b"\x00" + sid.to_bytes(4, "big") + buf.getvalue()

    def rows():
        return psql(ctx, "select count(*) from inventory where store_id = "
                    f"'{store}' and product_id = '{product}'")

    proj = ctx.stack["projector"]
    env = proj.env
    proxy = RegistryProxy(registry_url(ctx))
    dlq_before = metric(ctx, "stockflow_projector_dlq_total")
    try:
        proj.env = dict(env, STOCKFLOW_SCHEMA_REGISTRY_URL=proxy.url)
        ctx.stack.restart(("projector",))
        proxy.down.set()
        p = Producer({"bootstrap.servers": ctx.env["STOCKFLOW_KAFKA_BROKERS"],
                      "partitioner": "murmur2_random"})
        p.produce(topic, key=store.encode(), value=value)
        assert p.flush(30) == 0, "the test's event was not delivered"
        def asked_twice():
            assert proxy.refused >= 2, proxy.refused
        client.eventually(asked_twice, timeout=30,
                          what="the projector asks the registry again")
        assert rows() == "0", "applied without its schema?"
        assert metric(ctx, "stockflow_projector_dlq_total") == dlq_before, \
            "dead-lettered because the registry was down"
        assert "schema registry" in proj.log_text(), "no log line says why"
        assert proj.alive(), "the projector died"
        proxy.down.clear()

        def applied():
            assert rows() == "1", "not applied yet"
        client.eventually(applied, timeout=60, what="applied after the "
                          "registry came back")
        api.expect_stock(ctx, store, product, on_hand=3, version=1)
        assert metric(ctx, "stockflow_projector_dlq_total") == dlq_before
    finally:
        proxy.down.clear()
        proj.env = env
        ctx.stack.restart(("projector",))
        proxy.close()
