#!/usr/bin/env bash
# Copies Apache Kafka (the broker, its storage formatter and their dependencies, as pinned in pom.xml) from
# Maven Central into the cache folder the end-to-end tests read: $STREAMCTL_KAFKA_HOME, else
# ~/.cache/streamctl/kafka-<version>. Does nothing when a complete copy is there. Needs Maven and Java 17+.
set -euo pipefail
cd "$(dirname "$0")"
version=$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' pom.xml)
home="${STREAMCTL_KAFKA_HOME:-$HOME/.cache/streamctl/kafka-$version}"
if [ -f "$home/libs/.complete" ]; then
  exit 0
fi
command -v mvn >/dev/null || { echo "tests/kafka/fetch.sh: Maven (mvn) is not installed" >&2; exit 1; }
mvn -q -B -Dstyle.color=never dependency:copy-dependencies -Dkafka.dir="$home"
touch "$home/libs/.complete"
echo "Kafka $version is in $home"
