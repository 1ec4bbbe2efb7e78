#!/usr/bin/env python3
"""Decode stockflow events with fastavro, a non-C Avro implementation.

Reads Avro single-object-encoded events (0xC3 0x01, 8-byte little-endian
CRC-64-AVRO fingerprint, binary datum) and prints each as one JSON object per
line: the envelope fields, with the payload rendered as
{"type": "<record name>", ...fields}. The integration tests use it to prove
that what the C services write is readable by a third-party implementation.

The writer schema of each event is picked by its fingerprint among all
schemas/envelope*.avsc (the current version and every published earlier one,
envelope_v<N>.avsc), and the event is resolved to the reader schema (by
default the current schemas/envelope.avsc), as a consumer would: fields the
reader lacks are dropped, fields the writer lacked take their defaults.

Usage:
  avro_decode.py [--schema PATH ...] [--reader PATH] [--hex] [FILE ...]

--schema (repeatable) replaces the known writer schemas; --reader sets the
reader schema (it need not be a known writer). FILE is a binary file holding
one or more concatenated events ('-' or no FILE: stdin). With --hex, each
non-empty input line is one event in hexadecimal. Exit status: 0 when every
event decoded, 1 on the first bad one (reason on stderr), 2 on bad schemas.
"""
import argparse
import datetime
import glob
import io
import json
import os
import sys
import uuid

import fastavro
import fastavro.schema

MAGIC = b"\xc3\x01"
EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
HERE = os.path.dirname(os.path.abspath(__file__))
SCHEMA_DIR = os.path.normpath(os.path.join(HERE, "..", "..", "schemas"))
DEFAULT_READER = os.path.join(SCHEMA_DIR, "envelope.avsc")


def fingerprint(raw):
    """The 8 wire bytes: CRC-64-AVRO of the Parsing Canonical Form,
    little-endian (fastavro prints them in that order)."""
    canon = fastavro.schema.to_parsing_canonical_form(raw)
    return bytes.fromhex(fastavro.schema.fingerprint(canon, "CRC-64-AVRO"))


def load_schema(path):
    """(parsed schema, fingerprint) of the schema file at path."""
    with open(path, "rb") as f:
        raw = json.load(f)
    return fastavro.parse_schema(raw), fingerprint(raw)


def envelope_paths(schema_dir=SCHEMA_DIR):
    """schemas/envelope.avsc and every schemas/envelope*.avsc version."""
    return sorted(glob.glob(os.path.join(schema_dir, "envelope*.avsc")))


def load_writers(paths):
    """{fingerprint: (path, parsed schema)} of the schema files."""
    writers = {}
    for path in paths:
        schema, fp = load_schema(path)
        if fp in writers and writers[fp][0] != path:
            # the same canonical form twice: harmless, but say so
            print("avro_decode: %s and %s have one fingerprint %s"
                  % (writers[fp][0], path, fp.hex()), file=sys.stderr)
        writers.setdefault(fp, (path, schema))
    return writers


def render(value):
    """Turn fastavro's values into plain JSON: (record name, record) union
    tuples become objects with "type"; logical types go back to their wire
    form (uuid: string, timestamp-micros: integer microseconds); bytes become
    a string of code points 0-255, as in Avro's JSON encoding."""
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, bytes):  # as Avro's JSON encoding: code points 0-255
        return value.decode("latin-1")
    if isinstance(value, datetime.datetime):
        return (value - EPOCH) // datetime.timedelta(microseconds=1)
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], str):
        name, rec = value
        out = {"type": name.rsplit(".", 1)[-1]}
        out.update({k: render(v) for k, v in rec.items()})
        return out
    if isinstance(value, dict):
        return {k: render(v) for k, v in value.items()}
    if isinstance(value, list):
        return [render(v) for v in value]
    return value


def decode_stream(stream, writers, reader, reader_fp):
    """Yield every event of a binary stream of concatenated events, each
    read with the writer schema its fingerprint names and resolved to
    reader."""
    while True:
        head = stream.read(10)
        if not head:
            return
        if len(head) < 10:
            raise ValueError("truncated header")
        if head[:2] != MAGIC:
            raise ValueError("bad marker %s" % head[:2].hex())
        fp = head[2:]
        if fp not in writers:
            raise ValueError("unknown fingerprint %s (known: %s)"
                             % (fp.hex(), ", ".join(
                                 "%s %s" % (k.hex(), os.path.basename(p))
                                 for k, (p, _) in sorted(writers.items()))))
        writer = writers[fp][1]
        rec = fastavro.schemaless_reader(
            stream, writer, None if fp == reader_fp else reader,
            return_record_name=True)
        yield render(rec)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--schema", action="append", metavar="PATH",
                    help="a writer schema (repeatable; default: every "
                    "schemas/envelope*.avsc)")
    ap.add_argument("--reader", default=DEFAULT_READER, metavar="PATH",
                    help="the schema events are resolved to (default: "
                    "schemas/envelope.avsc)")
    ap.add_argument("--hex", action="store_true",
                    help="inputs hold one hex-encoded event per line")
    ap.add_argument("files", nargs="*", default=["-"])
    args = ap.parse_args()
    try:
        writers = load_writers(args.schema or envelope_paths())
        reader, reader_fp = load_schema(args.reader)
    except (ValueError, OSError, fastavro.schema.SchemaParseException) as e:
        print("avro_decode: bad schema: %s" % e, file=sys.stderr)
        return 2
    if not writers:
        print("avro_decode: no schemas", file=sys.stderr)
        return 2
    try:
        for name in args.files:
            f = sys.stdin.buffer if name == "-" else open(name, "rb")
            with f:
                data = f.read()
            if args.hex:
                chunks = [bytes.fromhex(l.strip().decode())
                          for l in data.splitlines() if l.strip()]
            else:
                chunks = [data]
            for chunk in chunks:
                stream = io.BytesIO(chunk)
                for ev in decode_stream(stream, writers, reader, reader_fp):
                    print(json.dumps(ev, ensure_ascii=False))
                if args.hex and stream.tell() != len(chunk):
                    raise ValueError("trailing bytes after event")
    except (ValueError, EOFError, IndexError, UnicodeDecodeError,
            OSError, fastavro.read.SchemaResolutionError) as e:
        print("avro_decode: %s" % e, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
