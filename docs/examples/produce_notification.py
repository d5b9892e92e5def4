"""Sends a notification through Herald from Python: one NotificationRequest produced to
herald.requests with Confluent's client, Avro in the Confluent wire format. The schema is the
one Herald registered under herald.requests-value (its latest version): this producer
registers nothing.

    pip install 'confluent-kafka[avro,schemaregistry]'
    KAFKA_BOOTSTRAP_SERVERS=localhost:9092 SCHEMA_REGISTRY_URL=http://localhost:8081 \\
        python produce_notification.py
"""

import os
import time
import uuid

from confluent_kafka import Producer
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

topic = os.environ.get("HERALD_REQUESTS_TOPIC", "herald.requests")
registry = SchemaRegistryClient({"url": os.environ.get("SCHEMA_REGISTRY_URL", "http://localhost:8081")})
serialize = AvroSerializer(
    registry,
    None,  # no schema of our own: the latest one registered under herald.requests-value
    conf={"auto.register.schemas": False, "use.latest.version": True},
)
producer = Producer({
    "bootstrap.servers": os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "localhost:9092"),
    "enable.idempotence": True,  # acks=all, no duplicate on a retried produce
})

user_id = os.environ.get("HERALD_USER_ID", "123456")
request = {
    "notification_id": str(uuid.uuid4()),
    "accepted_at": int(time.time() * 1000),
    "recipient": {"user_id": user_id},  # a user of Herald's directory; or {"email": ...}
    "category": "transactional",
    "email": {"subject": "Your receipt", "text": "Thanks for your order."},
}
producer.produce(
    topic,
    key=user_id,  # herald.requests is keyed by user id: one user's requests stay in order
    value=serialize(request, SerializationContext(topic, MessageField.VALUE)),
)
if producer.flush(30) != 0:
    raise SystemExit("the broker did not acknowledge the request")
print(request["notification_id"])
