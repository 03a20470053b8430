#!/usr/bin/env bash
# streamctl against Kafka Streams and Flink SQL on a real Apache Kafka (issue #12), in one run: the same
# Nexmark data set in 8-partition topics on one Kafka 4.4 node, the same four queries (q1 projection, q2
# filter, the 10 s tumbling window, the bid-auction enrichment join; bench/nexmark-project), each engine
# from the earliest offset to the end, each output read back and checked against the reference computed in
# plain Python (bench/peers/reference.py, check.py), each engine process measured by bench/peers/measure.py
# (CPU seconds of its process tree, wall time, peak RSS); then streamctl with 1 and 2 threads, and what a
# job costs with nothing to read (bench/peers/idle.py). Rewrites the section between the scale markers
# of docs/benchmarks.md.
#
# Usage: bench/scale.sh [--quick]
#   default   5,000,000 Nexmark events (4,600,000 bids)
#   --quick   1,000,000 events (920,000 bids): about 10 minutes here, once built
#   SCALE_EVENTS overrides the size; BENCH_WORK=DIR (default /tmp/streamctl-scale) holds data, outputs and
#   results; BENCH_NO_DOC=1 leaves docs/benchmarks.md alone (the section is printed); SCALE_BIN=DIR takes
#   streamctl and nexmark-gen from DIR instead of building them; SCALE_AVRO=0 leaves out the Avro-input runs;
#   SCALE_PROFILE=1 adds a perf profile of streamctl on q1 (res/perf-symbols.txt, res/perf-paths.txt);
#   SCALE_PEERS=0 runs streamctl only (e.g. to compare two builds of it).
# Needs Java 17+, Maven (Kafka Streams 4.4 and Flink 2.2 with flink-sql-connector-kafka come from Maven
# Central: bench/peers/kstreams, bench/peers/flink), Python 3 with confluent-kafka (installed into a venv
# under bench/.venvs when missing), and Kafka 4.4 (tests/kafka/fetch.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
EVENTS=5000000
MODE=full
for a in "$@"; do
  case "$a" in
    --quick) EVENTS=1000000 MODE=quick ;;
    *) echo "usage: bench/scale.sh [--quick]" >&2; exit 2 ;;
  esac
done
EVENTS=${SCALE_EVENTS:-$EVENTS}
PARTITIONS=8
WORK=${BENCH_WORK:-/tmp/streamctl-scale}
export PATH="$HOME/.cargo/bin:$PATH"
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
KAFKA_HOME=${STREAMCTL_KAFKA_HOME:-$HOME/.cache/streamctl/kafka-4.4.0}
STARTED=$(date -u +%Y-%m-%dT%H:%M:%SZ)
LOAD_AT_START=$(cut -d' ' -f1-3 /proc/loadavg)
T0=$SECONDS
say() { printf '\n== %s (%ds)\n' "$*" $((SECONDS - T0)) >&2; }

rm -rf "$WORK"
mkdir -p "$WORK"/{bin,data,out,res,log}

say "building streamctl (release) and the peers (Maven)"
if [ -n "${SCALE_BIN:-}" ]; then
  # Binaries built before (e.g. a baseline kept while the sources change): BUILT_FROM in that folder,
  # when present, says which sources they were built from.
  cp "$SCALE_BIN"/{streamctl,nexmark-gen} "$WORK/bin/"
  [ ! -x "$SCALE_BIN/kafka-copy" ] || cp "$SCALE_BIN/kafka-copy" "$WORK/bin/"
else
  cargo build --release --locked --quiet --features bench --bin streamctl --bin nexmark-gen --bin kafka-copy
  # A private copy: the target directory may be rebuilt by someone else during the run.
  cp "$TARGET"/release/{streamctl,nexmark-gen,kafka-copy} "$WORK/bin/"
fi
BIN=$WORK/bin
PEERS=${SCALE_PEERS:-1}
if [ "$PEERS" = 1 ]; then
  for p in kstreams flink; do
    (cd bench/peers/$p && mvn -q -B -Dstyle.color=never package dependency:build-classpath)
  done
fi
tests/kafka/fetch.sh
PY=python3
if ! $PY -c 'import confluent_kafka' 2>/dev/null; then
  [ -x bench/.venvs/kafka/bin/python ] || python3 -m venv bench/.venvs/kafka
  bench/.venvs/kafka/bin/python -c 'import confluent_kafka' 2>/dev/null ||
    bench/.venvs/kafka/bin/pip install -q confluent-kafka==2.16.1
  PY=$ROOT/bench/.venvs/kafka/bin/python
