#!/usr/bin/env python3
"""Check that schemas/envelope.avsc evolves compatibly from every published
version of the event envelope, with fastavro (a non-C Avro implementation).

For each schemas/envelope_v<N>.avsc (every version ever written to Kafka)
against the current schemas/envelope.avsc:

1. the evolution rules of docs/events.md, structurally: no named type, field,
   union branch or enum symbol is removed, renamed, reordered or retyped;
   a field is added only with a default (a record-typed default lists every
   field); union branches and enum symbols are added only at the end. An
   added branch or symbol is a warning (old readers refuse the events that
   use it: consumers must learn the new version first), an error with
   --strict.
2. round trips: a sample of every event type (every payload branch, optional
   fields null and set, every enum symbol) is written with one schema and
   read with the other, both ways: backward (old writer, current reader) and
   forward (current writer, old reader). Fields only the reader has must
   read as their defaults, every other field unchanged; an event of a branch
   or symbol the reader lacks must be refused.
3. docs/events.md lists the fingerprint of every version.

Then a self-test shows that the checker can fail: it derives variants of the
current schema in memory (an optional field added passes; a field removed,
added without a default, retyped or moved, a record renamed, an enum
reordered, a branch inserted in the middle fail; a branch or symbol appended
warns).

Usage: check_schema_compat.py [--strict] [--no-self-test] [--schemas DIR]
Exit status: 0 when compatible, 1 on a break (listed on stderr), 2 when a
file cannot be read.
"""
import argparse
import copy
import datetime
import glob
import io
import json
import os
import re
import sys
import uuid

import fastavro
import fastavro.schema

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
PRIMITIVES = {"null", "boolean", "int", "long", "float", "double", "bytes",
              "string"}
EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)


class Schema:
    """A schema text parsed by fastavro, with its named types by full
    name (references in the parsed form are full names)."""

    def __init__(self, raw, label):
        self.raw = raw
        self.label = label
        self.named = {}
        self.parsed = fastavro.parse_schema(copy.deepcopy(raw),
                                            named_schemas=self.named)
        canon = fastavro.schema.to_parsing_canonical_form(raw)
        wire = bytes.fromhex(fastavro.schema.fingerprint(canon, "CRC-64-AVRO"))
        self.fingerprint = int.from_bytes(wire, "little")

    def deref(self, t):
        """The definition of t: a named reference is looked up."""
        if isinstance(t, str) and t not in PRIMITIVES:
            return self.named[t]
        return t


def kind(t):
    """'union', a primitive name, or the complex type's name."""
    if isinstance(t, list):
        return "union"
    if isinstance(t, str):
        return t
    return t["type"]


def ident(s, t):
    """What identifies a union branch: a named type's full name, else its
    kind."""
    t = s.deref(t)
    if isinstance(t, dict) and t["type"] in ("record", "enum", "fixed"):
        return t["name"]
    return kind(t)


def logical(t):
    return t.get("logicalType") if isinstance(t, dict) else None


# ---- 1. the rules, structurally ------------------------------------------

class Report:
    def __init__(self):
        self.errors = []
        self.warnings = []


