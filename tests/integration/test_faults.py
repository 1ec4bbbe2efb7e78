"""Fault suite (issue 10, part 4): writes survive a killed or paused broker,
a stopped PostgreSQL and a killed or stopped command service, against the
real broker and PostgreSQL of tests/run.sh.

Each test runs a load from a few client threads against stores of its own
that received stock: sales (and a receipt now and then, so that stock
stays near zero and is sometimes short) with an Idempotency-Key each. A
command is retried with its same key on 503, on 409
idempotency_key_in_flight and on a connection error, until it gets a
definite answer (201, or 409 insufficient_stock). Under that load it
injects one fault, prints `FAULT <name>: ...` lines with times relative
to the test's start and `RECOVERY <name>: writes resumed N.N s after ...`,
and checks:

- writes resume (a 201 answered) within 30 s of the fault's end, with no
  restart by hand (the command service is started again by the test only
  after it killed it, as a supervisor would);
- every answer is 201, 409 insufficient_stock / idempotency_key_in_flight,
  or 503 `unavailable` with Retry-After: never a 500 or anything else, and
  never a timeout (CLIENT_TIMEOUT_S) or a refused connection, except from
  a command service the test has stopped or killed at that moment; reads of
  the query service meanwhile: 200 or 503 with Retry-After;
- every acknowledged (201) command is in the stock topic exactly once, with
  the answer's transaction id, on_hand and version; no key has two events,
  and no event belongs to a command that was not acknowledged;
- a retry with the same key returns the first answer (status and body)
  with Idempotent-Replayed: true;
- the read model (query service: rows and history) equals a fold of the
  stock topic read by this test (kcat, read_committed, decoded with
  fastavro), and no on_hand or available is below zero anywhere in it;
- all three services answer /readyz 200 again within 30 s by themselves.

Violations are collected and reported together at the end of a test.
Whatever happens, a test leaves the broker and PostgreSQL running and the
three services ready (restarting one by hand if it must, which fails the
test), so later tests are not affected.
"""

import collections
import http.client
import json
import os
import random
import re
import signal
import threading
import time
import uuid

import api
import client
import eventlog
import infra
import stack as stackmod

CLIENT_TIMEOUT_S = 30.0  # the integration client's default
RESUME_LIMIT_S = 30.0    # writes must resume within this of a fault's end
READY_LIMIT_S = 30.0     # and every /readyz be 200 again
THREADS = 4
PAUSE_S = 0.03           # between two commands of one thread
INITIAL_STOCK = 40
N_STORES, N_PRODUCTS = 3, 2
BEFORE_S = 2.5           # load before the fault
AFTER_S = 3.0            # load after writes resumed
REPLAY_SAMPLE = 40       # replays besides every retried command


def _now():
    return time.monotonic()


class Attempt:
    """One HTTP attempt of a command: when it was sent and answered, and
    how: outcome "http" (status, code, retry_after, replayed), "timeout" or
    "conn" (error text in detail)."""

    __slots__ = ("t_sent", "t_done", "outcome", "status", "code",
                 "retry_after", "replayed", "detail")

    def __init__(self, t_sent):
        self.t_sent = t_sent
        self.t_done = None
        self.outcome = None
        self.status = None
        self.code = None
        self.retry_after = None
        self.replayed = False
        self.detail = ""

    def __repr__(self):
        what = self.status if self.outcome == "http" else self.outcome
        return f"<{what} {self.code or self.detail} " \
               f"{self.t_done - self.t_sent:.2f}s>"


class Command:
    """A write and every attempt at it; final is the definite answer (a
    client.Response) or None."""

    def __init__(self, key, store, product, body):
        self.key = key
        self.store = store
        self.product = product
        self.body = body
        self.attempts = []
        self.final = None

    @property
    def path(self):
        return api.txn_path(self.store)


def _problem_code(resp):
    return resp.body.get("code") if isinstance(resp.body, dict) else None


def _definite(resp):
    """True for an answer that decides the command: 201, or a refusal by
    the state (409 insufficient_stock)."""
    return resp.status == 201 or (
        resp.status == 409 and _problem_code(resp) == "insufficient_stock")


