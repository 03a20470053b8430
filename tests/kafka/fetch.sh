#!/usr/bin/env bash
# Copies Apache Kafka (the broker, its storage formatter and their dependencies, as pinned in pom.xml) from
# Maven Central into the cache folder the end-to-end tests read: $STREAMCTL_KAFKA_HOME, else
# ~/.cache/streamctl/kafka-<version>; and Kafka Connect with the Debezium PostgreSQL connector
# (connect-pom.xml, debezium-pom.xml, file-connector-pom.xml); and an OpenSearch node (opensearch-pom.xml).
# Does nothing for a complete copy. Needs Maven and Java 17+.
set -euo pipefail
cd "$(dirname "$0")"
version=$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' pom.xml)
home="${STREAMCTL_KAFKA_HOME:-$HOME/.cache/streamctl/kafka-$version}"
if [ ! -f "$home/libs/.complete" ]; then
  command -v mvn >/dev/null || { echo "tests/kafka/fetch.sh: Maven (mvn) is not installed" >&2; exit 1; }
  mvn -q -B -Dstyle.color=never dependency:copy-dependencies -Dkafka.dir="$home"
  touch "$home/libs/.complete"
  echo "Kafka $version is in $home"
fi

# Kafka Connect (the distributed worker) with the Debezium PostgreSQL connector and Kafka's file
# connectors as its plugins, for tests/e2e_connect.rs: $STREAMCTL_CONNECT_HOME, else ~/.cache/streamctl/connect-<version>.
connect="${STREAMCTL_CONNECT_HOME:-$HOME/.cache/streamctl/connect-$version}"
if [ ! -f "$connect/.complete" ]; then
  command -v mvn >/dev/null || { echo "tests/kafka/fetch.sh: Maven (mvn) is not installed" >&2; exit 1; }
  rm -rf "$connect/libs" "$connect/plugins"
  mvn -q -B -Dstyle.color=never -f connect-pom.xml dependency:copy-dependencies -Dconnect.dir="$connect"
  mvn -q -B -Dstyle.color=never -f debezium-pom.xml dependency:copy-dependencies -Dconnect.dir="$connect"
  mvn -q -B -Dstyle.color=never -f file-connector-pom.xml dependency:copy-dependencies -Dconnect.dir="$connect"
  touch "$connect/.complete"
  echo "Kafka Connect $version and Debezium are in $connect"
fi

# An OpenSearch node (the server and its netty4 transport module, opensearch-pom.xml) for
# tests/e2e_opensearch.rs: $STREAMCTL_OPENSEARCH_HOME, else ~/.cache/streamctl/opensearch-<version>.
# tests/opensearch/TestNode.java starts it; the test compiles it there with javac.
os_version=$(sed -n 's:.*<opensearch.version>\(.*\)</opensearch.version>.*:\1:p' opensearch-pom.xml)
opensearch="${STREAMCTL_OPENSEARCH_HOME:-$HOME/.cache/streamctl/opensearch-$os_version}"
if [ ! -f "$opensearch/libs/.complete" ]; then
  command -v mvn >/dev/null || { echo "tests/kafka/fetch.sh: Maven (mvn) is not installed" >&2; exit 1; }
  rm -rf "$opensearch/libs"
  mvn -q -B -Dstyle.color=never -f opensearch-pom.xml dependency:copy-dependencies -Dopensearch.dir="$opensearch"
  touch "$opensearch/libs/.complete"
  echo "OpenSearch $os_version is in $opensearch"
fi