def compare(old, new, ot, nt, path, rep, seen):
    """Compares type ot of schema old with nt of schema new."""
    ot, nt = old.deref(ot), new.deref(nt)
    ok, nk = kind(ot), kind(nt)
    if ok != nk or logical(ot) != logical(nt):
        rep.errors.append("%s: type changed from %s to %s"
                          % (path, logical(ot) or ok, logical(nt) or nk))
        return
    if ok == "union":
        oids = [ident(old, b) for b in ot]
        nids = [ident(new, b) for b in nt]
        if nids[:len(oids)] != oids:
            rep.errors.append("%s: union branches changed: %s -> %s (add only "
                              "at the end)" % (path, oids, nids))
            return
        if len(nids) > len(oids):
            rep.warnings.append("%s: new branch(es) %s: readers of the old "
                                "version refuse these events"
                                % (path, nids[len(oids):]))
        for i, b in enumerate(ot):
            compare(old, new, b, nt[i], "%s[%s]" % (path, oids[i]), rep, seen)
        return
    if ok in ("record", "enum", "fixed"):
        if ot["name"] != nt["name"]:
            rep.errors.append("%s: %s renamed %s" % (path, ot["name"],
                                                     nt["name"]))
            return
        if ot["name"] in seen:
            return
        seen.add(ot["name"])
        path = ot["name"]
    if ok == "enum":
        osym, nsym = ot["symbols"], nt["symbols"]
        if nsym[:len(osym)] != osym:
            rep.errors.append("%s: symbols changed: %s -> %s (add only at the "
                              "end)" % (path, osym, nsym))
        elif len(nsym) > len(osym):
            rep.warnings.append("%s: new symbol(s) %s: readers of the old "
                                "version refuse events that use them"
                                % (path, nsym[len(osym):]))
    elif ok == "fixed":
        if ot["size"] != nt["size"]:
            rep.errors.append("%s: size changed" % path)
    elif ok in ("array", "map"):
        key = "items" if ok == "array" else "values"
        compare(old, new, ot[key], nt[key], path + "." + key, rep, seen)
    elif ok == "record":
        onames = [f["name"] for f in ot["fields"]]
        nfields = {f["name"]: f for f in nt["fields"]}
        nnames = [f["name"] for f in nt["fields"]]
        kept = [n for n in onames if n in nfields]
        for n in onames:
            if n not in nfields:
                rep.errors.append("%s.%s: removed or renamed" % (path, n))
        if [n for n in nnames if n in kept] != kept:
            rep.errors.append("%s: fields reordered: %s -> %s"
                              % (path, onames, nnames))
        for f in ot["fields"]:
            if f["name"] in nfields:
                compare(old, new, f["type"], nfields[f["name"]]["type"],
                        "%s.%s" % (path, f["name"]), rep, seen)
        for f in nt["fields"]:
            if f["name"] in onames:
                continue
            if "default" not in f:
                rep.errors.append("%s.%s: added without a default (readers "
                                  "cannot read older events)"
                                  % (path, f["name"]))
            else:
                check_default(new, f["type"], f["default"],
                              "%s.%s" % (path, f["name"]), rep)


def check_default(s, t, d, path, rep):
    """Record-typed defaults must list every field: implementations differ
    on a field left out (the C codec takes its default, fastavro drops it).
    (fastavro's parser has checked the default's type.)"""
    t = s.deref(t)
    if isinstance(t, list):
        check_default(s, t[0], d, path, rep)
    elif isinstance(t, dict) and t["type"] == "record":
        missing = [f["name"] for f in t["fields"] if f["name"] not in d]
        if missing:
            rep.errors.append("%s: the default leaves out %s" % (path, missing))
        for f in t["fields"]:
            if f["name"] in d:
                check_default(s, f["type"], d[f["name"]],
                              path + "." + f["name"], rep)


# ---- 2. round trips -------------------------------------------------------

def gen(s, t, mode, k, uses):
    """A value of type t: unions take null in mode "null" and their last
    branch in mode "full"; enums take symbol k; uses collects the named
    branches and symbols taken."""
    t = s.deref(t)
    if isinstance(t, list):
        nonnull = [b for b in t if b != "null"]
        b = "null" if mode == "null" and "null" in t else nonnull[-1]
        return gen_branch(s, b, mode, k, uses)
    lt = logical(t)
    if lt == "uuid":
        return str(uuid.UUID(int=k + 1))
    if lt in ("timestamp-micros", "timestamp-millis"):
        return 1795705200123456 + k
    if isinstance(t, dict) and t["type"] in PRIMITIVES:
        t = t["type"]
    if isinstance(t, str):
        return {"null": None, "boolean": True, "int": 7 + k,
                "long": 42000 + k, "float": 1.5, "double": 2.25,
                "bytes": b"\x00b", "string": "s%d \u00e9" % k}[t]
    if t["type"] == "enum":
        sym = t["symbols"][k % len(t["symbols"])]
        uses.add((t["name"], sym))
        return sym
    if t["type"] == "fixed":
        return b"\x01" * t["size"]
    if t["type"] == "array":
        return [gen(s, t["items"], mode, k + i, uses) for i in range(2)]
    if t["type"] == "map":
        return {"a": gen(s, t["values"], mode, k, uses)}
    return {f["name"]: gen(s, f["type"], mode, k, uses) for f in t["fields"]}


def gen_branch(s, b, mode, k, uses):
    v = gen(s, b, mode, k, uses)
    d = s.deref(b)
    if isinstance(d, dict) and d["type"] in ("record", "enum", "fixed"):
        uses.add((d["name"], None))
        return (d["name"], v)  # fastavro's tuple notation picks the branch
    return v


