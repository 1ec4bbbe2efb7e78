"""Process control for the integration tests: the three services, and the
gateway in front of them (nginx, run by deploy/local/gateway.sh), as
subprocesses of the runner.

Each service writes stdout and stderr to <state>/logs/<service>.log (appended
across restarts, with a marker line per start) and its pid to
<state>/pids/<service>.pid while it runs, so that tests/run.sh can stop a
leftover by pid if the runner itself is killed. Services are only ever
signalled by the pid of the process this module started (the gateway by its
process group: nginx's master and its workers, all started here).
"""

import os
import signal
import subprocess
import time

import client

SERVICES = ("command", "projector", "query", "gateway")
LISTEN_ENV = {
    "command": "STOCKFLOW_COMMAND_LISTEN",
    "projector": "STOCKFLOW_PROJECTOR_LISTEN",
    "query": "STOCKFLOW_QUERY_LISTEN",
    "gateway": "STOCKFLOW_GATEWAY_LISTEN",
}
DEFAULT_LISTEN = {
    "command": "127.0.0.1:8081",
    "projector": "127.0.0.1:8083",
    "query": "127.0.0.1:8082",
    "gateway": "127.0.0.1:8080",
}
GATEWAY_SCRIPT = os.path.abspath(os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "..", "deploy", "local",
    "gateway.sh"))
SANITIZER_MARKERS = (
    "ERROR: AddressSanitizer",
    "ERROR: LeakSanitizer",
    "runtime error:",            # UndefinedBehaviorSanitizer
    "SUMMARY: UndefinedBehaviorSanitizer",
)


# A start slower than this is worth a note in the output.
SLOW_READY_S = 15.0


class StackError(Exception):
    """A service could not be started, became unready or misbehaved."""


class Service:
    def __init__(self, name, binary, env, state_dir, args=(), group=False):
        self.name = name
        self.binary = binary
        self.args = list(args)
        # group: signal the whole process group (nginx's workers outlive a
        # master killed alone, and keep the port)
        self.group = group
        self.env = env
        listen = env.get(LISTEN_ENV[name], DEFAULT_LISTEN[name])
        self.port = int(listen.rsplit(":", 1)[1])
        self.log_path = os.path.join(state_dir, "logs", f"{name}.log")
        self.pid_path = os.path.join(state_dir, "pids", f"{name}.pid")
        os.makedirs(os.path.dirname(self.log_path), exist_ok=True)
        os.makedirs(os.path.dirname(self.pid_path), exist_ok=True)
        self.proc = None
        self.starts = 0
        self.log_offset = 0      # where the current instance's log begins
        self.last_exit = None    # returncode of the last instance that ended

    # ---- configuration ----

    def help_text(self):
        """The binary's --help output (cached), or "" if it cannot run."""
        if not hasattr(self, "_help"):
            try:
                out = subprocess.run([self.binary, "--help"], env=self.env,
                                     capture_output=True, timeout=20)
                self._help = (out.stdout + out.stderr).decode("utf-8",
                                                              "replace")
            except (OSError, subprocess.TimeoutExpired):
                self._help = ""
        return self._help

    def setting(self, env_var):
        """The value this service runs with for env_var, if its --help lists
        that variable and the environment sets it; else None."""
        if env_var in self.help_text() and self.env.get(env_var):
            return self.env[env_var]
        return None

    # ---- life cycle ----

    def start(self):
        if self.alive():
            raise StackError(f"{self.name} already runs (pid {self.proc.pid})")
        if not os.access(self.binary, os.X_OK):
            raise StackError(f"{self.name}: {self.binary} is not built")
        self.starts += 1
        with open(self.log_path, "ab") as log:
            self.log_offset = log.tell()
            log.write(f"=== it: start #{self.starts} of {self.binary} "
                      f"at {time.strftime('%H:%M:%S')} ===\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                [self.binary] + self.args, env=self.env, stdin=subprocess.DEVNULL,
                stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True)
        with open(self.pid_path, "w") as f:
            f.write(f"{self.proc.pid}\n")

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def pid(self):
        return self.proc.pid if self.proc else None

    def exit_code(self):
        """The current instance's exit code, or None while it runs."""
        return self.proc.poll() if self.proc else None

    def wait_ready(self, timeout=60.0):
        """Polls GET /readyz until 200. Raises StackError when the process
        exits first or the timeout passes (with the last answer and the log
        tail)."""
        t0 = time.monotonic()
        deadline = t0 + timeout
        last = "no answer"
        while True:
            if not self.alive():
                raise StackError(
                    f"{self.name} exited with {describe_exit(self.exit_code())} "
                    f"before it was ready\n{self.log_tail()}")
            try:
                r = client.get(self.port, "/readyz", timeout=2)
                if r.status == 200:
                    self.ready_seconds = time.monotonic() - t0
                    if self.ready_seconds > SLOW_READY_S:
                        print(f"    note: {self.name} took "
                              f"{self.ready_seconds:.1f}s to become ready "
                              f"(start #{self.starts})", flush=True)
                    return
                last = repr(r)
            except OSError as e:
                last = f"{type(e).__name__}: {e}"
            if time.monotonic() >= deadline:
                raise StackError(
                    f"{self.name} not ready within {timeout:.0f}s "
                    f"(last /readyz: {last})\n{self.log_tail()}")
            time.sleep(0.2)

    def kill(self, sig=signal.SIGKILL, timeout=30.0):
        """Sends sig to this instance's pid and waits for it to end.
        Returns its returncode (negative: killed by that signal)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self._signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                raise StackError(
                    f"{self.name} (pid {self.proc.pid}) still runs "
                    f"{timeout:.0f}s after signal {sig}")
        self._ended()
        return self.last_exit

    def stop(self, timeout=30.0):
        """SIGTERM, wait up to timeout, then SIGKILL. Returns (returncode,
        graceful): graceful is False when SIGKILL was needed."""
        if self.proc is None:
            return None, True
        if self.proc.poll() is not None:
            self._ended()
            return self.last_exit, True
        self._signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
            graceful = True
        except subprocess.TimeoutExpired:
            self._signal(signal.SIGKILL)
            self.proc.wait(10)
            graceful = False
        self._ended()
        return self.last_exit, graceful

    def _signal(self, sig):
        if self.group:
            # start_new_session made the process the leader of its group
            os.killpg(self.proc.pid, sig)
        else:
            os.kill(self.proc.pid, sig)

    def _ended(self):
        if self.group:
            # a worker that outlived its master (SIGKILL) goes too
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.last_exit = self.proc.returncode
        try:
            os.unlink(self.pid_path)
        except FileNotFoundError:
            pass

    # ---- logs ----

    def log_text(self, since_start=True):
        try:
            with open(self.log_path, "rb") as f:
                if since_start:
                    f.seek(self.log_offset)
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines=25):
        text = self.log_text().rstrip("\n").split("\n")
        tail = text[-lines:]
        head = f"--- last {len(tail)} lines of {self.log_path} ---"
        return "\n".join([head] + ["  " + t[:400] for t in tail])


def describe_exit(code):
    if code is None:
        return "no exit (still running)"
    if code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"status {code}"


def gateway_env(env, state_dir):
    """The gateway's environment: the services' (their listen addresses are
    its upstreams), its own folder and access log under state_dir, and a
    port next to the command service's unless one is given."""
    out = dict(env)
    out["STOCKFLOW_GATEWAY_DIR"] = os.path.join(state_dir, "gateway")
    out["STOCKFLOW_GATEWAY_ACCESS_LOG"] = os.path.join(
        state_dir, "logs", "gateway-access.log")
    if not out.get("STOCKFLOW_GATEWAY_LISTEN"):
        cmd = env.get(LISTEN_ENV["command"], DEFAULT_LISTEN["command"])
        host, port = cmd.rsplit(":", 1)
        out["STOCKFLOW_GATEWAY_LISTEN"] = f"{host}:{int(port) - 1}"
    return out


