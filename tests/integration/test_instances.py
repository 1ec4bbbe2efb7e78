"""Several command instances, each owning a disjoint share of the stock
partitions (issue 10, part 3), against the real broker and PostgreSQL.

Two extra command instances run beside the stack: A (--instance-index 0,
the catalog's writer) and B (--instance-index 1), --instance-count 2, with
each other's URLs (--peer-urls). The stack's own command service stays up
but idle: every store and product these tests use is written only through
A and B (the instances' transactional ids, <id>-p0of2... and <id>-p1of2...,
are not the stack's, so nobody fences anybody until the last test starts a
third instance with B's assignment). Ports: the stack's command port + 5,
+ 6, + 7 (18086.. by default; 18081 + 50 and + 57 are other tests').
Every process started here is stopped by its pid (also at exit).

A and B run the bus intake on a commands topic of their own
(<commands>-instances, 5 partitions where the stock topic has 6, created by
tests/run.sh), so the stack's single intake never sees their commands; the
results go to the stack's results topic.
"""

import atexit
import json
import os
import threading
import time

import api
import client
import stack as stackmod
import test_bus_intake as bus
from client import expect_json, expect_problem, get, post

PARTITIONS = 6  # tests/run.sh creates the stock topic with 6 partitions
COUNT = 2


def murmur2(data):
    """Kafka's murmur2 (Utils.murmur2), as librdkafka's murmur2_random."""
    length = len(data)
    m, r = 0x5BD1E995, 24
    h = (0x9747B28C ^ length) & 0xFFFFFFFF
    for i in range(length // 4):
        k = int.from_bytes(data[4 * i:4 * i + 4], "little")
        k = (k * m) & 0xFFFFFFFF
        k ^= k >> r
        k = (k * m) & 0xFFFFFFFF
        h = (h * m) & 0xFFFFFFFF
        h ^= k
    tail, rest = length & ~3, length % 4
    if rest >= 3:
        h ^= data[tail + 2] << 16
    if rest >= 2:
        h ^= data[tail + 1] << 8
    if rest >= 1:
        h ^= data[tail]
        h = (h * m) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * m) & 0xFFFFFFFF
    h ^= h >> 15
    return h


def partition_of(store_id):
    return (murmur2(store_id.encode()) & 0x7FFFFFFF) % PARTITIONS


def owner_of(store_id):
    return partition_of(store_id) % COUNT


def commands_topic(env):
    return env["STOCKFLOW_TOPIC_COMMANDS"] + "-instances"


class Instance(stackmod.Service):
    def __init__(self, ctx, tag, index, port, peers):
        main = ctx.stack["command"]
        env = dict(main.env)
        env.update({
            "STOCKFLOW_COMMAND_LISTEN": f"127.0.0.1:{port}",
            # the bus intake on the pair's own commands topic, a group
            # per instance (<group>-pair-i<k>of2)
            "STOCKFLOW_COMMAND_INTAKE": "true",
            "STOCKFLOW_TOPIC_COMMANDS": commands_topic(main.env),
            "STOCKFLOW_COMMAND_INTAKE_GROUP":
                main.env["STOCKFLOW_COMMAND_INTAKE_GROUP"] + "-pair",
            "STOCKFLOW_INSTANCE_INDEX": str(index),
            "STOCKFLOW_INSTANCE_COUNT": str(COUNT),
            "STOCKFLOW_PEER_URLS": ",".join(
                f"http://127.0.0.1:{p}" for p in peers),
            "STOCKFLOW_WRITER_LANES": "2",
        })
        state = os.path.dirname(os.path.dirname(main.log_path))
        super().__init__("command", main.binary, env, state)
        self.log_path = os.path.join(state, "logs", f"command-{tag}.log")
        self.pid_path = os.path.join(state, "pids", f"command-{tag}.pid")
        self.port = port
        self.index = index
        self.url = f"http://127.0.0.1:{port}"


class Pair:
    """Instances A (0) and B (1), started once for the module."""

    def __init__(self, ctx):
        base = ctx.cmd
        self.ports = (base + 5, base + 6)
        self.a = Instance(ctx, "inst-a", 0, self.ports[0], self.ports)
        self.b = Instance(ctx, "inst-b", 1, self.ports[1], self.ports)
        self.extra = []
        self.product = None

    def start(self):
        self.a.start()
        self.b.start()
        self.a.wait_ready(120)
        self.b.wait_ready(120)

    def by_index(self, i):
        return (self.a, self.b)[i]

    def stop(self):
        for s in [self.a, self.b] + self.extra:
            try:
                if s.alive():
                    s.stop()
                else:
                    s.kill()  # reaps and drops the pid file
            except (OSError, stackmod.StackError):
                pass


