#!/usr/bin/env python3
"""The smoke check of a bench/run.sh run: every figure was produced.

    bench/check_report.py RESULTS_DIR REPORT.md [--summary FILE] [--without-parse]

RESULTS_DIR is the run's results folder ($STATE/results), REPORT.md the
report it wrote (its plots are in img/ beside it). It checks that each
benchmark left its raw result with a positive figure, that the report's
tables carry a number in every stockflow and Parse cell (the Parse SDK
flow's table included: tests/parse/flow.js --bench on both), that both PNG plots
are real PNG files, and that stockflow's three correctness checks passed
(those are behaviour, not speed). It never judges how fast anything was:
that is what the report is for.

Prints one line per check ("ok  ..." or "FAIL ..."), then "N passed, N
failed"; with --summary, also writes {"passed", "failed", "failures"} (the
integration runner's summary format, read by tests/run.sh). Exits 1 if any
check failed.
"""
import json
import os
import sys


def load(results, name):
    path = os.path.join(results, name)
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        raise AssertionError(f"{name}: {e}")


def positive(d, *keys):
    """d[k1][k2]... as a number > 0."""
    v = d
    for k in keys:
        if not isinstance(v, dict) or k not in v:
            raise AssertionError(f"no {'.'.join(keys)}")
        v = v[k]
    if not isinstance(v, (int, float)) or v <= 0:
        raise AssertionError(f"{'.'.join(keys)} = {v!r}, not a positive number")
    return v


