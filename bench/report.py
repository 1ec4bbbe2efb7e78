#!/usr/bin/env python3
"""Renders the results of bench/run.sh (a results folder of JSON files) as
docs/benchmarks.md and prints the summary table. bench/notes.md, when it
exists, is appended as the hand-written analysis.

    bench/report.py RESULTS_DIR OUTPUT.md
"""
import json
import os
import re
import sys


# Issue 10's baseline: the command mix of the single transactional writer
# before writer lanes (full run of 2026-11-26, 64 connections, this
# machine); its target is 5x this, and the lane rows say how far they are.
SINGLE_WRITER_MIX = 2973

def load(out, name):
    path = os.path.join(out, name)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def rebuild_line(out, name):
    path = os.path.join(out, name)
    if not os.path.exists(path):
        return None
    text = open(path).read()
    m = re.search(r"state rebuilt in ([0-9.]+) s: (\d+) events", text)
    if not m:
        return None
    return {"seconds": float(m.group(1)), "events": int(m.group(2))}


def fmt(v, unit="", digits=0):
    if v is None:
        return "n/a"
    if isinstance(v, str):
        return v
    s = f"{v:,.{digits}f}"
    return s + (" " + unit if unit else "")


def pct(a, b):
    if a is None or b in (None, 0):
        return None
    return 100.0 * a / b


def stream_rows(fresh, idle):
    """Rows (op, value, limit, ratio, target, met) of the change streams."""
    rows = []
    if fresh:
        a = fresh["answer_to_arrival_ms"]
        subs = fresh["opened"] - fresh["dropped"]
        what = (f"{subs:,} SSE subscribers, {fresh['writes_per_s']:,.0f} sales/s")
        ok = fresh["missing"] == 0 and fresh["dropped"] == 0
        for q, lim in (("p50", 10), ("p99", 50)):
            v = a[q] if a["n"] else None
            rows.append((f"freshness {q}, write's 201 -> change at each subscriber "
                         f"of its store ({what}) (ms)", fmt(v, digits=2),
                         f"{fresh['write_latency_ms'][q]:.2f} (the write's own latency)",
                         None, f"< {lim} ms", None if v is None else (v < lim and ok)))
    if idle:
        v = idle["rss_hold_mb"] if idle.get("rss_hold_mb") else None
        rows.append((f"{idle['held']:,} idle SSE subscribers held "
                     f"{idle['hold_s']:.0f} s (MB RSS of the query service)",
                     fmt(v, digits=1),
                     f"{idle['rss_before_mb']:.1f} (before they opened)", None,
                     "< 200 MB",
                     None if v is None else (v < 200 and idle["held"] == idle["subscribers"])))
    return rows


def stream_details(fresh, idle, fig):
    """The change-stream section of the details."""
    det = []
    if not fresh and not idle:
        return det
    det.append("### Change streams (bench/freshness.c)\n")
    if idle:
        det.append(f"- idle: {idle['subscribers']:,} `GET /v1/changes?store_id=` SSE "
                   f"subscriptions (round robin over the 20 stores), {idle['opened']:,} "
                   f"answered 200, {idle['failed']} failed, {idle['dropped']} dropped "
                   f"during the {idle['hold_s']:.0f} s hold; all open in {idle['open_s']:.2f} s")
        det.append(f"- query service VmRSS: {idle['rss_before_mb']:.1f} MB before, "
                   f"{idle['rss_open_mb']:.1f} MB once all were open, "
                   f"**{idle['rss_hold_mb']:.1f} MB after the hold**: "
                   f"{idle['kib_per_subscriber']:.1f} KiB per subscriber above the "
                   f"baseline (the client: {idle['client_rss_mb']:.1f} MB)")
    if fresh:
        def h(name, x):
            return (f"{name}: p50 {x['p50']:.2f} ms, p90 {x['p90']:.2f} ms, p99 {x['p99']:.2f} ms, "
                    f"p99.9 {x['p999']:.2f} ms, max {x['max']:.2f} ms ({x['n']:,} samples)")
        det.append(f"- freshness: {fresh['opened']:,} SSE subscribers ({fresh['failed']} failed, "
                   f"{fresh['dropped']} dropped; {fresh['opened'] // max(1, fresh['stores'])} per store), "
                   f"sales (1 unit, stores in turn, random products) at "
                   f"{fresh['rate_target']:,.0f}/s offered open loop over 128 connections; "
                   f"{fresh['writes_ok']:,} writes answered 201 in the {fresh['duration_s']:.0f} s "
                   f"measured after {fresh['warmup_s']:.0f} s of warm-up "
                   f"({fresh['writes_per_s']:,.0f}/s), {fresh['write_errors']} errors")
        det.append("- " + h("**write's 201 -> arrival** at every subscriber of its store",
                             fresh["answer_to_arrival_ms"]))
        det.append("- " + h("send -> arrival", fresh["send_to_arrival_ms"]))
        det.append("- " + h("201 -> first subscriber of the store", fresh["answer_to_first_ms"]))
        det.append("- " + h("201 -> last subscriber of the store", fresh["answer_to_last_ms"]))
        det.append("- " + h("the write itself (intended send -> 201)", fresh["write_latency_ms"]))
        det.append(f"- arrivals: {fresh['received']:,} of {fresh['expected']:,} expected "
                   f"(missing {fresh['missing']:,}), duplicates {fresh['duplicates']}, "
                   f"changes of unknown transactions {fresh['foreign']}, overflow messages "
                   f"{fresh['overflows']}; arrivals read before their write's answer: {fresh['early']}")
        if fresh.get("client_cpu_s") is not None:
            det.append(f"- this client (one process, one loop thread): {fresh['client_cpu_s']:.1f} CPU s "
                       f"over {fresh['client_wall_s']:.1f} s")
    cpu = fig.get("fresh_cpu")
    if fresh and isinstance(cpu, dict):
        det.append(f"- CPU during the freshness run ({cpu['wall_s']:.0f} s, in cores): query service "
                   f"{cpu['query']:.2f}, projector {cpu['projector']:.2f}, command service "
                   f"{cpu['command']:.2f}; the machine ({cpu['cores']} cores) was "
                   f"{100 * cpu['machine_busy']:.0f} % busy")
    if fig.get("qry_rss_after_streams_mb") is not None:
        det.append(f"- query service RSS after both: {fmt(fig.get('qry_rss_after_streams_mb'), 'MB', 1)}")
    det.append("")
    return det