def samples(s):
    """(label, datum, uses) for every payload branch of envelope schema s,
    with optional fields null and set and every enum symbol."""
    top = s.parsed
    payload = next(f for f in top["fields"] if f["name"] == "payload")
    n_sym = max([len(d["symbols"]) for d in s.named.values()
                 if d["type"] == "enum"] or [1])
    out = []
    for b in payload["type"]:
        for mode in ("null", "full"):
            for k in range(n_sym):
                uses = set()
                datum = {}
                for f in top["fields"]:
                    if f is payload:
                        datum[f["name"]] = gen_branch(s, b, mode, k, uses)
                    else:
                        datum[f["name"]] = gen(s, f["type"], mode, k, uses)
                out.append(("%s/%s/%d" % (ident(s, b), mode, k), datum, uses))
    return out


def norm(v):
    """fastavro's values in plain form: union tuples dropped, logical types
    in their wire form, bytes as code points 0-255 (as JSON defaults are)."""
    if isinstance(v, tuple) and len(v) == 2 and isinstance(v[0], str):
        return norm(v[1])
    if isinstance(v, uuid.UUID):
        return str(v)
    if isinstance(v, datetime.datetime):
        return (v - EPOCH) // datetime.timedelta(microseconds=1)
    if isinstance(v, bytes):
        return v.decode("latin-1")
    if isinstance(v, dict):
        return {k: norm(x) for k, x in v.items()}
    if isinstance(v, list):
        return [norm(x) for x in v]
    return v


def plain_branch(s, union, v):
    """The branch of a union that plain value v (not a tuple) was written
    as: null for None, else the first non-null branch."""
    if v is None:
        return "null"
    return next(b for b in union if b != "null")


def check_value(rs, ws, rt, wt, y, x, path, errs):
    """y was read with reader type rt from x written with writer type wt."""
    rt, wt = rs.deref(rt), ws.deref(wt)
    if isinstance(wt, list):
        if isinstance(x, tuple):
            wt, x = ws.named[x[0]], x[1]
        else:
            wt = ws.deref(plain_branch(ws, wt, x))
    if isinstance(rt, list):
        want = ident(ws, wt)
        match = [b for b in rt if ident(rs, b) == want]
        if not match:
            errs.append("%s: no reader branch for %s" % (path, want))
            return
        rt = rs.deref(match[0])
        if isinstance(y, tuple):
            y = y[1]
    if isinstance(rt, dict) and rt["type"] == "record":
        wfields = {f["name"]: f for f in wt["fields"]}
        if not isinstance(y, dict):
            errs.append("%s: not a record: %r" % (path, y))
            return
        for f in rt["fields"]:
            p = "%s.%s" % (path, f["name"])
            if f["name"] in wfields:
                check_value(rs, ws, f["type"], wfields[f["name"]]["type"],
                            y.get(f["name"]), x[f["name"]], p, errs)
            elif norm(y.get(f["name"])) != f.get("default"):
                errs.append("%s: %r, not the default %r"
                            % (p, norm(y.get(f["name"])), f.get("default")))
        return
    if isinstance(rt, dict) and rt["type"] == "array":
        if len(y) != len(x):
            errs.append("%s: %d items, not %d" % (path, len(y), len(x)))
            return
        for i, (a, b) in enumerate(zip(y, x)):
            check_value(rs, ws, rt["items"], wt["items"], a, b,
                        "%s[%d]" % (path, i), errs)
        return
    if isinstance(rt, dict) and rt["type"] == "map":
        if set(y) != set(x):
            errs.append("%s: keys %s, not %s" % (path, sorted(y), sorted(x)))
            return
        for key in x:
            check_value(rs, ws, rt["values"], wt["values"], y[key], x[key],
                        "%s[%s]" % (path, key), errs)
        return
    if norm(y) != norm(x):
        errs.append("%s: read %r, wrote %r" % (path, norm(y), norm(x)))


def known_to(s, uses):
    """True when every named branch and symbol in uses exists in s."""
    for name, sym in uses:
        d = s.named.get(name)
        if d is None or (sym is not None and sym not in d["symbols"]):
            return False
    return True


