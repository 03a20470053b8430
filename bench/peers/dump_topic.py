"""Reads a topic from the beginning into JSON Lines (each value, with the message key added as
"_key" when the value is an object without it). Stops once EXPECTED messages are read and then
nothing more came for 2 s, or when nothing came for IDLE s (tansu's end offsets are not to be
trusted, so the end is found by waiting).

Usage: dump_topic.py BOOTSTRAP TOPIC OUT.jsonl EXPECTED [IDLE]     (prints the number read)
"""
import json, sys, time, uuid

from confluent_kafka import Consumer


def main(bootstrap, topic, out_path, expected, idle=15.0):
    expected, idle = int(expected), float(idle)
    c = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": f"bench-dump-{uuid.uuid4()}",
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
    })
    c.subscribe([topic])
    n, last = 0, time.monotonic()
    with open(out_path, "w") as out:
        while True:
            msgs = c.consume(10000, 0.5)
            now = time.monotonic()
            if not msgs:
                if now - last > (2.0 if n >= expected else idle):
                    break
                continue
            last = now
            for m in msgs:
                if m.error() or m.value() is None:
                    continue
                v = json.loads(m.value())
                if isinstance(v, dict) and "_key" not in v and m.key() is not None:
                    v["_key"] = m.key().decode()
                out.write(json.dumps(v) + "\n")
                n += 1
    c.close()
    print(n)


if __name__ == "__main__":
    main(*sys.argv[1:])
