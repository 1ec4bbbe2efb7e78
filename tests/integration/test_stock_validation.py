"""Bad input on POST /v1/stores/{id}/transactions gets a clear answer
(problem+json with a stable code) and changes nothing; every service still
answers /healthz after each one."""

import json

import api
import client
from client import expect_problem, new_uuid, post


def bad_inputs(store, product):
    """(what, path, body bytes or dict, extra headers, statuses, codes)."""
    path = api.txn_path(store)

    def body(**over):
        b = {"product_id": product, "type": "receipt", "quantity": 5}
        b.update(over)
        return {k: v for k, v in b.items() if v is not None}

    vf = "validation_failed"
    cases = [
        ("malformed JSON", path, b'{"product_id": "', {}, 400, "malformed_json"),
        ("trailing garbage", path, json.dumps(body()).encode() + b"}x", {},
         400, "malformed_json"),
        ("empty body", path, b"", {}, 400, "malformed_json"),
        ("invalid UTF-8", path,
         b'{"product_id": "' + product.encode() +
         b'", "type": "receipt", "quantity": 5, "reference": "\xff\xfe"}', {},
         400, "malformed_json"),
        # The service's choice: a body that is not an object is malformed.
        ("top-level array", path, b"[1, 2, 3]", {}, 400, "malformed_json"),
        ("top-level string", path, b'"receipt"', {}, 400, "malformed_json"),
        ("text/plain", path, json.dumps(body()).encode(),
         {"Content-Type": "text/plain"}, 415, "unsupported_media_type"),
        ("form content type", path, b"product_id=x&type=receipt&quantity=5",
         {"Content-Type": "application/x-www-form-urlencoded"}, 415,
         "unsupported_media_type"),
    ]
    for t in ("receipt", "sale", "return"):
        for q in (-1, 0):
            cases.append((f"{t} quantity {q}", path, body(type=t, quantity=q),
                          {}, 422, vf))
    for q in (1.5, "10", None, True, [5], 2147483648, -2147483649,
              10 ** 18):
        what = f"quantity {q!r}" if q is not None else "quantity missing"
        cases.append((what, path, body(quantity=q), {}, 422, vf))
    cases += [
        ("quantity null", path,
         ('{"product_id": "%s", "type": "receipt", "quantity": null}'
          % product).encode(), {}, 422, vf),
        # Beyond int64 the JSON parser refuses the number itself.
        ("quantity 99999999999999999999", path,
         ('{"product_id": "%s", "type": "receipt", "quantity": '
          '99999999999999999999}' % product).encode(), {}, 400,
         "malformed_json"),
        ("quantity 1e3", path,
         ('{"product_id": "%s", "type": "receipt", "quantity": 1e3}'
          % product).encode(), {}, 422, vf),
        ("unknown type", path, body(type="gift"), {}, 422, vf),
        ("type missing", path, body(type=None), {}, 422, vf),
        ("type a number", path, body(type=1), {}, 422, vf),
        ("type upper case", path, body(type="RECEIPT"), {}, 422, vf),
        ("product_id missing", path, body(product_id=None), {}, 422, vf),
        ("product_id a number", path, body(product_id=12), {}, 422, vf),
        ("adjustment without reason", path,
         body(type="adjustment", quantity=2), {}, 422, vf),
        ("adjustment with empty reason", path,
         body(type="adjustment", quantity=2, reason=""), {}, 422, vf),
        ("adjustment 0", path,
         body(type="adjustment", quantity=0, reason="damage"), {}, 422, vf),
        ("count -1", path, body(type="count", quantity=-1), {}, 422, vf),
        ("unknown store", api.txn_path(new_uuid()), body(), {}, 404,
         "not_found"),
        ("malformed store id", api.txn_path("not-a-store"), body(), {}, 404,
         "not_found"),
        ("unknown product", path, body(product_id=new_uuid()), {}, 404,
         "not_found"),
        ("malformed product id", path, body(product_id="xyz"), {}, (404, 422),
         ("not_found", vf)),
        ("70 KiB body", path, body(reference="r" * (70 * 1024)), {}, 413,
         "payload_too_large"),
        ("If-Match of another version", path, body(),
         {"If-Match": '"7"'}, 412, "version_conflict"),
        ("If-Match not a version", path, body(), {"If-Match": "abc"}, 422, vf),
        ("unknown field", path, body() | {"quantty": 5}, {}, 422, vf),
    ]
    return cases


def test_bad_stock_inputs_change_nothing(ctx):
    store, product = api.store_and_product(ctx)
    first = api.txn(ctx, store, product, "receipt", 10, on_hand=10, version=1)

    failures = []
    for what, path, body, headers, status, code in bad_inputs(store, product):
        try:
            r = post(ctx.cmd, path, body, headers)
            expect_problem(r, status, code, what)
        except (AssertionError, OSError) as e:
            failures.append(f"{what}: {e}")
        try:
            api.healthz_all(ctx)
        except (AssertionError, OSError) as e:
            raise AssertionError(f"after {what!r}: {e}")
    assert not failures, \
        f"{len(failures)} bad inputs answered wrongly:\n" + "\n".join(failures)

    # Nothing changed: the next accepted write is version 2, on top of 10.
    second = api.txn(ctx, store, product, "receipt", 1, on_hand=11, version=2,
                     headers={"If-Match": '"1"'})
    api.expect_stock(ctx, store, product, on_hand=11, version=2,
                     position=second["position"])
    items = api.history(ctx, store, product, position=second["position"])
    assert [api.txn_item_id(i) for i in items] == \
        [second["transaction_id"], first["transaction_id"]], items


def test_oversized_chunked_body(ctx):
    """A body over the limit sent without Content-Length is refused too."""
    store, product = api.store_and_product(ctx)
    payload = json.dumps({"product_id": product, "type": "receipt",
                          "quantity": 1, "reference": "c" * (70 * 1024)})
    data = payload.encode()
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(data[i:i + 8192]),
                                         data[i:i + 8192])
                      for i in range(0, len(data), 8192)) + b"0\r\n\r\n"
    req = (f"POST {api.txn_path(store)} HTTP/1.1\r\nHost: it\r\n"
           "Content-Type: application/json\r\n"
           "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n").encode()
    status, raw, _ = client.raw_exchange(ctx.cmd, req + chunks)
    assert status == 413, f"chunked 70 KiB body: {raw[:300]!r}"
    assert b"payload_too_large" in raw, raw[:400]
    api.healthz_all(ctx)
    # Nothing was written for that pair: the first accepted write is version 1.
    api.txn(ctx, store, product, "receipt", 2, on_hand=2, version=1)
