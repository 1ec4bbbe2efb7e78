#!/usr/bin/env python3
"""check_gateway: the gateway's nginx configuration (deploy/gateway/,
rendered by deploy/local/gateway.sh) is valid and routes every route of the
services to the service that serves it.

  1. gateway.sh check (render + `nginx -t`) passes with an allow-list;
     `nginx -t` refuses a doctored copy (a misspelt directive), so the check
     cannot pass because nginx accepts anything; the renderer refuses a
     wildcard origin and an origin with a path.
  2. The rendered gateway runs in front of two stub upstreams that say who
     they are. Every route registered in services/command/*.c (method and
     path, from the route tables) must reach the command stub, every route
     of services/query/*.c (all GET) the query stub: a new route that the
     gateway would send to the wrong service fails here.
  3. Request headers (Authorization, Idempotency-Key, If-Match,
     Last-Event-ID, X-Min-Position) reach the upstream, X-Real-IP as the
     client's address whatever the client sent; the upstream's
     status, body and headers (ETag, Location, Retry-After,
     Idempotent-Replayed) come back unchanged, its own 503 and 504 too.

No service, Kafka or PostgreSQL is needed: the unit tier runs it.
Exit status: 0 ok, 1 something wrong, 2 cannot run (no nginx).

Usage: tests/tools/check_gateway.py [--root DIR]
"""

import argparse
import glob
import http.client
import http.server
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

ROUTE_CMD_RE = re.compile(
    r'"(GET|POST|PUT|PATCH|DELETE)",\s*"(/v1(?:/[A-Za-z0-9_.{}-]*)*)"')
ROUTE_QRY_RE = re.compile(r'"(/v1(?:/[A-Za-z0-9_.{}-]*)*)"')
PARAM_RE = re.compile(r"\{[^}/]*\}")
# Query sources whose /v1 paths are the command service's routes, called as
# a client (the Parse facade's writes), not routes the query service serves.
QUERY_CLIENT_FILES = {"qry_parse_map.c"}
ID = "0190f0d4-5b7e-7c3a-8d1e-2f3a4b5c6d7e"
PASS_HEADERS = {"Authorization": "Bearer check-gateway-token",
                "Idempotency-Key": "check-key-1",
                "If-Match": '"7"',
                "Last-Event-ID": "42",
                "X-Min-Position": "stock-1-2"}
ANSWER_HEADERS = {"ETag": '"7"', "Location": "/v1/somewhere",
                  "Retry-After": "3", "Idempotent-Replayed": "true"}


def strip_comments(text):
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    return re.sub(r"//[^\n]*", "", text)


def routes(root):
    """[(service, method, path)] from the services' sources."""
    out = set()
    for f in glob.glob(os.path.join(root, "services", "command", "*.c")):
        for m, p in ROUTE_CMD_RE.findall(strip_comments(open(f).read())):
            out.add(("command", m, p))
    for f in glob.glob(os.path.join(root, "services", "query", "*.c")):
        if os.path.basename(f) in QUERY_CLIENT_FILES:
            continue
        for p in ROUTE_QRY_RE.findall(strip_comments(open(f).read())):
            out.add(("query", "GET", p))
    return sorted(out)


class Stub(http.server.BaseHTTPRequestHandler):
    """Answers every request with JSON naming the upstream and echoing the
    request; ?status=N answers N instead of 200."""
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def answer(self):
        n = int(self.headers.get("Content-Length") or 0)
        if n:
            self.rfile.read(n)
        status = 200
        m = re.search(r"[?&]status=([0-9]{3})", self.path)
        if m:
            status = int(m.group(1))
        body = json.dumps({
            "upstream": self.server.name, "method": self.command,
            "path": self.path,
            "headers": {k: self.headers.get(k) for k in PASS_HEADERS},
            "real_ip": self.headers.get("X-Real-IP"),
        }).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for k, v in ANSWER_HEADERS.items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = answer


