#!/usr/bin/env python3
"""stockflow's side of issue 6's correctness checks, with the same kind of
client as the peer's (bench/parse/run.sh and live.js): plain HTTP/1.1 over
the services' public API, Python standard library only.

    bench/correctness.py --command-url URL --query-url URL [--token T] --json OUT

  1. race: a fresh store x product holding 100; 32 threads (one keep-alive
     connection each) send 10 sales of 1 each (320 attempts). Counts the
     answers (201 accepted, 409 insufficient_stock refused, anything else an
     error) and reads the final on_hand from the query service once it has
     applied every accepted write (X-Min-Position). Pass: exactly 100
     accepted, final 0.
  2. disconnect: an SSE client on GET /v1/changes?store_id= of another fresh
     store; 100 sales at 10/s open loop from a second thread; the client
     closes its connection after the 30th change it read, stays away 5 s,
     reconnects with Last-Event-ID (the last change id it read) and reads
     until every written sale's change arrived or 10 s after the last write.
     Counts changes lost (a 201 sale whose transaction_id never arrived) and
     duplicated (a change id read twice). Pass: 0 lost, 0 duplicated.
  3. retry: one sale sent twice with the same Idempotency-Key. Pass: both
     201 with the same body, the second marked Idempotent-Replayed: true,
     and on_hand moved by 1 only.

The token (--token or STOCKFLOW_BENCH_TOKEN) is sent as a Bearer token to
both services when given. Prints one line per check; exit status 0 when the
checks ran (pass or fail is in the JSON), 1 when they could not run.
"""
import argparse
import http.client
import json
import os
import socket
import sys
import threading
import time
import urllib.parse
import uuid


class Api:
    """One keep-alive HTTP connection to one service (not thread-safe: one
    per thread)."""

    def __init__(self, base, token, timeout=30):
        u = urllib.parse.urlsplit(base)
        self.host, self.port = u.hostname, u.port or 80
        self.token = token
        self.timeout = timeout
        self.conn = None

    def call(self, method, path, body=None, headers=None):
        """Returns (status, headers dict lower-cased, body bytes); reconnects
        once on a dropped keep-alive connection."""
        h = {"Accept": "application/json"}
        if self.token:
            h["Authorization"] = "Bearer " + self.token
        data = None
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body, separators=(",", ":")).encode()
            h["Content-Type"] = "application/json"
        h.update(headers or {})
        for attempt in (0, 1):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            try:
                self.conn.request(method, path, body=data, headers=h)
                r = self.conn.getresponse()
                raw = r.read()
                return r.status, {k.lower(): v for k, v in r.getheaders()}, raw
            except (http.client.HTTPException, ConnectionError, socket.timeout):
                self.conn.close()
                self.conn = None
                if attempt:
                    raise
        raise RuntimeError("unreachable")

    def json(self, method, path, body=None, headers=None, want=(200, 201)):
        st, _, raw = self.call(method, path, body, headers)
        if st not in want:
            raise RuntimeError("%s %s: %d %s" % (method, path, st, raw[:300].decode(errors="replace")))
        return json.loads(raw)

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def fresh_pair(cmd, tag, stock):
    """A new store and product with STOCK units; returns (store, product,
    the positions of the three writes as one comma-separated list)."""
    st = cmd.json("POST", "/v1/stores", {"name": "correctness %s" % tag, "location": "bench"})
    sku = "CORR-%s-%s" % (tag, uuid.uuid4().hex[:12])
    pr = cmd.json("POST", "/v1/products", {"sku": sku, "name": "correctness %s" % tag,
                                            "price": "1.00", "reorder_level": 0})
    r = cmd.json("POST", "/v1/stores/%s/transactions" % st["id"],
                 {"product_id": pr["id"], "type": "receipt", "quantity": stock})
    pos = ",".join(x.get("position") for x in (st, pr, r) if x.get("position"))
    return st["id"], pr["id"], pos


def max_positions(positions):
    """The highest offset per topic and partition of a list of position
    tokens (topic-partition-offset), as one comma-separated list."""
    best = {}
    for pos in positions:
        for tok in (pos or "").split(","):
            tok = tok.strip()
            parts = tok.rsplit("-", 2)
            if len(parts) != 3 or not parts[2].isdigit():
                continue
            key = (parts[0], parts[1])
            if key not in best or int(parts[2]) > best[key][0]:
                best[key] = (int(parts[2]), tok)
    return ",".join(v[1] for v in best.values())


def read_on_hand(qry, store, product, positions):
    """on_hand of the pair once the query service has applied POSITIONS."""
    mp = max_positions(positions)
    path = "/v1/stores/%s/inventory/%s" % (store, product)
    for _ in range(6):
        st, _, raw = qry.call("GET", path, headers={"X-Min-Position": mp} if mp else None)
        if st == 200:
            return json.loads(raw)["on_hand"]
        if st != 504:
            raise RuntimeError("GET %s: %d %s" % (path, st, raw[:200]))
    raise RuntimeError("GET %s: still 504 position_timeout after 6 tries" % path)


