"""Account administration against the real services (docs/api.md,
"Account administration"; docs/security.md): the role x route matrix of the
new routes, an admin creating users with a role (and a generated password
shown once), disabling (the user's tokens stop working within a second on
both services and its open change stream ends; its login answers 403
account_disabled) and enabling, password reset by an admin and change by
the user (sessions revoked as documented), sessions listed, paged and
revoked one by one by an id that is not the token, the last enabled admin
protected (409 last_admin), unknown ids 404, malformed bodies 400/415/422,
and no password or token in the services' logs.

Mind the login limiter (20 failed logins a minute per client address, and
the later test modules fail 16 of their own): this module fails exactly two
logins (the old password after a change and after a reset). A disabled
user's login with its right password does not count against the address.
Every password and token used here is recorded in SECRETS for the last
test."""

import time

import api
import client
import stack as stackmod
from client import (NO_AUTH, bearer, delete, expect_json, expect_problem, get,
                    patch, post)
from test_auth_matrix import admin_headers, require_auth
from test_stream_revoke import _closed_within as closed_within
from test_stream_revoke import _open_sse as open_sse

SECRETS = set()
BAD_TOKEN = "x" * 43
ROLES = ("admin", "manager", "clerk", "viewer")
ANON = ("none", "bad")
USER_KEYS = {"id", "username", "email", "role", "store_ids", "version",
             "disabled"}
SESSION_KEYS = {"id", "user_id", "created_at", "expires_at", "current"}


def secret(text):
    SECRETS.add(text)
    return text


def new_password():
    return secret(client.unique("pw-adm-secret"))


def login(ctx, username, password):
    r = post(ctx.cmd, "/v1/sessions",
             {"username": username, "password": password}, headers=NO_AUTH)
    body = expect_json(r, 201, f"login as {username}")
    token = body.get("token")
    assert isinstance(token, str) and len(token) == 43, body
    api.expect_uuid(body.get("session_id"), "session_id of a login")
    secret(token)
    return token, body


def create_user(ctx, role="viewer", stores=None, password=True, prefix=None):
    """An admin creates a user with role and stores. Returns a dict with
    id, username, password, token (logged in) and the create answer."""
    name = client.unique(prefix or role).lower()
    body = {"username": name, "email": f"{name}@example.com", "role": role,
            "store_ids": stores or []}
    if password:
        body["password"] = new_password()
    r = post(ctx.cmd, "/v1/users", body, headers=admin_headers())
    user = expect_json(r, 201, f"admin creates {name} as {role}")
    assert USER_KEYS <= set(user), f"user answer lacks fields: {user}"
    assert (user["username"], user["role"], user["store_ids"],
            user["disabled"]) == (name, role, stores or [], False), user
    if password:
        assert "generated_password" not in user, user
        pw = body["password"]
    else:
        pw = secret(user.get("generated_password"))
        assert isinstance(pw, str) and len(pw) >= 8, user
    token, _ = login(ctx, name, pw)
    return {"id": user["id"], "username": name, "password": pw,
            "token": token, "answer": user}


def within(call, want, seconds, what):
    """Calls call() until its status is want, at most `seconds` after the
    first attempt. Returns the answer."""
    t0 = time.monotonic()
    while True:
        r = call()
        if r.status == want:
            return r
        if time.monotonic() - t0 >= seconds:
            raise AssertionError(
                f"{what}: still HTTP {r.status} after "
                f"{time.monotonic() - t0:.2f}s (want {want} within "
                f"{seconds}s): {r!r}")
        time.sleep(0.02)


def check(r, want, what):
    if want == 401:
        expect_problem(r, 401, "unauthorized", what)
        assert r.headers.get("www-authenticate", "").startswith("Bearer"), \
            f"{what}: 401 without WWW-Authenticate: {r.headers}"
    elif want == 403:
        expect_problem(r, 403, "forbidden", what)
    elif want == 404:
        expect_problem(r, 404, "not_found", what)
    elif want == 204:
        assert r.status == 204 and not r.raw, f"{what}: {r!r}"
    else:
        expect_json(r, want, what)