class Load:
    """THREADS client threads selling (and now and then receiving) on
    N_STORES x N_PRODUCTS rows of their own, each command retried with its
    key until it has a definite answer."""

    def __init__(self, ctx, name):
        self.ctx = ctx
        self.name = name
        self.lock = threading.Lock()
        self.commands = []          # finished or abandoned Commands
        self.attempts = []          # every Attempt, in completion order
        self.in_flight = {}         # thread index -> t_sent
        self.stopping = threading.Event()
        self.abandon = threading.Event()
        self.threads = []
        self.rows = []

    def setup(self):
        stores = [api.create_store(self.ctx)["id"] for _ in range(N_STORES)]
        # reorder level 0: no low-stock crossing events, so the log of the
        # test's stores holds StockMoved events only (folded strictly)
        products = [api.create_product(self.ctx, reorder_level=0)["id"]
                    for _ in range(N_PRODUCTS)]
        positions = []
        for s in stores:
            for p in products:
                positions.append(api.txn(self.ctx, s, p, "receipt",
                                         INITIAL_STOCK, on_hand=INITIAL_STOCK,
                                         version=1)["position"])
                self.rows.append((s, p))
        self.stores = set(stores)
        # the reader watches rows[0] from the start and wants 200 or 503:
        # wait until the read model has its receipt (a 404 before the
        # projector applied it is no fault's doing; CI saw one on the ASan
        # build, whose projector was still catching up with earlier tests)
        # (polled: a min_position wait answers 504 after 5 s, and the
        # projector may need longer than that to catch up)
        deadline = _now() + 60
        while True:
            r = api.inventory_row(self.ctx, *self.rows[0],
                                  position=positions[0])
            if r.status == 200 or _now() > deadline:
                break
            time.sleep(0.5)
        api.expect_json(r, 200, "the first row before the faults")

    def start(self):
        for i in range(THREADS):
            t = threading.Thread(target=self._worker, args=(i,), daemon=True,
                                 name=f"load-{i}")
            t.start()
            self.threads.append(t)

    def stop(self, finish_s=15.0):
        """No new commands; the threads finish their current one (retrying
        up to finish_s more), then give up on it."""
        self.stopping.set()
        deadline = _now() + finish_s
        for t in self.threads:
            t.join(max(0.1, deadline - _now()))
        self.abandon.set()
        for t in self.threads:
            t.join(CLIENT_TIMEOUT_S + 5)
        alive = [t.name for t in self.threads if t.is_alive()]
        assert not alive, f"load threads did not end: {alive}"

    def _worker(self, idx):
        rng = random.Random(f"{self.name}-{idx}")
        i = 0
        while not self.stopping.is_set():
            store, product = rng.choice(self.rows)
            if rng.random() < 0.15:
                body = {"product_id": product, "type": "receipt",
                        "quantity": rng.randint(5, 15)}
            else:
                body = {"product_id": product, "type": "sale",
                        "quantity": rng.randint(1, 3)}
            key = f"fault-{self.name}-{idx}-{i}-{uuid.uuid4().hex[:8]}"
            i += 1
            cmd = Command(key, store, product, body)
            self.run_command(cmd, idx)
            with self.lock:
                self.commands.append(cmd)
            time.sleep(PAUSE_S)

    def run_command(self, cmd, idx, give_up_s=None):
        """Sends cmd until it has a definite answer, something unexpected
        (that answer is final too), or the load is abandoned."""
        deadline = _now() + give_up_s if give_up_s else None
        while True:
            a = Attempt(_now())
            with self.lock:
                self.in_flight[idx] = a.t_sent
            try:
                r = client.post(self.ctx.cmd, cmd.path, cmd.body,
                                {"Idempotency-Key": cmd.key},
                                timeout=CLIENT_TIMEOUT_S)
                a.outcome, a.status = "http", r.status
                a.code = _problem_code(r)
                a.retry_after = r.headers.get("retry-after")
                a.replayed = r.headers.get("idempotent-replayed") == "true"
            except TimeoutError as e:
                r = None
                a.outcome, a.detail = "timeout", str(e) or "timed out"
            except (OSError, http.client.HTTPException) as e:
                r = None
                a.outcome, a.detail = "conn", f"{type(e).__name__}: {e}"
            a.t_done = _now()
            with self.lock:
                self.in_flight.pop(idx, None)
                self.attempts.append(a)
            cmd.attempts.append(a)
            retry = r is None or r.status == 503 or (
                r.status == 409 and a.code == "idempotency_key_in_flight")
            if not retry:
                cmd.final = r
                return
            if self.abandon.is_set() or (deadline and _now() > deadline):
                return
            time.sleep(0.2 if r is None else 0.5)

    # ---- what the test asks while it runs ----

    def first_201_after(self, t):
        with self.lock:
            done = [a.t_done for a in self.attempts
                    if a.outcome == "http" and a.status == 201
                    and a.t_done >= t]
        return min(done) if done else None

    def wait_resumed(self, t_end, limit=RESUME_LIMIT_S):
        """Seconds from t_end to the first 201 answered after it, or None
        when none came within limit."""
        deadline = t_end + limit
        while True:
            t = self.first_201_after(t_end)
            if t is not None:
                return t - t_end
            if _now() > deadline:
                return None
            time.sleep(0.05)

    def wait_acks(self, n, timeout):
        deadline = _now() + timeout
        while _now() < deadline:
            with self.lock:
                got = sum(1 for a in self.attempts
                          if a.outcome == "http" and a.status == 201)
            if got >= n:
                return
            time.sleep(0.05)
        raise AssertionError(f"the load got {got} of {n} writes accepted "
                             f"within {timeout:.0f}s before any fault")

    def wait_in_flight(self, min_age, timeout=5.0):
        """Waits until some request has been waiting for its answer for at
        least min_age seconds (the writer then most likely has an open
        transaction). True if that happened within timeout."""
        deadline = _now() + timeout
        while _now() < deadline:
            with self.lock:
                oldest = min(self.in_flight.values(), default=None)
            if oldest is not None and _now() - oldest >= min_age:
                return True
            time.sleep(0.001)
        return False


