"""The read side's acceptance cases against the real stack: a poison event is
dead-lettered while later events still apply, `--rebuild` reproduces the
same tables, two projector instances share the partitions (one of them
SIGKILLed) without applying anything twice, keyset paging while rows
change, `as_of` inventory, `below_reorder` and store scoping for a
non-admin, and a change-stream client that never reads is cut off without
the query service's memory growing."""

import datetime
import json
import os
import random
import re
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.parse

import api
import client
import stack as stackmod
from client import expect_json, expect_problem, get, post, with_position

# ---- helpers ----


def merge_positions(positions):
    """One min_position value covering every given position token (also
    comma lists): the highest offset per (kind, partition)."""
    best = {}
    for p in positions:
        for one in p.split(","):
            kind, part, off = client.position_offset(one)
            key = (kind, part)
            best[key] = max(best.get(key, -1), off)
    return ",".join(f"{k}-{p}-{o}" for (k, p), o in sorted(best.items()))


def psql(ctx, sql, timeout=60):
    """Runs one statement with psql against the services' database; returns
    its unaligned, tuples-only output (stripped)."""
    out = subprocess.run(["psql", ctx.env["STOCKFLOW_PG_DSN"], "-v",
                          "ON_ERROR_STOP=1", "-Atc", sql],
                         capture_output=True, timeout=timeout)
    assert out.returncode == 0, \
        f"psql failed ({out.returncode}): {out.stderr.decode()[:400]} [{sql}]"
    return out.stdout.decode().strip()


def kcat(ctx, args, timeout=60):
    """Runs kcat against the services' brokers; returns its stdout."""
    brokers = ctx.env.get("STOCKFLOW_KAFKA_BROKERS")
    assert brokers, "STOCKFLOW_KAFKA_BROKERS is not set for the services"
    out = subprocess.run(["kcat", "-b", brokers] + args,
                         stdin=subprocess.DEVNULL, capture_output=True,
                         timeout=timeout)
    assert out.returncode == 0, \
        f"kcat {' '.join(args)} failed ({out.returncode}): " \
        f"{out.stderr.decode('utf-8', 'replace')[:400]}"
    return out.stdout


def metric(ctx, name):
    """Sum of the samples of one metric on the projector's /metrics."""
    r = get(ctx.proj, "/metrics", headers=client.NO_AUTH)
    client.expect_status(r, 200, "projector /metrics")
    text = r.raw.decode("utf-8", "replace")
    total, found = 0.0, False
    for m in re.finditer(rf"(?m)^{re.escape(name)}(?:\{{[^}}]*\}})? "
                         r"([0-9.eE+-]+)$", text):
        total += float(m.group(1))
        found = True
    assert found, f"/metrics has no {name}"
    return total


def parse_time(s):
    """An RFC 3339 UTC time with microseconds as an aware datetime."""
    api.expect_time(s)
    assert s.endswith("Z"), f"time {s!r} is not in UTC"
    base, _, frac = s[:-1].partition(".")
    dt = datetime.datetime.strptime(base, "%Y-%m-%dT%H:%M:%S")
    micros = int((frac + "000000")[:6]) if frac else 0
    return dt.replace(microsecond=micros, tzinfo=datetime.timezone.utc)


def fmt_time(dt):
    return dt.astimezone(datetime.timezone.utc).strftime(
        "%Y-%m-%dT%H:%M:%S.%fZ")