_pair = None


def pair(ctx):
    global _pair
    if _pair is None:
        _pair = Pair(ctx)
        atexit.register(_pair.stop)
        try:
            _pair.start()
        except Exception:
            _pair.stop()
            _pair = None
            raise
    for s in (_pair.a, _pair.b):
        assert s.alive(), f"instance {s.index} is not running:\n{s.log_tail()}"
    return _pair


def stores_of_both(ctx, p, per_instance=2):
    """Stores created through A (the catalog's writer) until each instance
    owns per_instance of them: {0: [ids], 1: [ids]}."""
    owned = {0: [], 1: []}
    for _ in range(40):
        if all(len(v) >= per_instance for v in owned.values()):
            return owned
        body = expect_json(post(p.a.port, "/v1/stores", api.store_body()), 201,
                           "create store through instance 0")
        owned[owner_of(body["id"])].append(body["id"])
    raise AssertionError(f"40 stores did not give each instance "
                         f"{per_instance}: {owned}")


def product_on_a(p):
    body = expect_json(post(p.a.port, "/v1/products",
                            api.product_body(reorder_level=0)), 201,
                       "create product through instance 0")
    return body["id"]


def txn_body(product, type_, quantity):
    return {"product_id": product, "type": type_, "quantity": quantity}


def test_murmur2_matches_the_service(ctx):
    # the partitioner of the service's unit tests (test_lanes.c)
    del ctx
    assert partition_of("0190a1b2-0000-7000-8000-000000000001") == 3
    assert partition_of("store-a") == 0


def test_each_instance_owns_its_partitions_and_writes_its_stores(ctx):
    p = pair(ctx)
    for inst in (p.a, p.b):
        r = get(inst.port, "/readyz")
        body = expect_json(r, 200, f"readyz of instance {inst.index}")
        info = body.get("instance")
        assert info and info["index"] == inst.index and info["count"] == 2, \
            f"readyz does not show the assignment: {body}"
        want = [q for q in range(PARTITIONS) if q % 2 == inst.index]
        assert info["stock_partitions"] == want, info
        assert info["catalog"] == (inst.index == 0), info
        assert info["transactional_id"].endswith(f"-p{inst.index}of2"), info
        text = get(inst.port, "/metrics").body
        assert f"stockflow_command_instance_index {inst.index}" in text, \
            "metrics lack instance_index"
        assert "stockflow_command_owned_partitions 3" in text, \
            "metrics lack owned_partitions"
    product = product_on_a(p)
    owned = stores_of_both(ctx, p)
    for idx, stores in owned.items():
        inst = p.by_index(idx)
        for store in stores:
            # B learns of A's new stores through its tail (or the catch-up
            # before a 404): the first write succeeds at once
            r = post(inst.port, api.txn_path(store),
                     txn_body(product, "receipt", 5))
            body = expect_json(r, 201, f"receipt on instance {idx}")
            assert body["on_hand"] == 5 and body["version"] == 1, body
            part = int(body["position"].split("-")[1])
            assert part == partition_of(store) and part % 2 == idx, \
                f"store {store} written to partition {part}"
            api.expect_stock(ctx, store, product, on_hand=5, version=1,
                             position=body["position"])


