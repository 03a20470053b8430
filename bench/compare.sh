#!/usr/bin/env bash
# streamctl against the engines its users would pick instead, on the same Nexmark data set, the
# same broker and the same machine, in one run (issue #6). Rewrites the comparison section of
# docs/benchmarks.md (between the BEGIN/END compare markers) from this run's measurements.
#
# Usage: bench/compare.sh [EVENTS] [FILE_EVENTS]
#   EVENTS       Nexmark events for the Kafka comparison (default 1,000,000: the slowest peer,
#                Denormalized, needs about 80 CPU-s per million events and query)
#   FILE_EVENTS  events for the engine-only file comparison with Flink (default 5,000,000: Flink
#                needs about 10 CPU-s just to start, so a longer input shows its running cost)
#   BENCH_WORK=DIR   where data, outputs and results go (default /tmp/streamctl-compare)
#   BENCH_NO_DOC=1   do not touch docs/benchmarks.md (print the section instead)
#
# Steps: build streamctl (release, `bench` feature); install the peers into venvs under
# bench/.venvs (quixstreams, denormalized, apache-flink; skipped when already there); generate
# the fixed data set once as JSON Lines and compute the reference outputs from it in plain
# Python; then per query:
#   Kafka (one tansu broker, in memory): streamctl run --until-caught-up, and Quix Streams, both
#     from the earliest offset of the same topics; Denormalized, which reads only live data,
#     gets a fresh broker per query, is started first, then the same data set is produced.
#   Files (engine only; Flink has no Kafka connector jar here): streamctl's runtime through
#     bench/streamctl_file.rs, and PyFlink, on the same JSON Lines files.
# Each engine process (and its children, e.g. Flink's JVM) is measured by bench/peers/measure.py
# (wall, CPU seconds, peak RSS); its output is read back and checked by bench/peers/check.py
# against the reference (count, and a sample of values). Finally a perf profile of streamctl
# on q1 (Kafka) gives where its time goes.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
EVENTS=${1:-1000000}
FILE_EVENTS=${2:-5000000}
WORK=${BENCH_WORK:-/tmp/streamctl-compare}
export PATH="$HOME/.cargo/bin:$PATH"
PY=python3
VENVS=$ROOT/bench/.venvs
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
STARTED=$(date -u +%Y-%m-%dT%H:%M:%SZ)
T0=$SECONDS

say() { printf '\n== %s (%ds)\n' "$*" $((SECONDS - T0)) >&2; }

rm -rf "$WORK"
mkdir -p "$WORK"/{bin,data,files,out,res,log,empty}

say "building streamctl (release)"
cargo build --release --quiet --features bench --bin streamctl --bin nexmark-gen --bin streamctl-file
# A private copy: the shared target directory may be rebuilt by someone else during the run.
cp "$TARGET"/release/{streamctl,nexmark-gen,streamctl-file} "$WORK/bin/"
BIN=$WORK/bin

say "installing the peers (venvs under bench/.venvs)"
venv() { # NAME IMPORT PIP-ARGS...
  local name=$1 import=$2; shift 2
  [ -x "$VENVS/$name/bin/python" ] || $PY -m venv "$VENVS/$name"
  "$VENVS/$name/bin/python" -c "import $import" 2>/dev/null ||
    "$VENVS/$name/bin/pip" install -q "$@"
}
# Separate venvs: apache-flink pins pyarrow < 17, denormalized needs pyarrow >= 17.
venv quix quixstreams quixstreams==3.28.1
# denormalized 0.0.13's abi3 wheel declares Python >= 3.12 but works on 3.11.
venv denorm denormalized --ignore-requires-python denormalized==0.0.13
venv flink pyflink apache-flink==2.3.0
QPY=$VENVS/quix/bin/python   # also has confluent-kafka, used by the harness's Kafka helpers

say "generating $EVENTS and $FILE_EVENTS Nexmark events (JSON Lines) and their references"
"$BIN/nexmark-gen" - "$EVENTS" > "$WORK/data/all.jsonl"
$PY bench/peers/reference.py "$WORK/data" | tee "$WORK/res/reference-kafka.json" >&2
"$BIN/nexmark-gen" - "$FILE_EVENTS" > "$WORK/files/all.jsonl"
$PY bench/peers/reference.py "$WORK/files" | tee "$WORK/res/reference-files.json" >&2
counts() { $PY -c "import json; e=json.load(open('$1/reference.json'))['events']; print(e['bid'], e['auction'])"; }
: > "$WORK/empty/bid.jsonl"; : > "$WORK/empty/auction.jsonl"