def parallel_map(n_threads, items, fn):
    """fn(item) for every item on n_threads threads; returns the results in
    item order (an exception object where fn raised)."""
    results = [None] * len(items)
    lock = threading.Lock()
    nxt = [0]

    def worker():
        while True:
            with lock:
                i = nxt[0]
                nxt[0] += 1
            if i >= len(items):
                return
            try:
                results[i] = fn(items[i])
            except Exception as e:  # noqa: BLE001 - reported by the caller
                results[i] = e

    threads = [threading.Thread(target=worker, daemon=True)
               for _ in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(240)
    return results


def create_products(ctx, n, threads=8):
    res = parallel_map(threads, list(range(n)),
                       lambda _: api.create_product(ctx))
    bad = [r for r in res if not isinstance(r, dict)]
    assert not bad, f"{len(bad)} product creations failed: {bad[:3]}"
    return res


def post_batch(ctx, items):
    """POST /v1/batches that must accept every item; returns the bodies."""
    r = post(ctx.cmd, "/v1/batches", {"transactions": items}, timeout=120)
    body = expect_json(r, 200, "batch")
    res = body.get("results")
    assert isinstance(res, list) and len(res) == len(items), \
        f"batch results: {str(body)[:300]}"
    bad = [x for x in res if x.get("status") != 201]
    assert not bad, f"{len(bad)} batch items refused: {bad[:3]}"
    return [x["body"] for x in res]


def sse_frames(raw):
    """[(event type, parsed data)] of a raw SSE response (head included;
    de-chunked when chunked); comment-only frames are dropped."""
    head, _, body = raw.partition(b"\r\n\r\n")
    if b"chunked" in head.lower():
        out, rest = b"", body
        while rest:
            size_line, sep, rest = rest.partition(b"\r\n")
            if not sep:
                break
            size = int(size_line.split(b";")[0], 16)
            if size == 0:
                break
            out += rest[:size]
            rest = rest[size + 2:]
        body = out
    frames = []
    for frame in body.decode("utf-8", "replace").split("\n\n"):
        ev, data = None, []
        for line in frame.split("\n"):
            if line.startswith("event:"):
                ev = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].lstrip(" "))
        if ev is None and not data:
            continue
        assert data, f"frame without data: {frame[:200]!r}"
        frames.append((ev, json.loads("\n".join(data))))
    return frames


def service_rss_kb(svc):
    pid = svc.pid()
    assert pid and svc.alive(), f"{svc.name} does not run"
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError(f"no VmRSS for pid {pid}")


# ---- 1. poison event -> dead letter, later events still apply ----

def test_poison_event_dead_lettered_later_events_apply(ctx):
    stock_topic = ctx.env.get("STOCKFLOW_TOPIC_STOCK")
    dlq_topic = ctx.env.get("STOCKFLOW_TOPIC_DLQ")
    assert stock_topic and dlq_topic, \
        "the runner passes no STOCKFLOW_TOPIC_STOCK / STOCKFLOW_TOPIC_DLQ"
    store, product = api.store_and_product(ctx)
    first = api.txn(ctx, store, product, "receipt", 3, on_hand=3, version=1)
    _, part, off1 = client.position_offset(first["position"])
    api.expect_stock(ctx, store, product, on_hand=3, version=1,
                     position=first["position"])
    dlq_before = metric(ctx, "stockflow_projector_dlq_total")

    # Garbage on the very partition this store's events use, so that the
    # next valid write comes after it in the same log.
    marker = client.unique("poison").encode()
    garbage = b"\xff\xfe\xfd\x00" + marker + bytes(
        random.randrange(256) for _ in range(64))
    with tempfile.NamedTemporaryFile(suffix=".bin") as f:
        f.write(garbage)
        f.flush()
        kcat(ctx, ["-P", "-t", stock_topic, "-p", str(part), "-k", store, f.name])

    second = api.txn(ctx, store, product, "receipt", 4, on_hand=7, version=2)
    kind, part2, off2 = client.position_offset(second["position"])
    assert (kind, part2) == ("stock", part), \
        f"second write on another partition: {second['position']}"
    # The valid write after the poison is applied.
    api.expect_stock(ctx, store, product, on_hand=7, version=2,
                     position=second["position"])
    hist = api.history(ctx, store, product, position=second["position"])
    assert [i.get("transaction_id") for i in hist] == \
        [second["transaction_id"], first["transaction_id"]], hist

    # The dead letter: key and value of the poison, headers naming it.
    raw = kcat(ctx, ["-C", "-t", dlq_topic, "-o", "beginning", "-e", "-q",
                "-f", "@@REC@@%h@@KEY@@%k@@VAL@@%s@@END@@\n"])
    recs = [r for r in raw.split(b"@@REC@@") if marker in r]
    assert len(recs) == 1, f"{len(recs)} dead letters carry the marker " \
        f"(dlq has {raw.count(b'@@REC@@')} messages)"
    head, _, rest = recs[0].partition(b"@@KEY@@")
    key, _, rest = rest.partition(b"@@VAL@@")
    value, _, _ = rest.partition(b"@@END@@")
    assert key == store.encode(), f"dead letter key {key!r}"
    assert value == garbage, "dead letter value differs from the poison"
    headers = head.decode("utf-8", "replace")

    def header(name):
        m = re.search(rf"(?:^|,){re.escape(name)}=([^,]*)", headers)
        assert m, f"dead letter lacks header {name}: {headers!r}"
        return m.group(1)
    assert header("x-error").strip(), f"empty x-error: {headers!r}"
    assert header("x-source-topic") == stock_topic, headers
    assert header("x-source-partition") == str(part), headers
    src_off = int(header("x-source-offset"))
    assert off1 < src_off < off2, \
        f"x-source-offset {src_off} not between {off1} and {off2}"
    # That offset of the stock topic really holds the poison.
    orig = kcat(ctx, ["-C", "-t", stock_topic, "-p", str(part), "-o",
                 str(src_off), "-c", "1", "-e", "-q", "-f", "%s"])
    assert orig == garbage, f"stock {part}/{src_off} is not the poison"

    assert metric(ctx, "stockflow_projector_dlq_total") == dlq_before + 1, \
        "dlq_total did not grow by one"


