#!/usr/bin/env python3
"""Reads the closed Parquet files of a file sink directory with pyarrow (a foreign reader) and
prints one JSON document: per file (sorted by name), its name, its Arrow schema as pyarrow names
the types, and its rows. Timestamps are written as ISO text with milliseconds, decimals as
text (exact), dates as ISO dates; lists and structs as JSON arrays and objects."""
import datetime
import decimal
import json
import os
import sys

import pyarrow.parquet as pq


def plain(v):
    if isinstance(v, datetime.datetime):
        return v.isoformat(timespec="milliseconds")
    if isinstance(v, datetime.date):
        return v.isoformat()
    if isinstance(v, decimal.Decimal):
        return str(v)
    if isinstance(v, list):
        return [plain(x) for x in v]
    if isinstance(v, dict):
        return {k: plain(x) for k, x in v.items()}
    return v


def main(directory):
    files = []
    for name in sorted(os.listdir(directory)):
        if not name.endswith(".parquet"):
            continue
        table = pq.read_table(os.path.join(directory, name))
        files.append(
            {
                "name": name,
                "schema": [[f.name, str(f.type)] for f in table.schema],
                "rows": [{k: plain(v) for k, v in row.items()} for row in table.to_pylist()],
            }
        )
    json.dump({"files": files}, sys.stdout)


if __name__ == "__main__":
    main(sys.argv[1])
