#!/usr/bin/env bash
# Install the Debian packages the integration tests start for real (Prometheus, Alertmanager,
# Pushgateway, PostgreSQL) or call (jq, curl), when they are missing and apt-get can install
# them. Prints what it did.
set -euo pipefail
declare -A wanted=([prometheus]=prometheus [prometheus-alertmanager]=prometheus-alertmanager
                   [prometheus-pushgateway]=prometheus-pushgateway [jq]=jq [curl]=curl)
missing=()
for command in "${!wanted[@]}"; do
  command -v "$command" >/dev/null || missing+=("${wanted[$command]}")
done
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || missing+=(postgresql)
if [ ${#missing[@]} -eq 0 ]; then
  echo "[system-deps] prometheus, alertmanager, pushgateway, postgresql, jq and curl are installed"
  exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
  echo "[system-deps] missing: ${missing[*]} (install them; the tests that need them skip)" >&2
  exit 0
fi
echo "[system-deps] installing ${missing[*]} ..."
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "[system-deps] installed ${missing[*]}"
