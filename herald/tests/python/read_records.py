"""Reads a topic from its start with Confluent's Python client and AvroDeserializer (the
writer's schema fetched from the registry by the record's id) and prints each value as a
JSON line, timestamps as milliseconds. Stops after COUNT records, or fails after 60 s.

    python read_records.py BOOTSTRAP REGISTRY_URL TOPIC COUNT
"""

import datetime
import json
import sys
import time
import uuid

from confluent_kafka import DeserializingConsumer
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer

bootstrap, registry_url, topic, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
consumer = DeserializingConsumer({
    "bootstrap.servers": bootstrap,
    "group.id": f"python-reader-{uuid.uuid4()}",
    "auto.offset.reset": "earliest",
    "enable.auto.commit": False,
    "value.deserializer": AvroDeserializer(SchemaRegistryClient({"url": registry_url})),
})
consumer.subscribe([topic])


def plain(value):
    if isinstance(value, datetime.datetime):
        return int(value.timestamp() * 1000)
    raise TypeError(f"cannot print {value!r}")


read = 0
deadline = time.time() + 60
while read < count:
    if time.time() > deadline:
        raise SystemExit(f"read {read} of {count} records of {topic} in 60 s")
    message = consumer.poll(1.0)
    if message is None:
        continue
    if message.error():
        raise SystemExit(str(message.error()))
    print(json.dumps(message.value(), default=plain), flush=True)
    read += 1
consumer.close()