def stub(name):
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Stub)
    srv.name = name
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def request(port, method, path, headers=None, body=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        raw = r.read()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, raw
    finally:
        conn.close()


def stop(proc):
    """SIGTERM to the gateway's process group (nginx's master and workers,
    started by us in a new session), SIGKILL if it lingers."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(10)
    except ProcessLookupError:
        pass
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # a worker left behind
    except ProcessLookupError:
        pass


class Check:
    def __init__(self, root):
        self.root = root
        self.script = os.path.join(root, "deploy", "local", "gateway.sh")
        self.bad = []

    def fail(self, msg):
        print(f"check_gateway: FAILED: {msg}", file=sys.stderr)
        self.bad.append(msg)

    def env(self, state, **extra):
        env = dict(os.environ)
        for k in list(env):
            if k.startswith("STOCKFLOW_GATEWAY_") or k in (
                    "STOCKFLOW_CORS_ORIGINS", "STOCKFLOW_MAX_BODY",
                    "STOCKFLOW_BATCH_MAX_BODY"):
                del env[k]
        env["STOCKFLOW_STATE_DIR"] = state
        env.update(extra)
        return env

    def gw(self, env, *args):
        return subprocess.run([self.script, *args], env=env,
                              capture_output=True, text=True, timeout=60)

    def config(self, tmp):
        state = os.path.join(tmp, "cfg")
        env = self.env(state, STOCKFLOW_CORS_ORIGINS=(
            "https://app.example,http://localhost:3000"),
            STOCKFLOW_GATEWAY_LISTEN=f"127.0.0.1:{free_port()}")
        r = self.gw(env, "check")
        if r.returncode != 0:
            self.fail(f"gateway.sh check: exit {r.returncode}: {r.stderr}")
            return
        print("check_gateway: nginx -t accepts the rendered configuration")
        conf = os.path.join(state, "gateway", "conf",
                            "stockflow-gateway.conf")
        text = open(conf).read()
        doctored = os.path.join(state, "gateway", "conf", "doctored.conf")
        bad = text.replace("proxy_buffering off;", "proxy_bufering off;", 1)
        if bad == text:
            self.fail("could not doctor the rendered configuration")
            return
        with open(doctored, "w") as f:
            f.write(bad)
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        t = subprocess.run([nginx, "-t", "-q", "-p",
                            os.path.join(state, "gateway"), "-c", doctored,
                            "-e", "stderr"], capture_output=True, text=True)
        if t.returncode == 0:
            self.fail("nginx -t accepted a misspelt directive")
        for origin in ("*", "https://app.example/path", "null",
                       "https://*.example"):
            r = self.gw(self.env(state, STOCKFLOW_CORS_ORIGINS=origin),
                        "render")
            if r.returncode == 0:
                self.fail(f"the renderer accepted the origin {origin!r}")

    def routing(self, tmp):
        cmd, qry = stub("command"), stub("query")
        port = free_port()
        state = os.path.join(tmp, "run")
        env = self.env(
            state, STOCKFLOW_GATEWAY_LISTEN=f"127.0.0.1:{port}",
            STOCKFLOW_GATEWAY_COMMAND=f"127.0.0.1:{cmd.server_address[1]}",
            STOCKFLOW_GATEWAY_QUERY=f"127.0.0.1:{qry.server_address[1]}",
            STOCKFLOW_GATEWAY_ACCESS_LOG="off")
        proc = subprocess.Popen([self.script, "run"], env=env,
                                stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT,
                                start_new_session=True)
        try:
            deadline = time.monotonic() + 10
            while True:
                try:
                    if request(port, "GET", "/healthz")[0] == 200:
                        break
                except OSError:
                    pass
                if proc.poll() is not None or time.monotonic() > deadline:
                    out = proc.stdout.read().decode() if proc.poll() \
                        is not None else ""
                    self.fail(f"the gateway did not start: {out}")
                    return
                time.sleep(0.1)
            self.routes(port)
            self.passthrough(port)
        finally:
            stop(proc)
            cmd.shutdown()
            qry.shutdown()

    def routes(self, port):
        found = routes(self.root)
        services = {s for s, _, _ in found}
        if services != {"command", "query"} or len(found) < 20:
            self.fail(f"only {len(found)} routes found in services/: the "
                      f"route tables changed shape?")
            return
        wrong = 0
        for service, method, pattern in found:
            path = PARAM_RE.sub(ID, pattern)
            body = b"{}" if method in ("POST", "PUT", "PATCH") else None
            hdrs = {"Content-Type": "application/json"} if body else {}
            status, _, raw = request(port, method, path, hdrs, body)
            try:
                got = json.loads(raw)["upstream"]
            except (ValueError, KeyError):
                got = f"HTTP {status} {raw[:80]!r}"
            if got != service:
                wrong += 1
                self.fail(f"{method} {path}: reached {got}, served by "
                          f"{service}")
        print(f"check_gateway: {len(found) - wrong} of {len(found)} routes "
              f"reach their service")

    def passthrough(self, port):
        for method, path in (("GET", "/v1/stores"),
                             ("POST", "/v1/stores")):
            for status in (200, 503, 504):
                q = f"{path}?status={status}"
                body = b"{}" if method == "POST" else None
                sent = dict(PASS_HEADERS, **{"X-Real-IP": "203.0.113.9"})
                st, hdrs, raw = request(port, method, q, sent, body)
                what = f"{method} {q}"
                if st != status:
                    self.fail(f"{what}: status {st} instead of the "
                              f"upstream's {status}")
                try:
                    echo = json.loads(raw)
                except ValueError:
                    self.fail(f"{what}: the upstream's body was replaced: "
                              f"{raw[:120]!r}")
                    continue
                if echo.get("headers") != PASS_HEADERS:
                    self.fail(f"{what}: request headers changed on the way: "
                              f"{echo.get('headers')}")
                if echo.get("real_ip") != "127.0.0.1":
                    self.fail(f"{what}: X-Real-IP reached the service as "
                              f"{echo.get('real_ip')!r}, not the client's "
                              f"address 127.0.0.1")
                for k, v in ANSWER_HEADERS.items():
                    if hdrs.get(k.lower()) != v:
                        self.fail(f"{what}: answer header {k} is "
                                  f"{hdrs.get(k.lower())!r}, not {v!r}")
        print("check_gateway: headers, statuses and bodies pass unchanged")


def main(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--root", default=os.path.abspath(
        os.path.join(os.path.dirname(__file__), "..", "..")))
    args = p.parse_args(argv)
    if not (shutil.which("nginx") or os.access("/usr/sbin/nginx", os.X_OK)):
        print("check_gateway: cannot run: nginx not found (install-deps.sh "
              "installs it)", file=sys.stderr)
        return 2
    c = Check(args.root)
    with tempfile.TemporaryDirectory(prefix="sf-check-gateway-") as tmp:
        c.config(tmp)
        c.routing(tmp)
    if c.bad:
        print(f"check_gateway: {len(c.bad)} problem(s)", file=sys.stderr)
        return 1
    print("check_gateway: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