fi
# The JVMs of the peers: their default compilers (C2), a 2 GiB heap.
JVM=(java -Xmx2g)
if [ "$PEERS" = 1 ]; then
  KS_CP="$ROOT/bench/peers/kstreams/target/kstreams-nexmark.jar:$(cat bench/peers/kstreams/target/classpath.txt)"
  FLINK_CP="$ROOT/bench/peers/flink/target/flink-nexmark.jar:$(cat bench/peers/flink/target/classpath.txt)"
fi

say "generating $EVENTS Nexmark events (JSON Lines) and the reference outputs"
"$BIN/nexmark-gen" - "$EVENTS" > "$WORK/data/all.jsonl"
python3 bench/peers/reference.py "$WORK/data" | tee "$WORK/res/reference.json" >&2
read -r BIDS AUCTIONS < <(python3 -c "import json; e=json.load(open('$WORK/data/reference.json'))['events']; print(e['bid'], e['auction'])")
rm "$WORK/data/all.jsonl" "$WORK/data/"{person,auction,bid}.jsonl

say "starting Kafka 4.4 (one node, KRaft)"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
PORT=$(free_port)
CPORT=$(free_port)
KDIR=$WORK/kafka
mkdir -p "$KDIR"
if [ ! -f "$KAFKA_HOME/formatted/node-1/meta.properties" ]; then
  # The storage of node 1 of a static-voter cluster, formatted once into the cache as the tests do.
  mkdir -p "$KDIR/format"
  printf 'process.roles=broker,controller\nnode.id=1\ncontroller.quorum.voters=1@127.0.0.1:9093\ncontroller.listener.names=CONTROLLER\nlisteners=PLAINTEXT://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093\nlog.dirs=%s\n' \
    "$KDIR/format/data" > "$KDIR/format/server.properties"
  java -cp "$KAFKA_HOME/libs/*" kafka.tools.StorageTool format --config "$KDIR/format/server.properties" \
    --cluster-id c3RyZWFtY3RsLXRlc3RzAA > "$WORK/log/format.log" 2>&1
  mkdir -p "$KAFKA_HOME/formatted"
  mv "$KDIR/format/data" "$KAFKA_HOME/formatted/node-1"
fi
cp -r "$KAFKA_HOME/formatted/node-1" "$KDIR/data"
# Event times from 2024 are the records' timestamps: no time retention, or the broker deletes them.
# The single node's controller fsyncs its metadata log behind the run's writeback; with the default
# broker session (9 s) it once timed out its own broker's heartbeat ("controller event queue
# overloaded") and fenced it mid-run: the group rebalanced and every task restarted from its checkpoint.
cat > "$KDIR/server.properties" <<EOF
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$CPORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listeners=PLAINTEXT://127.0.0.1:$PORT,CONTROLLER://127.0.0.1:$CPORT
advertised.listeners=PLAINTEXT://127.0.0.1:$PORT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$KDIR/data
num.partitions=1
default.replication.factor=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=10
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=10
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
log.retention.ms=-1
broker.session.timeout.ms=30000
EOF
printf 'appender.out.type=Console\nappender.out.name=OUT\nappender.out.layout.type=PatternLayout\nappender.out.layout.pattern=[%%d] %%p %%m (%%c)%%n\nrootLogger.level=WARN\nrootLogger.appenderRef.out.ref=OUT\n' \
  > "$KDIR/log4j2.properties"
java -Xmx1g -Xms256m -Dlog4j2.configurationFile="$KDIR/log4j2.properties" -cp "$KAFKA_HOME/libs/*" kafka.Kafka \
  "$KDIR/server.properties" > "$WORK/log/kafka.log" 2>&1 &
KAFKA_PID=$!
# The broker's data and the output dumps (5-14 GB a run) go when the run ends; res/ and log/ stay.
trap 'kill $KAFKA_PID 2>/dev/null || true; wait $KAFKA_PID 2>/dev/null || true; rm -rf "$KDIR" "$WORK/out"' EXIT
BOOT=127.0.0.1:$PORT
for i in $(seq 120); do
  $PY bench/peers/create_topics.py "$BOOT" --partitions 1 scale.ready 2>/dev/null && break
  kill -0 $KAFKA_PID 2>/dev/null || { cat "$WORK/log/kafka.log" >&2; exit 1; }
  [ "$i" = 120 ] && { echo "Kafka did not start: $WORK/log/kafka.log" >&2; exit 1; }
  sleep 1
