"""An open change stream ends when its user logs out or loses the store:
logout and role changes take effect at once, also for long-lived streams."""

import socket
import time

import api
import client
from client import bearer, delete, expect_json, patch
from test_auth import require_auth, sign_up


def _open_sse(ctx, store, token):
    """Opens GET /v1/changes for store with token; returns the socket once
    the 200 headers arrived."""
    s = socket.create_connection((client.HOST, ctx.qry), timeout=10)
    s.sendall((f"GET /v1/changes?store_id={store} HTTP/1.1\r\n"
               f"Host: x\r\nAccept: text/event-stream\r\n"
               f"Authorization: Bearer {token}\r\n\r\n").encode())
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(4096)
        assert chunk, f"stream closed before its headers: {buf!r}"
        buf += chunk
    assert buf.startswith(b"HTTP/1.1 200"), buf[:200]
    return s


def _closed_within(s, seconds):
    """True when the server ends the stream within seconds (reads and
    discards whatever it still sends)."""
    s.settimeout(0.2)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if not s.recv(65536):
                return True
        except socket.timeout:
            continue
        except OSError:
            return True
    return False


def _manager_of(ctx, store):
    user, token = sign_up(ctx, "streamer")
    r = patch(ctx.cmd, f"/v1/users/{user['id']}",
              {"role": "manager", "store_ids": [store]})
    expect_json(r, 200, "admin makes a manager")
    # the role change reaches the gate's cache within a second
    client.eventually(lambda: expect_json(
        client.get(ctx.qry, f"/v1/stores/{store}", headers=bearer(token)),
        200, "manager reads its store"), timeout=5, what="manager role")
    return user, token


def test_logout_ends_open_streams(ctx):
    require_auth(ctx)
    store = api.create_store(ctx)["id"]
    _, token = _manager_of(ctx, store)
    s = _open_sse(ctx, store, token)
    try:
        assert not _closed_within(s, 0.5), "stream ended before the logout"
        r = delete(ctx.cmd, "/v1/sessions/current", headers=bearer(token))
        assert r.status == 204, f"logout: {r!r}"
        assert _closed_within(s, 3), "the stream outlived its logout"
    finally:
        s.close()
    # a new stream with the old token is refused
    r = client.get(ctx.qry, f"/v1/changes?store_id={store}",
                   headers={**bearer(token), "Accept": "text/event-stream"})
    client.expect_problem(r, 401, "unauthorized", "stream after logout")


def test_losing_the_store_ends_open_streams(ctx):
    require_auth(ctx)
    store = api.create_store(ctx)["id"]
    other = api.create_store(ctx)["id"]
    user, token = _manager_of(ctx, store)
    s = _open_sse(ctx, store, token)
    try:
        r = patch(ctx.cmd, f"/v1/users/{user['id']}", {"store_ids": [other]})
        expect_json(r, 200, "admin moves the manager to another store")
        assert _closed_within(s, 3), "the stream outlived the role change"
    finally:
        s.close()
    r = client.get(ctx.qry, f"/v1/changes?store_id={store}",
                   headers={**bearer(token), "Accept": "text/event-stream"})
    client.expect_problem(r, 403, "forbidden", "stream of a store it lost")
    # unrelated: the manager still has a session (not a logout)
    r = client.get(ctx.cmd, "/v1/users/me", headers=bearer(token))
    assert expect_json(r, 200, "me")["store_ids"] == [other], r.body