def test_wrong_instance_redirects_and_writes_nothing(ctx):
    p = pair(ctx)
    product = product_on_a(p)
    owned = stores_of_both(ctx, p, 1)
    for idx in (0, 1):
        store = owned[idx][0]
        owner, other = p.by_index(idx), p.by_index(1 - idx)
        first = expect_json(post(owner.port, api.txn_path(store),
                                 txn_body(product, "receipt", 10)), 201,
                            "receipt at the owner")
        path = api.txn_path(store)
        key = client.unique("redir")
        r = post(other.port, path, txn_body(product, "sale", 3),
                 {"Idempotency-Key": key})
        expect_problem(r, 307, "wrong_instance", "write at the wrong instance")
        assert r.headers.get("location") == owner.url + path, \
            f"Location {r.headers.get('location')!r}, want {owner.url + path}"
        assert r.body.get("owner_instance") == idx, r.body
        # nothing was written: the read model and the owner's state still
        # hold the receipt only
        api.expect_stock(ctx, store, product, on_hand=10, version=1,
                         position=first["position"])
        # following the redirect (same method, body and key) works once
        loc = r.headers["location"]
        port = int(loc.split(":")[2].split("/")[0])
        r2 = post(port, loc[len(owner.url):], txn_body(product, "sale", 3),
                  {"Idempotency-Key": key})
        body = expect_json(r2, 201, "the redirected sale")
        assert body["on_hand"] == 7 and body["version"] == 2, body
        r3 = post(port, path, txn_body(product, "sale", 3),
                  {"Idempotency-Key": key})
        assert r3.status == 201 and \
            r3.headers.get("idempotent-replayed") == "true", r3
        api.expect_stock(ctx, store, product, on_hand=7, version=2,
                         position=body["position"])
    # the catalog is instance 0's
    r = post(p.b.port, "/v1/products", api.product_body())
    expect_problem(r, 307, "wrong_instance", "catalog write at instance 1")
    assert r.headers.get("location") == p.a.url + "/v1/products", r.headers
    # an order placed through its owner, fulfilled through the other one:
    # found through the tail and redirected
    store_b = owned[1][0]
    r = post(p.b.port, f"/v1/stores/{store_b}/orders",
             {"lines": [{"product_id": product, "quantity": 2}]})
    order = expect_json(r, 201, "order at instance 1")["order_id"]
    r = post(p.a.port, f"/v1/orders/{order}/fulfil")
    expect_problem(r, 307, "wrong_instance", "fulfil at instance 0")
    assert r.headers.get("location") == \
        f"{p.b.url}/v1/orders/{order}/fulfil", r.headers
    expect_json(post(p.b.port, f"/v1/orders/{order}/fulfil"), 200,
                "fulfil at the owner")
    # a transfer between two instances' stores is refused by both
    for inst in (p.a, p.b):
        r = post(inst.port, "/v1/transfers",
                 {"from_store_id": owned[0][0], "to_store_id": owned[1][0],
                  "product_id": product, "quantity": 1})
        expect_problem(r, 409, "cross_instance_transfer",
                       f"cross-instance transfer at {inst.index}")
    # a batch item of the other instance's store: 421, the rest is written
    r = post(p.a.port, "/v1/batches", {"transactions": [
        dict(txn_body(product, "receipt", 1), store_id=owned[0][0]),
        dict(txn_body(product, "receipt", 1), store_id=owned[1][0])]})
    results = expect_json(r, 200, "batch over both instances")["results"]
    assert [x["status"] for x in results] == [201, 421], results
    assert results[1]["body"]["code"] == "wrong_instance", results