class Reader(threading.Thread):
    """Reads one inventory row from the query service every 0.25 s and
    records (t_sent, t_done, status or error, retry_after)."""

    def __init__(self, ctx, store, product):
        super().__init__(daemon=True, name="reader")
        self.ctx = ctx
        self.path = f"/v1/stores/{store}/inventory/{product}"
        self.stopping = threading.Event()
        self.seen = []

    def run(self):
        while not self.stopping.is_set():
            t0 = _now()
            try:
                r = client.get(self.ctx.qry, self.path, timeout=10)
                what, ra = r.status, r.headers.get("retry-after")
            except TimeoutError:
                what, ra = "timeout", None
            except (OSError, http.client.HTTPException) as e:
                what, ra = type(e).__name__, None
            self.seen.append((t0, _now(), what, ra))
            self.stopping.wait(0.25)


class ReadyMonitor(threading.Thread):
    """Polls /readyz of the three services every 0.5 s and keeps the
    changes: [(t, service, "200" | "503 <detail>" | "no answer")]."""

    def __init__(self, ctx):
        super().__init__(daemon=True, name="readyz")
        self.ctx = ctx
        self.stopping = threading.Event()
        self.changes = []
        self.last = {}

    def state_of(self, port):
        try:
            r = client.get(port, "/readyz", headers=client.NO_AUTH,
                           timeout=1.5)
        except (OSError, http.client.HTTPException) as e:
            return f"no answer ({type(e).__name__})"
        if r.status == 200:
            return "200"
        detail = r.body.get("detail") if isinstance(r.body, dict) else r.body
        return f"{r.status} {str(detail)[:140]}"

    def poll(self):
        for name, port in self.ctx.ports().items():
            s = self.state_of(port)
            if self.last.get(name) != s:
                self.last[name] = s
                self.changes.append((_now(), name, s))

    def run(self):
        while not self.stopping.is_set():
            self.poll()
            self.stopping.wait(0.5)
        self.poll()


def _all_ready(ctx, monitor):
    return all(monitor.state_of(p) == "200" for p in ctx.ports().values())