def check_race(args, token):
    cmd = Api(args.command_url, token)
    qry = Api(args.query_url, token)
    store, product, pos0 = fresh_pair(cmd, "race", 100)
    clients, each = args.clients, args.sales
    lock = threading.Lock()
    status = {}
    positions = [pos0]
    errors = []
    go = threading.Barrier(clients)
    body = json.dumps({"product_id": product, "type": "sale", "quantity": 1}).encode()

    def client():
        api = Api(args.command_url, token)
        try:
            go.wait()
            for _ in range(each):
                try:
                    st, _, raw = api.call("POST", "/v1/stores/%s/transactions" % store, body)
                except Exception as e:  # counted, not fatal
                    with lock:
                        errors.append(str(e))
                    continue
                with lock:
                    status[str(st)] = status.get(str(st), 0) + 1
                    if st == 201:
                        positions.append(json.loads(raw).get("position"))
        finally:
            api.close()

    t0 = time.monotonic()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    secs = time.monotonic() - t0
    final = read_on_hand(qry, store, product, positions)
    cmd.close()
    qry.close()
    accepted = status.get("201", 0)
    refused = status.get("409", 0)
    res = {"clients": clients, "sales_each": each, "start": 100, "accepted": accepted,
           "refused_409": refused, "answers": status, "transport_errors": len(errors),
           "final_on_hand": final, "seconds": secs,
           "pass": accepted == 100 and final == 0 and refused == clients * each - 100}
    print("[correctness-race] %d clients x %d sales of 1 from 100: %d accepted, %d refused (409), "
          "answers %s, final on_hand %s: %s" % (clients, each, accepted, refused, json.dumps(status),
                                                 final, "PASS" if res["pass"] else "FAIL"))
    return res


