"""Catalog writes on the command service and their read side."""

import api
from client import (expect_json, expect_problem, get, new_uuid, post,
                    with_position)


def test_create_product_and_duplicate_sku(ctx):
    p = api.create_product(ctx, category="tools", price="4.5000",
                           reorder_level=12)
    assert p["position"].startswith("catalog-"), p["position"]
    r = post(ctx.cmd, "/v1/products", api.product_body(sku=p["sku"]))
    expect_problem(r, 409, "duplicate_sku", "same sku again")

    # The read side shows the product once projected.
    r = get(ctx.qry, with_position(f"/v1/products/{p['id']}", p["position"]))
    body = expect_json(r, 200, "GET product")
    assert body.get("id") == p["id"]
    assert body.get("sku") == p["sku"]
    assert body.get("name") == p["name"]
    assert body.get("category") == "tools"
    # numeric(19,4) may come back with or without trailing zeros; the value
    # must be the same decimal, as a string.
    assert isinstance(body.get("price"), str) and \
        float(body["price"]) == 4.5, f"price {body.get('price')!r}"
    assert body.get("reorder_level") == 12
    assert body.get("discontinued") is False, body
    assert body.get("version") == 1, body
    assert body.get("total_on_hand") == 0, body
    assert body.get("total_available") == 0, body


def test_create_store(ctx):
    s = api.create_store(ctx, name="Harbour Street", location="Leith")
    assert s["position"].startswith("catalog-"), s["position"]
    r = get(ctx.qry, with_position(f"/v1/stores/{s['id']}", s["position"]))
    body = expect_json(r, 200, "GET store")
    assert (body.get("id"), body.get("name"), body.get("location")) == \
        (s["id"], "Harbour Street", "Leith"), body


def test_product_validation(ctx):
    bad = {
        "sku missing": api.product_body(sku=None),
        "name empty": api.product_body(name=""),
        "price not a number": api.product_body(price="abc"),
        "price negative": api.product_body(price="-1"),
        "price a JSON number": api.product_body(price=1.5),
        "price too many decimals": api.product_body(price="1.23456"),
        "reorder_level negative": api.product_body(reorder_level=-1),
        "reorder_level a string": api.product_body(reorder_level="5"),
        "name a number": api.product_body(name=42),
    }
    for what, body in bad.items():
        body = {k: v for k, v in body.items() if v is not None}
        r = post(ctx.cmd, "/v1/products", body)
        expect_problem(r, 422, "validation_failed", what)
    api.healthz_all(ctx)
    # Nothing was created: a valid product with one of those skus is new.
    sku = bad["name empty"]["sku"]
    api.create_product(ctx, sku=sku)


def test_store_validation(ctx):
    for what, body in {
        "name missing": {"location": "x"},
        "location missing": {"name": "x"},
        "name empty": {"name": "", "location": "x"},
        "name a number": {"name": 7, "location": "x"},
    }.items():
        r = post(ctx.cmd, "/v1/stores", body)
        expect_problem(r, 422, "validation_failed", what)
    api.healthz_all(ctx)


def test_catalog_malformed_and_unknown(ctx):
    r = post(ctx.cmd, "/v1/products", b'{"sku": "x", "name": ')
    expect_problem(r, 400, "malformed_json", "truncated JSON")
    r = post(ctx.cmd, "/v1/products", b'{"sku":"a"}',
             headers={"Content-Type": "text/plain"})
    expect_problem(r, 415, "unsupported_media_type", "text/plain body")
    r = get(ctx.qry, f"/v1/products/{new_uuid()}")
    expect_problem(r, 404, "not_found", "unknown product")
    r = get(ctx.qry, f"/v1/stores/{new_uuid()}")
    expect_problem(r, 404, "not_found", "unknown store")
    r = get(ctx.qry, "/v1/products/not-a-uuid")
    expect_problem(r, 404, "not_found", "malformed product id")
    api.healthz_all(ctx)
