#!/usr/bin/env python3
"""check_docs: the documentation keeps up with the code.

Fails (exit 1, naming each miss and where it was found) when
  - a STOCKFLOW_* environment variable of a service's configuration table
    (services/*/*_config.c, and the shared list of common/src/config.c) is
    not mentioned in docs/configuration.md, or
  - a route registered by a service (a "/v1/..." string literal, or one of
    "/healthz", "/readyz", "/metrics", in services/*/*.c) is not a path of
    docs/openapi.yaml. Path parameter names do not matter: the command
    service's /v1/products/{id} matches the document's
    /v1/products/{product_id}.
With --codes it also requires every problem code the sources can answer
(sf_http_respond_problem / cmd_pipeline_problem calls, cmd_verdict_code) to be
named in docs/api.md.

Exit status: 0 all documented, 1 something missing, 2 cannot run (a file
is missing or unreadable). Only the standard library is needed; PyYAML is
used for docs/openapi.yaml when installed, else its "paths:" block is read
line by line.

Usage: tests/tools/check_docs.py [--root DIR] [--codes] [--self-test]
"""

import argparse
import glob
import os
import re
import sys
import tempfile

ENV_RE = re.compile(r'"(STOCKFLOW_[A-Z0-9_]+)"')
ROUTE_RE = re.compile(r'"(/v1(?:/[A-Za-z0-9_.{}-]*)*|/healthz|/readyz|/metrics)"')
PARAM_RE = re.compile(r"\{[^}/]*\}")
CODE_RES = [
    # sf_http_respond_problem(req, 404, "not_found", ...) and
    # cmd_pipeline_problem(pl, c, 415, "unsupported_media_type", ...)
    re.compile(r'respond_problem\s*\([^;]*?,\s*[0-9]{3}\s*,\s*"([a-z_]+)"', re.S),
    re.compile(r'_problem\s*\([^;]*?,\s*[0-9]{3}\s*,\s*"([a-z_]+)"', re.S),
    # problem_json(409, "not_applied", ...)   (problems inside batch results)
    re.compile(r'problem_json\s*\(\s*[0-9]{3}\s*,\s*"([a-z_]+)"'),
    # case CMD_X: return "code";   (cmd_verdict_code; not the order statuses)
    re.compile(r'case\s+CMD_(?!ORDER_)[A-Z_]+\s*:\s*return\s+"([a-z_]+)"\s*;'),
]
NOT_CODES = {"ok", "error"}


class CannotRun(Exception):
    pass


def read(path):
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except OSError as e:
        raise CannotRun(f"cannot read {path}: {e.strerror}") from e


def strip_comments(c_text):
    """Removes C comments, keeping string literals (and line numbers)."""
    out = []
    i, n = 0, len(c_text)
    while i < n:
        ch = c_text[i]
        if ch == '"' or ch == "'":
            j = i + 1
            while j < n and c_text[j] != ch:
                j += 2 if c_text[j] == "\\" else 1
            out.append(c_text[i:j + 1])
            i = j + 1
        elif c_text.startswith("/*", i):
            j = c_text.find("*/", i + 2)
            j = n if j < 0 else j + 2
            out.append("\n" * c_text.count("\n", i, j))
            i = j
        elif c_text.startswith("//", i):
            j = c_text.find("\n", i)
            i = n if j < 0 else j
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def find_all(pattern, files, root):
    """{match: first "file:line" where it occurs} over the files."""
    found = {}
    for path in files:
        text = strip_comments(read(path))
        for m in pattern.finditer(text):
            line = text.count("\n", 0, m.start()) + 1
            where = f"{os.path.relpath(path, root)}:{line}"
            found.setdefault(m.group(1), where)
    return found


def openapi_paths(text):
    try:
        import yaml  # noqa: PLC0415 (optional dependency)
    except ImportError:
        yaml = None
    if yaml is not None:
        try:
            doc = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise CannotRun(f"docs/openapi.yaml is not valid YAML: {e}") from e
        paths = doc.get("paths") if isinstance(doc, dict) else None
        if not isinstance(paths, dict):
            raise CannotRun("docs/openapi.yaml has no paths object")
        return set(paths)
    paths, inside = set(), False
    for line in text.splitlines():
        if re.match(r"^paths:\s*$", line):
            inside = True
        elif inside and re.match(r"^\S", line):
            break
        elif inside:
            m = re.match(r"^  (/[^\s:]*):\s*$", line)
            if m:
                paths.add(m.group(1))
    if not paths:
        raise CannotRun("docs/openapi.yaml has no paths")
    return paths


def normalise(route):
    return PARAM_RE.sub("{}", route)