def round_trip(writer, reader, rep, direction):
    """Every sample of writer, read with reader."""
    n_ok = n_refused = 0
    for label, datum, uses in samples(writer):
        buf = io.BytesIO()
        where = "%s %s (%s -> %s)" % (direction, label, writer.label,
                                      reader.label)
        try:
            fastavro.schemaless_writer(buf, writer.parsed, datum)
        except Exception as e:  # a bug of this script, not of the schemas
            rep.errors.append("%s: sample not writable: %s" % (where, e))
            continue
        buf.seek(0)
        expect_refusal = not known_to(reader, uses)
        try:
            y = fastavro.schemaless_reader(buf, writer.parsed, reader.parsed,
                                           return_record_name=True)
        except Exception as e:
            if expect_refusal:
                n_refused += 1
            else:
                rep.errors.append("%s: unreadable: %s" % (where, e))
            continue
        if expect_refusal:
            rep.errors.append("%s: read although the reader lacks %s"
                              % (where, sorted(str(u) for u in uses)))
            continue
        errs = []
        check_value(reader, writer, reader.parsed, writer.parsed, y, datum,
                    "Envelope", errs)
        rep.errors.extend("%s: %s" % (where, e) for e in errs)
        n_ok += 1
    return n_ok, n_refused


def check_pair(old, new):
    """All checks of new (the later version) against old."""
    rep = Report()
    compare(old, new, old.parsed, new.parsed, "Envelope", rep, set())
    if not rep.errors:  # round trips only make sense between sane schemas
        ok_b, ref_b = round_trip(old, new, rep, "backward")
        ok_f, ref_f = round_trip(new, old, rep, "forward")
        rep.summary = ("%d samples read backward, %d forward, %d refused as "
                       "documented" % (ok_b, ok_f, ref_b + ref_f))
    else:
        rep.summary = "structural break"
    return rep


# ---- 3. docs --------------------------------------------------------------

def check_docs(schemas, docs_path):
    try:
        with open(docs_path, encoding="utf-8") as f:
            text = f.read().lower()
    except OSError as e:
        return ["cannot read %s: %s" % (docs_path, e)]
    return ["%s: fingerprint 0x%016x is not in %s" % (s.label, s.fingerprint,
                                                       docs_path)
            for s in schemas if "0x%016x" % s.fingerprint not in text]


# ---- self-test --------------------------------------------------------------

def variants(raw):
    """(name, expected, schema JSON): changes to the current schema and
    whether the checker must accept them ("ok"), warn ("warn") or refuse
    them ("break")."""
    def fields(d, name=None):
        if name is None:
            return d["fields"]
        return next(r for r in payload(d) if r["name"] == name)["fields"]

    def payload(d):
        return next(f for f in d["fields"] if f["name"] == "payload")["type"]

    def movement(d):
        return next(f for f in fields(d, "StockMoved")
                    if f["name"] == "movement")["type"]

    out = []

    def v(name, expected, change):
        d = copy.deepcopy(raw)
        change(d)
        out.append((name, expected, d))

    # test_* names cannot collide with fields of a real version
    note = {"name": "test_note", "type": ["null", "string"], "default": None}
    v("optional field added", "ok",
      lambda d: (fields(d).append(dict(note)),
                 fields(d, "StockMoved").append(dict(note))))
    v("field with a record default added", "ok",
      lambda d: fields(d, "StoreClosed").append(
          {"name": "test_dims", "default": {"w": 1, "h": 2},
           "type": {"type": "record", "name": "TestDims", "fields": [
               {"name": "w", "type": "int"}, {"name": "h", "type": "int"}]}}))
    v("record default leaving a field out", "break",
      lambda d: fields(d, "StoreClosed").append(
          {"name": "test_dims", "default": {"w": 1},
           "type": {"type": "record", "name": "TestDims", "fields": [
               {"name": "w", "type": "int"},
               {"name": "h", "type": "int", "default": 2}]}}))
    v("field removed", "break",
      lambda d: fields(d).remove(next(f for f in fields(d)
                                      if f["name"] == "actor")))
    v("field added without a default", "break",
      lambda d: fields(d, "StoreOpened").append({"name": "test_x",
                                                 "type": "string"}))
    v("field retyped", "break",
      lambda d: next(f for f in fields(d)
                     if f["name"] == "stream_version").update(type="string"))
    v("fields reordered", "break",
      lambda d: d.update(fields=[fields(d)[1], fields(d)[0]] + fields(d)[2:]))
    v("record renamed", "break",
      lambda d: next(r for r in payload(d)
                     if r["name"] == "StoreClosed").update(name="TestShut"))
    v("enum reordered", "break",
      lambda d: movement(d).update(symbols=list(reversed(
          movement(d)["symbols"]))))
    v("symbol appended", "warn",
      lambda d: movement(d)["symbols"].append("test_loss"))
    added = {"type": "record", "name": "TestNoteAdded",
             "fields": [{"name": "text", "type": "string"}]}
    v("event type appended", "warn",
      lambda d: payload(d).append(copy.deepcopy(added)))
    v("event type inserted first", "break",
      lambda d: payload(d).insert(0, copy.deepcopy(added)))
    return out


