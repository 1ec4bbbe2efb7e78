"""Exactly-once projection: the projector is killed with SIGKILL while writes
go on, then started again; the read model ends with every accepted write
applied once (none lost, none doubled)."""

import threading
import time

import api
import client


def test_projector_sigkill_during_writes(ctx):
    store, product = api.store_and_product(ctx)
    n_threads, per_thread = 4, 25
    accepted = []
    errors = []
    lock = threading.Lock()
    progress = threading.Semaphore(0)

    def writer():
        for _ in range(per_thread):
            try:
                r = api.post_txn(ctx, store, product, "receipt", 1)
                with lock:
                    if r.status == 201:
                        accepted.append(r.body)
                    else:
                        errors.append(repr(r))
            except Exception as e:  # noqa: BLE001 - reported below
                with lock:
                    errors.append(repr(e))
            finally:
                progress.release()

    threads = [threading.Thread(target=writer, daemon=True) for _ in range(n_threads)]
    for t in threads:
        t.start()
    # Let some writes through, kill the projector mid-stream, keep it down
    # while writes continue, then bring it back.
    for _ in range(30):
        assert progress.acquire(timeout=30), "writes stalled"
    proj = ctx.stack["projector"]
    assert proj.kill() == -9, "projector not killed by SIGKILL"
    time.sleep(0.5)
    proj.start()
    proj.wait_ready(ctx.stack.ready_timeout)
    for t in threads:
        t.join(120)
    assert not errors, f"{len(errors)} writes failed: {errors[:3]}"
    n = n_threads * per_thread
    assert len(accepted) == n, f"{len(accepted)} of {n} writes accepted"
    versions = sorted(b["version"] for b in accepted)
    assert versions == list(range(1, n + 1)), "versions not 1..n"
    last = max(accepted, key=lambda b: b["version"])
    api.expect_stock(ctx, store, product, on_hand=n, version=n,
                     position=last["position"])
    hist = api.history(ctx, store, product, position=last["position"])
    ids = [api.txn_item_id(i) for i in hist]
    assert len(ids) == n, f"history has {len(ids)} rows for {n} writes"
    assert len(set(ids)) == n, "history has duplicates"
    assert set(ids) == {b["transaction_id"] for b in accepted}, \
        "history ids differ from the accepted transactions"
    assert [i.get("version") for i in hist] == list(range(n, 0, -1)), \
        "history versions not n..1 newest first"
