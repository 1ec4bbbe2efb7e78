"""The Kafka broker and PostgreSQL of the test stack, for tests that break
them on purpose (test_faults.py).

tests/run.sh starts both with deploy/local/kafka.sh and pg.sh and exports
what those scripts need (STOCKFLOW_STATE_DIR, STOCKFLOW_KAFKA_PORT,
STOCKFLOW_KAFKA_CONTROLLER_PORT, STOCKFLOW_PG_PORT); the runner passes its
environment on as ctx.env. The broker and the postmaster are only ever
signalled by the pid in that state folder's pid files (run/kafka.pid,
run/postgres.pid), after checking that the pid is that process, and
started again through the same scripts, so the same data folder and ports
are used and tests/run.sh still stops them by their pid files at the end.
"""

import os
import signal
import subprocess
import time

HERE = os.path.dirname(os.path.abspath(__file__))
LOCAL = os.path.normpath(os.path.join(HERE, "..", "..", "deploy", "local"))
NEEDED = ("STOCKFLOW_STATE_DIR", "STOCKFLOW_KAFKA_PORT",
          "STOCKFLOW_KAFKA_CONTROLLER_PORT", "STOCKFLOW_PG_PORT")


class Infra:
    def __init__(self, env):
        missing = [k for k in NEEDED if not env.get(k)]
        assert not missing, (
            f"the broker and PostgreSQL cannot be controlled without "
            f"{', '.join(missing)} (tests/run.sh exports them; run the fault "
            f"tests through it)")
        self.env = env
        self.state = env["STOCKFLOW_STATE_DIR"]

    # ---- processes ----

    def _pid(self, name, marker):
        """The pid in run/<name>.pid, checked to be a live process whose
        command line contains marker."""
        path = os.path.join(self.state, "run", f"{name}.pid")
        try:
            with open(path) as f:
                pid = int(f.read().split()[0])
        except (OSError, ValueError, IndexError) as e:
            raise AssertionError(f"no usable pid file {path}: {e}")
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode("utf-8",
                                                               "replace")
        except OSError:
            raise AssertionError(f"{name} pid {pid} ({path}) does not run")
        assert marker in cmdline, \
            f"pid {pid} of {path} is not {name}: {cmdline[:200]!r}"
        return pid

    def kafka_pid(self):
        return self._pid("kafka", "kafka.Kafka")

    def pg_pid(self):
        return self._pid("postgres", "postgres")

    @staticmethod
    def _wait_gone(pid, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with open(f"/proc/{pid}/stat") as f:
                    # a zombie (state Z) has exited; its parent reaps it
                    if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                        return
            except OSError:
                return
            time.sleep(0.05)
        raise AssertionError(f"pid {pid} still runs {timeout:.0f}s after "
                             "SIGKILL")

    def _script(self, script, *args, timeout=150):
        t0 = time.monotonic()
        r = subprocess.run([os.path.join(LOCAL, script), *args], env=self.env,
                           stdin=subprocess.DEVNULL, capture_output=True,
                           timeout=timeout)
        out = (r.stdout + r.stderr).decode("utf-8", "replace").strip()
        assert r.returncode == 0, \
            f"{script} {' '.join(args)} exited {r.returncode}: {out[-800:]}"
        return time.monotonic() - t0

    # ---- the broker ----

    def kill_kafka(self):
        """SIGKILL the broker and wait until it is gone. Returns its pid."""
        pid = self.kafka_pid()
        os.kill(pid, signal.SIGKILL)
        self._wait_gone(pid, 30)
        return pid

    def start_kafka(self):
        """kafka.sh start: same config, data folder and ports; returns once
        the broker answers metadata requests. Returns the seconds it
        took."""
        return self._script("kafka.sh", "start")

    def signal_kafka(self, sig):
        pid = self.kafka_pid()
        os.kill(pid, sig)
        return pid

    def kafka_running(self):
        try:
            self.kafka_pid()
            return True
        except AssertionError:
            return False

    # ---- PostgreSQL ----

    def stop_pg(self, mode):
        """pg.sh stop <mode> (pg_ctl -m fast or immediate). Returns the
        seconds it took."""
        assert mode in ("fast", "immediate"), mode
        self.pg_pid()
        return self._script("pg.sh", "stop", mode, timeout=90)

    def start_pg(self):
        """pg.sh start; returns once the server accepts connections."""
        return self._script("pg.sh", "start", timeout=90)

    def pg_running(self):
        try:
            self.pg_pid()
            return True
        except AssertionError:
            return False

    def restore(self):
        """Best effort, for a test's finally: the broker resumed (SIGCONT is
        harmless to a running process) or started, PostgreSQL started.
        Returns what it had to do, as text."""
        done = []
        if self.kafka_running():
            try:
                self.signal_kafka(signal.SIGCONT)
            except (AssertionError, OSError):
                pass
        else:
            self.start_kafka()
            done.append("started the broker again")
        if not self.pg_running():
            self.start_pg()
            done.append("started PostgreSQL again")
        return ", ".join(done)