# ---- 2. --rebuild gives identical tables ----

CHECKSUM_TABLES = ("inventory", "transactions", "products", "stores",
                   "orders", "order_lines", "stock_crossings")
VOLATILE_COLUMNS = ("updated_at", "recorded_at")


def table_checksums(ctx):
    sums = {}
    for t in CHECKSUM_TABLES:
        cols = psql(ctx, "select string_agg(quote_ident(column_name), ',' "
                         "order by ordinal_position) from "
                         "information_schema.columns where table_schema = "
                         f"'public' and table_name = '{t}' and column_name "
                         f"not in {VOLATILE_COLUMNS!r}")
        assert cols, f"table {t} has no columns"
        sums[t] = psql(ctx, f"select count(*) || ':' || coalesce(md5("
                            f"string_agg(x::text, '|' order by x::text)), '') "
                            f"from (select {cols} from public.{t}) x")
    return sums


def test_rebuild_gives_identical_tables(ctx):
    s1 = api.create_store(ctx)["id"]
    s2 = api.create_store(ctx)["id"]
    pa = api.create_product(ctx)["id"]
    pb = api.create_product(ctx, reorder_level=2)["id"]
    positions = []
    positions.append(api.txn(ctx, s1, pa, "receipt", 20, on_hand=20,
                             version=1)["position"])
    positions.append(api.txn(ctx, s1, pb, "receipt", 8, on_hand=8,
                             version=1)["position"])
    positions.append(api.txn(ctx, s1, pa, "sale", 3, on_hand=17,
                             version=2)["position"])
    positions.append(api.txn(ctx, s2, pb, "receipt", 1, on_hand=1,
                             version=1)["position"])
    r = post(ctx.cmd, "/v1/transfers",
             {"from_store_id": s1, "to_store_id": s2, "product_id": pa,
              "quantity": 5})
    positions.append(expect_json(r, 201, "transfer")["position"])
    r = post(ctx.cmd, f"/v1/stores/{s1}/orders",
             {"lines": [{"product_id": pa, "quantity": 2},
                        {"product_id": pb, "quantity": 3}],
              "reference": "rebuild-1"})
    order = expect_json(r, 201, "place order")
    positions.append(order["position"])
    r = post(ctx.cmd, f"/v1/orders/{order['order_id']}/fulfil")
    positions.append(expect_json(r, 200, "fulfil")["position"])
    r = post(ctx.cmd, f"/v1/stores/{s2}/orders",
             {"lines": [{"product_id": pa, "quantity": 1}]})
    order2 = expect_json(r, 201, "place order 2")
    r = post(ctx.cmd, f"/v1/orders/{order2['order_id']}/cancel")
    positions.append(expect_json(r, 200, "cancel")["position"])
    pos = merge_positions(positions)
    # s1 x pa: receipt, sale, transfer_out, order placed, fulfilled.
    api.expect_stock(ctx, s1, pa, on_hand=10, version=5, position=pos)
    api.expect_stock(ctx, s2, pa, on_hand=5, version=3, position=pos)

    # Earlier tests' writes may still be in flight on other partitions:
    # take the checksums once two readings in a row agree.
    def settled():
        a = table_checksums(ctx)
        b = table_checksums(ctx)
        assert a == b, "the read model still moves"
        return a
    before = client.eventually(settled, timeout=60, interval=0.5,
                               what="a settled read model")
    assert int(before["orders"].split(":")[0]) >= 2, before

    proj = ctx.stack["projector"]
    t0 = time.monotonic()
    out = subprocess.run([proj.binary, "--rebuild"], env=proj.env,
                         stdin=subprocess.DEVNULL, capture_output=True,
                         timeout=180)
    log = (out.stdout + out.stderr).decode("utf-8", "replace")
    assert out.returncode == 0, \
        f"--rebuild exited {out.returncode}:\n{log[-3000:]}"
    assert proj.alive(), "the live projector died during the rebuild"
    ctx.log(f"rebuild took {time.monotonic() - t0:.1f}s")

    after = table_checksums(ctx)
    diff = {t: (before[t], after[t]) for t in CHECKSUM_TABLES
            if before[t] != after[t]}
    assert not diff, f"tables differ after the rebuild: {diff}"

    # The live projector goes on applying into the switched tables.
    last = api.txn(ctx, s1, pa, "receipt", 1, on_hand=11, version=6)
    api.expect_stock(ctx, s1, pa, on_hand=11, version=6,
                     position=last["position"])
    hist = api.history(ctx, s1, pa, position=last["position"])
    assert hist and hist[0].get("transaction_id") == \
        last["transaction_id"], hist[:2]
    after2 = table_checksums(ctx)
    assert int(after2["transactions"].split(":")[0]) == \
        int(after["transactions"].split(":")[0]) + 1, (after, after2)