class Sse:
    """A minimal SSE reader for GET /v1/changes (a raw socket so that closing
    it really drops the connection)."""

    def __init__(self, base, token, store, last_id=None):
        u = urllib.parse.urlsplit(base)
        self.sock = socket.create_connection((u.hostname, u.port or 80), timeout=30)
        lines = ["GET /v1/changes?store_id=%s HTTP/1.1" % store, "Host: %s" % u.netloc,
                 "Accept: text/event-stream"]
        if token:
            lines.append("Authorization: Bearer " + token)
        if last_id is not None:
            lines.append("Last-Event-ID: %d" % last_id)
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        self.buf = b""
        head = self._until(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        if status != 200:
            raise RuntimeError("GET /v1/changes: %d %s" % (status, head[:200]))
        self.chunked = b"transfer-encoding: chunked" in head.lower()
        self.body = b""

    def _until(self, sep):
        while sep not in self.buf:
            d = self.sock.recv(65536)
            if not d:
                raise ConnectionError("stream closed")
            self.buf += d
        i = self.buf.index(sep)
        out, self.buf = self.buf[:i], self.buf[i + len(sep):]
        return out

    def _more(self):
        """Moves more decoded body bytes into self.body."""
        if not self.chunked:
            d = self.sock.recv(65536)
            if not d:
                raise ConnectionError("stream closed")
            self.body += self.buf + d
            self.buf = b""
            return
        size = int(self._until(b"\r\n").split(b";")[0], 16)
        if size == 0:
            raise ConnectionError("stream ended")
        while len(self.buf) < size + 2:
            d = self.sock.recv(65536)
            if not d:
                raise ConnectionError("stream closed")
            self.buf += d
        self.body += self.buf[:size]
        self.buf = self.buf[size + 2:]

    def next_event(self, timeout):
        """(event, id, data) of the next message, or None after TIMEOUT s."""
        self.sock.settimeout(timeout)
        while True:
            while b"\n\n" not in self.body:
                try:
                    self._more()
                except socket.timeout:
                    return None
            frame, self.body = self.body.split(b"\n\n", 1)
            ev, eid, data = "message", None, []
            for line in frame.decode().split("\n"):
                if line.startswith(":"):
                    continue
                k, _, v = line.partition(":")
                v = v[1:] if v.startswith(" ") else v
                if k == "event":
                    ev = v
                elif k == "id":
                    eid = int(v)
                elif k == "data":
                    data.append(v)
            if data:
                return ev, eid, json.loads("\n".join(data))

    def close(self):
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()


def check_disconnect(args, token):
    cmd = Api(args.command_url, token)
    qry = Api(args.query_url, token)
    store, product, pos0 = fresh_pair(cmd, "disconnect", 1000)
    # The query service knows the store only once the projector applied it.
    read_on_hand(qry, store, product, [pos0])
    qry.close()
    changes, rate, away_s, cut_after = 100, 10.0, 5.0, 30
    sub = Sse(args.query_url, token, store)
    written = []  # transaction ids of the 201 sales
    written_at = []  # their answers' times (time.monotonic())
    write_errors = []
    done = threading.Event()

    def writer():
        api = Api(args.command_url, token)
        t0 = time.monotonic()
        body = json.dumps({"product_id": product, "type": "sale", "quantity": 1}).encode()
        for i in range(changes):
            at = t0 + i / rate
            d = at - time.monotonic()
            if d > 0:
                time.sleep(d)
            try:
                st, _, raw = api.call("POST", "/v1/stores/%s/transactions" % store, body)
                if st == 201:
                    j = json.loads(raw)
                    written.append(j.get("transaction_id") or j.get("id"))
                    written_at.append(time.monotonic())
                else:
                    write_errors.append(st)
            except Exception as e:
                write_errors.append(str(e))
        api.close()
        done.set()

    seen_ids = {}
    seen_tx = set()
    last_id = None
    reconnects = 0
    away_at = None
    got = 0
    after_resume = 0
    w = threading.Thread(target=writer)
    w.start()
    deadline = None
    while True:
        if done.is_set() and deadline is None:
            deadline = time.monotonic() + 10
        if deadline is not None and (time.monotonic() > deadline or set(written) <= seen_tx):
            break
        ev = sub.next_event(0.5)
        if ev is None:
            continue
        kind, eid, msg = ev
        if kind != "change" and msg.get("type") != "change":
            continue
        cid = msg.get("id", eid)
        seen_ids[cid] = seen_ids.get(cid, 0) + 1
        seen_tx.add(msg.get("transaction_id"))
        last_id = cid if last_id is None else max(last_id, cid)
        got += 1
        after_resume += reconnects
        if got == cut_after and reconnects == 0:
            sub.close()
            away_at = time.monotonic()
            time.sleep(away_s)
            sub = Sse(args.query_url, token, store, last_id)
            reconnects = 1
    sub.close()
    w.join()
    cmd.close()
    lost = sum(1 for t in written if t not in seen_tx)
    dups = sum(n - 1 for n in seen_ids.values() if n > 1)
    while_away = (sum(1 for t in written_at if away_at <= t < away_at + away_s)
                  if away_at is not None else 0)
    res = {"changes": changes, "rate": rate, "away_s": away_s, "cut_after": cut_after,
           "written": len(written), "write_errors": len(write_errors), "received": len(seen_ids),
           "lost": lost, "duplicates": dups, "written_while_away": while_away,
           "received_after_resume": after_resume, "resumed": reconnects == 1 and away_at is not None,
           "pass": lost == 0 and dups == 0 and len(written) == changes and reconnects == 1}
    print("[correctness-disconnect] %d sales at %.0f/s, SSE client away %.0f s after change %d, "
          "resumed with Last-Event-ID: %d written (%d while away), %d received (%d after the "
          "resume), lost %d, duplicated %d: %s"
          % (changes, rate, away_s, cut_after, len(written), while_away, len(seen_ids),
             after_resume, lost, dups,
             "PASS" if res["pass"] else "FAIL"))
    return res


def check_retry(args, token):
    cmd = Api(args.command_url, token)
    qry = Api(args.query_url, token)
    store, product, pos0 = fresh_pair(cmd, "retry", 10)
    key = "bench-retry-" + uuid.uuid4().hex
    body = json.dumps({"product_id": product, "type": "sale", "quantity": 1}).encode()
    path = "/v1/stores/%s/transactions" % store
    s1, h1, b1 = cmd.call("POST", path, body, {"Idempotency-Key": key})
    cmd.close()  # the retry on a new connection, as after a timeout
    s2, h2, b2 = cmd.call("POST", path, body, {"Idempotency-Key": key})
    pos = []
    for b in (b1, b2):
        try:
            pos.append(json.loads(b).get("position"))
        except ValueError:
            pass
    final = read_on_hand(qry, store, product, [pos0] + pos)
    cmd.close()
    qry.close()
    res = {"first": s1, "second": s2, "same_body": b1 == b2,
           "replayed_header": h2.get("idempotent-replayed"), "start": 10, "final_on_hand": final,
           "applied": 10 - final,
           "pass": s1 == 201 and s2 == 201 and b1 == b2 and final == 9
           and h2.get("idempotent-replayed") == "true"}
    print("[correctness-retry] one sale sent twice with one Idempotency-Key: %d then %d "
          "(Idempotent-Replayed: %s, same body: %s), applied %d time(s): %s"
          % (s1, s2, res["replayed_header"], res["same_body"], res["applied"],
             "PASS" if res["pass"] else "FAIL"))
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--command-url", required=True)
    ap.add_argument("--query-url", required=True)
    ap.add_argument("--token", default=os.environ.get("STOCKFLOW_BENCH_TOKEN", ""))
    ap.add_argument("--json", required=True, help="results file")
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--sales", type=int, default=10)
    args = ap.parse_args()
    out = {}
    for name, fn in (("race", check_race), ("disconnect", check_disconnect), ("retry", check_retry)):
        try:
            out[name] = fn(args, args.token)
        except Exception as e:  # one check failing to run does not stop the others
            print("[correctness-%s] could not run: %s" % (name, e), file=sys.stderr)
            out[name] = {"error": str(e), "pass": False}
    with open(args.json, "w") as f:
        json.dump(out, f, indent=1)
    return 0 if all("error" not in v for v in out.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