def self_test(current, strict):
    failures = []
    for name, expected, raw in variants(current.raw):
        try:
            new = Schema(raw, "variant")
        except Exception as e:
            failures.append("self-test %s: variant does not parse: %s"
                            % (name, e))
            continue
        rep = check_pair(current, new)
        got = ("break" if rep.errors else "warn" if rep.warnings else "ok")
        if got != expected:
            failures.append("self-test %s: %s expected, got %s: %s"
                            % (name, expected, got,
                               (rep.errors + rep.warnings)[:3]))
        else:
            print("self-test: %-36s %s" % (name, got))
        if expected == "break" and name in ROUND_TRIP_BREAKS:
            # the round trips alone must catch it too
            rt = Report()
            round_trip(current, new, rt, "backward")
            round_trip(new, current, rt, "forward")
            if not rt.errors:
                failures.append("self-test %s: the round trips missed it"
                                % name)
            else:
                print("self-test: %-36s round trips fail too" % name)
    return failures


# Breaks that Avro resolution itself detects. The others are rules of ours
# (Avro resolves reordered fields and symbols by name) or refusals that
# Avro documents (a renamed record is an unknown branch to the reader).
ROUND_TRIP_BREAKS = {"field added without a default", "field retyped"}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--strict", action="store_true",
                    help="an appended branch or symbol is an error")
    ap.add_argument("--no-self-test", action="store_true")
    ap.add_argument("--schemas", default=os.path.join(ROOT, "schemas"))
    ap.add_argument("--docs", default=os.path.join(ROOT, "docs", "events.md"))
    args = ap.parse_args()

    def load(path):
        with open(path, encoding="utf-8") as f:
            return Schema(json.load(f), os.path.basename(path))

    try:
        current = load(os.path.join(args.schemas, "envelope.avsc"))
        history = []
        for path in glob.glob(os.path.join(args.schemas, "envelope*.avsc")):
            base = os.path.basename(path)
            if base == "envelope.avsc":
                continue
            m = re.fullmatch(r"envelope_v([0-9]+)\.avsc", base)
            if not m:
                print("%s: name earlier versions envelope_v<N>.avsc"
                      % path, file=sys.stderr)
                return 1
            history.append((int(m.group(1)), load(path)))
    except (OSError, ValueError, fastavro.schema.SchemaParseException) as e:
        print("check_schema_compat: %s" % e, file=sys.stderr)
        return 2
    history = [s for _, s in sorted(history, key=lambda h: h[0])]

    failures = check_docs([current] + history, args.docs)
    fps = {}
    for s in history + [current]:
        if s.fingerprint in fps:
            failures.append("%s and %s are the same version (fingerprint "
                            "0x%016x)" % (fps[s.fingerprint], s.label,
                                          s.fingerprint))
        fps[s.fingerprint] = s.label
    pairs = [(old, current) for old in history]
    if not history:
        print("no earlier versions in %s: checking %s against itself"
              % (args.schemas, current.label))
        pairs = [(current, current)]
    for old, new in pairs:
        rep = check_pair(old, new)
        for w in rep.warnings:
            print("warning: %s -> %s: %s" % (old.label, new.label, w))
        if args.strict:
            rep.errors.extend(rep.warnings)
        failures.extend("%s -> %s: %s" % (old.label, new.label, e)
                        for e in rep.errors)
        print("%s -> %s: %s, %s" % (old.label, new.label,
                                    "BROKEN" if rep.errors else "compatible",
                                    rep.summary))
    if not args.no_self_test:
        failures.extend(self_test(current, args.strict))
    for f in failures:
        print("check_schema_compat: %s" % f, file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
