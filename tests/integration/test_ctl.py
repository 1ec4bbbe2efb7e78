"""stockflowctl against the real stack: login and the token file, stock
levels, movements with the exit codes scripts rely on (0 ok, 2 usage, 3
refused, 4 unreachable), tail receiving changes and resuming after the
query service went away, the projector's rebuild with its progress (and
stopped by Ctrl-C), and the command service's startup rebuild reporting
done/total on its log, /readyz and /metrics.

The built binary is <bin-dir>/ctl/stockflowctl; under --sanitized it is the
sanitizer build, so a leak or UB report makes its exit status wrong."""

import json
import os
import re
import signal
import socket
import subprocess
import tempfile
import threading
import time

import api
import client
from client import get

EXIT_OK, EXIT_FAIL, EXIT_USAGE, EXIT_REFUSED, EXIT_UNAVAILABLE = 0, 1, 2, 3, 4
EXIT_INTERRUPTED = 130


def ctl_bin(ctx):
    path = os.path.join(ctx.args.bin_dir, "ctl", "stockflowctl")
    assert os.access(path, os.X_OK), f"{path} is not built"
    return path


def ctl_env(ctx, home, **extra):
    env = dict(ctx.env)
    env.pop("STOCKFLOW_TOKEN", None)
    env.pop("STOCKFLOW_TOKEN_FILE", None)
    env.pop("XDG_CONFIG_HOME", None)
    env["HOME"] = home
    env["STOCKFLOW_COMMAND_URL"] = f"http://127.0.0.1:{ctx.cmd}"
    env["STOCKFLOW_QUERY_URL"] = f"http://127.0.0.1:{ctx.qry}"
    env.update(extra)
    return env


def ctl(ctx, home, *args, stdin=None, timeout=60, **extra):
    """Runs stockflowctl; returns (exit status, stdout, stderr)."""
    out = subprocess.run([ctl_bin(ctx), *args], env=ctl_env(ctx, home, **extra),
                         input=stdin.encode() if stdin is not None else None,
                         stdin=None if stdin is not None else subprocess.DEVNULL,
                         capture_output=True, timeout=timeout)
    return (out.returncode, out.stdout.decode("utf-8", "replace"),
            out.stderr.decode("utf-8", "replace"))


def expect_exit(res, code, what):
    rc, out, err = res
    assert rc == code, \
        f"{what}: exit {rc}, want {code}\nstdout: {out[-1500:]}\nstderr: {err[-1500:]}"
    return out, err


def login(ctx, home):
    user, password = ctx.admin_credentials()
    out, _ = expect_exit(ctl(ctx, home, "login", user, stdin=password + "\n"),
                         EXIT_OK, "login")
    return out


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_help_and_usage(ctx):
    with tempfile.TemporaryDirectory() as home:
        out, _ = expect_exit(ctl(ctx, home, "--help"), EXIT_OK, "--help")
        for cmd in ("login", "logout", "stock", "move", "tail", "rebuild"):
            assert f"  {cmd} " in out, f"--help does not list {cmd}:\n{out}"
            sub, _ = expect_exit(ctl(ctx, home, cmd, "--help"), EXIT_OK,
                                 f"{cmd} --help")
            assert sub.startswith(f"usage: stockflowctl {cmd}"), sub
        for args, what in ((["bogus"], "unknown command"),
                           ([], "no command"),
                           (["stock"], "stock without a store"),
                           (["move", "s", "p", "sale"], "move without qty"),
                           (["move", "s", "p", "sale", "3x"], "qty not int"),
                           (["move", "s", "p", "sale", "1", "--bogus"],
                            "unknown option"),
                           (["stock", "s", "--reason", "x"],
                            "option of another command"),
                           (["tail", "--after", "-1"], "negative --after"),
                           (["tail", "--count", "0"], "--count 0"),
                           (["login"], "login without a username")):
            _, err = expect_exit(ctl(ctx, home, *args), EXIT_USAGE, what)
            assert err.startswith("stockflowctl: "), f"{what}: {err!r}"


