"""The event log as a third party reads it: every message of a topic,
read committed with kcat and decoded with fastavro (tests/tools/
avro_decode.py) against schemas/ (single-object encoding) or against the
schema the registry names (Confluent wire format: magic 0, 4-byte schema
id, fetched from STOCKFLOW_SCHEMA_REGISTRY_URL), for tests that check what
the services wrote against the log itself."""

import io
import json
import os
import subprocess
import sys
import urllib.request

import fastavro

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tools"))

import avro_decode  # noqa: E402


class Message:
    """One message: partition, offset, key (str), headers (dict), event
    (the decoded envelope, as avro_decode.py renders it)."""

    def __init__(self, partition, offset, key, headers, event,
                 wire="single-object", schema_id=None):
        self.partition = partition
        self.offset = offset
        self.key = key
        self.headers = headers
        self.event = event
        self.wire = wire              # "single-object" or "confluent"
        self.schema_id = schema_id    # the registry's id (confluent)

    def __repr__(self):
        return (f"<{self.event.get('event_type')} {self.key} "
                f"p{self.partition}@{self.offset}>")


def _raw_messages(brokers, topic, timeout):
    """[(partition, offset, key bytes, value bytes, header text)] of every
    committed message of topic, in offset order per partition."""
    raw = subprocess.run(
        ["kcat", "-C", "-b", brokers, "-t", topic, "-o", "beginning", "-e",
         "-q", "-X", "isolation.level=read_committed",
         "-f", "%p|%o|%K|%k%R%s%h\n"], capture_output=True, timeout=timeout)
    assert raw.returncode == 0, f"kcat on {topic}: {raw.stderr!r}"
    data = raw.stdout
    out = []
    i = 0
    while i < len(data):
        fields = []
        for _ in range(3):
            bar = data.index(b"|", i)
            fields.append(int(data[i:bar]))
            i = bar + 1
        part, off, klen = fields
        key = data[i:i + klen] if klen > 0 else b""
        i += max(klen, 0)
        vlen = int.from_bytes(data[i:i + 4], "big", signed=True)
        i += 4
        value = data[i:i + max(vlen, 0)]
        i += max(vlen, 0)
        nl = data.index(b"\n", i)
        hdr = data[i:nl].decode("utf-8", "replace")
        i = nl + 1
        out.append((part, off, key, value, hdr))
    return out


def registry_schema(url, schema_id, cache):
    """The parsed writer schema of schema_id, fetched once from the
    registry's Confluent-compatible API at url."""
    if schema_id not in cache:
        with urllib.request.urlopen(f"{url}/schemas/ids/{schema_id}",
                                    timeout=10) as r:
            raw = json.loads(json.load(r)["schema"])
        cache[schema_id] = fastavro.parse_schema(raw)
    return cache[schema_id]


def read_topic(ctx, topic, keys=None, timeout=60):
    """[Message] of every committed message of topic (only those whose key
    is in keys, when given), in offset order per partition. Fails when a
    message does not decode."""
    writers = avro_decode.load_writers(avro_decode.envelope_paths())
    reader, reader_fp = avro_decode.load_schema(avro_decode.DEFAULT_READER)
    schema_cache = {}
    msgs = []
    for part, off, key_b, value, hdr in _raw_messages(
            ctx.env["STOCKFLOW_KAFKA_BROKERS"], topic, timeout):
        key = key_b.decode("utf-8", "replace")
        if keys is not None and key not in keys:
            continue
        heads = dict(h.split("=", 1) for h in hdr.split(",") if "=" in h)
        if value[:1] == b"\x00":  # Confluent wire format
            assert len(value) > 5, f"{topic} p{part}@{off}: short header"
            sid = int.from_bytes(value[1:5], "big")
            url = ctx.env.get("STOCKFLOW_SCHEMA_REGISTRY_URL")
            assert url, f"{topic} p{part}@{off}: schema id {sid}, no registry"
            buf = io.BytesIO(value[5:])
            rec = fastavro.schemaless_reader(
                buf, registry_schema(url, sid, schema_cache), reader,
                return_record_name=True)
            assert buf.tell() == len(value) - 5, \
                f"{topic} p{part}@{off}: bytes after the datum"
            msgs.append(Message(part, off, key, heads,
                                avro_decode.render(rec), "confluent", sid))
            continue
        evs = list(avro_decode.decode_stream(io.BytesIO(value), writers,
                                             reader, reader_fp))
        assert len(evs) == 1, \
            f"{topic} p{part}@{off}: {len(evs)} events in one message"
        msgs.append(Message(part, off, key, heads, evs[0]))
    return msgs