class FaultRun:
    """One test: the load, the monitors, the fault's windows, the
    violations, and what it prints."""

    def __init__(self, ctx, name):
        self.ctx = ctx
        self.name = name
        self.t0 = _now()
        self.infra = infra.Infra(ctx.env)
        self.load = Load(ctx, name)
        self.violations = []
        self.windows = {"timeout": [], "conn": []}   # allowed (t0, t1)
        self.fault_starts = []
        self.resumed = []                            # (what, seconds)
        self.ends = []                               # fault end times
        self.log_offsets = {}

    def rel(self, t):
        return f"+{t - self.t0:.1f}s"

    def say(self, msg):
        self.ctx.log(f"FAULT {self.name}: {msg}")

    def violation(self, msg):
        self.violations.append(msg)
        self.ctx.log(f"VIOLATION {self.name}: {msg}")

    def allow(self, kind, t_from, t_to):
        """Timeouts or connection errors of attempts that overlap
        [t_from, t_to] are the fault's doing, not the service's."""
        self.windows[kind].append((t_from, t_to))

    def begin(self, what):
        t = _now()
        self.fault_starts.append(t)
        self.say(f"{what} at {self.rel(t)}")
        return t

    def end(self, what):
        """The fault is over (the broken part is back): waits for writes to
        resume, prints and records how long that took."""
        t_end = _now()
        self.ends.append(t_end)
        self.say(f"{what} at {self.rel(t_end)}; waiting up to "
                 f"{RESUME_LIMIT_S:.0f}s for writes to resume")
        secs = self.load.wait_resumed(t_end)
        if secs is None:
            self.violation(f"writes did not resume within "
                           f"{RESUME_LIMIT_S:.0f}s of '{what}' (no 201)")
            self.ctx.log(f"RECOVERY {self.name}: NONE within "
                         f"{RESUME_LIMIT_S:.0f}s of '{what}'")
        else:
            self.ctx.log(f"RECOVERY {self.name}: writes resumed {secs:.1f} s "
                         f"after '{what}' (limit {RESUME_LIMIT_S:.0f} s)")
        self.resumed.append((what, secs))
        return secs

    # ---- the run ----

    def run(self, inject):
        ctx = self.ctx
        for n in stackmod.SERVICES:
            self.log_offsets[n] = _file_size(ctx.stack[n].log_path)
        self.load.setup()
        self.say(f"load: {THREADS} threads on {N_STORES} stores x "
                 f"{N_PRODUCTS} products ({INITIAL_STOCK} units each to "
                 f"start), sales with Idempotency-Keys, client timeout "
                 f"{CLIENT_TIMEOUT_S:.0f}s")
        monitor = ReadyMonitor(ctx)
        reader = Reader(ctx, *self.load.rows[0])
        monitor.start()
        reader.start()
        self.load.start()
        try:
            self.load.wait_acks(10, timeout=30)
            time.sleep(BEFORE_S)
            inject(self)
            if all(s is not None for _, s in self.resumed):
                time.sleep(AFTER_S)
        finally:
            try:
                restored = self.infra.restore()
                if restored:
                    self.violation(f"the test had to clean up: {restored}")
            finally:
                self.load.stop()
                reader.stopping.set()
                self.wait_ready(monitor)
                monitor.stopping.set()
                monitor.join(5)
                reader.join(15)
        self.report(monitor, reader)
        self.finish_undecided()
        for check in (self.check_answers, lambda: self.check_reads(reader),
                      self.check_log_and_read_model, self.check_replays):
            try:
                check()
            except AssertionError as e:
                self.violation(str(e))
        assert not self.violations, \
            f"{len(self.violations)} violation(s) under fault {self.name}: " \
            + "; ".join(self.violations)

    def wait_ready(self, monitor):
        """Waits for /readyz 200 of all three services; one that is not
        ready within READY_LIMIT_S is restarted by hand (a violation), so
        that the checks and later tests find a healthy stack."""
        t = _now()
        while _now() - t < READY_LIMIT_S:
            if _all_ready(self.ctx, monitor):
                return
            time.sleep(0.25)
        bad = {n: monitor.state_of(p) for n, p in self.ctx.ports().items()}
        bad = {n: s for n, s in bad.items() if s != "200"}
        self.violation(f"not ready {READY_LIMIT_S:.0f}s after the load "
                       f"stopped: {bad}; restarting it by hand")
        for n in bad:
            self.ctx.stack[n].kill()
        self.ctx.stack.start(list(bad))

    def finish_undecided(self):
        """Commands that never got a definite answer (the service did not
        recover) are retried with their keys now that it is ready, so the
        exactly-once checks cover them too."""
        left = [c for c in self.load.commands if c.final is None]
        if not left:
            return
        self.violation(f"{len(left)} command(s) had no definite answer "
                       f"when the load stopped")
        for c in left:
            self.load.run_command(c, "finish", give_up_s=20)

    # ---- checks ----

    def allowed(self, kind, a):
        return any(a.t_sent <= t1 and a.t_done >= t0
                   for t0, t1 in self.windows[kind])

    def check_answers(self):
        first_fault = min(self.fault_starts)
        bad = collections.Counter()
        examples = {}
        for a in self.load.attempts:
            why = None
            if a.outcome == "timeout":
                if not self.allowed("timeout", a):
                    why = f"no answer within {CLIENT_TIMEOUT_S:.0f}s"
            elif a.outcome == "conn":
                if not self.allowed("conn", a):
                    why = "connection error"
            elif a.status == 503:
                if not a.retry_after:
                    why = "503 without Retry-After"
                elif a.code != "unavailable":
                    why = f"503 with code {a.code!r}"
                elif a.t_done < first_fault:
                    why = "503 before any fault"
            elif a.status == 409 and a.code in ("insufficient_stock",
                                                "idempotency_key_in_flight"):
                if a.code == "idempotency_key_in_flight" and not a.retry_after:
                    why = "409 idempotency_key_in_flight without Retry-After"
            elif a.status != 201:
                why = f"HTTP {a.status} {a.code}"
            if why:
                bad[why] += 1
                examples.setdefault(why, a)
        for why, n in bad.items():
            self.violation(f"{n} answer(s): {why} (e.g. {examples[why]!r} "
                           f"sent at {self.rel(examples[why].t_sent)})")

    def check_reads(self, reader):
        bad = collections.Counter()
        for t0, t1, what, ra in reader.seen:
            if what == 200 or (what == 503 and ra):
                continue
            bad[f"{what} without Retry-After" if what == 503 else what] += 1
        for why, n in bad.items():
            self.violation(f"query service: {n} read(s) answered {why} "
                           "(want 200, or 503 with Retry-After)")

    def check_log_and_read_model(self):
        ctx = self.ctx
        load = self.load
        acked = {c.key: c for c in load.commands
                 if c.final is not None and c.final.status == 201}
        ours = {c.key: c for c in load.commands}
        topic = ctx.env["STOCKFLOW_TOPIC_STOCK"]
        problems = []
        t_start = _now()

        def attempt():
            problems.clear()
            msgs = eventlog.read_topic(ctx, topic)
            for m in msgs:
                neg = _negative(m.event.get("payload"))
                if neg:
                    problems.append(f"stock below zero in the log: {m!r} "
                                    f"{neg}")
            mine = [m for m in msgs if m.event.get("store_id") in load.stores]
            by_key = collections.defaultdict(list)
            ids = collections.Counter()
            for m in mine:
                ids[m.event["event_id"]] += 1
                k = m.event.get("idempotency_key")
                if k in ours:
                    by_key[k].append(m)
            for eid, n in ids.items():
                if n > 1:
                    problems.append(f"event {eid} is {n} times in the log")
            missing = [k for k in acked if k not in by_key]
            # commit markers are written just after the commit returns: a
            # read_committed reader may lag by a moment
            assert not missing, f"{len(missing)} acknowledged command(s) " \
                f"not in the log, e.g. " + "; ".join(
                    _history(_wall, acked[k]) for k in missing[:3])
            for k, evs in by_key.items():
                c = ours[k]
                if len(evs) > 1:
                    problems.append(f"key {k}: {len(evs)} events {evs} "
                                    f"(attempts {c.attempts})")
                if k not in acked:
                    problems.append(
                        f"key {k}: in the log ({evs[0]!r}) but its answer "
                        f"was {c.final!r} (attempts {c.attempts})")
                    continue
                body, e = c.final.body, evs[0].event
                got = (e["event_id"], e["payload"].get("on_hand"),
                       e["stream_version"])
                want = (body.get("transaction_id"), body.get("on_hand"),
                        body.get("version"))
                if got != want:
                    problems.append(f"key {k}: the 201 answered (id, on_hand,"
                                    f" version) {want}, the log has {got}")
            folds = _fold(mine, problems)
            for (s, p), f in sorted(folds.items()):
                r = api.inventory_row(ctx, s, p)
                row = client.expect_json(r, 200, "inventory row")
                have = (row.get("on_hand"), row.get("reserved"),
                        row.get("version"))
                want = (f["on_hand"], 0, f["version"])
                assert have == want, f"read model row {s}/{p} (on_hand, " \
                    f"reserved, version) {have}, the fold of the log {want}"
                hist = {api.txn_item_id(i) for i in api.history(ctx, s, p)}
                assert hist == f["ids"], \
                    f"history of {s}/{p}: {len(hist)} rows, the log has " \
                    f"{len(f['ids'])} events ({len(hist - f['ids'])} extra," \
                    f" {len(f['ids'] - hist)} missing)"
            return msgs, mine

        msgs, mine = client.eventually(attempt, timeout=30, interval=0.5,
                                       what="log and read model in step")
        for p in problems:
            self.violation(p)
        self.ctx.log(f"log: {len(msgs)} stock events in the topic, "
                     f"{len(mine)} for this test's stores, {len(acked)} "
                     f"acknowledged commands each there once; read model "
                     f"equal to the fold {_now() - t_start:.1f}s after the "
                     f"load stopped")

    def check_replays(self):
        acked = [c for c in self.load.commands
                 if c.final is not None and c.final.status == 201]
        retried = [c for c in acked if len(c.attempts) > 1]
        rest = [c for c in acked if len(c.attempts) == 1]
        sample = retried + random.Random(self.name).sample(
            rest, min(REPLAY_SAMPLE, len(rest)))
        bad = []
        for c in sample:
            r = client.post(self.ctx.cmd, c.path, c.body,
                            {"Idempotency-Key": c.key}, timeout=10)
            if r.status != 201 or r.body != c.final.body or \
                    r.headers.get("idempotent-replayed") != "true":
                bad.append(f"{c.key}: first {c.final!r}, replay {r!r} "
                           f"replayed={r.headers.get('idempotent-replayed')}")
        if bad:
            self.violation(f"{len(bad)} of {len(sample)} replays differ "
                           f"from the first answer: {bad[:2]}")
        self.ctx.log(f"replays: {len(sample)} keys ({len(retried)} that "
                     f"needed retries) sent again, {len(bad)} differed")

    # ---- what an operator reads ----

    def report(self, monitor, reader):
        ctx = self.ctx
        atts = self.load.attempts
        kinds = collections.Counter(
            (a.status, a.code) if a.outcome == "http" else (a.outcome, None)
            for a in atts)
        worst503 = max((a.t_done - a.t_sent for a in atts if a.status == 503),
                       default=0.0)
        n_cmds = len(self.load.commands)
        retried = sum(1 for c in self.load.commands if len(c.attempts) > 1)
        replayed_first = sum(1 for c in self.load.commands if c.final
                             is not None and c.attempts[-1].replayed)
        ctx.log(f"load: {n_cmds} commands, {len(atts)} attempts, {retried} "
                f"retried, {replayed_first} first answered by a replay (an "
                f"earlier attempt had committed); answers: " +
                ", ".join(f"{s} {c or ''}".strip() + f" x{n}"
                          for (s, c), n in sorted(kinds.items(), key=str)))
        ctx.log(f"slowest 503: {worst503:.1f}s; slowest answer: "
                f"{max((a.t_done - a.t_sent for a in atts), default=0):.1f}s")
        reads = collections.Counter(w for _, _, w, _ in reader.seen)
        back = []
        for t_end in self.ends:
            ok = [t1 for _, t1, w, _ in reader.seen if w == 200 and t1 >= t_end]
            back.append(f"{min(ok) - t_end:.1f}s" if ok else "never")
        ctx.log("query reads meanwhile: " +
                ", ".join(f"{w} x{n}" for w, n in sorted(reads.items(),
                                                         key=str)) +
                f"; a read answered 200 again {', '.join(back)} after the "
                f"fault ended")
        for t, name, s in monitor.changes:
            ctx.log(f"/readyz {name:9s} {self.rel(t):>7s}: {s}")
        self.report_logs()

    def report_logs(self):
        for n in stackmod.SERVICES:
            kinds = _warnings(self.ctx.stack[n].log_path, self.log_offsets[n])
            if not kinds:
                continue
            total = sum(k for k, _ in kinds.values())
            self.ctx.log(f"{n} log: {total} warn/error line(s) of "
                         f"{len(kinds)} kinds, the most frequent:")
            top = sorted(kinds.items(), key=lambda kv: -kv[1][0])[:10]
            for (lvl, module, _), (k, msg) in top:
                self.ctx.log(f"  {k:4d} x {lvl} [{module}] {msg[:220]}")