# ---- stockflow next to the peer (bench/run.sh, step 9) ----

def lat_of(res):
    """{p50, p90, p99, p999} in ms of an sf-loadgen result, or None."""
    if not res:
        return None
    l = res["latency_ms"]
    return {"p50": l["p50"], "p90": l.get("p90"), "p99": l["p99"], "p999": l.get("p999")}


def lat_parse(fig_):
    """The same of a Parse figure of bench/parse/run.sh's results."""
    if not fig_:
        return None
    return {"p50": fig_.get("p50_ms"), "p90": fig_.get("p90_ms"), "p99": fig_.get("p99_ms"),
            "p999": fig_.get("p999_ms")}


def lat_pgbench(pb):
    if not pb:
        return None
    return {"p50": pb.get("p50_ms"), "p90": pb.get("p90_ms"), "p99": pb.get("p99_ms"),
            "p999": pb.get("p999_ms")}


def ratio_more(sf, peer):
    if sf is None or not peer:
        return "n/a"
    return f"**{sf / peer:.1f}x** more" if sf >= peer else f"{peer / sf:.1f}x fewer" if sf else "n/a"


def ratio_lower(sf, peer):
    if not sf or not peer:
        return "n/a"
    return f"**{peer / sf:.1f}x** lower" if sf <= peer else f"{sf / peer:.1f}x higher"


def peer_rows(parse, sales, http_sales, rp, rg, pbp, pbg, fresh):
    """The ten-second table: (operation, stockflow, Parse, ratio, limit, % of limit)."""
    rows = []
    g = lambda d, *ks: None if d is None else (d.get(ks[0]) if len(ks) == 1 else g(d.get(ks[0]), *ks[1:]))
    sf = sales and sales["ok_rps"]
    pm = g(parse, "movement", "movements_per_s")
    lim = http_sales and http_sales["ok_rps"]
    rows.append(("stock movement: one sale recorded and applied (movements/s)",
                 fmt(sf), fmt(pm) + " (POST Transaction + PUT Increment)", ratio_more(sf, pm),
                 fmt(lim) + " (fixed-201 server, sales)", fmt(pct(sf, lim), "%", 1)))
    sp = lat_of(sales)
    ip = lat_parse(g(parse, "increment"))
    hp = lat_of(http_sales)
    for q in ("p50", "p99"):
        a, b, c = sp and sp[q], ip and ip[q], hp and hp[q]
        rows.append((f"sale {q} (ms; Parse: its PUT Increment alone)", fmt(a, digits=1),
                     fmt(b, digits=1), ratio_lower(a, b), fmt(c, digits=2) + " (fixed 201)", "n/a"))
    for name, res, pk, pb, plabel in (
            ("point lookup: one inventory row (requests/s)", rp, "read_row", pbp, "GET Inventory/{id}"),
            ("store page: 100 inventory rows (requests/s)", rg, "read_page", pbg, "GET Inventory?where=store")):
        v = res and res["ok_rps"]
        pv = g(parse, pk, "ok_rps")
        lim = pb and pb["tps"]
        rows.append((name, fmt(v), fmt(pv) + f" ({plabel})", ratio_more(v, pv),
                     fmt(lim) + " (pgbench, same SQL)", fmt(pct(v, lim), "%", 1)))
        a = res and res["latency_ms"]["p99"]
        b = g(parse, pk, "p99_ms")
        rows.append((name.split(":")[0] + " p99 (ms)", fmt(a, digits=1), fmt(b, digits=1),
                     ratio_lower(a, b), fmt(pb and pb["p99_ms"], digits=1) + " (pgbench)", "n/a"))
    # Real time at the same load: one subscriber of one store, 100 writes/s
    # to it (stockflow: SSE and sales; Parse: LiveQuery and PUT Increment).
    lq = g(parse, "livequery")
    if fresh or lq:
        for label, sk, pk in (("write's answer", "answer_to_arrival_ms", "answer_to_event_ms"),
                              ("write sent", "send_to_arrival_ms", "sent_to_event_ms")):
            for q in ("p50", "p99"):
                a = fresh and fresh[sk][q]
                b = lq and lq[pk][q]
                rows.append((f"change feed, 1 subscriber, 100 writes/s: {label} -> change, {q} (ms)",
                             fmt(a, digits=1) + (" (SSE)" if fresh else ""),
                             fmt(b, digits=1) + (" (LiveQuery)" if lq else ""),
                             ratio_lower(a, b), "n/a", "n/a"))
    return rows