# ---- 3. two projector instances, one SIGKILLed, nothing applied twice ----

def second_projector(ctx):
    first = ctx.stack["projector"]
    env = dict(first.env)
    port = first.port + 50
    env["STOCKFLOW_PROJECTOR_LISTEN"] = f"127.0.0.1:{port}"
    state = os.path.dirname(os.path.dirname(first.log_path))
    svc = stackmod.Service("projector", first.binary, env, state)
    svc.log_path = os.path.join(state, "logs", "projector-second.log")
    svc.pid_path = os.path.join(state, "pids", "projector-second.pid")
    svc.port = port
    return svc


def test_two_projectors_rebalance_without_double_apply(ctx):
    store = api.create_store(ctx)["id"]
    product = api.create_product(ctx, reorder_level=0)["id"]  # no crossings
    first = ctx.stack["projector"]
    second = second_projector(ctx)
    n_threads, per_thread = 8, 25
    n = n_threads * per_thread
    accepted, errors = [], []
    lock = threading.Lock()
    progress = threading.Semaphore(0)
    second.start()
    try:
        second.wait_ready(ctx.stack.ready_timeout)

        def writer():
            for _ in range(per_thread):
                try:
                    r = api.post_txn(ctx, store, product, "receipt", 1)
                    with lock:
                        (accepted if r.status == 201 else errors).append(
                            r.body if r.status == 201 else repr(r))
                except Exception as e:  # noqa: BLE001 - reported below
                    with lock:
                        errors.append(repr(e))
                finally:
                    progress.release()

        threads = [threading.Thread(target=writer, daemon=True)
                   for _ in range(n_threads)]
        for t in threads:
            t.start()
        for _ in range(50):
            assert progress.acquire(timeout=60), "writes stalled"
        assert first.kill() == -signal.SIGKILL, "projector not SIGKILLed"
        for _ in range(50):
            assert progress.acquire(timeout=60), "writes stalled"
        first.start()
        first.wait_ready(ctx.stack.ready_timeout)
        for t in threads:
            t.join(180)
        assert not any(t.is_alive() for t in threads), "writers still run"
        code, graceful = second.stop()
        assert (code, graceful) == (0, True), \
            f"second projector: exit {code}, graceful {graceful}\n" \
            f"{second.log_tail(30)}"

        assert not errors, f"{len(errors)} writes failed: {errors[:3]}"
        assert len(accepted) == n, f"{len(accepted)} of {n} accepted"
        last = max(accepted, key=lambda b: b["version"])
        assert sorted(b["version"] for b in accepted) == \
            list(range(1, n + 1)), "versions are not 1..n"
        api.expect_stock(ctx, store, product, on_hand=n, version=n,
                         position=last["position"])
        hist = api.history(ctx, store, product, position=last["position"])
        ids = [api.txn_item_id(i) for i in hist]
        assert len(ids) == n and len(set(ids)) == n, \
            f"history: {len(ids)} rows, {len(set(ids))} distinct, want {n}"
        assert set(ids) == {b["transaction_id"] for b in accepted}, \
            "history ids differ from the accepted writes"
        rows = psql(ctx, "select count(*), count(distinct transaction_id), "
                         "coalesce(min(version), 0), coalesce(max(version), 0)"
                         f" from changes where store_id = '{store}' and "
                         f"product_id = '{product}'")
        assert rows == f"{n}|{n}|1|{n}", \
            f"change log rows (count|distinct|min version|max): {rows}"
        txns = psql(ctx, "select count(*) from transactions where "
                         f"store_id = '{store}' and product_id = '{product}'")
        assert txns == str(n), f"{txns} transactions rows, want {n}"
    finally:
        if second.alive():
            second.stop()
        if not first.alive():
            if first.proc is not None:
                first.kill()
            first.start()
            first.wait_ready(ctx.stack.ready_timeout)