done
export NEXMARK_BOOTSTRAP=$BOOT

say "loading the data set ($PARTITIONS partitions per topic)"
# The bids also as Avro (Confluent wire format, the schema of the project's file registry) for the
# Avro-against-JSON runs; SCALE_AVRO=0 leaves them out.
AVRO=${SCALE_AVRO:-1}
if [ "$AVRO" = 1 ]; then
  export NEXMARK_AVRO_SCHEMA=bench/nexmark-project/schemas/nexmark.bid_avro-value/v1.avsc
fi
"$BIN/nexmark-gen" "$BOOT" "$EVENTS" "$PARTITIONS" > /dev/null
# The data set's pages are written out before the first measured run. The single KRaft node fsyncs its
# metadata log, and behind the load's writeback that took 8-9 s ("Exceptionally slow controller event
# writeNoOpRecord ... took 9223 ms"): the broker fenced itself during the first query, whose transactions
# then timed out and were replayed (correct output, a third of the run's CPU spent on recovery).
sync
# The broker's internal topics are made before the first measured run, not during it: the first
# transactional producer has the broker create __transaction_state (50 partitions) and the first
# group __consumer_offsets, and the client waits and retries meanwhile. Made by a foreign client,
# so no engine's run pays for them.
$PY - "$BOOT" <<'PY'
import sys
from confluent_kafka import Consumer, Producer, TopicPartition
boot = sys.argv[1]
p = Producer({"bootstrap.servers": boot, "transactional.id": "scale-warm-up"})
p.init_transactions(120)
c = Consumer({"bootstrap.servers": boot, "group.id": "scale-warm-up", "enable.auto.commit": False})
c.commit(offsets=[TopicPartition("nexmark.bid", 0, 0)], asynchronous=False)
c.close()
PY

# record ENGINE QUERY SEMANTICS INPUT_EVENTS OUTPUT_FILE: the check against the reference, with the
# measurement, into res/ENGINE-QUERY.json.
record() {
  local engine=$1 q=$2 sem=$3 input=$4 out=$5 check remark
  check=$(python3 bench/peers/check.py "$WORK/data/reference.json" "$q" "$out" "$sem")
  rm -f "$out"
  remark=$(grep -h -E "STALLED|stopped in state" "$WORK/log/$engine-$q.err" 2>/dev/null | tail -1 || true)
  python3 - "$WORK/res/$engine-$q.json" "$WORK/res/m-$engine-$q.json" "$input" "$check" "$remark" <<'PY'
import json, sys
path, m, n, check, remark = sys.argv[1], json.load(open(sys.argv[2])), int(sys.argv[3]), json.loads(sys.argv[4]), sys.argv[5]
json.dump({**m, "input_events": n, "check": check, "remark": remark}, open(path, "w"))
print(f"{path.rsplit('/', 1)[1]}: {n} in, cpu {m['cpu_s']} s, wall {m['wall_s']} s, "
      f"check {'ok' if check['ok'] else 'FAILED: ' + '; '.join(check['problems'])}")
PY
}
measure() { # NAME -- CMD...   (name = ENGINE-QUERY)
  local name=$1; shift
  python3 bench/peers/measure.py "$WORK/res/m-$name.json" --timeout 1800 "$@" \
    > "$WORK/log/$name.out" 2> "$WORK/log/$name.err" || echo "   ($name exited with an error: see $WORK/log/$name.err)" >&2
}
expected_of() { python3 -c "import json; r=json.load(open('$WORK/data/reference.json'))['$1']; print(r.get('closed_count', r['count']))"; }
dump() { $PY bench/peers/dump_topic.py "$BOOT" "$1" "$2" "$3" 5 > /dev/null; }

