#!/usr/bin/env bash
# A local single-node Apache Kafka (KRaft) from Maven Central's jars: no Docker, no Kafka package.
#   scripts/kafka.sh up     fetch jars (cached), format storage, start, wait until it answers
#   scripts/kafka.sh down   stop it cleanly
#   scripts/kafka.sh status | logs
# Jars are cached in $KAFKA_CACHE (outside git); data and logs live in $KAFKA_HOME_DIR.
set -euo pipefail

KAFKA_VERSION="${KAFKA_VERSION:-4.1.1}"
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
KAFKA_CACHE="${KAFKA_CACHE:-$HOME/.cache/exposure-detector/kafka-$KAFKA_VERSION}"
KAFKA_HOME_DIR="${KAFKA_HOME_DIR:-$root/.run/kafka}"
KAFKA_PORT="${KAFKA_PORT:-9092}"
CONTROLLER_PORT="${KAFKA_CONTROLLER_PORT:-19093}"  # 9093 is Alertmanager's port
KAFKA_HEAP="${KAFKA_HEAP:--Xms256m -Xmx512m}"
PY="${PYTHON:-$root/.venv/bin/python}"
pidfile="$KAFKA_HOME_DIR/kafka.pid"
log="$KAFKA_HOME_DIR/server.log"

fetch() {
  if [ -f "$KAFKA_CACHE/libs/.complete" ]; then return; fi
  echo "kafka: resolving org.apache.kafka:kafka_2.13:$KAFKA_VERSION from Maven Central into $KAFKA_CACHE" >&2
  local t0=$SECONDS
  mkdir -p "$KAFKA_CACHE/libs"
  mvn -q -B -f "$here/kafka/pom.xml" -Dkafka.version="$KAFKA_VERSION" \
    dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$KAFKA_CACHE/libs"
  touch "$KAFKA_CACHE/libs/.complete"
  echo "kafka: $(du -sh "$KAFKA_CACHE/libs" | cut -f1) of jars in $((SECONDS - t0)) s" >&2
}

write_config() {
  mkdir -p "$KAFKA_HOME_DIR/data"
  cat > "$KAFKA_HOME_DIR/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$CONTROLLER_PORT
listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$KAFKA_HOME_DIR/data
num.partitions=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=8
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
log.retention.hours=168
log.segment.bytes=104857600
message.max.bytes=2097152
PROPS
  cat > "$KAFKA_HOME_DIR/log4j2.properties" <<PROPS
status = warn
appender.file.type = File
appender.file.name = FILE
appender.file.fileName = $log
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = FILE
logger.kafka.name = kafka
logger.kafka.level = INFO
logger.state.name = state.change.logger
logger.state.level = WARN
PROPS
}

java_args() {
  # shellcheck disable=SC2206  # KAFKA_HEAP holds several flags
  JAVA_ARGS=(java -server $KAFKA_HEAP -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -Djava.awt.headless=true
    -Dlog4j2.configurationFile="$KAFKA_HOME_DIR/log4j2.properties" -cp "$KAFKA_CACHE/libs/*")
}
java_run() { java_args; "${JAVA_ARGS[@]}" "$@"; }

running() { [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; }

wait_ready() {
  # Ready = the broker answers a metadata request (not merely an open port).
  "$PY" - "$KAFKA_PORT" <<'PYEOF'
import sys, time
from kafka import KafkaAdminClient
deadline = time.time() + 90
while True:
    try:
        c = KafkaAdminClient(bootstrap_servers=f"127.0.0.1:{sys.argv[1]}", request_timeout_ms=3000)
        c.list_topics(); c.close(); break
    except Exception as exc:
        if time.time() > deadline:
            sys.exit(f"kafka: not ready after 90 s: {exc}")
        time.sleep(0.5)
PYEOF
}

up() {
  if running; then echo "kafka: already running (pid $(cat "$pidfile"))"; return; fi
  fetch
  write_config
  if [ ! -f "$KAFKA_HOME_DIR/data/meta.properties" ]; then
    java_run kafka.tools.StorageTool format -t "$(java_run kafka.tools.StorageTool random-uuid)" \
      -c "$KAFKA_HOME_DIR/server.properties" >> "$KAFKA_HOME_DIR/format.log" 2>&1 \
      || { cat "$KAFKA_HOME_DIR/format.log" >&2; exit 1; }
  fi
  local t0=$SECONDS
  java_args
  nohup "${JAVA_ARGS[@]}" kafka.Kafka "$KAFKA_HOME_DIR/server.properties" > "$KAFKA_HOME_DIR/stdout.log" 2>&1 &
  echo $! > "$pidfile"
  if ! wait_ready; then
    echo "kafka: broker did not become ready; last lines of $log:" >&2
    tail -n 40 "$log" "$KAFKA_HOME_DIR/stdout.log" >&2 || true
    exit 1
  fi
  echo "kafka: $KAFKA_VERSION ready on 127.0.0.1:$KAFKA_PORT in $((SECONDS - t0)) s (pid $(cat "$pidfile"), log $log)"
}

down() {
  if ! running; then echo "kafka: not running"; rm -f "$pidfile"; return; fi
  local pid; pid="$(cat "$pidfile")"
  kill -TERM "$pid"
  for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
  if kill -0 "$pid" 2>/dev/null; then echo "kafka: still running after 30 s, killing" >&2; kill -KILL "$pid"; fi
  rm -f "$pidfile"
  echo "kafka: stopped"
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) if running; then echo "kafka: running (pid $(cat "$pidfile"))"; else echo "kafka: stopped"; exit 1; fi ;;
  logs) tail -n "${2:-100}" "$log" ;;
  wipe) down; rm -rf "$KAFKA_HOME_DIR" ;;
  *) echo "usage: $0 up|down|status|logs [N]|wipe" >&2; exit 2 ;;
esac
