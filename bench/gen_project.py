#!/usr/bin/env python3
"""Writes a synthetic streamctl project with N models (default 500) for the `validate` benchmark.

Models come in the shapes real projects have: filters and projections chained on each other,
stream-table joins, windowed and running aggregations. Deterministic for a given N.
"""
import os
import sys

def main(out: str, n: int) -> None:
    os.makedirs(os.path.join(out, "models"), exist_ok=True)
    os.makedirs(os.path.join(out, "sources"), exist_ok=True)
    with open(os.path.join(out, "streamctl_project.yml"), "w") as f:
        f.write("name: bench\nvars:\n  threshold: 10\n")
    tables = []
    for s in range(5):
        tables.append(f"""      - name: events{s}
        topic: bench.events{s}
        columns:
          - {{name: id, type: BIGINT}}
          - {{name: account_id, type: INT}}
          - {{name: amount, type: DOUBLE}}
          - {{name: kind, type: STRING}}
          - {{name: ts, type: BIGINT}}
        event_time: {{column: ts, allowed_lateness: 5 seconds}}
""")
    tables.append("""      - name: accounts
        topic: bench.accounts
        kind: table
        key: [account_id]
        columns:
          - {name: account_id, type: INT}
          - {name: owner, type: STRING}
          - {name: tier, type: STRING}
""")
    with open(os.path.join(out, "sources", "bench.yml"), "w") as f:
        f.write("version: 1\nsources:\n  - name: bench\n    tables:\n" + "".join(tables))
    stream_models = []  # models that are streams with the base columns
    for i in range(n):
        name = f"m{i:04d}"
        src = f"{{{{ source('bench', 'events{i % 5}') }}}}"
        up = f"{{{{ ref('{stream_models[-1 - (i % 7) % len(stream_models)]}') }}}}" if stream_models and i % 3 else src
        shape = i % 10
        if shape in (0, 5):
            sql = (f"SELECT account_id, COUNT(*) AS n, SUM(amount) AS total, MAX(amount) AS biggest\n"
                   f"FROM {src}\nWINDOW TUMBLING (SIZE {1 + i % 10} MINUTES)\nGROUP BY account_id\nEMIT FINAL\n")
        elif shape == 7:
            sql = f"SELECT kind, COUNT(*) AS n, AVG(amount) AS mean\nFROM {src}\nGROUP BY kind\n"
        elif shape in (2, 8):
            sql = (f"SELECT e.id, e.account_id, e.amount, e.kind, e.ts, a.owner\nFROM {up} e\n"
                   f"LEFT JOIN {{{{ source('bench', 'accounts') }}}} a ON e.account_id = a.account_id\n"
                   f"WHERE e.amount > {{{{ var('threshold') }}}}\n")
        else:
            sql = (f"SELECT id, account_id, amount * {1 + i % 4} AS amount, UPPER(kind) AS kind, ts\n"
                   f"FROM {up}\nWHERE amount > {i % 50} AND kind <> 'x{i}'\n")
            stream_models.append(name)
        with open(os.path.join(out, "models", f"{name}.sql"), "w") as f:
            f.write(sql)

if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 500)
