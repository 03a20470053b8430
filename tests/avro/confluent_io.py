"""Foreign Kafka client for the end-to-end Avro test: confluent-kafka (librdkafka) with its schema
registry client, AvroSerializer and AvroDeserializer (fastavro underneath), not streamctl.

produce BOOTSTRAP REGISTRY_URL
    stdin {"records": [{"topic": T, "key": "text" | null, "schema": {...} | null,
                        "value": {...} | null, "raw_hex": "..." (instead of schema/value),
                        "headers": {"name": "text" | null | {"hex": "..."}} (optional)}]}
    Values with a schema are serialized by AvroSerializer (which registers the schema under
    <topic>-value, as producers do by default); "raw_hex" values are produced as given.
    stdout: one line per record, the schema id in its frame ("raw" / "null" otherwise).
consume BOOTSTRAP REGISTRY_URL TOPIC [avro-keys | json-values | raw-values]
    Reads the topic from the beginning to its end; stdout one JSON line per record:
    {"key": text (with avro-keys: what AvroDeserializer decodes), "schema_id": N,
     "value": what AvroDeserializer decodes (null for a tombstone; with json-values the value
     parsed as JSON, with raw-values its bytes in hex, schema_id null in both),
     "headers": [[name, text | null], ...]}. raw-values never asks the registry.
latest REGISTRY_URL SUBJECT
    stdout: the id of the subject's latest version.
"""
import json
import struct
import sys
import uuid

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext


def header_bytes(v):
    """A header value: text, null, or {"hex": "..."} for bytes that are not text."""
    if v is None:
        return None
    return bytes.fromhex(v["hex"]) if isinstance(v, dict) else v.encode()


def produce(bootstrap, registry_url):
    spec = json.load(sys.stdin)
    registry = SchemaRegistryClient({"url": registry_url})
    serializers = {}
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    for r in spec["records"]:
        key = r.get("key")
        key = key.encode() if key is not None else None
        if "raw_hex" in r:
            value, shown = bytes.fromhex(r["raw_hex"]), "raw"
        elif r.get("value") is None:
            value, shown = None, "null"
        else:
            text = json.dumps(r["schema"], sort_keys=True)
            if text not in serializers:
                serializers[text] = AvroSerializer(registry, text)
            value = serializers[text](r["value"], SerializationContext(r["topic"], MessageField.VALUE))
            shown = str(struct.unpack(">bI", value[:5])[1])
        headers = [(k, header_bytes(v)) for k, v in (r.get("headers") or {}).items()]
        producer.produce(r["topic"], value=value, key=key, headers=headers or None)
        print(shown)
    if producer.flush(30) != 0:
        sys.exit("records left unsent after 30 s")


def consume(bootstrap, registry_url, topic, keys="text"):
    registry = SchemaRegistryClient({"url": registry_url})
    deserializer = AvroDeserializer(registry)
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"check-{uuid.uuid4()}",
                         "enable.auto.commit": False, "enable.partition.eof": True,
                         "auto.offset.reset": "earliest", "isolation.level": "read_committed"})
    partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
    # Partitions whose end is reached.
    done = set()
    while len(done) < len(partitions):
        msg = consumer.poll(10)
        if msg is None:
            sys.exit(f"no record and no end of {topic} within 10 s")
        if msg.error():
            if msg.error().code() == KafkaError._PARTITION_EOF:
                done.add(msg.partition())
                continue
            sys.exit(f"consume {topic}: {msg.error()}")
        raw = msg.value()
        value = None
        schema_id = None
        if raw is not None and keys == "json-values":
            value = json.loads(raw)
        elif raw is not None and keys == "raw-values":
            value = raw.hex()
        elif raw is not None:
            schema_id = struct.unpack(">bI", raw[:5])[1]
            value = deserializer(raw, SerializationContext(topic, MessageField.VALUE))
        key = msg.key()
        if key is not None and keys == "avro-keys":
            key = deserializer(key, SerializationContext(topic, MessageField.KEY))
        elif key is not None:
            key = key.decode()
        headers = [[k, None if v is None else v.decode(errors="replace")] for k, v in (msg.headers() or [])]
        print(json.dumps({"key": key, "schema_id": schema_id, "value": value, "headers": headers}, sort_keys=True))
    consumer.close()


def latest(registry_url, subject):
    print(SchemaRegistryClient({"url": registry_url}).get_latest_version(subject).schema_id)


if __name__ == "__main__":
    {"produce": produce, "consume": consume, "latest": latest}[sys.argv[1]](*sys.argv[2:])