# ---- 4. keyset paging while rows change ----

def test_inventory_paging_while_rows_change(ctx):
    n = 1000
    store_body = api.create_store(ctx)
    store = store_body["id"]
    created = create_products(ctx, n)
    products = [p["id"] for p in created]
    bodies = post_batch(ctx, [{"store_id": store, "product_id": p,
                               "type": "receipt", "quantity": 5}
                              for p in products])
    # read-your-writes covers the positions a reader passes: the store's and
    # the products' (catalog) as well as the receipts' (stock); with the
    # stock positions alone a page may be read before the projector applied
    # the catalog event of the store (seen under load: 404 store not found)
    seed_pos = merge_positions([b["position"] for b in bodies] +
                               [store_body["position"]] +
                               [p["position"] for p in created])

    stop = threading.Event()
    written = []           # positions of the writer's accepted receipts
    werrors = []
    cond = threading.Condition()

    def writer():
        rnd = random.Random()
        while not stop.is_set():
            p = rnd.choice(products)
            try:
                r = api.post_txn(ctx, store, p, "receipt", 1)
            except Exception as e:  # noqa: BLE001 - reported below
                werrors.append(repr(e))
                return
            with cond:
                if r.status == 201:
                    written.append(r.body["position"])
                else:
                    werrors.append(repr(r))
                cond.notify_all()
            if r.status != 201:
                return

    wt = threading.Thread(target=writer, daemon=True)
    wt.start()
    seen = []
    pages = 0
    try:
        cursor, pos = None, seed_pos
        while True:
            q = {"limit": "37", "min_position": pos}
            if cursor:
                q["cursor"] = cursor
            r = get(ctx.qry, f"/v1/stores/{store}/inventory?"
                             f"{urllib.parse.urlencode(q)}")
            body = expect_json(r, 200, f"page {pages + 1}")
            items = body.get("items")
            assert isinstance(items, list) and len(items) <= 37, body
            pages += 1
            seen += [i.get("product_id") for i in items]
            cursor = body.get("next_cursor")
            if not cursor:
                break
            assert pages < 100, "paging does not end"
            # Before the next page: at least one more receipt is accepted,
            # and the next page waits until it is in the read model.
            with cond:
                have = len(written)
                assert cond.wait_for(
                    lambda: len(written) > have or werrors, timeout=60), \
                    "the writer made no progress"
                assert not werrors, f"writer failed: {werrors[:3]}"
                pos = merge_positions([seed_pos, written[-1]])
    finally:
        stop.set()
        wt.join(60)
    assert not werrors, f"writer failed: {werrors[:3]}"
    assert pages == (n + 36) // 37, f"{pages} pages for {n} rows"
    dup = len(seen) - len(set(seen))
    assert dup == 0, f"{dup} product ids repeated across pages"
    assert set(seen) == set(products), \
        f"{len(set(products) - set(seen))} products missing, " \
        f"{len(set(seen) - set(products))} unexpected"
    assert seen == sorted(seen), "rows are not in product id order"
    assert len(written) >= pages - 1, (len(written), pages)


# ---- 5. as_of ----

def inventory_as_of(ctx, store, when, position):
    q = urllib.parse.urlencode({"as_of": when, "min_position": position})
    items = api.list_all(ctx, f"/v1/stores/{store}/inventory?{q}")
    return {i.get("product_id"): i for i in items}


