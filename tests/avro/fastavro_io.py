"""Foreign Avro encoder/decoder for the tests: fastavro, not streamctl.

encode: stdin {"records": [{"schema_id": N, "schema": {...}, "value": {...}}, ...]}
        stdout one hex string per record: 0x00, the id (4 bytes, big-endian), the Avro body.
decode: stdin {"schema": {...}, "values": ["hex", ...]}; stdout one JSON row per value, after
        checking the magic byte and that the frame's id is the given "schema_id".
"""
import io
import json
import struct
import sys

import fastavro


def encode(spec):
    for r in spec["records"]:
        schema = fastavro.parse_schema(r["schema"])
        body = io.BytesIO()
        fastavro.schemaless_writer(body, schema, r["value"])
        print((struct.pack(">bI", 0, r["schema_id"]) + body.getvalue()).hex())


def decode(spec):
    schema = fastavro.parse_schema(spec["schema"])
    for h in spec["values"]:
        raw = bytes.fromhex(h)
        magic, schema_id = struct.unpack(">bI", raw[:5])
        if magic != 0 or schema_id != spec["schema_id"]:
            sys.exit(f"frame {h[:10]}: magic {magic}, id {schema_id}, expected id {spec['schema_id']}")
        print(json.dumps(fastavro.schemaless_reader(io.BytesIO(raw[5:]), schema), sort_keys=True))


if __name__ == "__main__":
    {"encode": encode, "decode": decode}[sys.argv[1]](json.load(sys.stdin))