def all_pages(ctx, path, headers, limit):
    """Follows next_cursor to the end; returns every item."""
    items, cursor = [], None
    for _ in range(1000):
        sep = "&" if "?" in path else "?"
        url = f"{path}{sep}limit={limit}" + (f"&cursor={cursor}" if cursor
                                             else "")
        body = expect_json(get(ctx.cmd, url, headers=headers), 200, url)
        assert set(body) == {"items", "next_cursor"}, body
        assert len(body["items"]) <= limit, body
        items += body["items"]
        cursor = body["next_cursor"]
        if cursor is None:
            return items
        assert body["items"], f"an empty page with a next_cursor: {body}"
    raise AssertionError(f"{path}: no end after 1000 pages")


def both_refuse(ctx, token, read_path, seconds, what):
    """The token is refused (401) by both services within seconds."""
    h = bearer(token)
    within(lambda: get(ctx.cmd, "/v1/users/me", headers=h), 401, seconds,
           f"command service, {what}")
    within(lambda: get(ctx.qry, read_path, headers=h), 401, seconds,
           f"query service, {what}")


# ---- the role x route matrix ----

def test_role_matrix_of_account_routes(ctx):
    require_auth(ctx)
    store = api.create_store(ctx)["id"]
    users = {role: create_user(ctx, role, [store])
             for role in ("manager", "clerk", "viewer")}
    me = expect_json(get(ctx.cmd, "/v1/users/me", headers=admin_headers()),
                     200, "admin's me")

    def headers(who):
        if who == "admin":
            return admin_headers()
        if who == "none":
            return NO_AUTH
        if who == "bad":
            return bearer(BAD_TOKEN)
        return bearer(users[who]["token"])

    def own_id(who):
        return users[who]["id"] if who in users else me["id"]

    target = create_user(ctx, "viewer", prefix="target")

    def by_role(admin, others):
        return {"admin": admin, "manager": others, "clerk": others,
                "viewer": others, "none": 401, "bad": 401}

    def fresh_session_of_target():
        token, body = login(ctx, target["username"], target["password"])
        return body["session_id"]

    rows = [
        ("GET /v1/users", lambda h, who: get(ctx.cmd, "/v1/users", headers=h),
         by_role(200, 403)),
        ("GET /v1/users?role=viewer",
         lambda h, who: get(ctx.cmd, "/v1/users?role=viewer&limit=5",
                            headers=h), by_role(200, 403)),
        ("GET /v1/users/{other}",
         lambda h, who: get(ctx.cmd, f"/v1/users/{target['id']}", headers=h),
         by_role(200, 403)),
        ("GET /v1/users/{own id}",
         lambda h, who: get(ctx.cmd, f"/v1/users/{own_id(who)}", headers=h),
         by_role(200, 200)),
        ("POST /v1/users with a role",
         lambda h, who: post(ctx.cmd, "/v1/users",
                             {"username": client.unique("mx").lower(),
                              "email": "mx@example.com", "role": "clerk",
                              "password": new_password()}, headers=h),
         by_role(201, 403)),
        ("POST /v1/users/{id}/disable",
         lambda h, who: post(ctx.cmd, f"/v1/users/{target['id']}/disable",
                             None, headers=h), by_role(200, 403)),
        ("POST /v1/users/{id}/enable",
         lambda h, who: post(ctx.cmd, f"/v1/users/{target['id']}/enable",
                             None, headers=h), by_role(200, 403)),
        ("POST /v1/users/{id}/password",
         lambda h, who: post(ctx.cmd, f"/v1/users/{target['id']}/password",
                             {"password": target["password"]}, headers=h),
         by_role(200, 403)),
        ("GET /v1/sessions",
         lambda h, who: get(ctx.cmd, "/v1/sessions", headers=h),
         by_role(200, 200)),
        ("GET /v1/users/{other}/sessions",
         lambda h, who: get(ctx.cmd, f"/v1/users/{target['id']}/sessions",
                            headers=h), by_role(200, 403)),
        ("GET /v1/users/{own id}/sessions",
         lambda h, who: get(ctx.cmd, f"/v1/users/{own_id(who)}/sessions",
                            headers=h), by_role(200, 200)),
        # another user's session: an unknown id to a non-admin
        ("DELETE /v1/sessions/{other's}",
         lambda h, who: delete(ctx.cmd,
                               f"/v1/sessions/{fresh_session_of_target()}",
                               headers=h), by_role(204, 404)),
    ]
    for what, call, want in rows:
        for who in ("none", "bad", "viewer", "clerk", "manager", "admin"):
            check(call(headers(who), who), want[who], f"{what} as {who}")
    # The target was disabled and enabled by the admin only; it still
    # logs in with its password (reset to the same one by the admin).
    login(ctx, target["username"], target["password"])
    # A plain sign-up is still open to anyone, with or without a token.
    for who in ("none", "viewer"):
        name = client.unique("open").lower()
        r = post(ctx.cmd, "/v1/users",
                 {"username": name, "email": f"{name}@example.com",
                  "password": new_password()}, headers=headers(who))
        u = expect_json(r, 201, f"plain sign-up as {who}")
        assert (u["role"], u["store_ids"]) == ("viewer", []), u
    # POST /v1/users/me/password for every role (its own password).
    for who in ("viewer", "clerk", "manager"):
        u = users[who]
        new = new_password()
        r = post(ctx.cmd, "/v1/users/me/password",
                 {"current_password": u["password"], "new_password": new},
                 headers=headers(who))
        body = expect_json(r, 200, f"password change as {who}")
        assert body["id"] == u["id"] and USER_KEYS <= set(body), body
    for who in ANON:
        check(post(ctx.cmd, "/v1/users/me/password",
                   {"current_password": "whatever1", "new_password":
                    "whatever2"}, headers=headers(who)), 401,
              f"password change as {who}")


