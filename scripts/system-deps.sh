#!/usr/bin/env bash
# System packages the project needs (Debian/Ubuntu, as root or with sudo):
# Java 17 + Maven to fetch and run Kafka; prometheus (promtool) and prometheus-alertmanager (amtool)
# for the tests that use a real Prometheus and Alertmanager; Chromium and its driver for the
# console's browser tests; openssl for the secured test broker's certificates; python3 venv support.
set -euo pipefail
# usage: system-deps.sh [kafka|all]   (kafka: only what the broker needs; all: also the test peers)
what="${1:-all}"
need=()
command -v java >/dev/null || need+=(openjdk-17-jre-headless)
command -v mvn >/dev/null || need+=(maven)
command -v openssl >/dev/null || need+=(openssl)  # certificates of the secured test broker
command -v python3.11 >/dev/null || need+=(python3.11)
python3.11 -c "import ensurepip, venv" 2>/dev/null || need+=(python3.11-venv)
if [ "$what" = all ]; then
  command -v promtool >/dev/null || need+=(prometheus)
  command -v prometheus-alertmanager >/dev/null || need+=(prometheus-alertmanager)
  # The console's browser tests: a real headless Chromium and its driver (no browser download).
  command -v chromium >/dev/null || need+=(chromium)
  command -v chromedriver >/dev/null || need+=(chromium-driver)
fi
[ ${#need[@]} -eq 0 ] && { echo "system-deps: all present"; exit 0; }
sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${need[@]}"
# Debian starts packaged daemons where systemd runs; our tests start their own on free ports.
for svc in prometheus prometheus-alertmanager prometheus-node-exporter; do
  $sudo systemctl stop "$svc" 2>/dev/null || true
done