free_port() { $PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
BROKERS=()
start_broker() { # -> sets BOOT
  local port; port=$(free_port)
  tansu broker --listener-url "tcp://127.0.0.1:$port" --advertised-listener-url "tcp://127.0.0.1:$port" \
    --storage-engine memory://tansu/ > "$WORK/log/tansu-$port.log" 2>&1 &
  BROKERS+=($!)
  BOOT=127.0.0.1:$port
  until $PY -c "import socket; socket.create_connection(('127.0.0.1', $port), 1)" 2>/dev/null; do sleep 0.2; done
}
stop_broker() { kill "${BROKERS[-1]}" 2>/dev/null || true; wait "${BROKERS[-1]}" 2>/dev/null || true; unset 'BROKERS[-1]'; }
trap 'for b in "${BROKERS[@]}"; do kill $b 2>/dev/null || true; done' EXIT

# record ENGINE QUERY SEMANTICS INPUT_EVENTS OUTPUT_FILE DATA_DIR: checks the output against
# DATA_DIR's reference and writes the result (measurement + check + what the engine said about
# how it stopped) to res/ENGINE-QUERY.json.
record() {
  local engine=$1 q=$2 sem=$3 input=$4 out=$5 data=$6 check remark
  check=$($PY bench/peers/check.py "$data/reference.json" "$q" "$out" "$sem")
  remark=$(grep -h -E "STALLED|^denormalized .* rows \(" "$WORK/log/$engine-$q.err" 2>/dev/null | tail -1 || true)
  $PY - "$WORK/res/$engine-$q.json" "$WORK/res/m-$engine-$q.json" "$input" "$check" "$remark" <<'PY'
import json, sys
path, m, n, check, remark = sys.argv[1], json.load(open(sys.argv[2])), int(sys.argv[3]), json.loads(sys.argv[4]), sys.argv[5]
json.dump({**m, "input_events": n, "check": check, "remark": remark}, open(path, "w"))
print(f"{path.rsplit('/', 1)[1]}: {n} in, cpu {m['cpu_s']} s, wall {m['wall_s']} s, "
      f"check {'ok' if check['ok'] else 'FAILED: ' + '; '.join(check['problems'])}")
PY
}
measure() { # NAME -- CMD...   (name = ENGINE-QUERY)
  local name=$1; shift
  $PY bench/peers/measure.py "$WORK/res/m-$name.json" --timeout 900 "$@" \
    > "$WORK/log/$name.out" 2> "$WORK/log/$name.err" || echo "   ($name exited with an error: see $WORK/log/$name.err)" >&2
}

QUERIES="q1 q2 window join"
model_of() { case $1 in window) echo q_window ;; join) echo q_join ;; *) echo "$1" ;; esac; }
inputs_of() { if [ "$1" = join ]; then echo $((BIDS + AUCTIONS)); else echo "$BIDS"; fi; }
read -r BIDS AUCTIONS < <(counts "$WORK/data")
expected_of() { $PY -c "import json; r=json.load(open('$WORK/data/reference.json'))['$1']; print(r.get('$2', r['count']))"; }

say "Kafka: loading the data set into tansu"
start_broker
KAFKA_BOOT=$BOOT
$QPY bench/peers/create_topics.py "$BOOT" nexmark.person nexmark.auction nexmark.bid
"$BIN/nexmark-gen" "$BOOT" "$EVENTS" 1 > /dev/null
export NEXMARK_BOOTSTRAP=$BOOT

for q in $QUERIES; do
  m=$(model_of $q); n=$(inputs_of $q)
  sem=-; [ $q = window ] && sem=streaming; [ $q = join ] && sem=lookup
  say "Kafka $q: streamctl"
  measure "streamctl-$q" -- "$BIN/streamctl" run --project-dir bench/nexmark-project --target bench \
    --select "$m" --until-caught-up --format json
  $QPY bench/peers/dump_topic.py "$BOOT" "$m" "$WORK/out/streamctl-$q.jsonl" "$(expected_of $q closed_count)" > /dev/null
  record streamctl $q $sem $n "$WORK/out/streamctl-$q.jsonl" "$WORK/data"

  [ $q = join ] && sem=asof
  say "Kafka $q: Quix Streams"
  measure "quix-$q" -- "$QPY" -W ignore bench/peers/quix_nexmark.py $q "$BOOT" $n "quix.$q"
  $QPY bench/peers/dump_topic.py "$BOOT" "quix.$q" "$WORK/out/quix-$q.jsonl" "$(expected_of $q closed_count)" > /dev/null
  record quix $q $sem $n "$WORK/out/quix-$q.jsonl" "$WORK/data"
done

say "perf profile of streamctl on q1 (Kafka)"
# A fresh job name, so that it starts from the earliest offset again.
PROFILE_PROJECT=$WORK/profile-project
cp -r bench/nexmark-project "$PROFILE_PROJECT"
sed -i 's/^name: nexmark$/name: nexmark_profile/' "$PROFILE_PROJECT/streamctl_project.yml"
if perf record -F 999 --call-graph dwarf,16384 -o "$WORK/perf.data" -- "$BIN/streamctl" run --project-dir "$PROFILE_PROJECT" --target bench \
     --select q1 --until-caught-up > /dev/null 2> "$WORK/log/perf-record.err"; then
  perf report -i "$WORK/perf.data" --no-children --sort symbol --stdio -g none 2>/dev/null \
    | grep -E '^ +[0-9.]+%' | sed -E 's/[[:space:]-]+$//' > "$WORK/res/perf-symbols.txt" || true
  # Inclusive shares of streamctl's own steps and of librdkafka's threads.
  perf report -i "$WORK/perf.data" --children --sort symbol --stdio -g none 2>/dev/null \
    | grep -E '^ +[0-9.]+% +[0-9.]+%' | grep -E 'streamctl::|rdkafka::|rd_kafka_broker_thread_main' \
    | sed -E 's/[[:space:]-]+$//' > "$WORK/res/perf-paths.txt" || true