# ---- creation by an admin ----

def test_admin_creates_users_with_role_and_stores(ctx):
    require_auth(ctx)
    store = api.create_store(ctx)["id"]
    u = create_user(ctx, "manager", [store], password=False, prefix="gen")
    # The generated password was shown once: GET answers never carry it.
    for path in (f"/v1/users/{u['id']}", f"/v1/users?limit=500"):
        r = get(ctx.cmd, path, headers=admin_headers())
        assert r.status == 200 and u["password"] not in r.raw.decode(), \
            f"{path} shows the generated password"
    me = expect_json(get(ctx.cmd, "/v1/users/me", headers=bearer(u["token"])),
                     200, "me of the created manager")
    assert (me["role"], me["store_ids"], me["disabled"]) == \
        ("manager", [store], False), me
    # The manager writes to its store at once.
    product = api.create_product(ctx)["id"]
    r = api.post_txn(ctx, store, product, "receipt", 2,
                     headers=bearer(u["token"]))
    expect_json(r, 201, "receipt by the created manager")
    # Without an admin's token, a role or stores is refused.
    name = client.unique("norole").lower()
    body = {"username": name, "email": "n@example.com", "role": "admin",
            "password": new_password()}
    check(post(ctx.cmd, "/v1/users", body, headers=NO_AUTH), 401,
          "role without a token")
    check(post(ctx.cmd, "/v1/users", body, headers=bearer(u["token"])), 403,
          "role from a manager")
    check(post(ctx.cmd, "/v1/users", body, headers=bearer(BAD_TOKEN)), 401,
          "role with a bad token")
    body2 = dict(body, role=None, store_ids=[store])
    check(post(ctx.cmd, "/v1/users", body2, headers=NO_AUTH), 401,
          "stores without a token")
    # Nothing was created by the refused requests.
    names = {x["username"] for x in all_pages(ctx, "/v1/users",
                                              admin_headers(), 500)}
    assert name not in names, "a refused creation created the user"
    # Without a password and without an admin: the sign-up rules.
    r = post(ctx.cmd, "/v1/users", {"username": name, "email": "n@example.com"},
             headers=NO_AUTH)
    expect_problem(r, 422, "validation_failed", "sign-up without a password")
    # Taken name, bad role, bad stores, short password: 409 and 422.
    r = post(ctx.cmd, "/v1/users", {"username": u["username"],
                                    "email": "t@example.com",
                                    "role": "clerk"}, headers=admin_headers())
    expect_problem(r, 409, "username_taken", "admin creates a taken name")
    for bad, what in (({"role": "boss"}, "bad role"),
                      ({"store_ids": "x"}, "store_ids not an array"),
                      ({"store_ids": ["nope"]}, "store id not a UUID"),
                      ({"password": "short"}, "short password"),
                      ({"shoe_size": 43}, "unknown key")):
        b = {"username": client.unique("bad").lower(),
             "email": "b@example.com", "role": "viewer", **bad}
        expect_problem(post(ctx.cmd, "/v1/users", b, headers=admin_headers()),
                       422, "validation_failed", what)
    r = post(ctx.cmd, "/v1/users", b'{"username": ', headers=admin_headers())
    expect_problem(r, 400, "malformed_json", "broken JSON")


