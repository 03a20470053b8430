"""Creates topics with an explicit retention.ms (-1), before anything writes to them.
Quix Streams derives its changelog topics' settings from its input topics' retention.ms, which
tansu reports only when it was set at creation. Denormalized needs its topics to exist; so do
Kafka Streams' and Flink's output topics on a broker that does not create topics on use.
Usage: create_topics.py BOOTSTRAP [--partitions N] TOPIC...      (default 1 partition)
"""
import sys

from confluent_kafka.admin import AdminClient, NewTopic

args = sys.argv[2:]
partitions = 1
if args and args[0] == "--partitions":
    partitions, args = int(args[1]), args[2:]
admin = AdminClient({"bootstrap.servers": sys.argv[1]})
for topic, f in admin.create_topics([NewTopic(t, partitions, 1, config={"retention.ms": "-1"}) for t in args]).items():
    try:
        f.result()
    except Exception as e:  # already there
        if "TOPIC_ALREADY_EXISTS" not in str(e):
            raise
