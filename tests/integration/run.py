#!/usr/bin/env python3
"""stockflow integration tests: a tiny runner (no pytest, stdlib only).

Starts the three services (built binaries under --bin-dir) and the gateway
in front of them (deploy/local/gateway.sh: nginx) against a real
Kafka and PostgreSQL that the caller prepared (tests/run.sh creates a fresh
database and fresh topics per run and passes them with --env), runs every
test_* function of every test_*.py module here, in file then source order,
and prints one line per test:

    PASS <module>.<test> (1.2s)
    FAIL <module>.<test>: <reason>

then `N passed, N failed` as the last line. Exit status 1 if anything failed.

Every test gets a Ctx (ports, the stack, helpers) and must use fresh store
and product ids, so tests do not depend on each other. Before each test the
runner makes sure every service runs and is ready; a service that dies
during a test fails that test (and is started again for the next one). At
the end every service is stopped with SIGTERM and must exit 0: under ASan a
leak makes that exit status non-zero, reported as "clean shutdown <svc>".

Usage:
  run.py --bin-dir build/services --state-dir DIR --env KEY=VALUE ...
         [-k SUBSTRING] [--list] [--summary-file FILE] [--sanitized]
"""

import argparse
import importlib
import inspect
import json
import os
import signal
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import client  # noqa: E402
import stack as stackmod  # noqa: E402


class Ctx:
    """What a test gets: ports of the services, the stack (for restarts and
    kills), the environment the services run with, and a log function."""

    def __init__(self, stack, env, args):
        self.stack = stack
        self.env = env
        self.args = args
        self.cmd = stack.port("command")
        self.qry = stack.port("query")
        self.proj = stack.port("projector")
        self.gw = stack.port("gateway")

    def ports(self):
        return {"command": self.cmd, "query": self.qry, "projector": self.proj}

    def auth_enabled(self):
        """True when the command service has accounts (its --help lists the
        bootstrap admin setting)."""
        return "STOCKFLOW_ADMIN_USERNAME" in self.stack["command"].help_text()

    def admin_credentials(self):
        return (self.env.get("STOCKFLOW_ADMIN_USERNAME", "admin"),
                self.env.get("STOCKFLOW_ADMIN_PASSWORD", ""))

    def login(self, username, password):
        """POST /v1/sessions; returns the token (checked)."""
        r = client.post(self.cmd, "/v1/sessions",
                        {"username": username, "password": password},
                        headers=client.NO_AUTH)
        body = client.expect_json(r, 201, f"login as {username}")
        token = body.get("token")
        assert isinstance(token, str) and len(token) >= 32, \
            f"login answer has no usable token: {body}"
        return token

    def ensure_admin_token(self):
        """Logs in as the bootstrap admin once (when the services have
        authentication) and makes every request of the tests carry that
        token."""
        if os.environ.get("STOCKFLOW_TEST_TOKEN") or not self.auth_enabled():
            return
        user, password = self.admin_credentials()
        assert password, "the services need a login but the runner got no " \
            "STOCKFLOW_ADMIN_PASSWORD"
        os.environ["STOCKFLOW_TEST_TOKEN"] = self.login(user, password)

    def log(self, msg):
        print(f"    {msg}", flush=True)


def discover(filters):
    """[(name, fn)] of test_* functions in test_*.py files, sorted by file
    name, then by line within the file."""
    tests = []
    for fname in sorted(os.listdir(HERE)):
        if not (fname.startswith("test_") and fname.endswith(".py")):
            continue
        modname = fname[:-3]
        mod = importlib.import_module(modname)
        fns = [(obj.__code__.co_firstlineno, name, obj)
               for name, obj in vars(mod).items()
               if name.startswith("test_") and inspect.isfunction(obj)
               and obj.__module__ == modname]
        for _, name, fn in sorted(fns):
            full = f"{modname[5:]}.{name[5:]}"
            if filters and not any(f in full for f in filters):
                continue
            tests.append((full, fn))
    return tests