# ---- listing and getting users ----

def test_user_list_pages_and_filters(ctx):
    require_auth(ctx)
    mine = [create_user(ctx, "clerk", prefix="lst")["id"] for _ in range(3)]
    items = all_pages(ctx, "/v1/users", admin_headers(), 2)
    ids = [x["id"] for x in items]
    assert len(ids) == len(set(ids)), "a user listed twice while paging"
    assert ids == sorted(ids), "users are not in id (creation) order"
    assert set(mine) <= set(ids), "a created user is missing from the list"
    for x in items:
        assert set(x) == USER_KEYS, f"user item fields: {x}"
        assert not any("password" in k or "hash" in k for k in x), x
    clerks = all_pages(ctx, "/v1/users?role=clerk", admin_headers(), 500)
    assert clerks and all(x["role"] == "clerk" for x in clerks), clerks
    assert set(mine) <= {x["id"] for x in clerks}
    admins = all_pages(ctx, "/v1/users?role=admin", admin_headers(), 500)
    assert all(x["role"] == "admin" for x in admins) and admins, admins
    one = expect_json(get(ctx.cmd, f"/v1/users/{mine[0]}",
                          headers=admin_headers()), 200, "get one user")
    assert one["id"] == mine[0] and one["role"] == "clerk", one
    # Bad parameters.
    for q, status, code in (("limit=0", 422, "validation_failed"),
                            ("limit=501", 422, "validation_failed"),
                            ("limit=x", 422, "validation_failed"),
                            ("role=boss", 422, "validation_failed"),
                            ("cursor=garbage", 400, "bad_cursor")):
        expect_problem(get(ctx.cmd, f"/v1/users?{q}", headers=admin_headers()),
                       status, code, f"GET /v1/users?{q}")
    # A cursor of the session list is not one of the user list.
    u = create_user(ctx, "viewer", prefix="cur")
    login(ctx, u["username"], u["password"])
    body = expect_json(get(ctx.cmd, "/v1/sessions?limit=1",
                           headers=bearer(u["token"])), 200, "sessions")
    assert body["next_cursor"], body
    expect_problem(get(ctx.cmd, f"/v1/users?cursor={body['next_cursor']}",
                       headers=admin_headers()), 400, "bad_cursor",
                   "a session cursor on the user list")