def _file_size(path):
    try:
        with open(path, "rb") as f:
            return f.seek(0, 2)
    except OSError:
        return 0


# a number, or a hex id with a digit in it (request ids)
NUMBER_RE = re.compile(r"\b[0-9a-f]*[0-9][0-9a-f]*\b")


def _warnings(path, offset):
    """{(level, module, kind): [count, first message]} of the warn and
    error lines of a service log since offset; kind is the message with
    its numbers blanked, so that "connection 0 lost" and "connection 1
    lost" count as one."""
    out = {}
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return out
    for line in text.splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if not isinstance(rec, dict) or rec.get("level") not in ("warn",
                                                                 "error"):
            continue
        msg = " ".join(str(rec.get("msg", "")).split())
        kind = (rec["level"], rec.get("module"), NUMBER_RE.sub("N", msg))
        out.setdefault(kind, [0, msg])[0] += 1
    return out


def _wall(t):
    """A monotonic time as the UTC wall clock the services' logs use."""
    w = time.time() - (_now() - t)
    return time.strftime("%H:%M:%S", time.gmtime(w)) + f".{int(w % 1 * 1000):03d}"


def _history(rel, c):
    """A command's key, its attempts (rel: a time as in the services' logs) and
    its final answer: what a lost acknowledgement needs to be traced in the
    services' logs and the broker's."""
    tries = ", ".join(f"{a!r} sent {rel(a.t_sent)}" for a in c.attempts)
    body = c.final.body if isinstance(c.final.body, dict) else {}
    return (f"{c.key} (store {c.store}; attempts: {tries}; final "
            f"{c.final.status} transaction_id "
            f"{body.get('transaction_id')} on_hand {body.get('on_hand')} "
            f"version {body.get('version')} position "
            f"{body.get('position')})")