class TestTimeout(BaseException):
    """A test ran longer than its time limit (raised from SIGALRM; a
    BaseException so that a test's own `except Exception` cannot swallow
    it)."""


def failure_reason(exc):
    """One readable reason: the exception text plus where in the tests it
    was raised (the test file's line, and the helper's if it came from
    one)."""
    tb = traceback.extract_tb(exc.__traceback__)
    test_at = helper_at = None
    for frame in reversed(tb):
        if os.path.dirname(os.path.abspath(frame.filename)) != HERE:
            continue
        base = os.path.basename(frame.filename)
        if base.startswith("test_"):
            test_at = test_at or f"{base}:{frame.lineno}"
        elif base not in ("client.py", "run.py"):
            helper_at = helper_at or f"{base}:{frame.lineno}"
    where = ", ".join(w for w in (test_at, helper_at) if w)
    text = str(exc) or type(exc).__name__
    if not isinstance(exc, AssertionError):
        text = f"{type(exc).__name__}: {text}"
    return text + (f" [{where}]" if where else "")


class Runner:
    def __init__(self, args, env):
        self.args = args
        self.env = env
        self.results = []   # (name, ok, reason)
        self.stack = stackmod.Stack(args.bin_dir, env, args.state_dir,
                                    args.ready_timeout)

    def record(self, name, ok, reason="", seconds=None):
        self.results.append((name, ok, reason))
        t = f" ({seconds:.1f}s)" if seconds is not None else ""
        if ok:
            print(f"PASS {name}{t}", flush=True)
        else:
            first, _, rest = reason.partition("\n")
            print(f"FAIL {name}: {first}{t}", flush=True)
            for line in rest.split("\n") if rest else []:
                print(f"    {line}", flush=True)

    def print_logs(self, names=stackmod.SERVICES, lines=20):
        for n in names:
            print(self.stack[n].log_tail(lines), flush=True)

    def run_test(self, name, fn, ctx):
        # The stack must be up before the test; if it cannot be brought up
        # the test fails (it never passes without having run).
        try:
            self.stack.ensure_running()
            ctx.ensure_admin_token()
        except stackmod.StackError as e:
            self.record(name, False, f"stack not running: {e}")
            return
        except (AssertionError, OSError) as e:
            self.record(name, False, f"admin login failed: {e}")
            return
        t0 = time.monotonic()
        ok, reason = True, ""

        def on_alarm(signum, frame):
            raise TestTimeout(f"still running after {self.args.test_timeout}s")
        signal.signal(signal.SIGALRM, on_alarm)
        signal.alarm(self.args.test_timeout)
        try:
            fn(ctx)
        except stackmod.StackError as e:
            ok, reason = False, f"stack: {e}"
        except (Exception, TestTimeout) as e:  # noqa: BLE001 - the run goes on
            ok, reason = False, failure_reason(e)
        finally:
            signal.alarm(0)
        died = self.stack.dead()
        if died:
            ok = False
            what = ", ".join(
                f"{n} ({stackmod.describe_exit(self.stack[n].exit_code())})"
                for n in died)
            reason = (reason + "; " if reason else "") + \
                f"service died during the test: {what}"
        self.record(name, ok, reason, time.monotonic() - t0)
        if not ok:
            self.print_logs(died or stackmod.SERVICES)

    def shutdown_checks(self):
        results = self.stack.stop_all()
        for n in ("gateway", "query", "projector", "command"):
            svc = self.stack[n]
            if svc.proc is None:
                self.record(f"clean shutdown {n}", False, "never started")
                continue
            code, graceful = results.get(n, (None, False))
            if code == 0 and graceful:
                self.record(f"clean shutdown {n}", True)
            else:
                how = "did not exit within 30s of SIGTERM (killed)" \
                    if not graceful else \
                    f"exit {stackmod.describe_exit(code)} after SIGTERM"
                self.record(f"clean shutdown {n}", False,
                            f"{how}\n{svc.log_tail(40)}")
        if self.args.sanitized:
            reports = self.stack.sanitizer_reports()
            self.record("no sanitizer reports in service logs", not reports,
                        "\n".join(reports[:20]))

    def run(self, tests):
        ctx = Ctx(self.stack, self.env, self.args)
        try:
            try:
                self.stack.start()
                print(f"stack ready: command :{ctx.cmd}, query :{ctx.qry}, "
                      f"projector :{ctx.proj}, gateway :{ctx.gw} (logs in "
                      f"{os.path.join(self.args.state_dir, 'logs')})",
                      flush=True)
            except stackmod.StackError as e:
                print(f"stack did not start: {e}", flush=True)
            for name, fn in tests:
                self.run_test(name, fn, ctx)
            self.shutdown_checks()
        finally:
            self.stack.kill_leftovers()


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--bin-dir", required=False,
                   help="folder with command/, projector/, query/ binaries "
                        "(<build>/services)")
    p.add_argument("--state-dir", default=None,
                   help="logs and pid files go here")
    p.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                   help="environment for the services (repeatable)")
    p.add_argument("-k", dest="filters", action="append", default=[],
                   help="run only tests whose name contains this")
    p.add_argument("--list", action="store_true", help="list the tests")
    p.add_argument("--summary-file", help="write {passed, failed, failures} "
                                          "as JSON here")
    p.add_argument("--sanitized", action="store_true",
                   help="the binaries are built with ASan/UBSan: also fail "
                        "on any sanitizer report in the service logs")
    # 90 s, not 60: a projector restarted after SIGKILL waits for Kafka to
    # expire its old group membership (session.timeout.ms, 45 s by default)
    # before it gets its partitions back.
    p.add_argument("--ready-timeout", type=float, default=90.0)
    p.add_argument("--test-timeout", type=int, default=int(
        os.environ.get("STOCKFLOW_IT_TEST_TIMEOUT", "300")),
        help="seconds one test may run (default 300)")
    args = p.parse_args(argv)
    if not args.list and not args.bin_dir:
        p.error("--bin-dir is required")
    return args


