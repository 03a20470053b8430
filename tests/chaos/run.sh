#!/usr/bin/env bash
# The chaos suite (tests/chaos.rs) by hand. Without arguments it runs the reduced size that `cargo test`
# runs (50,000 records, 6 worker kills), for both guarantees; --full runs 1,000,000 records with 20
# worker kills; --mode picks one guarantee.
#   tests/chaos/run.sh [--full] [--seed N] [--mode at_least_once|exactly_once] [--release]
# Sizes can also be set with STREAMCTL_CHAOS_RECORDS, STREAMCTL_CHAOS_KILLS, STREAMCTL_CHAOS_INPUT_MS,
# STREAMCTL_CHAOS_DRAIN_S. STREAMCTL_KAFKA_KEEP=1 keeps the brokers' and workers' logs.
set -euo pipefail
cd "$(dirname "$0")/../.."
profile=()
filter=()
while [ $# -gt 0 ]; do
  case "$1" in
    --full)
      export STREAMCTL_CHAOS_RECORDS="${STREAMCTL_CHAOS_RECORDS:-1000000}"
      export STREAMCTL_CHAOS_KILLS="${STREAMCTL_CHAOS_KILLS:-20}"
      export STREAMCTL_CHAOS_INPUT_MS="${STREAMCTL_CHAOS_INPUT_MS:-600000}"
      export STREAMCTL_CHAOS_DRAIN_S="${STREAMCTL_CHAOS_DRAIN_S:-1800}"
      ;;
    --seed) export STREAMCTL_CHAOS_SEED="$2"; shift ;;
    --mode) filter=("$2"); shift ;;
    # A release build of streamctl takes about 20 minutes from scratch here, and runs the jobs ~10x faster.
    --release) profile=(--release) ;;
    *) echo "usage: tests/chaos/run.sh [--full] [--seed N] [--mode at_least_once|exactly_once] [--release]" >&2; exit 2 ;;
  esac
  shift
done
tests/kafka/fetch.sh
export STREAMCTL_E2E=1
cargo test --locked "${profile[@]}" --test chaos -- --nocapture --test-threads 1 "${filter[@]}"