def check(root, codes=False, out=sys.stdout):
    """Returns the list of problems found (empty: all documented)."""
    problems = []
    config_files = sorted(glob.glob(os.path.join(root, "services", "*", "*_config.c")))
    # the settings several services share are one list in common/src/config.c
    shared_config = os.path.join(root, "common", "src", "config.c")
    source_files = sorted(glob.glob(os.path.join(root, "services", "*", "*.c")))
    if not config_files or not source_files:
        raise CannotRun(f"no services/*/*.c under {root}")

    config_doc = read(os.path.join(root, "docs", "configuration.md"))
    envs = find_all(ENV_RE, config_files +
                    ([shared_config] if os.path.exists(shared_config) else []),
                    root)
    for env, where in sorted(envs.items()):
        if not re.search(re.escape(env) + r"(?![A-Z0-9_])", config_doc):
            problems.append(f"{env} ({where}) is not in docs/configuration.md")

    documented = {normalise(p) for p in
                  openapi_paths(read(os.path.join(root, "docs", "openapi.yaml")))}
    routes = find_all(ROUTE_RE, source_files, root)
    for route, where in sorted(routes.items()):
        if normalise(route) not in documented:
            problems.append(f"route {route} ({where}) is not a path of docs/openapi.yaml")

    n_codes = 0
    if codes:
        api_doc = read(os.path.join(root, "docs", "api.md"))
        all_c = source_files + sorted(glob.glob(os.path.join(root, "common", "src", "*.c")))
        found = {}
        for rx in CODE_RES:
            for code, where in find_all(rx, all_c, root).items():
                found.setdefault(code, where)
        for code in NOT_CODES:
            found.pop(code, None)
        n_codes = len(found)
        for code, where in sorted(found.items()):
            if f"`{code}`" not in api_doc:
                problems.append(f"problem code {code} ({where}) is not in docs/api.md")

    for p in problems:
        print(f"check_docs: missing: {p}", file=out)
    if not problems:
        extra = f", {n_codes} problem codes" if codes else ""
        print(f"check_docs: ok ({len(envs)} variables, {len(routes)} routes{extra} "
              "documented)", file=out)
    return problems


# ---- self-test: the checks can fail -------------------------------------

def _write(root, rel, text):
    path = os.path.join(root, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


def self_test():
    import io

    def run(tree, codes=False):
        with tempfile.TemporaryDirectory() as root:
            for rel, text in tree.items():
                _write(root, rel, text)
            buf = io.StringIO()
            try:
                return check(root, codes, buf), buf.getvalue()
            except CannotRun as e:
                return None, str(e)

    base = {
        "services/svc/svc_config.c":
            '/* "STOCKFLOW_IN_A_COMMENT" */\n'
            '{"listen", SF_CFG_STRING, "x", 0, 0, "STOCKFLOW_SVC_LISTEN", "h", 0},\n'
            '{"pool", SF_CFG_INT, "4", 1, 9, "STOCKFLOW_PG_POOL", "h", 0},\n',
        "services/svc/svc_app.c":
            '/* "/v1/commented" is not a route */\n'
            '{"GET", "/healthz", h},\n'
            '{"POST", "/v1/stores/{id}/transactions", h},\n'
            'sf_http_respond_problem(req, 409, "insufficient_stock", "d", NULL);\n'
            'case CMD_ORDER_PLACED: return "placed";\n',
        "docs/configuration.md": "`STOCKFLOW_SVC_LISTEN` and `STOCKFLOW_PG_POOL`\n",
        "docs/openapi.yaml":
            "openapi: 3.1.0\npaths:\n  /healthz:\n    get: {}\n"
            "  /v1/stores/{store_id}/transactions:\n    post: {}\n"
            "components: {}\n",
        "docs/api.md": "| 409 | `insufficient_stock` | when |\n",
    }
    failures = []

    def expect(name, cond, detail=""):
        if not cond:
            failures.append(f"{name}: {detail}")

    probs, _ = run(base, codes=True)
    expect("complete tree passes", probs == [], probs)

    t = dict(base)
    t["docs/configuration.md"] = "`STOCKFLOW_SVC_LISTEN` and `STOCKFLOW_PG_POOL_SIZE`\n"
    probs, text = run(t)
    expect("a variable missing (a longer name does not count) fails",
           probs and len(probs) == 1 and "STOCKFLOW_PG_POOL " in probs[0]
           and "svc_config.c:3" in probs[0], probs)
    expect("the miss is printed", "missing: STOCKFLOW_PG_POOL" in text, text)

    t = dict(base)
    t["services/svc/svc_app.c"] += '{"GET", "/v1/stores/{store_id}/orders", h},\n'
    probs, _ = run(t)
    expect("an undocumented route fails",
           probs == ["route /v1/stores/{store_id}/orders (services/svc/svc_app.c:6)"
                     " is not a path of docs/openapi.yaml"], probs)

    t = dict(base)
    t["services/svc/svc_app.c"] += '{"GET", "/metrics", h},\n'
    probs, _ = run(t)
    expect("an undocumented ops route fails", len(probs) == 1 and "/metrics" in probs[0], probs)

    t = dict(base)
    t["docs/api.md"] = "nothing here\n"
    probs, _ = run(t, codes=True)
    expect("--codes: an undocumented problem code fails",
           len(probs) == 1 and "insufficient_stock" in probs[0], probs)
    probs, _ = run(t, codes=False)
    expect("without --codes codes are not checked", probs == [], probs)

    t = dict(base)
    del t["docs/openapi.yaml"]
    probs, text = run(t)
    expect("a missing document cannot run", probs is None and "openapi.yaml" in text, text)

    for f in failures:
        print(f"check_docs self-test FAILED: {f}", file=sys.stderr)
    if not failures:
        print("check_docs self-test: ok")
    return 1 if failures else 0


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", default=os.path.normpath(
        os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")),
        help="repository root (default: two levels above this script)")
    ap.add_argument("--codes", action="store_true",
                    help="also require every problem code in docs/api.md")
    ap.add_argument("--self-test", action="store_true",
                    help="check that the checks fail on a doctored tree")
    args = ap.parse_args(argv)
    if args.self_test:
        return self_test()
    try:
        return 1 if check(args.root, args.codes) else 0
    except CannotRun as e:
        print(f"check_docs: cannot run: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