def test_inventory_as_of(ctx):
    catalog = [api.create_store(ctx), api.create_product(ctx),
               api.create_product(ctx)]
    store, pa, pb = (b["id"] for b in catalog)
    steps = [(pa, "receipt", 10, 10), (pa, "sale", 3, 7),
             (pb, "receipt", 4, 4), (pa, "receipt", 5, 12),
             (pa, "sale", 12, 0), (pb, "sale", 1, 3)]
    done = []   # (product, created_at datetime, on_hand after, version)
    versions = {pa: 0, pb: 0}
    for prod, type_, q, on_hand in steps:
        versions[prod] += 1
        body = api.txn(ctx, store, prod, type_, q, on_hand=on_hand,
                       version=versions[prod])
        done.append((prod, parse_time(body["created_at"]), on_hand,
                     versions[prod], body["created_at"], body["position"]))
        time.sleep(0.02)   # spreads the event times; no synchronisation
    # the catalog's positions too: see test_inventory_paging_while_rows_change
    last_pos = merge_positions([d[5] for d in done] +
                               [b["position"] for b in catalog])
    times = [d[1] for d in done]
    assert times == sorted(times) and len(set(times)) == len(times), \
        f"event times not strictly increasing: {times}"

    def expected(at):
        want = {}
        for prod, t, on_hand, version, text, _ in done:
            if t <= at:
                want[prod] = (on_hand, version, text)
        return want

    one_us = datetime.timedelta(microseconds=1)
    instants = [times[0] - datetime.timedelta(seconds=1), times[0] - one_us]
    for i, t in enumerate(times):
        instants.append(t)                       # inclusive
        if i + 1 < len(times):
            instants.append(t + (times[i + 1] - t) / 2)
    instants.append(times[-1] + datetime.timedelta(hours=1))
    for at in instants:
        got = inventory_as_of(ctx, store, fmt_time(at), last_pos)
        want = expected(at)
        assert set(got) == set(want), \
            f"as_of {fmt_time(at)}: products {sorted(got)} != {sorted(want)}"
        for prod, (on_hand, version, text) in want.items():
            row = got[prod]
            assert (row.get("on_hand"), row.get("reserved"),
                    row.get("available"), row.get("version")) == \
                (on_hand, 0, on_hand, version), \
                f"as_of {fmt_time(at)}: row {row}, want on_hand {on_hand} " \
                f"version {version}"
            assert parse_time(row.get("updated_at")) == parse_time(text), \
                f"as_of {fmt_time(at)}: updated_at {row.get('updated_at')} " \
                f"!= {text}"
    # The same instant with a +02:00 offset (percent-encoded '+').
    mid = times[1] + (times[2] - times[1]) / 2
    local = mid.astimezone(datetime.timezone(datetime.timedelta(hours=2)))
    text = local.strftime("%Y-%m-%dT%H:%M:%S.%f+02:00")
    got = inventory_as_of(ctx, store, text, last_pos)
    assert {k: (v.get("on_hand"), v.get("version")) for k, v in got.items()} \
        == {pa: (7, 2)}, f"as_of {text}: {got}"
    for bad in ("yesterday", "2025-13-01T00:00:00Z", "2025-03-14"):
        r = get(ctx.qry, f"/v1/stores/{store}/inventory?as_of={bad}")
        expect_problem(r, 422, "validation_failed", f"as_of={bad}")


# ---- 6. below_reorder, and a viewer of another store ----