SDK_OPS = (("login", "Parse.User.logIn"),
           ("query_where", "Inventory query: where store, onHand > 0, include product"),
           ("save_transaction", "Transaction save (a sale of 1)"),
           ("livequery_update", "LiveQuery update: save sent -> update event"))


def sdk_flow_rows(sf, peer):
    """(operation, stockflow facade, Parse Server, ratio) of the Parse SDK
    flow (tests/parse/flow.js --bench) on both, p50 and p99 in ms."""
    rows = []
    for key, label in SDK_OPS:
        a = sf and sf.get("ops", {}).get(key)
        b = peer and peer.get("ops", {}).get(key)
        for q in ("p50", "p99"):
            x, y = a and a.get(f"{q}_ms"), b and b.get(f"{q}_ms")
            rows.append((f"Parse SDK flow: {label}, {q} (ms): stockflow facade vs Parse Server",
                         fmt(x, digits=1), fmt(y, digits=1), ratio_lower(x, y)))
    return rows


def correctness_rows(corr, parse):
    """(check, stockflow, Parse) for the three correctness checks."""
    rows = []
    corr = corr or {}
    parse = parse or {}
    verdict = lambda d: "" if not d or "error" in d else (" — **pass**" if d.get("pass") else " — **FAIL**")
    r = corr.get("race")
    if r and "error" not in r:
        sf = (f"{r['accepted']} accepted (201), {r['refused_409']} refused (409 insufficient_stock), "
              f"final on_hand **{r['final_on_hand']}**{verdict(r)}")
    else:
        sf = "not run" + (f" ({r['error']})" if r else "")
    pr = parse.get("race")
    pp = (f"{pr['accepted']} accepted, final quantity **{pr['final_quantity']}** "
          f"(Increment has no floor)" if pr else "not run (--without-parse, or it failed)")
    rows.append(("32 clients x 10 sales of 1 from stock 100 (same race)", sf, pp))
    d = corr.get("disconnect")
    if d and "error" not in d:
        sf = (f"{d['written']} written ({d.get('written_while_away', '?')} while away), received "
              f"{d['received']} ({d.get('received_after_resume', '?')} after the resume), lost **{d['lost']}**, "
              f"duplicated {d['duplicates']} (resumed with Last-Event-ID){verdict(d)}")
    else:
        sf = "not run" + (f" ({d['error']})" if d else "")
    pd = parse.get("livequery_disconnect")
    pp = (f"received {pd['received']}, lost **{pd['lost']}** (LiveQuery has no replay)" if pd else "not run (--without-parse, or it failed)")
    rows.append(("subscriber away 5 s during 100 changes at 10/s, then reconnects", sf, pp))
    t = corr.get("retry")
    if t and "error" not in t:
        sf = (f"{t['first']} then {t['second']} (Idempotent-Replayed: {t['replayed_header']}, "
              f"same body: {'yes' if t['same_body'] else 'no'}), applied **{t['applied']}** time(s){verdict(t)}")
    else:
        sf = "not run" + (f" ({t['error']})" if t else "")
    pa, pb = parse.get("retry_default"), parse.get("retry_idempotency")
    pp = []
    if pa:
        pp.append(f"defaults: {pa['first']} then {pa['second']}, **{pa['created']} objects**")
    if pb:
        pp.append(f"experimental idempotency on: {pb['first']} then {pb['second']}, "
                  f"**{pb['created']} object(s)**")
    rows.append(("one write retried with the same key (Idempotency-Key; Parse: X-Parse-Request-Id)",
                 sf, "; ".join(pp) or "not run (--without-parse, or it failed)"))
    return rows


