"""Socket abuse on each of the three services: garbage, oversized request
lines and headers, bad Content-Length, truncated bodies, a slowloris, half
and fully idle connections. None may crash or stall a service: afterwards
every service answers /healthz and a normal write still works.

The abuse of the three services runs in parallel (the slowloris waits for
the header timeout, 10 s by default)."""

import random
import socket
import threading
import time

import api
import client

# A slowloris must be cut off within the service's header timeout plus this.
SLACK_S = 5.0


def header_timeout_s(ctx, name):
    """The header timeout the service runs with: the runner may set it lower
    (tests/run.sh does) where the service's --help lists the setting; the
    default is 10 s."""
    ms = ctx.stack[name].setting("STOCKFLOW_HTTP_HEADER_TIMEOUT_MS")
    return int(ms) / 1000.0 if ms else 10.0


def expect_answer(port, what, data, statuses, must_close=True, timeout=15.0,
                  shut_wr=False):
    """Sends data on a fresh connection. The server must either answer with
    one of statuses or close the connection without an answer; when
    must_close, it must also close the connection (within timeout)."""
    status, raw, closed = client.raw_exchange(port, data, timeout, shut_wr,
                                              until_close=must_close)
    if status is None and raw:
        raise AssertionError(f"{what}: answer is not HTTP: {raw[:200]!r}")
    if status is not None and status not in statuses:
        raise AssertionError(f"{what}: status {status}, want one of "
                             f"{statuses}: {raw[:300]!r}")
    if must_close and not closed:
        raise AssertionError(f"{what}: connection still open after "
                             f"{timeout:.0f}s ({raw[:200]!r})")
    return status


def slowloris(port, limit_s):
    """Sends one header byte every 100 ms; returns the seconds until the
    server closed the connection. Raises if it is still open after
    limit_s."""
    s = client.raw_connect(port)
    t0 = time.monotonic()
    try:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: it\r\nX-Slow: ")
        s.setblocking(False)
        while time.monotonic() - t0 < limit_s:
            try:
                s.send(b"a")
            except (BrokenPipeError, ConnectionResetError):
                return time.monotonic() - t0
            except BlockingIOError:
                pass
            try:
                chunk = s.recv(4096)
                if not chunk:
                    return time.monotonic() - t0
                # An answer (408 or 431) is fine: keep going until closed.
                status = client.parse_status(chunk)
                if status is not None and status not in (400, 408, 431):
                    raise AssertionError(f"slowloris got {chunk[:200]!r}")
            except BlockingIOError:
                pass
            except ConnectionResetError:
                return time.monotonic() - t0
            time.sleep(0.1)
        raise AssertionError(f"slowloris connection still open after "
                             f"{limit_s:.0f}s")
    finally:
        s.close()