def _negative(payload):
    """A description of an on_hand, reserved or available below zero in a
    payload (recursively: order lines), or ""."""
    if isinstance(payload, list):
        return next((n for n in map(_negative, payload) if n), "")
    if not isinstance(payload, dict):
        return ""
    oh, rs = payload.get("on_hand"), payload.get("reserved")
    if isinstance(oh, int) and oh < 0:
        return f"on_hand {oh}"
    if isinstance(rs, int) and rs < 0:
        return f"reserved {rs}"
    if isinstance(oh, int) and isinstance(rs, int) and oh < rs:
        return f"available {oh - rs}"
    return next((n for n in map(_negative, payload.values()) if n), "")


def _fold(msgs, problems):
    """{(store, product): {on_hand, version, ids}} folded from StockMoved
    events in log order, checking versions 1..n without gaps and that each
    event's on_hand is the running sum of the deltas."""
    rows = {}
    for m in msgs:
        e = m.event
        p = e.get("payload") or {}
        if e.get("event_type") != "StockMoved":
            problems.append(f"unexpected event {m!r} in a store of the test")
            continue
        key = (e["store_id"], e["product_id"])
        r = rows.setdefault(key, {"on_hand": 0, "version": 0, "ids": set()})
        r["on_hand"] += p["delta"]
        r["version"] += 1
        r["ids"].add(e["event_id"])
        if e["stream_version"] != r["version"]:
            problems.append(f"{m!r}: stream_version {e['stream_version']}, "
                            f"the fold is at {r['version']}")
        if p["on_hand"] != r["on_hand"]:
            problems.append(f"{m!r}: on_hand {p['on_hand']}, the fold of the "
                            f"deltas is {r['on_hand']}")
    return rows