def table_rows(text, header_start):
    """The body rows (lists of cells) of the markdown table whose header
    line starts with header_start."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.startswith(header_start):
            rows = []
            for row in lines[i + 2:]:
                if not row.startswith("|"):
                    break
                rows.append([c.strip() for c in row.strip("|").split("|")])
            return rows
    raise AssertionError(f"no table starting {header_start!r}")


def has_number(cell):
    return any(ch.isdigit() for ch in cell.split("(")[0])


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    opts = sys.argv[1:]
    summary = None
    if "--summary" in opts:
        summary = opts[opts.index("--summary") + 1]
        args.remove(summary)
    if len(args) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    results, report = args
    with_parse = "--without-parse" not in opts
    checks = []

    def check(name):
        def wrap(fn):
            checks.append((name, fn))
            return fn
        return wrap

    # ---- the raw figures, one per benchmark ----
    loadgen = {
        "HTTP limit (fixed 201, command mix)": "http-limit.json",
        "HTTP limit (fixed 201, sales)": "http-limit-sales.json",
        "HTTP limit at half the command peak": "http-limit-half.json",
        "commands: the mix": "commands.json",
        "commands: sales alone": "sales.json",
        "commands at half the peak (open loop)": "commands-half.json",
        "batch intake (POST /v1/batches)": "batches.json",
        "point lookups over HTTP": "read-point-res.json",
        "store pages over HTTP": "read-page-res.json",
    }
    for label, name in loadgen.items():
        @check(label)
        def _(name=name):
            d = load(results, name)
            positive(d, "ok_rps")
            positive(d, "latency_ms", "p99")
            if d.get("errors"):
                raise AssertionError(f"{d['errors']} errors")

    @check("Kafka limit (raw transactional producer)")
    def _():
        positive(load(results, "kafka-limit.json"), "events_per_s")

    @check("writer lanes: the mix with 1, 2 and N lanes, each next to its Kafka limit")
    def _():
        figs = load(results, "figures.json")
        lanes = figs.get("lane_set") or []
        if 1 not in lanes or 2 not in lanes:
            raise AssertionError(f"lane_set {lanes!r} lacks 1 or 2")
        for L in lanes:
            d = load(results, f"commands-lanes-{L}.json")
            positive(d, "ok_rps")
            positive(d, "latency_ms", "p99")
            if d.get("errors"):
                raise AssertionError(f"{L} lane(s): {d['errors']} errors")
            positive(load(results, f"kafka-limit-lanes-{L}.json"), "events_per_s")
            positive(figs, f"lanes_{L}_events_per_s")

    @check("PostgreSQL limit (COPY + upsert)")
    def _():
        positive(load(results, "pg-limit.json"), "events_per_s")

    @check("projector replay")
    def _():
        positive(load(results, "replay.json"), "events_per_s")

    @check("pgbench point lookups and store pages")
    def _():
        for name in ("pgbench-point.json", "pgbench-page.json"):
            positive(load(results, name), "tps")

    @check("restart rebuilds (own log and generated log)")
    def _():
        for name in ("rebuild-own.txt", "rebuild-b.txt"):
            with open(os.path.join(results, name)) as f:
                if "rebuilt" not in f.read():
                    raise AssertionError(f"{name}: no 'rebuilt' line")

    @check("state memory and decode+fold speed")
    def _():
        d = load(results, "state-mem.json")
        positive(d, "rss_after_mb")
        positive(d, "decode_fold_events_per_s")

    @check("idle change streams (RSS)")
    def _():
        d = load(results, "idle-subs.json")
        if d.get("failed") or not d.get("opened"):
            raise AssertionError(f"opened {d.get('opened')}, failed {d.get('failed')}")

    for label, name in (("freshness under load", "freshness.json"),
                        ("freshness at the peer's load", "freshness-peer.json")):
        @check(label)
        def _(name=name):
            d = load(results, name)
            positive(d, "answer_to_arrival_ms", "p99")
            positive(d, "send_to_arrival_ms", "p99")
            if d.get("missing"):
                raise AssertionError(f"{d['missing']} changes never arrived")

    for part in ("race", "disconnect", "retry"):
        @check(f"correctness: {part}")
        def _(part=part):
            d = load(results, "correctness.json").get(part) or {}
            if not d.get("pass"):
                raise AssertionError(json.dumps(d)[:300])

    if with_parse:
        @check("the peer (Parse Server): every figure")
        def _():
            p = load(results, "parse.json")
            positive(p, "movement", "movements_per_s")
            for k in ("transaction", "increment", "read_page", "read_row"):
                positive(p, k, "ok_rps")
                positive(p, k, "p99_ms")
            positive(p, "livequery", "answer_to_event_ms", "p99")
            positive(p, "livequery", "sent_to_event_ms", "p99")
            for k in ("race", "retry_default", "retry_idempotency", "livequery_disconnect"):
                if not p.get(k):
                    raise AssertionError(f"no {k}")
            for op in ("login", "query_where", "save_transaction", "livequery_update"):
                positive(p, "sdk_flow", "ops", op, "p99_ms")

        @check("the Parse SDK flow on stockflow's facade: every figure")
        def _():
            f = load(results, "parse-flow.json")
            for op in ("login", "query_where", "save_transaction", "livequery_update"):
                positive(f, "ops", op, "p99_ms")

    # ---- the report ----
    @check("report: targets table has a figure in every row")
    def _():
        text = open(report).read()
        rows = table_rows(text, "| operation | stockflow | limit")
        if len(rows) < 10:
            raise AssertionError(f"only {len(rows)} rows")
        bad = [r[0] for r in rows if not has_number(r[1])]
        if bad:
            raise AssertionError(f"no figure for: {bad}")

    if with_parse:
        @check("report: stockflow / Parse table complete")
        def _():
            text = open(report).read()
            rows = table_rows(text, "| operation | stockflow | Parse Server")
            bad = [r[0] for r in rows if not (has_number(r[1]) and has_number(r[2]))]
            if bad:
                raise AssertionError(f"missing a side for: {bad}")

    if with_parse:
        @check("report: the Parse SDK flow table has both sides")
        def _():
            text = open(report).read()
            rows = table_rows(text, "| operation | stockflow facade | Parse Server")
            if len(rows) < 8:
                raise AssertionError(f"only {len(rows)} rows (the SDK flow's 4 "
                                     f"operations x p50/p99)")
            bad = [r[0] for r in rows if not (has_number(r[1]) and has_number(r[2]))]
            if bad:
                raise AssertionError(f"missing a side for: {bad} (stockflow: "
                                     f"parse-flow.log in the state folder)")

    @check("report: plots are PNG files")
    def _():
        img = os.path.join(os.path.dirname(os.path.abspath(report)), "img")
        for name in ("throughput.png", "latency.png"):
            path = os.path.join(img, name)
            with open(path, "rb") as f:
                head = f.read(8)
            if head != b"\x89PNG\r\n\x1a\n" or os.path.getsize(path) < 2000:
                raise AssertionError(f"{path} is not a PNG plot")

    passed, failures = 0, []
    for name, fn in checks:
        try:
            fn()
        except (AssertionError, OSError, KeyError, TypeError) as e:
            failures.append(name)
            print(f"FAIL {name}: {e}")
            continue
        passed += 1
        print(f"ok   {name}")
    print(f"{passed} passed, {len(failures)} failed")
    if summary:
        with open(summary, "w") as f:
            json.dump({"passed": passed, "failed": len(failures), "failures": failures}, f)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
