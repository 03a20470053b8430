"""Creates topics (1 partition) with an explicit retention.ms, before anything writes to them.
Quix Streams derives its changelog topics' settings from its input topics' retention.ms, which
tansu reports only when it was set at creation. Denormalized needs its topics to exist.
Usage: create_topics.py BOOTSTRAP TOPIC...
"""
import sys

from confluent_kafka.admin import AdminClient, NewTopic

admin = AdminClient({"bootstrap.servers": sys.argv[1]})
for topic, f in admin.create_topics([NewTopic(t, 1, 1, config={"retention.ms": "-1"}) for t in sys.argv[2:]]).items():
    try:
        f.result()
    except Exception as e:  # already there
        if "TOPIC_ALREADY_EXISTS" not in str(e):
            raise