def test_unknown_ids_are_404(ctx):
    require_auth(ctx)
    h = admin_headers()
    nobody = client.new_uuid()
    for method, path, body in (
            ("GET", f"/v1/users/{nobody}", None),
            ("GET", "/v1/users/not-a-uuid", None),
            ("POST", f"/v1/users/{nobody}/disable", None),
            ("POST", "/v1/users/nope/disable", None),
            ("POST", f"/v1/users/{nobody}/enable", None),
            ("POST", f"/v1/users/{nobody}/password", {"password": None}),
            ("POST", f"/v1/users/{nobody}/password", None),
            ("GET", f"/v1/users/{nobody}/sessions", None),
            ("PATCH", f"/v1/users/{nobody}", {"role": "clerk"}),
            ("DELETE", f"/v1/sessions/{nobody}", None),
            ("DELETE", "/v1/sessions/12345", None)):
        r = client.request(ctx.cmd, method, path, body, headers=h)
        expect_problem(r, 404, "not_found", f"{method} {path}")
    # A revoked session is not found a second time.
    u = create_user(ctx, "viewer", prefix="gone")
    _, b = login(ctx, u["username"], u["password"])
    check(delete(ctx.cmd, f"/v1/sessions/{b['session_id']}", headers=h), 204,
          "revoke a session")
    check(delete(ctx.cmd, f"/v1/sessions/{b['session_id']}", headers=h), 404,
          "revoke it again")


# ---- disable and enable ----

def test_disable_stops_tokens_and_streams_at_once(ctx):
    require_auth(ctx)
    st = api.create_store(ctx)
    store = st["id"]
    u = create_user(ctx, "viewer", [store], prefix="dis")
    token2, _ = login(ctx, u["username"], u["password"])
    read = f"/v1/stores/{store}?min_position={st['position']}"
    for t in (u["token"], token2):
        expect_json(get(ctx.qry, read, headers=bearer(t)), 200, "read")
        expect_json(get(ctx.cmd, "/v1/users/me", headers=bearer(t)), 200,
                    "me")
    s = open_sse(ctx, store, u["token"])
    try:
        assert not closed_within(s, 0.3), "stream ended before the disable"
        t0 = time.monotonic()
        r = post(ctx.cmd, f"/v1/users/{u['id']}/disable", None,
                 headers=admin_headers())
        body = expect_json(r, 200, "disable")
        assert body["disabled"] is True and \
            body["version"] == u["answer"]["version"] + 1, body
        for t in (u["token"], token2):
            both_refuse(ctx, t, read, 1.0, "after the disable")
        assert closed_within(s, 2.0), "the stream outlived the disable"
        ctx.log(f"disable -> both refused and stream closed in "
                f"{(time.monotonic() - t0) * 1000:.0f} ms")
    finally:
        s.close()
    # Disabling again changes nothing.
    again = expect_json(post(ctx.cmd, f"/v1/users/{u['id']}/disable", None,
                             headers=admin_headers()), 200, "disable again")
    assert again["version"] == body["version"] and again["disabled"], again
    # Its login with the right password: 403 account_disabled, clearly.
    r = post(ctx.cmd, "/v1/sessions",
             {"username": u["username"], "password": u["password"]},
             headers=NO_AUTH)
    expect_problem(r, 403, "account_disabled", "login of a disabled user")
    assert "token" not in r.body
    got = expect_json(get(ctx.cmd, f"/v1/users/{u['id']}",
                          headers=admin_headers()), 200, "get disabled")
    assert got["disabled"] is True, got
    # A new stream with the old token is refused.
    r = get(ctx.qry, f"/v1/changes?store_id={store}",
            headers={**bearer(u["token"]), "Accept": "text/event-stream"})
    check(r, 401, "stream with a disabled user's token")
    # Enabled: a new login works; the old tokens stay revoked.
    body = expect_json(post(ctx.cmd, f"/v1/users/{u['id']}/enable", None,
                            headers=admin_headers()), 200, "enable")
    assert body["disabled"] is False, body
    token3, _ = login(ctx, u["username"], u["password"])
    expect_json(get(ctx.qry, read, headers=bearer(token3)), 200,
                "read after enable")
    check(get(ctx.cmd, "/v1/users/me", headers=bearer(u["token"])), 401,
          "an old token after enable")


