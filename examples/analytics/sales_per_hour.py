#!/usr/bin/env python3
"""Sales per store per hour, computed from stockflow's stock topic.

A stand-alone consumer of the public event log (docs/events.md): it reads
inventory.stock from the beginning to its current end (read committed) and
sums, per store and UTC hour of the event's occurred_at, the units sold
(StockMoved with movement "sale", and the lines of OrderFulfilled), the
units returned (movement "return") and the net. Events come in either wire
format:

  * Confluent (magic byte 0, 4-byte schema id): decoded by confluent-kafka's
    AvroDeserializer with the schema registry client (--registry-url);
  * single-object encoding (0xC3 0x01, 8-byte fingerprint): decoded with
    fastavro against the schemas of the repository's schemas/ folder (or
    --schemas DIR), the writer picked by its fingerprint.

Usage:
  sales_per_hour.py [--brokers HOST:PORT] [--topic NAME] [--registry-url URL]
                    [--schemas DIR] [--store ID ...] [--json]

Prints a table (or, with --json, one JSON object: {"rows": [{store_id, hour,
sold, returned, net}], "events": N, "skipped": N}). Exit status 0, or 1 when
the topic cannot be read.
"""
import argparse
import collections
import datetime
import glob
import io
import json
import os
import sys

import fastavro
import fastavro.schema
from confluent_kafka import Consumer, KafkaError, TopicPartition
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_SCHEMAS = os.path.normpath(os.path.join(HERE, "..", "..", "schemas"))
SINGLE_OBJECT = b"\xc3\x01"


def fingerprint(raw):
    """The 8 wire bytes of single-object encoding for a schema."""
    canon = fastavro.schema.to_parsing_canonical_form(raw)
    return bytes.fromhex(fastavro.schema.fingerprint(canon, "CRC-64-AVRO"))


class Decoder:
    """Decodes one message value in either wire format into a dict."""

    def __init__(self, schemas_dir, registry_url):
        self.writers = {}
        for path in sorted(glob.glob(os.path.join(schemas_dir,
                                                  "envelope*.avsc"))):
            with open(path, "rb") as f:
                raw = json.load(f)
            self.writers[fingerprint(raw)] = fastavro.parse_schema(raw)
        with open(os.path.join(schemas_dir, "envelope.avsc"), "rb") as f:
            self.reader = fastavro.parse_schema(json.load(f))
        self.avro = None
        if registry_url:
            client = SchemaRegistryClient({"url": registry_url})
            self.avro = AvroDeserializer(client)

    def decode(self, topic, value):
        if value[:1] == b"\x00":
            if self.avro is None:
                raise ValueError("Confluent wire format but no --registry-url")
            return self.avro(value, SerializationContext(topic,
                                                         MessageField.VALUE))
        if value[:2] == SINGLE_OBJECT and value[2:10] in self.writers:
            return fastavro.schemaless_reader(
                io.BytesIO(value[10:]), self.writers[value[2:10]],
                self.reader)
        raise ValueError("not a stockflow event")


def hour_of(occurred_at):
    """The UTC hour of an occurred_at (a datetime, or microseconds)."""
    if not isinstance(occurred_at, datetime.datetime):
        occurred_at = datetime.datetime.fromtimestamp(
            occurred_at / 1e6, tz=datetime.timezone.utc)
    return occurred_at.astimezone(datetime.timezone.utc).strftime(
        "%Y-%m-%dT%H:00Z")


def read_all(brokers, topic, decoder, timeout_s=60.0):
    """Yields every committed event of topic, up to its end at the start."""
    c = Consumer({"bootstrap.servers": brokers,
                  "group.id": "stockflow-analytics-example",
                  "enable.auto.commit": False,
                  "isolation.level": "read_committed",
                  "enable.partition.eof": True})
    try:
        meta = c.list_topics(topic, timeout=10)
        parts = meta.topics[topic].partitions
        if meta.topics[topic].error is not None or not parts:
            raise RuntimeError(f"topic {topic}: "
                               f"{meta.topics[topic].error or 'no partitions'}")
        todo = set()
        tps = []
        for p in parts:
            low, high = c.get_watermark_offsets(TopicPartition(topic, p),
                                                timeout=10)
            if high > low:
                todo.add(p)
            tps.append(TopicPartition(topic, p, low))
        c.assign(tps)
        deadline = datetime.datetime.now().timestamp() + timeout_s
        while todo:
            if datetime.datetime.now().timestamp() > deadline:
                raise RuntimeError(f"timed out reading {topic}")
            m = c.poll(1.0)
            if m is None:
                continue
            if m.error():
                if m.error().code() == KafkaError._PARTITION_EOF:
                    todo.discard(m.partition())
                    continue
                raise RuntimeError(str(m.error()))
            try:
                yield decoder.decode(topic, m.value())
            except Exception as e:  # noqa: BLE001 (a foreign message)
                print(f"skipped {topic}[{m.partition()}]@{m.offset()}: {e}",
                      file=sys.stderr)
                yield None
    finally:
        c.close()


def sales(events, stores=None):
    """{(store_id, hour): [sold, returned]} of the events."""
    out = collections.defaultdict(lambda: [0, 0])
    for ev in events:
        store = str(ev["store_id"])  # a uuid.UUID or a str, by decoder
        if stores and store not in stores:
            continue
        p = ev["payload"]
        key = (store, hour_of(ev["occurred_at"]))
        if ev["event_type"] == "StockMoved" and p["movement"] == "sale":
            out[key][0] += p["quantity"]
        elif ev["event_type"] == "StockMoved" and p["movement"] == "return":
            out[key][1] += p["quantity"]
        elif ev["event_type"] == "OrderFulfilled":
            out[key][0] += sum(line["quantity"] for line in p["lines"])
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--brokers", default=os.environ.get(
        "STOCKFLOW_KAFKA_BROKERS", "127.0.0.1:9092"))
    ap.add_argument("--topic", default=os.environ.get(
        "STOCKFLOW_TOPIC_STOCK", "inventory.stock"))
    ap.add_argument("--registry-url", default=os.environ.get(
        "STOCKFLOW_SCHEMA_REGISTRY_URL", ""),
        help="the registry's Confluent-compatible API, e.g. "
        "http://127.0.0.1:8090/apis/ccompat/v7")
    ap.add_argument("--schemas", default=DEFAULT_SCHEMAS,
                    help="folder of envelope*.avsc (single-object events)")
    ap.add_argument("--store", action="append", help="only these stores")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    decoder = Decoder(args.schemas, args.registry_url)
    n = skipped = 0
    evs = []
    try:
        for ev in read_all(args.brokers, args.topic, decoder):
            if ev is None:
                skipped += 1
            else:
                n += 1
                evs.append(ev)
    except RuntimeError as e:
        print(f"sales_per_hour: {e}", file=sys.stderr)
        return 1
    table = sales(evs, set(args.store or ()))
    rows = [{"store_id": s, "hour": h, "sold": v[0], "returned": v[1],
             "net": v[0] - v[1]} for (s, h), v in sorted(table.items())]
    if args.json:
        print(json.dumps({"rows": rows, "events": n, "skipped": skipped}))
    else:
        print(f"{'store':36}  {'hour (UTC)':17}  {'sold':>6}  "
              f"{'returned':>8}  {'net':>6}")
        for r in rows:
            print(f"{r['store_id']:36}  {r['hour']:17}  {r['sold']:6}  "
                  f"{r['returned']:8}  {r['net']:6}")
        print(f"({n} events read, {skipped} skipped)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