def test_login_stock_move_logout(ctx):
    store, product = api.store_and_product(ctx)
    with tempfile.TemporaryDirectory() as home:
        tokfile = os.path.join(home, ".config", "stockflow", "token")
        # A wrong password is a refusal; no token file appears.
        user, password = ctx.admin_credentials()
        _, err = expect_exit(ctl(ctx, home, "login", user, stdin="wrong-pw\n"),
                             EXIT_REFUSED, "login with a wrong password")
        assert "401 unauthorized" in err, err
        assert not os.path.exists(tokfile)
        out = login(ctx, home)
        assert f"logged in as {user}" in out, out
        st = os.stat(tokfile)
        assert st.st_mode & 0o777 == 0o600, oct(st.st_mode)
        assert os.stat(os.path.dirname(tokfile)).st_mode & 0o777 == 0o700
        with open(tokfile) as f:
            saved = json.load(f)
        assert len(saved["token"]) >= 32 and saved["username"] == user, saved

        # Movements: the human answer, then --json with an Idempotency-Key.
        out, _ = expect_exit(ctl(ctx, home, "move", store, product, "receipt",
                                 "10", "--reference", "ctl-1"),
                             EXIT_OK, "receipt")
        assert out.startswith("receipt of 10 accepted: on_hand 10, reserved 0, "
                              "available 10, version 1"), out
        key = client.unique("ctl-key")
        out, _ = expect_exit(ctl(ctx, home, "move", store, product, "sale", "3",
                                 "--key", key, "--json"), EXIT_OK, "sale")
        sale = json.loads(out)
        assert sale["on_hand"] == 7 and sale["version"] == 2, sale
        again, _ = expect_exit(ctl(ctx, home, "move", store, product, "sale",
                                   "3", "--key", key, "--json"),
                               EXIT_OK, "sale replayed")
        assert json.loads(again) == sale, "the same key did not replay"
        # A negative quantity is an argument, not an option.
        out, _ = expect_exit(ctl(ctx, home, "move", store, product,
                                 "adjustment", "-2", "--reason", "broken"),
                             EXIT_OK, "negative adjustment")
        assert "on_hand 5" in out, out

        # Refusals (4xx) exit 3 with the problem's code and detail.
        for args, status, code in (
                (["sale", "100"], 409, "insufficient_stock"),
                (["teleport", "1"], 422, "validation_failed"),
                (["adjustment", "-1"], 422, "validation_failed"),  # no reason
                (["sale", "0"], 422, "validation_failed")):
            _, err = expect_exit(ctl(ctx, home, "move", store, product, *args),
                                 EXIT_REFUSED, f"move {args}")
            assert f"{status} {code}: " in err, f"move {args}: {err}"
        _, err = expect_exit(ctl(ctx, home, "move", client.new_uuid(), product,
                                 "sale", "1"), EXIT_REFUSED, "unknown store")
        assert "404 not_found" in err, err
        # A path-breaking id is escaped, not sent as a path.
        _, err = expect_exit(ctl(ctx, home, "move", "../../v1/sessions",
                                 product, "sale", "1"), EXIT_REFUSED,
                             "escaped store id")
        assert "404 not_found" in err, err
        # Nothing is listening: exit 4.
        _, err = expect_exit(ctl(ctx, home, "--command-url",
                                 f"http://127.0.0.1:{free_port()}", "move",
                                 store, product, "sale", "1"),
                             EXIT_UNAVAILABLE, "unreachable service")
        assert "no answer" in err, err

        # stock: the row once the projector applied the adjustment.
        def row():
            out, _ = expect_exit(ctl(ctx, home, "stock", store, product,
                                     "--json"), EXIT_OK, "stock --json")
            r = json.loads(out)
            assert r["version"] == 3, f"not applied yet: {r}"
            return r
        r = client.eventually(row, timeout=15, what="the read model")
        assert r["on_hand"] == 5 and r["product_id"] == product, r
        out, _ = expect_exit(ctl(ctx, home, "stock", store), EXIT_OK, "stock")
        lines = out.rstrip("\n").split("\n")
        assert re.match(r"^PRODUCT +SKU +NAME +ON_HAND +RESERVED +AVAILABLE "
                        r"+VERSION +UPDATED$", lines[0]), lines[0]
        assert len(lines) == 2 and lines[1].startswith(product), out
        assert re.search(r"\s5\s+0\s+5\s+3\s", lines[1]), lines[1]
        out, _ = expect_exit(ctl(ctx, home, "stock", store, "--json"), EXIT_OK,
                             "stock --json of a store")
        assert [x["product_id"] for x in json.loads(out)] == [product], out
        _, err = expect_exit(ctl(ctx, home, "stock", client.new_uuid()),
                             EXIT_REFUSED, "stock of an unknown store")
        assert "404 not_found" in err, err

        # A token file others may read is refused.
        os.chmod(tokfile, 0o644)
        _, err = expect_exit(ctl(ctx, home, "stock", store), EXIT_FAIL,
                             "unsafe token file")
        assert "may be read or written by others" in err, err
        os.chmod(tokfile, 0o600)

        # logout revokes the token and deletes the file.
        out, _ = expect_exit(ctl(ctx, home, "logout"), EXIT_OK, "logout")
        assert out == "logged out\n", out
        assert not os.path.exists(tokfile)
        _, err = expect_exit(ctl(ctx, home, "stock", store,
                                 STOCKFLOW_TOKEN=saved["token"]),
                             EXIT_REFUSED, "stock with the revoked token")
        assert "401 unauthorized" in err, err
        _, err = expect_exit(ctl(ctx, home, "stock", store), EXIT_REFUSED,
                             "stock without a token")
        assert "401 unauthorized" in err, err
        out, _ = expect_exit(ctl(ctx, home, "logout"), EXIT_OK,
                             "logout again")
        assert out == "not logged in\n", out