# ---- passwords ----

def test_password_change_revokes_other_sessions(ctx):
    require_auth(ctx)
    st = api.create_store(ctx)
    u = create_user(ctx, "viewer", [st["id"]], prefix="chg")
    other, _ = login(ctx, u["username"], u["password"])
    read = f"/v1/stores/{st['id']}?min_position={st['position']}"
    h = bearer(u["token"])
    expect_json(get(ctx.qry, read, headers=bearer(other)), 200, "other reads")
    # Malformed and invalid bodies first: nothing changes.
    for body, status, code, what in (
            (b'{"current_password": ', 400, "malformed_json", "broken JSON"),
            ({"current_password": u["password"]}, 422, "validation_failed",
             "no new password"),
            ({"new_password": "long enough 1"}, 422, "validation_failed",
             "no current password"),
            ({"current_password": u["password"], "new_password": "short"},
             422, "validation_failed", "short new password"),
            ({"current_password": u["password"], "new_password": 12345678},
             422, "validation_failed", "new password not a string"),
            ({"current_password": u["password"],
              "new_password": "x" * 1025}, 422, "validation_failed",
             "new password too long"),
            ({"current_password": u["password"], "new_password": "abcdefgh1",
              "extra": 1}, 422, "validation_failed", "unknown key"),
            ([1, 2], 400, "malformed_json", "not an object")):
        r = post(ctx.cmd, "/v1/users/me/password", body, headers=h)
        expect_problem(r, status, code, what)
    r = post(ctx.cmd, "/v1/users/me/password", "x",
             headers={**h, "Content-Type": "text/plain"})
    expect_problem(r, 415, "unsupported_media_type", "text/plain")
    # A wrong current password: 403 wrong_password, nothing revoked.
    r = post(ctx.cmd, "/v1/users/me/password",
             {"current_password": "not-my-password", "new_password":
              new_password()}, headers=h)
    expect_problem(r, 403, "wrong_password", "wrong current password")
    expect_json(get(ctx.qry, read, headers=bearer(other)), 200,
                "other session after a refused change")
    new = new_password()
    r = post(ctx.cmd, "/v1/users/me/password",
             {"current_password": u["password"], "new_password": new},
             headers=h)
    body = expect_json(r, 200, "password change")
    assert body["version"] == u["answer"]["version"] + 1, body
    assert "generated_password" not in body, body
    both_refuse(ctx, other, read, 1.0, "the other session after the change")
    # The session that made the change stays.
    expect_json(get(ctx.qry, read, headers=h), 200, "the current session")
    expect_json(get(ctx.cmd, "/v1/users/me", headers=h), 200, "current me")
    # The old password is gone (one failed login), the new one works.
    r = post(ctx.cmd, "/v1/sessions",
             {"username": u["username"], "password": u["password"]},
             headers=NO_AUTH)
    expect_problem(r, 401, "unauthorized", "login with the old password")
    login(ctx, u["username"], new)