def gp_str(s):
    """A gnuplot double-quoted string."""
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def plots(out, img_dir, fig, parse, sales, http_sales, rp, rg, pbp, pbg):
    """Draws the PNGs with gnuplot; returns [(file name, alt text)]."""
    import shutil
    import subprocess
    if not shutil.which("gnuplot"):
        print("report.py: gnuplot not found: no plots", file=sys.stderr)
        return []
    os.makedirs(img_dir, exist_ok=True)
    g = lambda d, *ks: None if d is None else (d.get(ks[0]) if len(ks) == 1 else g(d.get(ks[0]), *ks[1:]))
    vers = fig.get("versions", "?")
    if parse:
        pv = parse.get("versions", {})
        vers += (f"; Parse Server {pv.get('parse-server', '?')}, Node.js {pv.get('node', '?')}")
    sub = (f"machine: {fig.get('machine', '?')}\n"
           f"{vers}\n"
           f"command: {fig.get('command', '?').strip()}   date: {fig.get('date', '?')}   commit {fig.get('commit', '?')}")

    def nz(v):
        return "NaN" if v is None else f"{v:.6g}"

    made = []
    # Throughput bars: stockflow, Parse, the limit per operation.
    ops = [("sale (movement)", sales and sales["ok_rps"], g(parse, "movement", "movements_per_s"),
            http_sales and http_sales["ok_rps"]),
           ("point lookup", rp and rp["ok_rps"], g(parse, "read_row", "ok_rps"), pbp and pbp["tps"]),
           ("store page, 100 rows", rg and rg["ok_rps"], g(parse, "read_page", "ok_rps"), pbg and pbg["tps"])]
    dat = os.path.join(out, "plot-throughput.dat")
    with open(dat, "w") as f:
        for name, a, b, c in ops:
            f.write(f"{gp_str(name)} {nz(a)} {nz(b)} {nz(c)}\n")
    png = os.path.join(img_dir, "throughput.png")
    script = f"""
set terminal pngcairo size 1200,720 font "DejaVu Sans,10" noenhanced
set output {gp_str(png)}
set title {gp_str("Throughput at 64 connections, closed loop (per second, log scale): stockflow, Parse Server, the limit measured in the same run" + chr(10) + sub)} font ",9"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set logscale y
set yrange [10:*]
set ylabel "operations per second"
set grid ytics
set key outside bottom center horizontal
set xrange [-0.6:{len(ops) - 0.4}]
set tmargin 8
plot {gp_str(dat)} using 2:xtic(1) title "stockflow" lc rgb "#1f77b4", \\
     '' using 3 title "Parse Server" lc rgb "#ff7f0e", \\
     '' using 4 title "limit (fixed-201 HTTP server / pgbench)" lc rgb "#7f7f7f", \\
     '' using ($0-0.25):2:(sprintf("%.0f",$2)) with labels offset 0,0.7 notitle, \\
     '' using ($0):3:(sprintf("%.0f",$3)) with labels offset 0,0.7 notitle, \\
     '' using ($0+0.25):4:(sprintf("%.0f",$4)) with labels offset 0,0.7 notitle
"""
    gpf = os.path.join(out, "plot-throughput.gp")
    open(gpf, "w").write(script)
    r = subprocess.run(["gnuplot", gpf], capture_output=True, text=True)
    if r.returncode == 0:
        made.append(("throughput.png", "throughput bars: stockflow, Parse Server and the limit per operation"))
    else:
        print("report.py: gnuplot throughput: " + r.stderr[-500:], file=sys.stderr)

    # Latency percentile curves, one panel per operation.
    panels = [("sale / stock write", [("stockflow sale", lat_of(sales)),
                                     ("Parse PUT Increment", lat_parse(g(parse, "increment"))),
                                     ("Parse POST Transaction", lat_parse(g(parse, "transaction"))),
                                     ("limit: fixed-201 server", lat_of(http_sales))]),
              ("point lookup", [("stockflow", lat_of(rp)), ("Parse", lat_parse(g(parse, "read_row"))),
                                ("limit: pgbench", lat_pgbench(pbp))]),
              ("store page, 100 rows", [("stockflow", lat_of(rg)), ("Parse", lat_parse(g(parse, "read_page"))),
                                        ("limit: pgbench", lat_pgbench(pbg))])]
    qs = (("p50", 0.30103), ("p90", 1.0), ("p99", 2.0), ("p999", 3.0))
    lines = [f'set terminal pngcairo size 1500,620 font "DejaVu Sans,10" noenhanced',
             f"set output {gp_str(os.path.join(img_dir, 'latency.png'))}",
             "set multiplot layout 1,3 title " + gp_str(
                 "Latency percentiles at 64 connections, closed loop (ms, log scale)" + chr(10)
                 + sub) + ' font ",9"',
             "set logscale y", "set grid", "set xrange [0.1:3.2]",
             'set xtics ("p50" 0.30103, "p90" 1, "p99" 2, "p99.9" 3)',
             'set ylabel "ms"', "set key top left", "set tmargin 7"]
    for i, (title, series) in enumerate(panels):
        plots_ = []
        for j, (label, l) in enumerate(series):
            if not l:
                continue
            dat = os.path.join(out, f"plot-latency-{i}-{j}.dat")
            with open(dat, "w") as f:
                for q, x in qs:
                    if l.get(q) is not None:
                        f.write(f"{x} {l[q]:.6g}\n")
            dash = " dt 2" if label.startswith("limit") else ""
            colour = ("#7f7f7f" if label.startswith("limit") else "#1f77b4" if label.startswith("stockflow")
                      else "#8c564b" if "Transaction" in label else "#ff7f0e")
            plots_.append(f"{gp_str(dat)} using 1:2 with linespoints lw 2 pt 7{dash} "
                          f"lc rgb {gp_str(colour)} title {gp_str(label)}")
        lines.append(f"set title {gp_str(title)}")
        lines.append("plot " + (", ".join(plots_) if plots_ else "NaN notitle"))
    lines.append("unset multiplot")
    gpf = os.path.join(out, "plot-latency.gp")
    open(gpf, "w").write("\n".join(lines) + "\n")
    r = subprocess.run(["gnuplot", gpf], capture_output=True, text=True)
    if r.returncode == 0:
        made.append(("latency.png", "latency percentile curves p50/p90/p99/p99.9 per operation"))
    else:
        print("report.py: gnuplot latency: " + r.stderr[-500:], file=sys.stderr)
    return made


