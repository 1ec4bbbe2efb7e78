#!/usr/bin/env python3
"""Decode stockflow events with fastavro, a non-C Avro implementation.

Reads Avro single-object-encoded events (0xC3 0x01, 8-byte little-endian
CRC-64-AVRO fingerprint, binary datum) and prints each as one JSON object per
line: the envelope fields, with the payload rendered as
{"type": "<record name>", ...fields}. The integration tests use it to prove
that what the C services write is readable by a third-party implementation.

Usage:
  avro_decode.py [--schema PATH] [--hex] [FILE ...]

FILE is a binary file holding one or more concatenated events ('-' or no FILE:
stdin). With --hex, each non-empty input line is one event in hexadecimal.
Exit status: 0 when every event decoded, 1 on the first bad one (reason on
stderr).
"""
import argparse
import datetime
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
DEFAULT_SCHEMA = os.path.join(HERE, "..", "..", "schemas", "envelope.avsc")


def load_schema(path):
    with open(path, "rb") as f:
        raw = json.load(f)
    canon = fastavro.schema.to_parsing_canonical_form(raw)
    fp = bytes.fromhex(fastavro.schema.fingerprint(canon, "CRC-64-AVRO"))
    return fastavro.parse_schema(raw), fp


def render(value):
    """Turn fastavro's values into plain JSON: (record name, record) union
    tuples become objects with "type"; logical types go back to their wire
    form (uuid: string, timestamp-micros: integer microseconds)."""
    if isinstance(value, uuid.UUID):
        return str(value)
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


def decode_stream(stream, schema, fp):
    """Yield every event of a binary stream of concatenated events."""
    while True:
        head = stream.read(10)
        if not head:
            return
        if len(head) < 10:
            raise ValueError("truncated header")
        if head[:2] != MAGIC:
            raise ValueError("bad marker %s" % head[:2].hex())
        if head[2:] != fp:
            raise ValueError("unknown fingerprint %s (expected %s)"
                             % (head[2:].hex(), fp.hex()))
        rec = fastavro.schemaless_reader(stream, schema, None,
                                         return_record_name=True)
        yield render(rec)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--schema", default=DEFAULT_SCHEMA)
    ap.add_argument("--hex", action="store_true",
                    help="inputs hold one hex-encoded event per line")
    ap.add_argument("files", nargs="*", default=["-"])
    args = ap.parse_args()
    schema, fp = load_schema(args.schema)
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
                for ev in decode_stream(stream, schema, fp):
                    print(json.dumps(ev, ensure_ascii=False))
                if args.hex and stream.tell() != len(chunk):
                    raise ValueError("trailing bytes after event")
    except (ValueError, EOFError, IndexError, UnicodeDecodeError,
            OSError) as e:
        print("avro_decode: %s" % e, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