# ---- the faults ----

BROKER_DOWN_S = 3.0
PG_DOWN_S = 3.0
SUPERVISOR_DELAY_S = 1.0
# The writer's transactions time out after 10 s (transaction.timeout.ms);
# the coordinator looks for timed-out transactions every 10 s
# (transaction.abort.timed.out.transaction.cleanup.interval.ms), so after
# 21 s any transaction open at SIGSTOP has been aborted and its producer
# epoch bumped: the writer wakes up a zombie.
COMMAND_STOP_S = 21.0
# Longer than the writer's message and transaction timeouts (10 s).
BROKER_PAUSE_S = 12.0


def _broker_sigkill(f):
    pid = f.infra.kafka_pid()
    f.begin(f"SIGKILL of the Kafka broker (pid {pid})")
    f.infra.kill_kafka()
    time.sleep(BROKER_DOWN_S)
    f.say(f"broker down for {BROKER_DOWN_S:.0f}s; starting it again "
          "(deploy/local/kafka.sh start, same data and ports)")
    secs = f.infra.start_kafka()
    f.end(f"broker answering again ({secs:.1f}s to start)")


def _postgres_stop_start(f):
    for mode in ("fast", "immediate"):
        pid = f.infra.pg_pid()
        f.begin(f"pg_ctl stop -m {mode} (postmaster pid {pid})")
        f.infra.stop_pg(mode)
        time.sleep(PG_DOWN_S)
        f.say(f"PostgreSQL down for {PG_DOWN_S:.0f}s; starting it again")
        secs = f.infra.start_pg()
        if f.end(f"PostgreSQL accepting connections after -m {mode} "
                 f"({secs:.1f}s to start)") is None:
            return