def test_admin_reset_revokes_every_session(ctx):
    require_auth(ctx)
    st = api.create_store(ctx)
    u = create_user(ctx, "clerk", [st["id"]], prefix="rst")
    t2, _ = login(ctx, u["username"], u["password"])
    read = f"/v1/stores/{st['id']}?min_position={st['position']}"
    # Invalid bodies: nothing changes.
    for body, status, code in (({"password": "short"}, 422,
                                "validation_failed"),
                               ({"pass": "long enough"}, 422,
                                "validation_failed"),
                               (b"{nope", 400, "malformed_json")):
        expect_problem(post(ctx.cmd, f"/v1/users/{u['id']}/password", body,
                            headers=admin_headers()), status, code,
                       f"reset with {body!r}")
    expect_json(get(ctx.cmd, "/v1/users/me", headers=bearer(t2)), 200,
                "session after refused resets")
    # Generated: shown once in the answer.
    r = post(ctx.cmd, f"/v1/users/{u['id']}/password", None,
             headers=admin_headers())
    body = expect_json(r, 200, "reset with a generated password")
    gen = secret(body.get("generated_password"))
    assert isinstance(gen, str) and len(gen) >= 20, body
    for t in (u["token"], t2):
        both_refuse(ctx, t, read, 1.0, "a session after the reset")
    r = post(ctx.cmd, "/v1/sessions",
             {"username": u["username"], "password": u["password"]},
             headers=NO_AUTH)
    expect_problem(r, 401, "unauthorized", "login with the old password")
    t3, _ = login(ctx, u["username"], gen)
    # Given by the admin: no generated_password in the answer.
    chosen = new_password()
    body = expect_json(post(ctx.cmd, f"/v1/users/{u['id']}/password",
                            {"password": chosen}, headers=admin_headers()),
                       200, "reset with a given password")
    assert "generated_password" not in body, body
    both_refuse(ctx, t3, read, 1.0, "the session after the second reset")
    login(ctx, u["username"], chosen)


# ---- sessions ----

def test_sessions_listed_and_revoked_by_id(ctx):
    require_auth(ctx)
    st = api.create_store(ctx)
    u = create_user(ctx, "viewer", [st["id"]], prefix="ses")
    sessions = [login(ctx, u["username"], u["password"]) for _ in range(2)]
    tokens = [u["token"]] + [t for t, _ in sessions]
    h = bearer(tokens[0])
    r = get(ctx.cmd, "/v1/sessions", headers=h)
    body = expect_json(r, 200, "own sessions")
    items = body["items"]
    assert len(items) == 3 and body["next_cursor"] is None, body
    for s in items:
        assert set(s) == SESSION_KEYS, f"session fields: {s}"
        assert s["user_id"] == u["id"], s
        api.expect_time(s["created_at"], "created_at")
        api.expect_time(s["expires_at"], "expires_at")
    assert not any(t in r.raw.decode() for t in tokens), \
        "a token appears in the session list"
    assert sum(s["current"] for s in items) == 1, items
    ids = [s["id"] for s in items]
    assert ids == sorted(ids, reverse=True), "sessions are not newest first"
    assert items[0]["id"] == sessions[1][1]["session_id"], (items, sessions)
    # Paged.
    paged = all_pages(ctx, "/v1/sessions", h, 2)
    assert [s["id"] for s in paged] == ids, paged
    # An admin sees them too, none of them its current one.
    adm = expect_json(get(ctx.cmd, f"/v1/users/{u['id']}/sessions",
                          headers=admin_headers()), 200, "admin's view")
    assert [s["id"] for s in adm["items"]] == ids and \
        not any(s["current"] for s in adm["items"]), adm
    # Another user cannot revoke them (404), the owner can.
    other = create_user(ctx, "viewer", prefix="ses2")
    target = sessions[0][1]["session_id"]
    check(delete(ctx.cmd, f"/v1/sessions/{target}",
                 headers=bearer(other["token"])), 404,
          "another user's session")
    expect_json(get(ctx.cmd, "/v1/users/me", headers=bearer(tokens[1])), 200,
                "the session is still alive")
    check(delete(ctx.cmd, f"/v1/sessions/{target}", headers=h), 204,
          "revoke own session by id")
    read = f"/v1/stores/{st['id']}?min_position={st['position']}"
    both_refuse(ctx, tokens[1], read, 1.0, "a session revoked by id")
    left = expect_json(get(ctx.cmd, "/v1/sessions", headers=h), 200, "after")
    assert target not in [s["id"] for s in left["items"]] and \
        len(left["items"]) == 2, left
    # The other user's list has only its own session.
    mine = expect_json(get(ctx.cmd, "/v1/sessions",
                           headers=bearer(other["token"])), 200, "other's")
    assert [s["user_id"] for s in mine["items"]] == [other["id"]], mine
    # Revoking the current session by id ends it too.
    cur = [s for s in left["items"] if s["current"]][0]["id"]
    check(delete(ctx.cmd, f"/v1/sessions/{cur}", headers=h), 204,
          "revoke the current session by id")
    both_refuse(ctx, tokens[0], read, 1.0, "the current session revoked")
    for q, status, code in (("limit=0", 422, "validation_failed"),
                            ("cursor=zzz", 400, "bad_cursor")):
        expect_problem(get(ctx.cmd, f"/v1/sessions?{q}",
                           headers=bearer(other["token"])), status, code, q)


