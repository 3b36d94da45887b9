#!/usr/bin/env bash
# A local single-node Apache Kafka (KRaft) from Maven Central's jars: no Docker, no Kafka package.
#   scripts/kafka.sh up     fetch jars (cached), format storage, start, wait until it answers
#   scripts/kafka.sh down   stop it cleanly
#   scripts/kafka.sh status | logs
# Jars are cached in $KAFKA_CACHE (outside git); data and logs live in $KAFKA_HOME_DIR.
#
# A second, secured broker runs from the same jars with its own KAFKA_HOME_DIR and ports:
#   KAFKA_SECURITY=sasl_ssl KAFKA_HOME_DIR=/tmp/k2 KAFKA_PORT=19094 KAFKA_CONTROLLER_PORT=19095 \
#   KAFKA_SSL_KEYSTORE=broker.pem KAFKA_SSL_TRUSTSTORE=ca.pem \
#   KAFKA_SCRAM_USERS='admin:admin-secret,detector:detector-secret' scripts/kafka.sh up
# listens with SASL_SSL (SCRAM-SHA-512; the users are created when the storage is formatted; the
# first is the broker's own). KAFKA_SSL_KEYSTORE is one PEM file holding the broker's unencrypted
# PKCS#8 key and its certificate (for 127.0.0.1); KAFKA_SSL_TRUSTSTORE the CA's certificate.
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
KAFKA_SECURITY="${KAFKA_SECURITY:-plaintext}"   # plaintext | sasl_ssl
KAFKA_SCRAM_USERS="${KAFKA_SCRAM_USERS:-}"      # sasl_ssl: user:password,user:password (first = the broker's)
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

scram_user() { echo "${KAFKA_SCRAM_USERS%%,*}" | cut -d: -f1; }
scram_password() { echo "${KAFKA_SCRAM_USERS%%,*}" | cut -d: -f2-; }

listener_config() {
  local name=PLAINTEXT
  if [ "$KAFKA_SECURITY" = sasl_ssl ]; then
    : "${KAFKA_SSL_KEYSTORE:?sasl_ssl needs KAFKA_SSL_KEYSTORE (PEM key + certificate)}"
    : "${KAFKA_SSL_TRUSTSTORE:?sasl_ssl needs KAFKA_SSL_TRUSTSTORE (PEM CA certificate)}"
    [ -n "$KAFKA_SCRAM_USERS" ] || { echo "kafka: sasl_ssl needs KAFKA_SCRAM_USERS" >&2; exit 2; }
    name=SASL_SSL
  fi
  cat <<PROPS
listeners=$name://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$CONTROLLER_PORT
advertised.listeners=$name://127.0.0.1:$KAFKA_PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=$name
listener.security.protocol.map=CONTROLLER:PLAINTEXT,$name:$name
PROPS
  if [ "$name" = SASL_SSL ]; then
    cat <<PROPS
sasl.enabled.mechanisms=SCRAM-SHA-512
sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="$(scram_user)" password="$(scram_password)";
ssl.keystore.type=PEM
ssl.keystore.location=$KAFKA_SSL_KEYSTORE
ssl.truststore.type=PEM
ssl.truststore.location=$KAFKA_SSL_TRUSTSTORE
ssl.endpoint.identification.algorithm=https
ssl.client.auth=none
PROPS
  fi
}

write_config() {
  mkdir -p "$KAFKA_HOME_DIR/data"
  cat > "$KAFKA_HOME_DIR/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$CONTROLLER_PORT
$(listener_config)
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
  local env=(DETECTOR_KAFKA_BOOTSTRAP="127.0.0.1:$KAFKA_PORT")
  if [ "$KAFKA_SECURITY" = sasl_ssl ]; then
    env+=(DETECTOR_KAFKA_SECURITY_PROTOCOL=SASL_SSL DETECTOR_KAFKA_SASL_MECHANISM=SCRAM-SHA-512
          DETECTOR_KAFKA_SASL_USERNAME="$(scram_user)" DETECTOR_KAFKA_SASL_PASSWORD="$(scram_password)"
          DETECTOR_KAFKA_SSL_CAFILE="$KAFKA_SSL_TRUSTSTORE")
  fi
  env -u DETECTOR_KAFKA_SASL_PASSWORD_FILE "${env[@]}" "$PY" - <<'PYEOF'
import sys, time
from kafka import KafkaAdminClient
from detector.settings import Settings
conn = Settings().kafka
deadline = time.time() + 90
while True:
    try:
        c = KafkaAdminClient(**conn.client_kwargs(), request_timeout_ms=3000)
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
    local scram=() pair
    if [ "$KAFKA_SECURITY" = sasl_ssl ]; then
      IFS=, read -ra pairs <<< "$KAFKA_SCRAM_USERS"
      for pair in "${pairs[@]}"; do scram+=(--add-scram "SCRAM-SHA-512=[name=${pair%%:*},password=${pair#*:}]"); done
    fi
    java_run kafka.tools.StorageTool format -t "$(java_run kafka.tools.StorageTool random-uuid)" \
      -c "$KAFKA_HOME_DIR/server.properties" "${scram[@]}" >> "$KAFKA_HOME_DIR/format.log" 2>&1 \
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
  echo "kafka: $KAFKA_VERSION ready on 127.0.0.1:$KAFKA_PORT ($KAFKA_SECURITY) in $((SECONDS - t0)) s (pid $(cat "$pidfile"), log $log)"
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