def test_below_reorder_and_viewer_scope(ctx):
    store = api.create_store(ctx)["id"]
    other = api.create_store(ctx)["id"]
    at = api.create_product(ctx, reorder_level=5)["id"]      # 5: not below
    low = api.create_product(ctx, reorder_level=5)["id"]     # 4: below
    held = api.create_product(ctx, reorder_level=5)["id"]    # 10, 6 reserved
    zero = api.create_product(ctx, reorder_level=0)["id"]    # 0 of 0
    pos = []
    pos.append(api.txn(ctx, store, at, "receipt", 5, on_hand=5,
                       version=1)["position"])
    pos.append(api.txn(ctx, store, low, "receipt", 4, on_hand=4,
                       version=1)["position"])
    pos.append(api.txn(ctx, store, held, "receipt", 10, on_hand=10,
                       version=1)["position"])
    pos.append(api.txn(ctx, store, zero, "receipt", 1, on_hand=1,
                       version=1)["position"])
    pos.append(api.txn(ctx, store, zero, "sale", 1, on_hand=0,
                       version=2)["position"])
    pos.append(api.txn(ctx, other, low, "receipt", 1, on_hand=1,
                       version=1)["position"])
    r = post(ctx.cmd, f"/v1/stores/{store}/orders",
             {"lines": [{"product_id": held, "quantity": 6}]})
    order = expect_json(r, 201, "order")
    pos.append(order["position"])
    p = merge_positions(pos)

    def filtered(value, headers=None):
        path = f"/v1/stores/{store}/inventory?below_reorder={value}"
        items = api.list_all(ctx, path, p) if headers is None else \
            expect_json(get(ctx.qry, with_position(path, p),
                            headers=headers), 200, path)["items"]
        return {i.get("product_id"): (i.get("on_hand"), i.get("reserved"),
                                      i.get("available")) for i in items}
    below = {low: (4, 0, 4), held: (10, 6, 4)}
    everything = dict(below, **{at: (5, 0, 5), zero: (0, 0, 0)})
    assert filtered("true") == below, filtered("true")
    assert filtered("1") == below
    assert filtered("false") == everything, filtered("false")
    assert filtered("0") == everything
    # A receipt lifts `low` to its level: it leaves the list; fulfilling
    # the order keeps `held` below (available stays 4).
    lift = api.txn(ctx, store, low, "receipt", 1, on_hand=5, version=2)
    r = post(ctx.cmd, f"/v1/orders/{order['order_id']}/fulfil")
    done = expect_json(r, 200, "fulfil")
    p = merge_positions([p, lift["position"], done["position"]])
    assert filtered("true") == {held: (4, 0, 4)}, filtered("true")

    # A viewer of `store` only.
    name = client.unique("viewer").lower()
    password = "correct horse battery staple 42"
    r = post(ctx.cmd, "/v1/users", {"username": name,
                                    "email": f"{name}@example.com",
                                    "password": password},
             headers=client.NO_AUTH)
    user = expect_json(r, 201, "sign-up")
    r = client.patch(ctx.cmd, f"/v1/users/{user['id']}",
                     {"role": "viewer", "store_ids": [store]})
    body = expect_json(r, 200, "make a viewer of one store")
    assert (body.get("role"), body.get("store_ids")) == ("viewer", [store])
    token = ctx.login(name, password)
    auth = client.bearer(token)

    def own_store_readable():
        r = get(ctx.qry, with_position(
            f"/v1/stores/{store}/inventory?below_reorder=true", p),
            headers=auth)
        client.expect_status(r, 200, "viewer reads its store")
        return r
    client.eventually(own_store_readable, timeout=15, what="viewer access")
    assert filtered("true", auth) == {held: (4, 0, 4)}
    r = get(ctx.qry, f"/v1/stores/{store}/inventory/{held}", headers=auth)
    row = expect_json(r, 200, "viewer reads a row of its store")
    assert (row.get("on_hand"), row.get("version")) == (4, 3), row

    for path in (f"/v1/stores/{other}",
                 f"/v1/stores/{other}/inventory",
                 f"/v1/stores/{other}/inventory?below_reorder=true",
                 f"/v1/stores/{other}/inventory/{low}",
                 f"/v1/stores/{other}/transactions",
                 f"/v1/stores/{client.new_uuid()}/inventory"):
        expect_problem(get(ctx.qry, path, headers=auth), 403, "forbidden",
                       f"viewer GET {path}")
    for path in (f"/v1/stores/{store}/inventory/{client.new_uuid()}",
                 f"/v1/products/{client.new_uuid()}",
                 f"/v1/orders/{client.new_uuid()}"):
        expect_problem(get(ctx.qry, path, headers=auth), 404, "not_found",
                       f"viewer GET {path}")
    # Its store list and a product's per-store rows only show its store.
    stores = expect_json(get(ctx.qry, "/v1/stores?limit=500", headers=auth),
                         200, "viewer store list")
    assert [s.get("id") for s in stores["items"]] == [store], stores
    inv = expect_json(get(ctx.qry, f"/v1/products/{low}/inventory",
                          headers=auth), 200, "viewer product inventory")
    assert [i.get("store_id") for i in inv["items"]] == [store], inv
    # Without a token: 401.
    expect_problem(get(ctx.qry, f"/v1/stores/{store}/inventory",
                       headers=client.NO_AUTH), 401, "unauthorized")