def _command_sigkill(f):
    svc = f.ctx.stack["command"]
    f.load.wait_in_flight(0.003)
    t = f.begin(f"SIGKILL of the command service (pid {svc.pid()}) with "
                "requests in flight")
    code = svc.kill(signal.SIGKILL)
    assert code == -signal.SIGKILL, f"command service exit {code}"
    time.sleep(SUPERVISOR_DELAY_S)
    svc.start()
    # refused connections until the new instance listens
    f.allow("conn", t, _now() + 5)
    f.end(f"command service started again as a supervisor would "
          f"(after {SUPERVISOR_DELAY_S:.0f}s, pid {svc.pid()})")


# What the command service logs when a commit fails (the writer's
# transaction was aborted by the coordinator while it was stopped).
BATCH_FAILED_RE = re.compile(r"batch [0-9]+ of [0-9]+ commands? failed")


def _command_sigstop(f):
    """SIGSTOP/SIGCONT; a second time when no transaction of the writer
    was open at the coordinator during the first stop (then nothing was
    aborted and the zombie case was not exercised)."""
    svc = f.ctx.stack["command"]
    for round_ in (1, 2):
        busy = f.load.wait_in_flight(0.003)
        log_at = _file_size(svc.log_path)
        t = f.begin(f"SIGSTOP of the command service (pid {svc.pid()}) for "
                    f"{COMMAND_STOP_S:.0f}s, {'with' if busy else 'maybe without'}"
                    f" a request waiting for its commit")
        os.kill(svc.pid(), signal.SIGSTOP)
        try:
            time.sleep(COMMAND_STOP_S)
        finally:
            os.kill(svc.pid(), signal.SIGCONT)
        # A stopped process answers nothing: its clients time out or, with
        # a full accept queue, cannot connect.
        f.allow("timeout", t, _now())
        f.allow("conn", t, _now())
        if f.end(f"command service continued (SIGCONT after "
                 f"{COMMAND_STOP_S:.0f}s)") is None:
            return
        with open(svc.log_path, "rb") as log:
            log.seek(log_at)
            text = log.read().decode("utf-8", "replace")
        failed = [ln for ln in text.splitlines() if BATCH_FAILED_RE.search(ln)]
        if failed:
            f.say(f"zombie writer exercised: its open transaction was "
                  f"aborted meanwhile, the writer logged: {failed[0][:300]}")
            return
        f.say("no commit failed after SIGCONT: the writer had no "
              "transaction open at the coordinator" +
              ("; stopping it once more" if round_ == 1 else
               " in either stop (zombie case not exercised this run)"))


def _broker_pause(f):
    pid = f.infra.kafka_pid()
    f.begin(f"SIGSTOP of the Kafka broker (pid {pid}): no traffic is "
            f"answered")
    f.infra.signal_kafka(signal.SIGSTOP)
    try:
        time.sleep(BROKER_PAUSE_S)
    finally:
        f.infra.signal_kafka(signal.SIGCONT)
    f.end(f"broker continued (SIGCONT after {BROKER_PAUSE_S:.0f}s)")


def test_broker_sigkill(ctx):
    FaultRun(ctx, "broker-sigkill").run(_broker_sigkill)


def test_postgres_stop_start(ctx):
    FaultRun(ctx, "postgres-stop-start").run(_postgres_stop_start)


def test_command_sigkill(ctx):
    FaultRun(ctx, "command-sigkill").run(_command_sigkill)


def test_command_sigstop_zombie(ctx):
    FaultRun(ctx, "command-sigstop").run(_command_sigstop)


def test_broker_pause(ctx):
    FaultRun(ctx, "broker-pause").run(_broker_pause)