else
  echo "perf failed: see $WORK/log/perf-record.err" >&2
fi
stop_broker

for q in $QUERIES; do
  n=$(inputs_of $q)
  sem=-; [ $q = window ] && sem=streaming; [ $q = join ] && sem=lookup
  say "Kafka $q: Denormalized (fresh broker; started before the producer)"
  start_broker
  $QPY bench/peers/create_topics.py "$BOOT" nexmark_person nexmark_auction nexmark_bid
  rm -f "$WORK/data/produced-$q"
  measure "denormalized-$q" -- "$VENVS/denorm/bin/python" bench/peers/denormalized_nexmark.py $q "$BOOT" \
    "$WORK/out/denormalized-$q.jsonl" "$(expected_of $q closed_count)" 30 "$WORK/data/produced-$q" &
  M=$!
  sleep 5
  NEXMARK_TOPIC_PREFIX=nexmark_ "$BIN/nexmark-gen" "$BOOT" "$EVENTS" 1 > /dev/null
  touch "$WORK/data/produced-$q"
  wait $M || true
  record denormalized $q $sem $n "$WORK/out/denormalized-$q.jsonl" "$WORK/data"
  stop_broker
done

read -r BIDS AUCTIONS < <(counts "$WORK/files")
for q in $QUERIES; do
  m=$(model_of $q); n=$(inputs_of $q)
  sem=-; [ $q = window ] && sem=bounded; [ $q = join ] && sem=lookup
  ins="nexmark.bid=$WORK/files/bid.jsonl"; [ $q = join ] && ins="nexmark.auction=$WORK/files/auction.jsonl $ins"
  say "files $q: streamctl (engine only)"
  # shellcheck disable=SC2086
  measure "streamctl_file-$q" -- "$BIN/streamctl-file" bench/nexmark-project "$m" "$WORK/out/streamctl_file-$q.jsonl" $ins
  record streamctl_file $q $sem $n "$WORK/out/streamctl_file-$q.jsonl" "$WORK/files"
  say "files $q: Flink (engine only)"
  measure "flink-$q" -- "$VENVS/flink/bin/python" bench/peers/flink_nexmark.py $q "$WORK/files" "$WORK/out/flink-$q"
  cat "$WORK/out/flink-$q"/* "$WORK/out/flink-$q"/.??* > "$WORK/out/flink-$q.jsonl" 2>/dev/null || true
  record flink $q $sem $n "$WORK/out/flink-$q.jsonl" "$WORK/files"
done

say "fixed start-up costs (the same runs on empty files)"
measure "flink-startup" -- "$VENVS/flink/bin/python" bench/peers/flink_nexmark.py q1 "$WORK/empty" "$WORK/out/flink-empty"
measure "streamctl_file-startup" -- "$BIN/streamctl-file" bench/nexmark-project q1 "$WORK/out/streamctl_file-empty.jsonl" \
  "nexmark.bid=$WORK/empty/bid.jsonl"

say "versions and machine"
{
  echo "started=$STARTED"
  echo "events=$EVENTS"
  echo "file_events=$FILE_EVENTS"
  echo "streamctl=$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- src Cargo.toml || echo '+local changes')"
  echo "tansu=$(tansu --version 2>/dev/null | head -1)"
  echo "quixstreams=$("$QPY" -c 'import importlib.metadata as m; print(m.version("quixstreams"))')"
  echo "denormalized=$("$VENVS/denorm/bin/python" -c 'import importlib.metadata as m; print(m.version("denormalized"))')"
  echo "apache-flink=$("$VENVS/flink/bin/python" -c 'import importlib.metadata as m; print(m.version("apache-flink"))')"
  echo "java=$(java -version 2>&1 | head -1)"
  echo "python=$($PY --version 2>&1)"
  echo "cpu=$(lscpu | sed -n 's/^Model name: *//p' | head -1)"
  echo "nproc=$(nproc)"
  echo "mem=$(free -g | awk '/^Mem:/ {print $2}') GiB"
  echo "kernel=$(uname -sr)"
  echo "load_at_end=$(cut -d' ' -f1-3 /proc/loadavg)"
  echo "duration_s=$((SECONDS - T0))"
} > "$WORK/res/env.txt"

say "writing the table"
if [ -n "${BENCH_NO_DOC:-}" ]; then
  $PY bench/peers/render.py "$WORK" -
else
  $PY bench/peers/render.py "$WORK" docs/benchmarks.md
  echo "docs/benchmarks.md updated; results in $WORK/res" >&2
fi