# ---- 7. a change-stream client that never reads ----

def test_slow_sse_client_is_cut_off_memory_flat(ctx):
    qsvc = ctx.stack["query"]
    limit = int(qsvc.setting("STOCKFLOW_STREAM_MAX_BUFFER") or 1048576)
    st = api.create_store(ctx)
    store = st["id"]
    product = api.create_product(ctx, reorder_level=0)["id"]  # no crossings
    rss0 = service_rss_kb(qsvc)

    # A subscriber with a tiny receive buffer that never reads.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(10)
    sock.connect((client.HOST, ctx.qry))
    try:
        hdrs = {"Host": "it", "Accept": "text/event-stream"}
        hdrs.update(client._auth_headers())
        req = (f"GET /v1/changes?store_id={store}&min_position="
               f"{st['position']} HTTP/1.1\r\n" +
               "".join(f"{k}: {v}\r\n" for k, v in hdrs.items()) + "\r\n")
        sock.sendall(req.encode())

        # Enough changes to overflow the limit plus whatever the kernel
        # buffers (the server's send buffer grows up to tcp_wmem's maximum)
        # twice over; a change frame is about 340 bytes.
        with open("/proc/sys/net/ipv4/tcp_wmem") as f:
            wmem_max = int(f.read().split()[2])
        per_batch = 1000
        batches = max(20, 2 * (limit + wmem_max) // (300 * per_batch) + 1)
        last = None
        for b in range(batches):
            bodies = post_batch(ctx, [{"store_id": store,
                                       "product_id": product,
                                       "type": "receipt", "quantity": 1}
                                      for _ in range(per_batch)])
            last = max(bodies, key=lambda x: x["version"])
        total = per_batch * batches
        assert last["version"] == total, last
        api.expect_stock(ctx, store, product, on_hand=total, version=total,
                         position=last["position"])
        rss1 = service_rss_kb(qsvc)

        # Now read: the server must have cut the stream off (EOF), having
        # delivered far fewer than all the changes.
        data, closed = client.read_until_close(sock, timeout=120,
                                               limit=1 << 30,
                                               until_close=True)
    finally:
        sock.close()
    assert closed, f"stream still open after {len(data)} bytes " \
        f"({data.count(b'event: change')} changes of {total})"
    assert data.startswith(b"HTTP/1.1 200"), data[:200]
    frames = sse_frames(data)
    kinds = [f[0] for f in frames]
    n_changes = kinds.count("change")
    ctx.log(f"slow client got {len(data)} bytes, {n_changes} changes; "
            f"rss {rss0} -> {rss1} kB")
    assert 0 < n_changes < total, \
        f"{n_changes} of {total} changes delivered: not cut off by overflow"
    # Changes in id order, then one final overflow naming the last change
    # delivered (docs/api.md).
    assert kinds == ["change"] * n_changes + ["overflow"], \
        f"frame kinds: {kinds[:3]} ... {kinds[-3:]}"
    ids = [f[1]["id"] for f in frames[:-1]]
    assert ids == sorted(ids) and len(set(ids)) == len(ids), \
        "change ids not increasing"
    versions = [f[1]["version"] for f in frames[:-1]]
    assert versions == list(range(versions[0], versions[0] + n_changes)), \
        "the stream skipped or repeated a change"
    # (the overflow message names it `last_id`; docs/api.md says `id`)
    assert frames[-1][1].get("last_id") == ids[-1], \
        f"overflow {frames[-1][1]} does not name the last change {ids[-1]}"
    grew_mb = (rss1 - rss0) / 1024
    # Under ASan freed memory sits in the allocator's quarantine (256 MB by
    # default), so only a gross leak shows there.
    allowed = 400 if ctx.args.sanitized else 50
    assert grew_mb < allowed, \
        f"query RSS grew by {grew_mb:.0f} MB (> {allowed} MB)"
    # The service still serves streams and reads.
    api.expect_stock(ctx, store, product, on_hand=total, version=total)