def main():
    out, doc = sys.argv[1], sys.argv[2]
    fig = load(out, "figures.json") or {}
    http = load(out, "http-limit.json")
    cmd = load(out, "commands.json")
    half = load(out, "commands-half.json")
    c512 = load(out, "commands-512.json")
    http_half = load(out, "http-limit-half.json")
    batches = load(out, "batches.json")
    klim = load(out, "kafka-limit.json")
    klim_b = load(out, "kafka-limit-b.json")
    mem = load(out, "state-mem.json")
    replay = load(out, "replay.json")
    pgl = load(out, "pg-limit.json")
    pgl10 = load(out, "pg-limit-10k.json")
    rp = load(out, "read-point-res.json")
    rg = load(out, "read-page-res.json")
    pbp = load(out, "pgbench-point.json")
    pbg = load(out, "pgbench-page.json")
    fresh = load(out, "freshness.json")
    fresh_peer = load(out, "freshness-peer.json")
    idle = load(out, "idle-subs.json")
    rb_own = rebuild_line(out, "rebuild-own.txt")
    rb_b = rebuild_line(out, "rebuild-b.txt")
    sales = load(out, "sales.json")
    http_sales = load(out, "http-limit-sales.json")
    parse = load(out, "parse.json")
    corr = load(out, "correctness.json")

    rows = []  # operation, stockflow, limit, % of limit, target, met

    def row(op, val, lim, ratio, target, met):
        rows.append((op, val, lim, "n/a" if ratio is None else f"{ratio:.0f} %",
                     target, "n/a" if met is None else ("yes" if met else "**no**")))

    cmd_rps = cmd and cmd["ok_rps"]
    http_rps = http and http["ok_rps"]
    r = pct(cmd_rps, http_rps)
    row("HTTP commands, mix, 64 connections (commands/s)", fmt(cmd_rps),
        fmt(http_rps) + " (fixed 201)", r, ">= 50 % of the HTTP limit",
        None if r is None else r >= 50)

    lane_set = fig.get("lane_set") or []
    lane_runs = {L: load(out, f"commands-lanes-{L}.json") for L in lane_set}
    lane_lims = {L: load(out, f"kafka-limit-lanes-{L}.json") for L in lane_set}
    for L in lane_set:
        run, lim = lane_runs[L], lane_lims[L]
        ev = fig.get(f"lanes_{L}_events_per_s")
        kev = lim and lim.get("events_per_s")
        r = pct(ev, kev)
        rps = run and run["ok_rps"]
        label = "N = one per core" if L == max(lane_set) and L > 2 else ""
        times = f" ({rps / SINGLE_WRITER_MIX:.1f}x the single writer)" if rps else ""
        row(f"command mix, {L} writer lane(s){' (' + label + ')' if label else ''}, "
            f"64 connections: {fmt(rps)} commands/s{times}, "
            f"p99 {fmt(run and run['latency_ms']['p99'], digits=1)} ms (events/s)",
            fmt(ev), fmt(kev) + f" (raw Kafka, {L} producer(s) in parallel, "
            f"txn of {fig.get(f'lanes_{L}_txn_events')})", r,
            f">= 5x the single writer ({fmt(5 * SINGLE_WRITER_MIX)} commands/s)",
            None if not rps else rps >= 5 * SINGLE_WRITER_MIX)

    hp99 = half and half["latency_ms"]["p99"]
    lp99 = http_half and http_half["latency_ms"]["p99"]
    rate = half and half.get("rate_target")
    row(f"command p99 at half the peak ({fmt(rate)} req/s, open loop) (ms)",
        fmt(hp99, digits=2), fmt(lp99, digits=2) + " (fixed 201, same rate)",
        None, "< 10 ms", None if hp99 is None else hp99 < 10)

    bev = None
    if fig.get("batch_events") and fig.get("batch_run_s"):
        bev = fig["batch_events"] / fig["batch_run_s"]
    if batches and batches.get("ok", 0) == 0:
        bev = None
    kev = klim and klim["events_per_s"]
    r = pct(bev, kev)
    row("batch intake, POST /v1/batches of 1,000 (events/s)", fmt(bev),
        fmt(kev) + " (raw txn producer)", r, ">= 50 % of the Kafka limit",
        None if r is None else r >= 50)

    rb_rate = None
    rb_src = None
    for src, rb in (("generated log", rb_b), ("own log", rb_own)):
        if rb and rb["seconds"] > 0 and rb["events"] >= 10000:
            if rb_rate is None or rb["events"] > rb_src[1]:
                rb_rate = rb["events"] / rb["seconds"]
                rb_src = (src, rb["events"])
    est = 1e7 / rb_rate if rb_rate else None
    cpu_est = 1e7 / mem["decode_fold_events_per_s"] if mem else None
    row("restart rebuild of 10M events (s, extrapolated from a real rebuild "
        f"of {fmt(rb_src and rb_src[1])} events)", fmt(est, digits=1),
        fmt(cpu_est, digits=1) + " (decode + fold CPU only)", None, "< 60 s",
        None if est is None else est < 60)

    pairs_b = fig.get("rebuild_b_pairs")
    rss_b = fig.get("rebuild_b_rss_mb")
    if isinstance(pairs_b, (int, float)) and pairs_b >= 999000 and isinstance(rss_b, (int, float)):
        val, how = rss_b, f"real service, {int(pairs_b):,} pairs"
        met = rss_b < 200
    elif mem:
        val = mem["rss_after_mb"]
        how = f"state alone in-process, {mem['pairs']:,} pairs"
        met = val < 200
    else:
        val, how, met = None, "", None
    row(f"1M store x product pairs held (MB RSS, {how})", fmt(val, digits=1),
        "n/a", None, "< 200 MB", met)

    rev = replay and replay["events_per_s"]
    pev = max([x["events_per_s"] for x in (pgl, pgl10) if x] or [0]) or None
    r = pct(rev, pev)
    row("projector replay (events/s)", fmt(rev),
        fmt(pev) + " (COPY + upsert)", r, ">= 50 % of the PostgreSQL limit",
        None if r is None else r >= 50)

    for name, res, pb in (("point lookup", rp, pbp), ("store page, 100 rows", rg, pbg)):
        v = res and res["ok_rps"]
        lim = pb and pb["tps"]
        r = pct(v, lim)
        row(f"{name}, 64 connections (requests/s)", fmt(v),
            fmt(lim) + " (pgbench, prepared, 64 clients)", r,
            ">= 70 % of pgbench", None if r is None else r >= 70)
        p99 = res and res["latency_ms"]["p99"]
        row(f"{name} p99 (ms)", fmt(p99, digits=2),
            fmt(pb and pb["p99_ms"], digits=2) + " (pgbench)", None, "< 5 ms",
            None if p99 is None else p99 < 5)

    for rr in stream_rows(fresh, idle):
        row(*rr)

    table = ["| operation | stockflow | limit (same run) | % of limit | target | met? |",
             "|---|---|---|---|---|---|"]
    for rr in rows:
        table.append("| " + " | ".join(rr) + " |")

    # ---- details ----
    det = []
    if cmd:
        lat = cmd["latency_ms"]
        ev_s = fig.get("cmd_events", 0) / fig["cmd_run_s"] if fig.get("cmd_run_s") else None
        det.append("### Write side: the command mix\n")
        det.append(f"- commands/s (2xx): **{fmt(cmd['ok_rps'])}**; all answers "
                   f"{fmt(cmd['rps'])}/s; errors {cmd['errors']}; statuses "
                   f"{json.dumps(cmd['status'])}")
        det.append(f"- latency (closed loop, 64 connections): p50 {lat['p50']:.2f} ms, "
                   f"p99 {lat['p99']:.2f} ms, p99.9 {lat['p999']:.2f} ms, max {lat['max']:.2f} ms")
        det.append(f"- events/s written to Kafka during the run: {fmt(ev_s)} "
                   f"(from `stockflow_command_events_produced_total`, wall clock of the run incl. warm-up)")
        det.append(f"- mean commit batch: {fmt(fig.get('cmd_batch_mean'), digits=1)} commands "
                   f"per Kafka transaction (`stockflow_command_commit_batch_commands_sum/_count`)")
        det.append(f"- command service RSS after the run: {fmt(fig.get('cmd_rss_mb'), 'MB', 1)} "
                   f"({fmt(fig.get('cmd_state_pairs'))} store x product pairs)")
        ops = cmd.get("ops", {})
        det.append("- per operation: " + "; ".join(
            f"{k} {v['ok']:,}/{v['count']:,} 2xx p50 {v['latency_ms']['p50']:.2f} p99 {v['latency_ms']['p99']:.2f} ms"
            + (" (dropped: endpoint missing)" if v.get("dropped") else "")
            for k, v in ops.items()))
        if http:
            hl = http["latency_ms"]
            det.append(f"- HTTP limit (sf-http201, same mix and client): {fmt(http['ok_rps'])} req/s, "
                       f"p50 {hl['p50']:.2f} ms, p99 {hl['p99']:.2f} ms")
        if c512:
            det.append(f"- the same mix at 512 connections (not a target; shows how group commit "
                       f"scales with the commands in flight): {fmt(c512['ok_rps'])} commands/s, "
                       f"p50 {c512['latency_ms']['p50']:.2f} ms, p99 {c512['latency_ms']['p99']:.2f} ms, "
                       f"errors {c512['errors']}")
        if half:
            det.append(f"- at half the peak ({fmt(half['rate_target'])} req/s offered, open loop): "
                       f"achieved {fmt(half['ok_rps'])} 2xx/s, p50 {half['latency_ms']['p50']:.2f} ms, "
                       f"p99 {half['latency_ms']['p99']:.2f} ms, p99.9 {half['latency_ms']['p999']:.2f} ms "
                       f"from the intended send time (service time p99 {half['service_ms']['p99']:.2f} ms)")
        if http_half:
            det.append(f"- fixed-201 server at the same offered rate: p99 {http_half['latency_ms']['p99']:.2f} ms")
        det.append("")
    if batches:
        det.append("### Write side: batch intake\n")
        det.append(f"- {fmt(batches['ok_rps'], digits=1)} batches/s (2xx) at 8 connections, "
                   f"p50 {batches['latency_ms']['p50']:.1f} ms, p99 {batches['latency_ms']['p99']:.1f} ms; "
                   f"statuses {json.dumps(batches['status'])}")
        det.append(f"- events/s: {fmt(bev)} (from `stockflow_command_events_produced_total`); "
                   f"{fmt(fig.get('batch_batch_mean'), digits=1)} batch request(s) per Kafka transaction")
        if klim:
            det.append(f"- Kafka limit: {fmt(klim['events_per_s'])} events/s "
                       f"({klim['events']:,} events in transactions of {klim['txn']}, "
                       f"{klim['mb_per_s']:.1f} MB/s; encoding, done before the clock, runs at "
                       f"{fmt(klim['encode_events_per_s'])} events/s)")
        if klim_b:
            det.append(f"- second log (one event per pair, for the rebuild): {fmt(klim_b['events_per_s'])} events/s")
        det.append("")
    det.append("### Restart rebuild and memory\n")
    if rb_b:
        det.append(f"- measured: a command service started on the generated log rebuilt "
                   f"{rb_b['events']:,} events in {rb_b['seconds']:.2f} s "
                   f"({fmt(rb_b['events'] / rb_b['seconds'] if rb_b['seconds'] else None)} events/s, "
                   f"Kafka fetch + decode + fold); RSS after: {fmt(fig.get('rebuild_b_rss_mb'), 'MB', 1)} "
                   f"for {fmt(fig.get('rebuild_b_pairs'))} pairs")
    if rb_own:
        det.append(f"- measured: the benchmark's own command service, restarted after the write runs, "
                   f"rebuilt {rb_own['events']:,} events in {rb_own['seconds']:.2f} s")
    if est:
        det.append(f"- extrapolated: 10,000,000 events at the measured rate of the larger rebuild "
                   f"would take {est:.1f} s (linear: the fold is a hash-table update per event and "
                   f"the state is bounded by the pairs, not the events)")
    if mem:
        det.append(f"- in-process (sf-state-mem, the service's own cmd_state.c): "
                   f"{mem['pairs']:,} pairs take {mem['rss_after_mb'] - mem['rss_before_mb']:.1f} MB "
                   f"({mem['bytes_per_pair']:.0f} bytes/pair), process RSS {mem['rss_after_mb']:.1f} MB; "
                   f"decode + fold of {mem['events']:,} events runs at "
                   f"{fmt(mem['decode_fold_events_per_s'])} events/s (10M: {cpu_est:.1f} s of CPU)")
    det.append("")
    det.append("### Read side\n")
    if replay:
        det.append(f"- projector replay: {int(replay['events']):,} events in {replay['seconds']:.2f} s "
                   f"= {fmt(replay['events_per_s'])} events/s")
    for x, lab in ((pgl, "batches of 1,000"), (pgl10, "batches of 10,000")):
        if x:
            det.append(f"- PostgreSQL limit, {lab}: {fmt(x['events_per_s'])} events/s "
                       f"(tables transactions + inventory{' + changes' if x.get('changes') else ''})")
    for name, res, pb in (("point lookup", rp, pbp), ("store page", rg, pbg)):
        if res:
            l = res["latency_ms"]
            det.append(f"- {name} over HTTP: {fmt(res['ok_rps'])} req/s (errors {res['errors']}, "
                       f"statuses {json.dumps(res['status'])}), p50 {l['p50']:.2f} ms, "
                       f"p99 {l['p99']:.2f} ms, p99.9 {l['p999']:.2f} ms")
        if pb:
            det.append(f"- {name} with pgbench: {fmt(pb['tps'])} tps, p50 {pb['p50_ms']:.2f} ms, "
                       f"p99 {pb['p99_ms']:.2f} ms")
    if fig.get("qry_rss_mb") is not None:
        det.append(f"- RSS: query service {fmt(fig.get('qry_rss_mb'), 'MB', 1)}, "
                   f"projector {fmt(fig.get('proj_rss_mb'), 'MB', 1)}")
    det.append("")
    det.extend(stream_details(fresh, idle, fig))

    head = [
        "# Benchmarks",
        "",
        "Generated by `bench/run.sh` (do not edit the tables by hand; the analysis "
        "at the end comes from `bench/notes.md`). Every figure stands next to the "
        "physical limit measured **in the same run** with the same client and payloads, "
        "so the ratio is what carries over between machines.",
        "",
        f"- run: `{fig.get('command', 'bench/run.sh').strip()}` "
        f"({'quick' if fig.get('quick') else 'full'}: {fig.get('duration_s')} s per HTTP figure, "
        f"{fmt(fig.get('events'))}-event logs), {fig.get('date', '?')}, commit {fig.get('commit', '?')}, "
        f"took {fig.get('run_s', '?')} s",
        f"- machine: {fig.get('machine', '?')}; client, services, Kafka and PostgreSQL all on it",
        f"- versions: {fig.get('versions', '?')}; Release build (-O3)",
        "",
    ]
    top = []
    if parse or sales:
        pr = peer_rows(parse, sales, http_sales, rp, rg, pbp, pbg, fresh_peer)
        top += ["## stockflow, Parse Server and the limits (same run, same client)", "",
                "Same machine, same load generator (`sf-loadgen`), same 64 keep-alive connections "
                "(closed loop), same data shape (20 stores x 1,000 products); stockflow and the peer "
                "run one after the other in this run, each on the quiet machine. "
                "Ratio: how much better (or worse) stockflow is than Parse. Limit: the same "
                "requests against a fixed-201 HTTP server on the services' own stack (writes) or "
                "pgbench running the query service's SQL (reads), measured in this run.", "",
                "| operation | stockflow | Parse Server | ratio | limit | stockflow % of limit |",
                "|---|---|---|---|---|---|"]
        top += ["| " + " | ".join(r) + " |" for r in pr]
        if parse:
            pv = parse.get("versions", {})
            top += ["", f"Parse: {parse.get('command', '?').strip()} ({parse.get('duration_s')} s per "
                    f"figure, {parse.get('connections')} connections, {parse.get('date')}); "
                    f"parse-server {pv.get('parse-server')}, Node.js {pv.get('node')}, "
                    f"PostgreSQL {pv.get('postgresql')}; one Node process, LiveQuery in-process, "
                    "an index added on Inventory.store. Raw figures: `parse.json` in the results folder."]
        else:
            top += ["", "Parse Server was not run in this run (`--without-parse`) or failed: see its log in the state folder."]
        top.append("")
    sdk_sf = load(out, "parse-flow.json")
    sdk_peer = parse and parse.get("sdk_flow")
    if sdk_sf or sdk_peer or parse:
        top += ["## The Parse SDK flow: stockflow's facade and Parse Server", "",
                "The unmodified parse npm SDK (`tests/parse/flow.js --bench`, one client, one "
                "operation at a time) against stockflow's `/parse` through the gateway and against "
                "Parse Server 9 running the template's Cloud Code (`tests/parse/cloud.js`): each "
                "round logs in, queries a store's Inventory with where, saves a Transaction (a sale "
                "of 1) and waits for the LiveQuery update it causes.", "",
                "| operation | stockflow facade | Parse Server | ratio |", "|---|---|---|---|"]
        top += ["| " + " | ".join(r) + " |" for r in sdk_flow_rows(sdk_sf, sdk_peer)]
        n_sf = sdk_sf and sdk_sf.get("rounds")
        n_p = sdk_peer and sdk_peer.get("rounds")
        top += ["", f"Rounds: stockflow {fmt(n_sf)}, Parse Server {fmt(n_p)}. "
                + ("" if sdk_sf else "stockflow: not measured (the flow failed, or node is missing: "
                   "`parse-flow.log` in the state folder). ")
                + ("" if sdk_peer else "Parse Server: not measured (`--without-parse`, or it failed). ")
                + "Raw figures: `parse-flow.json`, and `sdk_flow` in `parse.json`.", ""]
    if corr or parse:
        top += ["## Correctness, side by side", "",
                "stockflow: `bench/correctness.py` (Python threads, plain HTTP/1.1 and SSE against the "
                "public API); Parse: `bench/parse/run.sh` (sf-loadgen for the race, curl for the retry, "
                "the parse SDK's LiveQuery client for the disconnect).", "",
                "| check | stockflow | Parse Server |", "|---|---|---|"]
        top += ["| " + " | ".join(r) + " |" for r in correctness_rows(corr, parse)]
        top.append("")
    img_dir = os.path.join(os.path.dirname(os.path.abspath(doc)), "img")
    made = plots(out, img_dir, fig, parse, sales, http_sales, rp, rg, pbp, pbg) if (parse or sales) else []
    if made:
        top += ["## Plots", ""]
        top += [f"![{alt}](img/{name})" + "\n" for name, alt in made]
        top.append("")
    if top:
        top += ["## Against the targets (stockflow and the physical limits)", ""]
    text = "\n".join(head + top + table + [""] + ["## Details", ""] + det)
    text += "\n## Analysis (bench/notes.md: each section names the run it was written from)\n\n"
    notes = os.path.join(os.path.dirname(os.path.abspath(__file__)), "notes.md")
    if os.path.exists(notes):
        text += open(notes).read()
    with open(doc, "w") as f:
        f.write(text)
    print("\n".join([l for l in top if l.startswith("|")] + [""] + table))


if __name__ == "__main__":
    main()
