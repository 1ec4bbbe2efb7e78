"""Accounts, sessions and roles (the contract's Auth rules): every endpoint
but sign-up, login and the operations endpoints needs a bearer token; roles
limit what a user may do and to which stores; logout revokes at once.

These tests fail (they never pass vacuously) while the command service has
no accounts."""

import time

import api
import client
from client import (NO_AUTH, bearer, delete, expect_json, expect_problem, get,
                    patch, post)

PASSWORD = "correct horse battery"


def require_auth(ctx):
    assert ctx.auth_enabled(), \
        "the command service has no accounts yet (STOCKFLOW_ADMIN_USERNAME " \
        "is not in its --help)"


def sign_up(ctx, prefix="user"):
    name = client.unique(prefix).lower()
    r = post(ctx.cmd, "/v1/users",
             {"username": name, "email": f"{name}@example.com",
              "password": PASSWORD}, headers=NO_AUTH)
    user = expect_json(r, 201, "sign-up")
    api.expect_uuid(user.get("id"), "user id")
    assert (user.get("username"), user.get("email"), user.get("role")) == \
        (name, f"{name}@example.com", "viewer"), user
    assert not any("password" in k for k in user), f"password echoed: {user}"
    return user, ctx.login(name, PASSWORD)


def test_token_required(ctx):
    require_auth(ctx)
    for what, hdrs in (("no token", NO_AUTH),
                       ("unknown token", bearer("x" * 43)),
                       ("not bearer", {"Authorization": "Basic YTpi"})):
        r = post(ctx.cmd, "/v1/products", api.product_body(), headers=hdrs)
        expect_problem(r, 401, "unauthorized", f"command, {what}")
        assert r.headers.get("www-authenticate", "").startswith("Bearer"), \
            f"401 without WWW-Authenticate: Bearer ({what}): {r.headers}"
        r = post(ctx.cmd, f"/v1/stores/{client.new_uuid()}/transactions",
                 {"product_id": client.new_uuid(), "type": "receipt",
                  "quantity": 1}, headers=hdrs)
        expect_problem(r, 401, "unauthorized", f"transaction, {what}")
    # The operations endpoints need none.
    for name, port in ctx.ports().items():
        for path in ("/healthz", "/readyz", "/metrics"):
            r = get(port, path, headers=NO_AUTH)
            assert r.status == 200, f"{name} {path} without a token: {r!r}"
    # Bad credentials.
    user, _ = sign_up(ctx)
    r = post(ctx.cmd, "/v1/sessions",
             {"username": user["username"], "password": "wrong password"},
             headers=NO_AUTH)
    expect_problem(r, 401, "unauthorized", "login with a wrong password")
    r = post(ctx.cmd, "/v1/users",
             {"username": user["username"], "email": "x@example.com",
              "password": PASSWORD}, headers=NO_AUTH)
    expect_problem(r, 409, "username_taken", "sign-up with a taken name")
    r = post(ctx.cmd, "/v1/users",
             {"username": client.unique("short"), "email": "s@example.com",
              "password": "short"}, headers=NO_AUTH)
    expect_problem(r, 422, "validation_failed", "password too short")


def test_query_service_needs_a_token(ctx):
    require_auth(ctx)
    r = get(ctx.qry, "/v1/stores", headers=NO_AUTH)
    expect_problem(r, 401, "unauthorized", "query without a token")


def test_roles_limit_writes(ctx):
    require_auth(ctx)
    s1 = api.create_store(ctx)["id"]
    s2 = api.create_store(ctx)["id"]
    product = api.create_product(ctx)["id"]
    user, token = sign_up(ctx, "clerk")
    me = expect_json(get(ctx.cmd, "/v1/users/me", headers=bearer(token)),
                     200, "GET /v1/users/me")
    assert (me.get("id"), me.get("role"), me.get("store_ids")) == \
        (user["id"], "viewer", []), me

    # A viewer writes nothing.
    r = post(ctx.cmd, "/v1/products", api.product_body(),
             headers=bearer(token))
    expect_problem(r, 403, "forbidden", "viewer creates a product")
    r = api.post_txn(ctx, s1, product, "receipt", 1, headers=bearer(token))
    expect_problem(r, 403, "forbidden", "viewer receipt")
    # Only an admin changes roles.
    r = patch(ctx.cmd, f"/v1/users/{user['id']}", {"role": "admin"},
              headers=bearer(token))
    expect_problem(r, 403, "forbidden", "viewer makes itself admin")

    r = patch(ctx.cmd, f"/v1/users/{user['id']}",
              {"role": "clerk", "store_ids": [s1]})
    body = expect_json(r, 200, "admin makes a clerk")
    assert (body.get("role"), body.get("store_ids")) == ("clerk", [s1]), body

    # A clerk: receipts and sales in its store only; no adjustments.
    def clerk_txn(store, type_, q, reason=None):
        return api.post_txn(ctx, store, product, type_, q, reason=reason,
                            headers=bearer(token))
    # The role change reaches the session cache within about a second.
    r = eventually_status(lambda: clerk_txn(s1, "receipt", 5))
    assert r.status == 201, f"clerk receipt in its store: {r!r}"
    assert r.body["on_hand"] == 5 and r.body["version"] == 1, r.body
    expect_problem(clerk_txn(s2, "receipt", 5), 403, "forbidden",
                   "clerk receipt in another store")
    expect_problem(clerk_txn(s1, "adjustment", -1, "damage"), 403,
                   "forbidden", "clerk adjustment")
    expect_problem(clerk_txn(s1, "count", 3), 403, "forbidden", "clerk count")
    # Nothing of the refused writes happened.
    api.txn(ctx, s1, product, "sale", 5, on_hand=0, version=2)


def eventually_status(call, timeout=3.0):
    """A role change reaches the session cache within about a second: retry
    a call while it answers 403 for up to timeout seconds."""
    deadline = time.monotonic() + timeout
    while True:
        r = call()
        if r.status != 403 or time.monotonic() >= deadline:
            return r
        time.sleep(0.2)


def test_logout_revokes_on_both_services(ctx):
    require_auth(ctx)
    _, token = sign_up(ctx)
    r = get(ctx.cmd, "/v1/users/me", headers=bearer(token))
    expect_json(r, 200, "me before logout")
    r = delete(ctx.cmd, "/v1/sessions/current", headers=bearer(token))
    assert r.status == 204, f"logout: {r!r}"
    time.sleep(1.2)  # the contract: revoked on both services within a second
    r = get(ctx.cmd, "/v1/users/me", headers=bearer(token))
    expect_problem(r, 401, "unauthorized", "command after logout")
    r = get(ctx.qry, "/v1/stores", headers=bearer(token))
    expect_problem(r, 401, "unauthorized", "query after logout")