def with_command_url(env):
    """env with STOCKFLOW_COMMAND_URL (where the query service's Parse
    facade sends its writes) naming this stack's command service, unless
    one is given."""
    out = dict(env)
    if not out.get("STOCKFLOW_COMMAND_URL"):
        cmd = env.get(LISTEN_ENV["command"], DEFAULT_LISTEN["command"])
        out["STOCKFLOW_COMMAND_URL"] = f"http://{cmd}"
    return out


class Stack:
    def __init__(self, bin_dir, env, state_dir, ready_timeout=60.0):
        env = with_command_url(env)
        self.env = env
        self.ready_timeout = ready_timeout
        self.services = {
            name: Service(name,
                          os.path.join(bin_dir, name, f"stockflow-{name}"),
                          env, state_dir)
            for name in SERVICES if name != "gateway"
        }
        self.services["gateway"] = Service(
            "gateway", GATEWAY_SCRIPT, gateway_env(env, state_dir),
            state_dir, args=["run"], group=True)

    def __getitem__(self, name):
        return self.services[name]

    def port(self, name):
        return self.services[name].port

    def start(self, names=SERVICES):
        """Starts the named services (all by default) and waits until each
        answers /readyz 200."""
        for n in names:
            self.services[n].start()
        for n in names:
            self.services[n].wait_ready(self.ready_timeout)

    def kill(self, names=SERVICES, sig=signal.SIGKILL):
        for n in names:
            self.services[n].kill(sig)

    def restart(self, names=SERVICES):
        self.kill(names)
        self.start(names)

    def dead(self):
        """Names of services whose current instance has ended."""
        return [n for n, s in self.services.items()
                if s.proc is not None and not s.alive()]

    def ensure_running(self):
        """Starts every service that is not running; raises StackError if one
        cannot be made ready."""
        todo = [n for n, s in self.services.items() if not s.alive()]
        if todo:
            for n in todo:
                if self.services[n].proc is not None:
                    self.services[n].kill()  # reap, drop the pid file
            self.start(todo)

    def stop_all(self, timeout=30.0):
        """SIGTERM each service (gateway, query, projector, command).
        Returns {name: (returncode, graceful)}."""
        out = {}
        for n in ("gateway", "query", "projector", "command"):
            try:
                out[n] = self.services[n].stop(timeout)
            except OSError as e:
                out[n] = (None, False)
                print(f"stop {n}: {e}")
        return out

    def kill_leftovers(self):
        """Last-resort cleanup: SIGKILL whatever instance still runs."""
        for s in self.services.values():
            if s.alive():
                try:
                    s.kill()
                except (OSError, StackError):
                    pass

    def sanitizer_reports(self):
        """Lines of every service log (all instances) that report a
        sanitizer error."""
        found = []
        for s in self.services.values():
            for line in s.log_text(since_start=False).split("\n"):
                if any(m in line for m in SANITIZER_MARKERS):
                    found.append(f"{s.name}: {line.strip()[:300]}")
        return found