QUERIES="q1 q2 window join"
model_of() { case $1 in window) echo q_window ;; join) echo q_join ;; *) echo "$1" ;; esac; }
for q in $QUERIES; do
  m=$(model_of $q)
  n=$BIDS; [ $q = join ] && n=$((BIDS + AUCTIONS))
  sem=-; [ $q = window ] && sem=streaming; [ $q = join ] && sem=lookup
  exp=$(expected_of $q)
  $PY bench/peers/create_topics.py "$BOOT" --partitions $PARTITIONS "ks.$q" "flink.$q"

  say "$q: streamctl"
  measure "streamctl-$q" -- "$BIN/streamctl" run --project-dir bench/nexmark-project --target bench \
    --select "$m" --until-caught-up --format json
  dump "$m" "$WORK/out/streamctl-$q.jsonl" "$exp"
  record streamctl $q $sem $n "$WORK/out/streamctl-$q.jsonl"

  [ "$PEERS" = 1 ] || continue
  say "$q: Kafka Streams"
  measure "kstreams-$q" -- "${JVM[@]}" -cp "$KS_CP" streamctl.bench.NexmarkStreams $q "$BOOT" "$BIDS" "ks.$q" "ks-$q"
  dump "ks.$q" "$WORK/out/kstreams-$q.jsonl" "$exp"
  record kstreams $q $sem $n "$WORK/out/kstreams-$q.jsonl"

  say "$q: Flink SQL"
  # A bounded source (to the end offsets seen at its start): at its end every window closes.
  [ $q = window ] && sem=bounded
  measure "flink-$q" -- "${JVM[@]}" -cp "$FLINK_CP" streamctl.bench.NexmarkFlink $q "$BOOT" "flink.$q" "flink-$q"
  dump "flink.$q" "$WORK/out/flink-$q.jsonl" "$exp"
  record flink $q $sem $n "$WORK/out/flink-$q.jsonl"
done

if [ -x "$BIN/kafka-copy" ]; then
  # What librdkafka alone costs per record (bench/kafka_copy.rs): the bids copied unchanged to another
  # topic by one consumer and one transactional producer, with streamctl's client settings.
  say "librdkafka alone: the bids copied unchanged"
  measure "floor-copy" -- "$BIN/kafka-copy" "$BOOT" nexmark.bid floor.bid
  copied=$($PY bench/peers/dump_topic.py "$BOOT" floor.bid "$WORK/out/floor-copy.jsonl" "$BIDS" 5)
  python3 - "$WORK/res/m-floor-copy.json" "$BIDS" "$copied" > "$WORK/res/floor.json" <<'PY'
import json, sys
m, n, copied = json.load(open(sys.argv[1])), int(sys.argv[2]), int(sys.argv[3])
print(json.dumps({**m, "input_events": n, "copied": copied}))
PY
  rm -f "$WORK/out/floor-copy.jsonl"
fi

if [ "$AVRO" = 1 ]; then
  # streamctl only: q1 and the window on the Avro copy of the bids, beside the JSON runs above.
  for q in q1 window; do
    m=$(model_of $q)_avro
    sem=-; [ $q = window ] && sem=streaming
    say "$q: streamctl on Avro input"
    measure "streamctl_avro-$q" -- "$BIN/streamctl" run --project-dir bench/nexmark-project --target bench \
      --select "$m" --until-caught-up --format json
    dump "$m" "$WORK/out/streamctl_avro-$q.jsonl" "$(expected_of $q)"
    record streamctl_avro $q $sem $BIDS "$WORK/out/streamctl_avro-$q.jsonl"
  done
fi

if "$BIN/streamctl" run --help | grep -q -- '--threads'; then
  # The same queries with 1 and 2 threads, each run with its own topic prefix (fresh output and checkpoint
  # topics, so it starts again from the earliest offset); throughput from wall time.
  for q in $QUERIES; do
    m=$(model_of $q)
    n=$BIDS; [ $q = join ] && n=$((BIDS + AUCTIONS))
    sem=-; [ $q = window ] && sem=streaming; [ $q = join ] && sem=lookup
    for t in 1 2; do
      say "$q: streamctl --threads $t"
      NEXMARK_PREFIX="t$t." measure "threads$t-$q" -- "$BIN/streamctl" run --project-dir bench/nexmark-project \
        --target bench --select "$m" --until-caught-up --threads $t --format json
      dump "t$t.$m" "$WORK/out/threads$t-$q.jsonl" "$(expected_of $q)"
      check=$(python3 bench/peers/check.py "$WORK/data/reference.json" $q "$WORK/out/threads$t-$q.jsonl" $sem)
      rm -f "$WORK/out/threads$t-$q.jsonl"
      python3 - "$WORK/res/m-threads$t-$q.json" "$check" $q $t $n > "$WORK/res/threads-$t-$q.json" <<'PY'