class Reader:
    """Collects a process's output lines on a thread."""

    def __init__(self, stream):
        self.lines = []
        self.lock = threading.Lock()
        self.t = threading.Thread(target=self._run, args=(stream,), daemon=True)
        self.t.start()

    def _run(self, stream):
        for raw in stream:
            with self.lock:
                self.lines.append(raw.decode("utf-8", "replace").rstrip("\n"))

    def snapshot(self):
        with self.lock:
            return list(self.lines)

    def wait_for(self, pred, timeout, what):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            lines = self.snapshot()
            if pred(lines):
                return lines
            time.sleep(0.1)
        raise AssertionError(f"{what}: not seen within {timeout}s; lines: "
                             f"{self.snapshot()[-20:]}")


def changes_of(lines):
    return [json.loads(x) for x in lines if x.startswith("{")]


def test_tail_receives_and_resumes(ctx):
    store = api.create_store(ctx)["id"]
    product = api.create_product(ctx, reorder_level=0)["id"]  # no crossings
    api.txn(ctx, store, product, "receipt", 5, on_hand=5, version=1)
    with tempfile.TemporaryDirectory() as home:
        login(ctx, home)
        expect_exit(ctl(ctx, home, "tail", "--store", "not-a-uuid"),
                    EXIT_REFUSED, "tail with a bad store id")
        # From the start of this fresh store's changes.
        proc = subprocess.Popen(
            [ctl_bin(ctx), "tail", "--store", store, "--after", "0", "--json"],
            env=ctl_env(ctx, home), stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        out, err = Reader(proc.stdout), Reader(proc.stderr)
        try:
            first = out.wait_for(lambda ls: len(changes_of(ls)) >= 1, 20,
                                 "the receipt's change")
            c1 = changes_of(first)[0]
            assert c1["type"] == "change" and c1["cause"] == "receipt" and \
                c1["store_id"] == store and c1["on_hand"] == 5, c1

            # The query service goes away; a sale happens meanwhile.
            ctx.stack["query"].kill()
            err.wait_for(lambda ls: any("resuming after change" in x
                                        for x in ls), 20, "the resume note")
            note = [x for x in err.snapshot() if "resuming" in x][0]
            assert f"resuming after change {c1['id']}" in note, note
            api.txn(ctx, store, product, "sale", 2, on_hand=3, version=2)
            ctx.stack.start(["query"])
            lines = out.wait_for(lambda ls: len(changes_of(ls)) >= 2, 30,
                                 "the sale's change after the resume")
            time.sleep(1.0)  # anything repeated would come now
            got = changes_of(out.snapshot())
            assert [c["cause"] for c in got] == ["receipt", "sale"], got
            assert got[1]["id"] > got[0]["id"] and got[1]["on_hand"] == 3, got
            assert proc.poll() is None, "tail ended after the resume"
        finally:
            proc.send_signal(signal.SIGINT)
            try:
                rc = proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                raise AssertionError("tail did not stop on SIGINT")
        assert rc == EXIT_OK, f"tail exit {rc} on SIGINT: {err.snapshot()}"

        # --count ends it by itself; the line format without --json.
        res = ctl(ctx, home, "tail", "--store", store, "--after", "0",
                  "--count", "2", timeout=30)
        text, _ = expect_exit(res, EXIT_OK, "tail --count 2")
        rows = text.rstrip("\n").split("\n")
        assert len(rows) == 2, rows
        assert re.match(rf"^{c1['id']} \S+ receipt store={store} "
                        rf"product={product} on_hand=5 reserved=0 available=5 "
                        r"version=1$", rows[0]), rows[0]


def rebuild_lines(err):
    return [x for x in err.split("\n") if x.startswith("rebuild: ")]


def test_rebuild_shows_progress_and_ends(ctx):
    store, product = api.store_and_product(ctx)
    for i in range(20):
        api.txn(ctx, store, product, "receipt", 1, on_hand=i + 1,
                version=i + 1)
    with tempfile.TemporaryDirectory() as home:
        # The projector is found next to stockflowctl's build folder.
        res = ctl(ctx, home, "rebuild", timeout=240)
        out, err = expect_exit(res, EXIT_OK, "rebuild")
        lines = rebuild_lines(err)
        assert lines and lines[0].startswith("rebuild: lock"), err[-2000:]
        bars = [re.match(r"^rebuild: (replay|catch-up) +\[([#-]{30})\]  "
                         r"(\d+)/(\d+) offsets  ([0-9.]+) %", x)
                for x in lines]
        bars = [m for m in bars if m]
        assert bars, f"no progress bar line:\n{err[-2000:]}"
        totals = [int(m.group(4)) for m in bars]
        assert totals[0] >= 40, f"the total does not count the log: {totals}"
        last = bars[-1]
        assert last.group(3) == last.group(4) and last.group(5) == "100.0" \
            and last.group(2) == "#" * 30, f"did not end at 100 %: {lines}"
        for m in bars:
            assert int(m.group(3)) <= int(m.group(4)), m.group(0)
        assert any(x.startswith("rebuild: switch") for x in lines), lines
        assert re.match(r"^rebuild done: \d+ messages \(\d+ applied, 0 skipped "
                        r"as poison\) in \d+ batches; replay [0-9.]+ s, "
                        r"switch [0-9.]+ s\n$", out), out
    assert ctx.stack["projector"].alive(), "the live projector died"
    last = api.txn(ctx, store, product, "sale", 1, on_hand=19, version=21)
    api.expect_stock(ctx, store, product, on_hand=19, version=21,
                     position=last["position"])


def test_rebuild_interrupted_and_bad_binary(ctx):
    with tempfile.TemporaryDirectory() as home:
        _, err = expect_exit(ctl(ctx, home, "rebuild", "--projector-bin",
                                 os.path.join(home, "nope")),
                             EXIT_FAIL, "rebuild with a missing binary")
        assert "cannot run" in err, err
        # Interrupted at a point it cannot race past: a reader holds the
        # public products table (ACCESS SHARE) in an open transaction, so
        # the switch's ACCESS EXCLUSIVE lock times out and the rebuild warns
        # that it waits; the interrupt comes then, and the rebuild must stop
        # without switching (exit "interrupted", nothing left behind).
        holder = subprocess.Popen(
            ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1",
             ctx.env["STOCKFLOW_PG_DSN"]],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT)
        proc = None
        try:
            holder.stdin.write(b"BEGIN;\n"
                               b"LOCK TABLE public.products IN ACCESS SHARE "
                               b"MODE;\n\\echo locked\n")
            holder.stdin.flush()
            got = holder.stdout.readline().decode().strip()
            assert got == "locked", f"psql did not take the lock: {got!r}"
            proc = subprocess.Popen([ctl_bin(ctx), "rebuild"],
                                    env=ctl_env(ctx, home),
                                    stdin=subprocess.DEVNULL,
                                    stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE)
            err = Reader(proc.stderr)
            err.wait_for(lambda ls: any("could not lock the public tables"
                                        in x for x in ls),
                         90, "the rebuild waiting for the switch lock")
            assert proc.poll() is None, "the rebuild ended while it waited"
            proc.send_signal(signal.SIGINT)
            rc = proc.wait(timeout=60)
        finally:
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
            holder.stdin.close()  # ends the transaction and the lock
            holder.wait(timeout=30)
        err.t.join(5)
        text = "\n".join(err.snapshot())
        assert rc == EXIT_INTERRUPTED, f"exit {rc}:\n{text[-2000:]}"
        assert "stopping" in text, text[-2000:]
        out = proc.stdout.read().decode("utf-8", "replace")
        assert "rebuild done" not in out, out
    left = subprocess.run(
        ["psql", ctx.env["STOCKFLOW_PG_DSN"], "-Atc",
         "select count(*) from pg_namespace where nspname like "
         "'stockflow\\_rebuild\\_%' or nspname like 'stockflow\\_old\\_%'"],
        capture_output=True, timeout=30)
    assert left.returncode == 0, left.stderr
    assert left.stdout.decode().strip() == "0", "a rebuild schema was left"
    store, product = api.store_and_product(ctx)
    last = api.txn(ctx, store, product, "receipt", 4, on_hand=4, version=1)
    api.expect_stock(ctx, store, product, on_hand=4, version=1,
                     position=last["position"])