def main(argv):
    args = parse_args(argv)
    tests = discover(args.filters)
    if args.list:
        for name, _ in tests:
            print(name)
        return 0
    if not tests:
        print("no tests matched")
        print("0 passed, 1 failed")
        return 1

    env = dict(os.environ)
    for kv in args.env:
        key, sep, value = kv.partition("=")
        if not sep or not key:
            print(f"bad --env {kv!r} (want KEY=VALUE)", file=sys.stderr)
            return 2
        env[key] = value
    # The tests' own helpers read the same settings (e.g. a token).
    os.environ.update({k: v for k, v in env.items()
                       if k.startswith("STOCKFLOW_TEST_")})
    if args.state_dir is None:
        base = env.get("STOCKFLOW_STATE_DIR", os.path.join(HERE, "..", "..",
                                                           ".local"))
        args.state_dir = os.path.join(base, "it")
    args.bin_dir = os.path.abspath(args.bin_dir)
    os.makedirs(args.state_dir, exist_ok=True)

    # SIGTERM (e.g. from tests/run.sh's trap) unwinds like Ctrl-C so that the
    # services are stopped by the finally blocks.
    def on_term(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")
    signal.signal(signal.SIGTERM, on_term)

    runner = Runner(args, env)
    t0 = time.monotonic()
    interrupted = False
    try:
        runner.run(tests)
    except KeyboardInterrupt:
        interrupted = True
        runner.record("run interrupted", False, "interrupted by a signal")
    passed = sum(1 for _, ok, _ in runner.results if ok)
    failed = len(runner.results) - passed
    failures = [n for n, ok, _ in runner.results if not ok]
    if args.summary_file:
        with open(args.summary_file, "w") as f:
            json.dump({"passed": passed, "failed": failed,
                       "failures": failures,
                       "seconds": round(time.monotonic() - t0, 1)}, f)
    if failures:
        print("failed: " + ", ".join(failures))
    print(f"{passed} passed, {failed} failed", flush=True)
    return 1 if failed or interrupted else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