def test_concurrent_sales_on_both_instances(ctx):
    p = pair(ctx)
    product = product_on_a(p)
    owned = stores_of_both(ctx, p, 1)
    stock, attempts = 30, 45
    stores = {idx: owned[idx][0] for idx in (0, 1)}
    for idx, store in stores.items():
        expect_json(post(p.by_index(idx).port, api.txn_path(store),
                         txn_body(product, "receipt", stock)), 201, "stock")
    acked = {0: {}, 1: {}}  # key -> transaction id
    refused = {0: 0, 1: 0}
    errors = []
    lock = threading.Lock()

    def sell(idx, n):
        inst, store = p.by_index(idx), stores[idx]
        for i in range(n):
            key = client.unique(f"sale{idx}-")
            try:
                r = post(inst.port, api.txn_path(store),
                         txn_body(product, "sale", 1),
                         {"Idempotency-Key": key})
            except OSError as e:
                with lock:
                    errors.append(repr(e))
                continue
            with lock:
                if r.status == 201:
                    acked[idx][key] = r.body["transaction_id"]
                elif r.status == 409 and \
                        r.body.get("code") == "insufficient_stock":
                    refused[idx] += 1
                else:
                    errors.append(repr(r))

    threads = [threading.Thread(target=sell, args=(idx, attempts // 3))
               for idx in (0, 1) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors[:5]
    for idx, store in stores.items():
        inst = p.by_index(idx)
        assert len(acked[idx]) == stock, \
            f"instance {idx}: {len(acked[idx])} sales acked of {stock} units"
        assert refused[idx] == attempts - stock, refused
        # every acknowledged sale is applied exactly once: a retry replays
        key, tid = next(iter(acked[idx].items()))
        r = post(inst.port, api.txn_path(store), txn_body(product, "sale", 1),
                 {"Idempotency-Key": key})
        assert r.status == 201 and r.body["transaction_id"] == tid, r
        last = expect_json(post(inst.port, api.txn_path(store),
                                txn_body(product, "receipt", 1)), 201,
                           "closing receipt")
        assert last["on_hand"] == 1 and last["version"] == stock + 2, last
        hist = api.history(ctx, store, product, type_="sale",
                           position=last["position"])
        ids = [api.txn_item_id(i) for i in hist]
        assert len(ids) == len(set(ids)) == stock, len(ids)
        assert set(ids) == set(acked[idx].values()), \
            "the read model's sales are not the acknowledged ones"
        api.expect_stock(ctx, store, product, on_hand=1, version=stock + 2,
                         position=last["position"])


def test_product_created_on_instance_0_is_usable_on_instance_1(ctx):
    p = pair(ctx)
    store_b = stores_of_both(ctx, p, 1)[1][0]
    for _ in range(3):
        product = product_on_a(p)
        # at once: no sleep between the catalog write and the stock write
        r = post(p.b.port, api.txn_path(store_b),
                 txn_body(product, "receipt", 4))
        body = expect_json(r, 201, "receipt of a brand-new product on B")
        assert body["on_hand"] == 4 and body["version"] == 1, body
    # an unknown product is still a 404 on B (after the catch-up)
    r = post(p.b.port, api.txn_path(store_b),
             txn_body(client.new_uuid(), "receipt", 1))
    expect_problem(r, 404, "not_found", "unknown product on instance 1")
    metrics = {}
    for line in get(p.b.port, "/metrics").body.split("\n"):
        if line.startswith("stockflow_command_tail_"):
            name, _, value = line.partition(" ")
            metrics[name] = float(value)
    assert metrics.get("stockflow_command_tail_events_total", 0) > 0, \
        f"instance 1 folded no event of instance 0: {metrics}"
    assert metrics.get("stockflow_command_tail_syncs_total", 0) >= 1, \
        f"the unknown product did not make instance 1 catch up: {metrics}"


class Publisher:
    """Publishes on the pair's commands topic, keyed by store id, with
    librdkafka's default partitioner (CRC32, not murmur2: which command
    partition a command lands on must not matter). Connected once, so a
    command goes out within milliseconds of the call."""

    def __init__(self, ctx):
        from confluent_kafka import Producer
        self.topic = commands_topic(ctx.stack["command"].env)
        self.prod = Producer({
            "bootstrap.servers": ctx.env["STOCKFLOW_KAFKA_BROKERS"],
            "partitioner": "consistent_random", "linger.ms": 0})
        self.prod.list_topics(self.topic, timeout=30)

    def send(self, commands):
        """commands: [(store, payload)]; waits for the broker's acks."""
        errors = []
        for store, payload in commands:
            self.prod.produce(
                self.topic, payload, key=store.encode(),
                on_delivery=lambda err, _m: err and errors.append(err))
        assert self.prod.flush(30) == 0 and not errors, f"publish: {errors}"


def metric(inst, name):
    for line in get(inst.port, "/metrics").body.split("\n"):
        if line.startswith(f"stockflow_command_{name} "):
            return float(line.split(" ")[1])
    return 0.0


def test_bus_command_is_answered_once_by_its_owner(ctx):
    p = pair(ctx)
    product = product_on_a(p)
    owned = stores_of_both(ctx, p, 2)
    before = {i: metric(p.by_index(i), "bus_skipped_total") for i in (0, 1)}
    sent = {}  # command id -> (owner, store)
    commands = []
    for idx, stores in owned.items():
        for store in stores:
            cid, payload = bus._encode(store, product, "receipt", 6)
            sent[cid] = (idx, store)
            commands.append((store, payload))
    Publisher(ctx).send(commands)
    for cid, (idx, store) in sent.items():
        res = bus._result_of(ctx, cid)[0]
        assert res["status"] == 201, res
        body = res["body"]
        assert body["store_id"] == store and body["on_hand"] == 6, body
        part = int(body["position"].split("-")[1])
        assert part == partition_of(store) and part % 2 == idx, \
            f"command for instance {idx}'s store written to partition {part}"
    # each instance read every command and left the other's alone: once
    # both have skipped theirs, no second answer (and no 421) can come
    def skipped_all(i):
        got = metric(p.by_index(i), "bus_skipped_total") - before[i]
        assert got >= len(owned[1 - i]), f"instance {i} skipped {got}"

    for idx in (0, 1):
        client.eventually(lambda i=idx: skipped_all(i), timeout=30,
                          what=f"instance {idx} skips the other's commands")
    results = bus._results(ctx)
    for cid, (idx, store) in sent.items():
        got = [r for r in results if r.get("command_id") == cid]
        assert [r["status"] for r in got] == [201], \
            f"command for instance {idx}'s store answered {got}"
        api.expect_stock(ctx, store, product, on_hand=6, version=1,
                         position=got[0]["body"]["position"])
    assert not [r for r in results if r.get("status") == 421], \
        "a bus command was answered wrong_instance"


def test_new_product_is_usable_at_once_in_a_batch_and_on_the_bus(ctx):
    p = pair(ctx)
    store_b = stores_of_both(ctx, p, 1)[1][0]
    syncs = metric(p.b, "tail_syncs_total")
    for _ in range(3):
        product = product_on_a(p)
        # at once: a batch on B with the product A just created
        r = post(p.b.port, "/v1/batches", {"transactions": [
            dict(txn_body(product, "receipt", 4), store_id=store_b),
            dict(txn_body(product, "sale", 1), store_id=store_b)]})
        results = expect_json(r, 200, "batch with a brand-new product")
        assert [x["status"] for x in results["results"]] == [201, 201], \
            results
        assert results["results"][1]["body"]["on_hand"] == 3, results
    pub = Publisher(ctx)
    for _ in range(3):
        product = product_on_a(p)
        cid, payload = bus._encode(store_b, product, "receipt", 2)
        pub.send([(store_b, payload)])
        res = bus._result_of(ctx, cid)[0]
        assert res["status"] == 201 and res["body"]["on_hand"] == 2, res
    # an unknown product is still a 404, in a batch and on the bus, after
    # one catch-up each
    r = post(p.b.port, "/v1/batches", {"transactions": [
        dict(txn_body(client.new_uuid(), "receipt", 1), store_id=store_b),
        dict(txn_body(client.new_uuid(), "receipt", 1), store_id=store_b)]})
    results = expect_json(r, 200, "batch of unknown products")["results"]
    assert [x["status"] for x in results] == [404, 404], results
    cid, payload = bus._encode(store_b, client.new_uuid(), "receipt", 1)
    pub.send([(store_b, payload)])
    res = bus._result_of(ctx, cid)[0]
    assert res["status"] == 404 and res["body"]["code"] == "not_found", res
    assert metric(p.b, "tail_syncs_total") >= syncs + 2, \
        "the unknown products did not make instance 1 catch up"


def test_same_assignment_fences_the_older_instance(ctx):
    p = pair(ctx)
    product = product_on_a(p)
    owned = stores_of_both(ctx, p, 1)
    store_a, store_b = owned[0][0], owned[1][0]
    expect_json(post(p.b.port, api.txn_path(store_b),
                     txn_body(product, "receipt", 3)), 201, "B writes")
    c = Instance(ctx, "inst-c", 1, ctx.cmd + 7, (p.ports[0], ctx.cmd + 7))
    p.extra.append(c)
    c.start()
    try:
        c.wait_ready(120)
        # B's next commit is fenced: 503, it says so, and it exits non-zero
        r = post(p.b.port, api.txn_path(store_b),
                 txn_body(product, "receipt", 1))
        assert r.status == 503, f"the older instance 1 still writes: {r!r}"

        def exited():
            code = p.b.exit_code()
            assert code is not None, "the fenced instance still runs"
            return code
        code = client.eventually(exited, timeout=30,
                                 what="fenced instance exits")
        assert code > 0, f"fenced instance exited with {code}"
        assert "fenced" in p.b.log_text().lower(), "no fencing log line"
        # the newcomer serves instance 1's stores, from B's last write on
        body = expect_json(post(c.port, api.txn_path(store_b),
                                txn_body(product, "receipt", 1)), 201,
                           "the newcomer writes instance 1's store")
        assert body["on_hand"] == 4 and body["version"] == 2, body
        # instance 0 (a disjoint assignment) was not fenced
        body = expect_json(post(p.a.port, api.txn_path(store_a),
                                txn_body(product, "receipt", 2)), 201,
                           "instance 0 still writes")
        r = post(c.port, api.txn_path(store_a), txn_body(product, "sale", 1))
        expect_problem(r, 307, "wrong_instance", "newcomer redirects")
        assert r.headers.get("location") == p.a.url + api.txn_path(store_a)
    finally:
        p.stop()
        for s in [p.a, p.b, c]:
            assert not s.alive(), f"instance {s.index} still runs"
        global _pair
        _pair = None
    assert p.a.last_exit == 0, f"instance 0 exit {p.a.last_exit}"
    assert c.last_exit == 0, f"the newcomer's exit {c.last_exit}"
    # under ASan/UBSan: no report in any instance's log (the runner only
    # reads the stack's own logs)
    found = [f"{s.log_path}: {line.strip()[:200]}" for s in (p.a, p.b, c)
             for line in s.log_text(since_start=False).split("\n")
             if any(m in line for m in stackmod.SANITIZER_MARKERS)]
    assert not found, "\n".join(found[:10])