def abuse_one(ctx, name, port, failures):
    def check(what, fn):
        try:
            fn()
        except (AssertionError, OSError) as e:
            failures.append(f"{name}: {what}: {type(e).__name__}: {e}")

    limit = header_timeout_s(ctx, name) + SLACK_S
    slow_result = {}

    def run_slow():
        try:
            slow_result["seconds"] = slowloris(port, limit)
        except (AssertionError, OSError) as e:
            slow_result["error"] = f"{type(e).__name__}: {e}"
    slow = threading.Thread(target=run_slow, daemon=True)
    slow.start()

    # An idle connection (sends nothing) held open during everything else,
    # and a handful more: none of them may block other clients.
    idle = [client.raw_connect(port) for _ in range(50)]
    try:
        rng = random.Random(port)
        garbage = bytes(rng.getrandbits(8) for _ in range(4096))
        check("garbage bytes", lambda: expect_answer(
            port, "garbage", garbage, (400,)))
        check("garbage after a valid request line", lambda: expect_answer(
            port, "garbage headers", b"GET /healthz HTTP/1.1\r\n" + garbage,
            (400, 431)))
        check("NUL in a header", lambda: expect_answer(
            port, "NUL header", b"GET /healthz HTTP/1.1\r\nHost: a\x00b\r\n\r\n",
            (400,)))
        check("100 KiB request line", lambda: expect_answer(
            port, "long request line",
            b"GET /" + b"a" * (100 * 1024) + b" HTTP/1.1\r\nHost: it\r\n\r\n",
            (400, 404, 414, 431), must_close=False))
        check("1000 headers", lambda: expect_answer(
            port, "1000 headers",
            b"GET /healthz HTTP/1.1\r\nHost: it\r\n" +
            b"".join(b"X-H-%d: v\r\n" % i for i in range(1000)) + b"\r\n",
            (400, 431)))
        check("one 64 KiB header", lambda: expect_answer(
            port, "huge header",
            b"GET /healthz HTTP/1.1\r\nHost: it\r\nX-Big: " +
            b"b" * (64 * 1024) + b"\r\n\r\n", (400, 431)))
        check("negative Content-Length", lambda: expect_answer(
            port, "negative content-length",
            b"POST /v1/products HTTP/1.1\r\nHost: it\r\n"
            b"Content-Type: application/json\r\nContent-Length: -1\r\n\r\n{}",
            (400,)))
        check("Content-Length not a number", lambda: expect_answer(
            port, "content-length abc",
            b"POST /v1/products HTTP/1.1\r\nHost: it\r\n"
            b"Content-Type: application/json\r\nContent-Length: abc\r\n\r\n{}",
            (400,)))
        check("Content-Length beyond 2^64", lambda: expect_answer(
            port, "content-length huge",
            b"POST /v1/products HTTP/1.1\r\nHost: it\r\n"
            b"Content-Type: application/json\r\n"
            b"Content-Length: 99999999999999999999999\r\n\r\n{}",
            (400, 413)))
        check("Content-Length with chunked", lambda: expect_answer(
            port, "smuggling",
            b"POST /v1/products HTTP/1.1\r\nHost: it\r\n"
            b"Content-Type: application/json\r\nContent-Length: 4\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            (400,)))
        check("bad chunk size", lambda: expect_answer(
            port, "bad chunk",
            b"POST /v1/products HTTP/1.1\r\nHost: it\r\n"
            b"Content-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n",
            (400,)))
        big = b"x" * (70 * 1024)
        check("70 KiB body to any endpoint", lambda: expect_answer(
            port, "70 KiB body",
            b"POST /healthz HTTP/1.1\r\nHost: it\r\n"
            b"Content-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % len(big) + big,
            (413,), must_close=False))
        check("unknown method", lambda: expect_answer(
            port, "unknown method", b"BREW /healthz HTTP/1.1\r\nHost: it\r\n\r\n",
            (400, 405, 501)))
        check("HTTP/9.9", lambda: expect_answer(
            port, "http 9.9", b"GET /healthz HTTP/9.9\r\nHost: it\r\n\r\n",
            (400, 505)))

        def truncated_body():
            s = client.raw_connect(port)
            s.sendall(b"POST /v1/products HTTP/1.1\r\nHost: it\r\n"
                      b"Content-Type: application/json\r\n"
                      b"Content-Length: 1000\r\n\r\n{\"sku\": \"tr")
            s.close()
        check("Content-Length larger than the body, then close",
              truncated_body)

        def reset_mid_request():
            s = client.raw_connect(port)
            s.sendall(b"POST /v1/products HTTP/1.1\r\nHost: it\r\n"
                      b"Content-Type: application/json\r\n"
                      b"Content-Length: 1000\r\n\r\n{")
            # SO_LINGER 0: close sends a reset instead of a FIN.
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                         b"\x01\x00\x00\x00\x00\x00\x00\x00")
            s.close()
        check("reset in the middle of a body", reset_mid_request)

        check("half-open: partial headers then SHUT_WR", lambda: expect_answer(
            port, "half-open", b"GET /healthz HTTP/1.1\r\nHost: it\r\n",
            (400, 408), must_close=True, timeout=limit, shut_wr=True))

        def pipelined():
            n = 50
            req = b"GET /healthz HTTP/1.1\r\nHost: it\r\n\r\n"
            last = b"GET /healthz HTTP/1.1\r\nHost: it\r\nConnection: close\r\n\r\n"
            s = client.raw_connect(port)
            try:
                s.sendall(req * (n - 1) + last)
                s.settimeout(0.2)
                buf = b""
                deadline = time.monotonic() + 15
                while time.monotonic() < deadline:
                    try:
                        chunk = s.recv(65536)
                    except socket.timeout:
                        continue
                    if not chunk:
                        break
                    buf += chunk
                got = buf.count(b"HTTP/1.1 200 ")
                assert got == n, f"{got} of {n} pipelined answers"
            finally:
                s.close()
        check("50 pipelined requests", pipelined)

        # While all that happened (and the idle ones still hang), a normal
        # request is answered at once.
        def healthz_now():
            t0 = time.monotonic()
            r = client.get(port, "/healthz", timeout=5)
            assert r.status == 200, r
            assert time.monotonic() - t0 < 2, "healthz took over 2s"
        check("healthz while idle connections are open", healthz_now)
    finally:
        for s in idle:
            s.close()

    slow.join(limit + 10)
    if "error" in slow_result:
        failures.append(f"{name}: slowloris: {slow_result['error']}")
    elif "seconds" not in slow_result:
        failures.append(f"{name}: slowloris thread did not finish")
    else:
        ctx.log(f"{name}: slowloris cut off after {slow_result['seconds']:.1f}s"
                f" (limit {limit:.0f}s)")


def test_socket_abuse_all_services(ctx):
    failures = []
    threads = [threading.Thread(target=abuse_one,
                                args=(ctx, name, port, failures), daemon=True)
               for name, port in ctx.ports().items()]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not any(t.is_alive() for t in threads), "abuse threads hung"
    # Nobody crashed or stalled: every service is healthy and ready, and a
    # normal write and its read still work.
    try:
        api.healthz_all(ctx)
        for name, port in ctx.ports().items():
            r = client.get(port, "/readyz", timeout=5)
            assert r.status == 200, f"{name} /readyz after the abuse: {r!r}"
        store, product = api.store_and_product(ctx)
        t = api.txn(ctx, store, product, "receipt", 4, on_hand=4, version=1)
        api.expect_stock(ctx, store, product, on_hand=4, version=1,
                         position=t["position"])
    except (AssertionError, OSError) as e:
        failures.append(f"after the abuse: {type(e).__name__}: {e}")
    assert not failures, f"{len(failures)} problems:\n" + "\n".join(failures)
