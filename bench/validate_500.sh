#!/usr/bin/env bash
# `streamctl validate` on a generated 500-model project, next to `dbt parse` (dbt-core +
# dbt-duckdb, installed into a venv by this script) on the same models in dbt's layout.
# dbt parse renders Jinja and builds the graph but does not plan SQL; streamctl validate also
# plans every model with DataFusion, so the ratio flatters dbt.
# Usage: bench/validate_500.sh [N_MODELS] [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-500}
RUNS=${2:-5}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

cargo build --release --quiet
python3 bench/gen_project.py "$WORK/streamctl" "$N"

# The same models as a dbt project: WINDOW/EMIT clauses removed (dbt does not read SQL).
python3 - "$WORK" <<'PY'
import os, re, sys, shutil
work = sys.argv[1]
src, dst = os.path.join(work, "streamctl"), os.path.join(work, "dbt")
os.makedirs(os.path.join(dst, "models"))
open(os.path.join(dst, "dbt_project.yml"), "w").write(
    "name: bench\nversion: '1.0'\nconfig-version: 2\nprofile: bench\nvars:\n  threshold: 10\n")
open(os.path.join(dst, "profiles.yml"), "w").write(
    "bench:\n  target: dev\n  outputs:\n    dev:\n      type: duckdb\n      path: ':memory:'\n")
tables = "".join(f"      - name: events{i}\n" for i in range(5)) + "      - name: accounts\n"
open(os.path.join(dst, "models", "sources.yml"), "w").write(
    "version: 2\nsources:\n  - name: bench\n    tables:\n" + tables)
for f in os.listdir(os.path.join(src, "models")):
    sql = open(os.path.join(src, "models", f)).read()
    sql = re.sub(r"WINDOW TUMBLING \([^)]*\)\n", "", sql).replace("EMIT FINAL\n", "")
    open(os.path.join(dst, "models", f), "w").write(sql)
PY

time_runs() { # prints the median wall seconds of RUNS runs of "$@"
  python3 - "$RUNS" "$@" <<'PY'
import subprocess, sys, time, statistics
runs, cmd = int(sys.argv[1]), sys.argv[2:]
times = []
for _ in range(runs):
    t = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    times.append(time.perf_counter() - t)
print(f"{statistics.median(times):.3f}")
PY
}

st=$(time_runs target/release/streamctl validate --project-dir "$WORK/streamctl")
echo "streamctl validate, $N models: median ${st}s over $RUNS runs"

if [ ! -x "${DBT_VENV:-/tmp/streamctl-bench-dbt}/bin/dbt" ]; then
  python3 -m venv "${DBT_VENV:-/tmp/streamctl-bench-dbt}"
  "${DBT_VENV:-/tmp/streamctl-bench-dbt}/bin/pip" install -q dbt-core dbt-duckdb
fi
DBT="${DBT_VENV:-/tmp/streamctl-bench-dbt}/bin/dbt"
dt=$(time_runs "$DBT" parse --no-partial-parse --project-dir "$WORK/dbt" --profiles-dir "$WORK/dbt")
echo "dbt parse, $N models: median ${dt}s over $RUNS runs ($("$DBT" --version | head -2 | tail -1 | xargs))"
python3 -c "print(f'ratio dbt/streamctl: {$dt/$st:.1f}x')"