# ---- the last admin ----

def test_last_enabled_admin_is_protected(ctx):
    require_auth(ctx)
    me = expect_json(get(ctx.cmd, "/v1/users/me", headers=admin_headers()),
                     200, "admin's me")
    extra = create_user(ctx, "admin", prefix="adm2")
    # With two admins, the second may be disabled and demoted.
    check(post(ctx.cmd, f"/v1/users/{extra['id']}/disable", None,
               headers=admin_headers()), 200, "disable a second admin")
    check(post(ctx.cmd, f"/v1/users/{extra['id']}/enable", None,
               headers=admin_headers()), 200, "enable it again")
    # Leave the runner's admin as the only enabled one (the others are test
    # users; they are enabled again at the end).
    others = [x for x in all_pages(ctx, "/v1/users?role=admin",
                                   admin_headers(), 500)
              if x["id"] != me["id"] and not x["disabled"]]
    assert extra["id"] in [x["id"] for x in others]
    try:
        for x in others:
            check(post(ctx.cmd, f"/v1/users/{x['id']}/disable", None,
                       headers=admin_headers()), 200, f"disable {x['id']}")
        r = post(ctx.cmd, f"/v1/users/{me['id']}/disable", None,
                 headers=admin_headers())
        expect_problem(r, 409, "last_admin", "disable the last admin")
        r = patch(ctx.cmd, f"/v1/users/{me['id']}", {"role": "manager"},
                  headers=admin_headers())
        expect_problem(r, 409, "last_admin", "demote the last admin")
        # Nothing changed: still an enabled admin, still working.
        now = expect_json(get(ctx.cmd, "/v1/users/me",
                              headers=admin_headers()), 200, "admin's me")
        assert (now["role"], now["disabled"], now["version"]) == \
            ("admin", False, me["version"]), now
        # A disabled admin does not count: demoting it is fine, and it
        # cannot be the way around the rule.
        check(patch(ctx.cmd, f"/v1/users/{extra['id']}", {"role": "manager"},
                    headers=admin_headers()), 200, "demote a disabled admin")
    finally:
        for x in others:
            post(ctx.cmd, f"/v1/users/{x['id']}/enable", None,
                 headers=admin_headers())
    # With the second admin back (as a manager now, made admin again), the
    # runner's admin could be demoted; the rule is about the last one only.
    check(patch(ctx.cmd, f"/v1/users/{extra['id']}", {"role": "admin"},
                headers=admin_headers()), 200, "promote again")
    check(post(ctx.cmd, f"/v1/users/{extra['id']}/disable", None,
               headers=bearer(extra["token"])), 401,
          "the disabled-then-enabled admin's old token")


# ---- no secrets in the logs ----

def test_no_secrets_in_logs(ctx):
    require_auth(ctx)
    assert len(SECRETS) >= 20, f"only {len(SECRETS)} secrets recorded"
    logs = {n: ctx.stack[n].log_text(since_start=False)
            for n in stackmod.SERVICES}
    assert "disabled by" in logs["command"] and \
        "reset by" in logs["command"], \
        "the command log lacks the administration lines: right log?"
    for name, text in logs.items():
        leaked = [s for s in SECRETS if s in text]
        assert not leaked, f"{len(leaked)} secrets in the {name} log, " \
            f"e.g. {leaked[0][:8]}..."