def command_metric(ctx, name):
    r = get(ctx.cmd, "/metrics", headers=client.NO_AUTH)
    client.expect_status(r, 200, "command /metrics")
    m = re.search(rf"(?m)^{re.escape(name)} ([0-9.eE+-]+)$",
                  r.raw.decode("utf-8", "replace"))
    assert m, f"/metrics has no {name}"
    return float(m.group(1))


def test_command_startup_rebuild_reports_progress(ctx):
    store, product = api.store_and_product(ctx)
    api.txn(ctx, store, product, "receipt", 3, on_hand=3, version=1)
    svc = ctx.stack["command"]
    svc.kill()
    svc.start()
    # While it rebuilds, a 503 that carries progress carries all of it.
    seen = []
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            r = get(ctx.cmd, "/readyz", headers=client.NO_AUTH, timeout=2)
        except OSError:
            time.sleep(0.05)
            continue
        if r.status == 200:
            break
        if isinstance(r.body, dict) and "progress" in r.body:
            seen.append(r.body)
        time.sleep(0.02)
    svc.wait_ready(30)
    for b in seen:
        p = b["progress"]
        assert 0 <= p["done"] <= p["total"], p
        assert re.search(r": \d+/\d+ offsets \(", b["detail"]), b["detail"]
    log = svc.log_text()
    start = re.search(r"replaying \S+ \(1 partition\(s\)\) and \S+ \((\d+) "
                      r"partition\(s\)\): (\d+) offsets", log)
    assert start, f"no opening progress line:\n{log[-3000:]}"
    total = int(start.group(2))
    assert total >= 2, f"the log has at least this test's events: {total}"
    end = re.search(r"replayed: (\d+)/(\d+) offsets \(100\.0 %\)", log)
    assert end and end.group(1) == end.group(2), log[-3000:]
    assert command_metric(ctx, "stockflow_command_rebuild_running") == 0
    done = command_metric(ctx, "stockflow_command_rebuild_done_offsets")
    assert done == command_metric(ctx, "stockflow_command_rebuild_total_offsets")
    assert done == float(end.group(1)), (done, end.group(0))
    # And it took writes again from the rebuilt state.
    api.txn(ctx, store, product, "sale", 1, on_hand=2, version=2)
