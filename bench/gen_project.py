#!/usr/bin/env python3
"""Writes a synthetic streamctl project with N models (default 500) and T unit tests (default 0)
for the `validate` and `test` benchmarks. Usage: gen_project.py DIR [N] [T]

Models come in the shapes real projects have: filters and projections chained on each other,
stream-table joins, windowed and running aggregations. Deterministic for a given N.
"""
import json
import os
import sys

def stateless_test(name: str, i: int, up_is_source: bool, src: str, up_model: str) -> str:
    """A unit test of a filter/projection model, with the expected rows computed here."""
    factor, threshold = 1 + i % 4, i % 50
    rows, expected = [], []
    for r in range(20):
        row = {"id": r, "account_id": r % 3, "amount": float(r * 7 % 90), "kind": f"k{r % 4}", "ts": 1000 * r}
        rows.append(row)
        if row["amount"] > threshold and row["kind"] != f"x{i}":
            expected.append({"id": r, "amount": row["amount"] * factor, "kind": row["kind"].upper()})
    inp = f"source('bench', '{src}')" if up_is_source else f"ref('{up_model}')"
    fmt = lambda d: "{" + ", ".join(f"{k}: {json.dumps(v)}" for k, v in d.items()) + "}"
    given = "\n".join(f"          - {fmt(r)}" for r in rows)
    exp = "\n".join(f"        - {fmt(r)}" for r in expected) or "        []"
    return f"""  - name: filters_{name}
    model: {name}
    given:
      - input: {inp}
        rows:
{given}
    expect:
      rows:
{exp}
"""


def window_test(name: str, i: int, src: str) -> str:
    """A unit test of a windowed aggregate, with the expected windows computed here."""
    size = (1 + i % 10) * 60_000
    rows, acc = [], {}
    for r in range(20):
        row = {"id": r, "account_id": r % 3, "amount": float(r % 11), "kind": "k", "ts": 17_000 * r}
        rows.append(row)
        w = (row["ts"] // size * size, row["account_id"])
        n, total, biggest = acc.get(w, (0, 0.0, None))
        acc[w] = (n + 1, total + row["amount"], row["amount"] if biggest is None else max(biggest, row["amount"]))
    fmt = lambda d: "{" + ", ".join(f"{k}: {json.dumps(v)}" for k, v in d.items()) + "}"
    given = "\n".join(f"          - {fmt(r)}" for r in rows)
    exp = "\n".join(
        f"        - {fmt({'account_id': a, 'n': n, 'total': t, 'biggest': b, 'windowstart': ws})}"
        for (ws, a), (n, t, b) in sorted(acc.items())
    )
    return f"""  - name: windows_{name}
    model: {name}
    given:
      - input: source('bench', '{src}')
        rows:
{given}
    expect:
      rows:
{exp}
"""


def main(out: str, n: int, tests: int = 0) -> None:
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
    test_blocks = []
    for i in range(n):
        name = f"m{i:04d}"
        src = f"{{{{ source('bench', 'events{i % 5}') }}}}"
        up = f"{{{{ ref('{stream_models[-1 - (i % 7) % len(stream_models)]}') }}}}" if stream_models and i % 3 else src
        shape = i % 10
        up_name = stream_models[-1 - (i % 7) % len(stream_models)] if stream_models else None
        if shape in (0, 5):
            sql = (f"SELECT account_id, COUNT(*) AS n, SUM(amount) AS total, MAX(amount) AS biggest\n"
                   f"FROM {src}\nWINDOW TUMBLING (SIZE {1 + i % 10} MINUTES)\nGROUP BY account_id\nEMIT FINAL\n")
            if len(test_blocks) < tests:
                test_blocks.append(window_test(name, i, f"events{i % 5}"))
        elif shape == 7:
            sql = f"SELECT kind, COUNT(*) AS n, AVG(amount) AS mean\nFROM {src}\nGROUP BY kind\n"
        elif shape in (2, 8):
            sql = (f"SELECT e.id, e.account_id, e.amount, e.kind, e.ts, a.owner\nFROM {up} e\n"
                   f"LEFT JOIN {{{{ source('bench', 'accounts') }}}} a ON e.account_id = a.account_id\n"
                   f"WHERE e.amount > {{{{ var('threshold') }}}}\n")
        else:
            sql = (f"SELECT id, account_id, amount * {1 + i % 4} AS amount, UPPER(kind) AS kind, ts\n"
                   f"FROM {up}\nWHERE amount > {i % 50} AND kind <> 'x{i}'\n")
            if len(test_blocks) < tests:
                test_blocks.append(stateless_test(name, i, up == src, f"events{i % 5}", up_name))
            stream_models.append(name)
        with open(os.path.join(out, "models", f"{name}.sql"), "w") as f:
            f.write(sql)
    if test_blocks:
        os.makedirs(os.path.join(out, "tests"), exist_ok=True)
        with open(os.path.join(out, "tests", "generated.yml"), "w") as f:
            f.write("version: 1\nunit_tests:\n" + "".join(test_blocks))

if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 500, int(sys.argv[3]) if len(sys.argv) > 3 else 0)