import json, sys
m, check, q, t, n = json.load(open(sys.argv[1])), json.loads(sys.argv[2]), sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
print(json.dumps({**m, "query": q, "threads": t, "input_events": n, "check": check}))
PY
    done
  done
fi

if "$BIN/streamctl" run --help | grep -q -- '--threads'; then
  # What a job costs once it has nothing to read: the 2-thread job of q1 and of the window started again,
  # on the inputs it read to their end (its checkpoints are there), measured while it waits.
  for q in q1 window; do
    m=$(model_of $q)
    say "$q: streamctl with nothing to read"
    NEXMARK_PREFIX="t2." python3 bench/peers/idle.py "$WORK/res/idle-$q.json" -- "$BIN/streamctl" run \
      --project-dir bench/nexmark-project --target bench --select "$m" --threads 2 2> "$WORK/log/idle-$q.err" \
      || echo "the idle run of $q failed: see $WORK/log/idle-$q.err" >&2
  done
fi

if [ -n "${SCALE_PROFILE:-}" ] && command -v perf > /dev/null; then
  # Where streamctl's time goes on q1: a fresh job (own topic prefix) under perf, flat (self time by
  # symbol) and by step (inclusive, call graphs from DWARF), into res/perf-*.txt.
  say "perf profile of streamctl on q1"
  if NEXMARK_PREFIX=prof. perf record -F 999 --call-graph dwarf,16384 -o "$WORK/perf.data" -- "$BIN/streamctl" run \
       --project-dir bench/nexmark-project --target bench --select q1 --until-caught-up > /dev/null \
       2> "$WORK/log/perf-record.err"; then
    perf report -i "$WORK/perf.data" --no-children --sort symbol --stdio -g none 2>/dev/null \
      | grep -E '^ +[0-9.]+%' | sed -E 's/[[:space:]-]+$//' > "$WORK/res/perf-symbols.txt" || true
    perf report -i "$WORK/perf.data" --children --sort symbol --stdio -g none 2>/dev/null \
      | grep -E '^ +[0-9.]+% +[0-9.]+%' | grep -E 'streamctl::|rdkafka::|rd_kafka_' \
      | sed -E 's/[[:space:]-]+$//' > "$WORK/res/perf-paths.txt" || true
    rm -f "$WORK/perf.data"
  else
    echo "perf failed: see $WORK/log/perf-record.err" >&2
  fi
fi

if [ "$PEERS" = 1 ]; then
  say "the peers' fixed start-up (q1 on empty topics)"
  $PY bench/peers/create_topics.py "$BOOT" --partitions $PARTITIONS empty.bid empty.auction ks.empty flink.empty
  measure "kstreams-startup" -- "${JVM[@]}" -Dnexmark.prefix=empty. -cp "$KS_CP" streamctl.bench.NexmarkStreams q1 "$BOOT" 0 \
    ks.empty ks-empty
  measure "flink-startup" -- "${JVM[@]}" -Dnexmark.prefix=empty. -cp "$FLINK_CP" streamctl.bench.NexmarkFlink q1 "$BOOT" \
    flink.empty flink-empty
fi

say "versions and machine"
{
  echo "started=$STARTED"
  echo "mode=$MODE"
  echo "events=$EVENTS"
  echo "partitions=$PARTITIONS"
  if [ -n "${SCALE_BIN:-}" ] && [ -f "$SCALE_BIN/BUILT_FROM" ]; then
    echo "streamctl=$(cat "$SCALE_BIN/BUILT_FROM")"
  else
    echo "streamctl=$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- src Cargo.toml || echo '+local changes')"
  fi
  echo "java=$(java -version 2>&1 | head -1)"
  echo "cpu=$(lscpu | sed -n 's/^Model name: *//p' | head -1)"
  echo "nproc=$(nproc)"
  echo "load_at_start=$LOAD_AT_START"
  echo "load_at_end=$(cut -d' ' -f1-3 /proc/loadavg)"
  echo "duration_s=$((SECONDS - T0))"
} > "$WORK/res/env.txt"

say "writing the table"
if [ -n "${BENCH_NO_DOC:-}" ]; then
  python3 bench/peers/render_scale.py "$WORK" -
else
  python3 bench/peers/render_scale.py "$WORK" docs/benchmarks.md
  echo "docs/benchmarks.md updated; results in $WORK/res" >&2
fi
