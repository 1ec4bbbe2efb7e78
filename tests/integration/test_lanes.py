"""Writer lanes keep every event stream in decision order across lanes.

Transfers between two stores of different lanes commit on the lane of
their source store and write the other lane's partition; they race with
sales at both ends, on the same store x product streams. The stock topic,
folded per stream in log order, must show versions 1..n without a gap,
each on_hand the running sum of the deltas, nothing negative, both legs of
every accepted transfer and nothing else; the read model must equal the
fold (docs/architecture.md, "Order is per stream")."""

import re

import api
import client
import eventlog
from client import expect_json, get, post
from test_instances import partition_of

STOCK = 12  # units received at each store before the race
RACERS = 48


def _lanes(ctx):
    text = get(ctx.cmd, "/metrics").body
    m = re.search(r"^stockflow_command_writer_lanes (\d+)$", text, re.M)
    assert m, "metrics lack stockflow_command_writer_lanes"
    return int(m.group(1))


def _stores_on_two_lanes(ctx, lanes):
    """Two new stores whose partitions belong to different lanes (lane p
    mod lanes with one instance)."""
    first = api.create_store(ctx)["id"]
    for _ in range(40):
        other = api.create_store(ctx)["id"]
        if partition_of(other) % lanes != partition_of(first) % lanes:
            return first, other
    raise AssertionError("40 stores all fell on the lane of the first")


def _fold(msgs, problems):
    """{store: (on_hand, version, [event ids])} of one product folded in log
    order, checking each event against the fold."""
    rows = {}
    for m in msgs:
        e = m.event
        p = e.get("payload") or {}
        kind = e.get("event_type")
        if kind not in ("StockMoved", "TransferOut", "TransferIn"):
            problems.append(f"unexpected event {m!r}")
            continue
        on_hand, version, ids = rows.get(e["store_id"], (0, 0, []))
        on_hand += p["delta"]
        version += 1
        ids.append((kind, e["event_id"], p.get("transfer_id")))
        rows[e["store_id"]] = (on_hand, version, ids)
        if e["stream_version"] != version:
            problems.append(f"{m!r}: stream_version {e['stream_version']}, "
                            f"the fold is at {version}")
        if p["on_hand"] != on_hand or on_hand < 0:
            problems.append(f"{m!r}: on_hand {p['on_hand']}, the fold of "
                            f"the deltas is {on_hand}")
    return rows


def test_transfers_across_lanes_keep_each_stream_in_order(ctx):
    lanes = _lanes(ctx)
    assert lanes >= 2, (
        f"the command service runs {lanes} writer lane(s): this test needs "
        "two (STOCKFLOW_WRITER_LANES)")
    a, b = _stores_on_two_lanes(ctx, lanes)
    product = api.create_product(ctx, reorder_level=0)["id"]  # no crossings
    api.txn(ctx, a, product, "receipt", STOCK, on_hand=STOCK, version=1)
    api.txn(ctx, b, product, "receipt", STOCK, on_hand=STOCK, version=1)

    def race(i):
        src, dst = (a, b) if i % 4 < 2 else (b, a)
        if i % 2 == 0:
            return "transfer", post(ctx.cmd, "/v1/transfers", {
                "from_store_id": src, "to_store_id": dst,
                "product_id": product, "quantity": 1 + i % 3})
        return "sale", api.post_txn(ctx, src, product, "sale", 1)

    results = client.parallel(RACERS, race, 60)
    errors = [r for r in results if not isinstance(r, tuple)]
    assert not errors, f"{len(errors)} requests failed: {errors[:3]}"
    accepted = {"transfer": set(), "sale": set()}
    positions = []
    for kind, r in results:
        if r.status == 409:
            client.expect_problem(r, 409, "insufficient_stock")
            continue
        body = expect_json(r, 201, f"{kind} in the race")
        accepted[kind].add(body["transfer_id" if kind == "transfer"
                                else "transaction_id"])
        positions.append(body["position"])
    assert accepted["transfer"] and accepted["sale"], accepted

    msgs = eventlog.read_topic(ctx, ctx.env["STOCKFLOW_TOPIC_STOCK"],
                               keys={a, b})
    problems = []
    rows = _fold([m for m in msgs if m.event.get("product_id") == product],
                 problems)
    assert not problems, "\n".join(problems[:10])
    legs = {}
    sales = set()
    for store in (a, b):
        for kind, event_id, transfer_id in rows[store][2][1:]:
            if kind == "StockMoved":
                sales.add(event_id)
            else:
                legs.setdefault(transfer_id, []).append((kind, store))
    assert sales == accepted["sale"], \
        f"sales in the log {len(sales)}, accepted {len(accepted['sale'])}"
    assert set(legs) == accepted["transfer"], \
        f"transfers in the log {len(legs)}, accepted " \
        f"{len(accepted['transfer'])}"
    for tid, both in legs.items():
        assert sorted(k for k, _ in both) == ["TransferIn", "TransferOut"] \
            and both[0][1] != both[1][1], f"transfer {tid}: legs {both}"
    # conserved: what the sales took is all that left the two stores
    total = rows[a][0] + rows[b][0]
    assert total == 2 * STOCK - len(sales), \
        f"on hand {total} after {len(sales)} sales of 1 from {2 * STOCK}"
    for pos in positions:  # the read model has applied every 201
        expect_json(api.inventory_row(ctx, a, product, pos), 200,
                    "inventory row after a write's position")
    for store in (a, b):
        on_hand, version, _ = rows[store]
        api.expect_stock(ctx, store, product, on_hand=on_hand,
                         version=version)
