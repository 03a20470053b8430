#!/usr/bin/env bash
# The chaos suite (tests/chaos.rs) by hand. Without arguments it runs the reduced size that `cargo test`
# runs; --full runs 1,000,000 records with 20 worker kills (release build; about 20 minutes here).
#   tests/chaos/run.sh [--full] [--seed N]
# Sizes can also be set with STREAMCTL_CHAOS_RECORDS, STREAMCTL_CHAOS_KILLS, STREAMCTL_CHAOS_INPUT_MS.
set -euo pipefail
cd "$(dirname "$0")/../.."
profile=()
while [ $# -gt 0 ]; do
  case "$1" in
    --full)
      export STREAMCTL_CHAOS_RECORDS="${STREAMCTL_CHAOS_RECORDS:-1000000}"
      export STREAMCTL_CHAOS_KILLS="${STREAMCTL_CHAOS_KILLS:-20}"
      export STREAMCTL_CHAOS_INPUT_MS="${STREAMCTL_CHAOS_INPUT_MS:-300000}"
      export STREAMCTL_CHAOS_DRAIN_S="${STREAMCTL_CHAOS_DRAIN_S:-900}"
      profile=(--release)
      ;;
    --seed) export STREAMCTL_CHAOS_SEED="$2"; shift ;;
    *) echo "usage: tests/chaos/run.sh [--full] [--seed N]" >&2; exit 2 ;;
  esac
  shift
done
tests/kafka/fetch.sh
export STREAMCTL_E2E=1
cargo test --locked "${profile[@]}" --test chaos -- --nocapture
