#!/usr/bin/env bash
# Install the Debian packages the tests start for real or call, when they are missing and
# apt-get can install them. Prints what it did.
#   integration: Prometheus, Alertmanager, Pushgateway, PostgreSQL, jq, curl
#   cluster (make cluster-up): runc, the CNI plugins, iptables + conntrack (kube-proxy), buildah
#     and mmdebstrap (images), docker-registry (the registry the node pulls from), chromium and
#     an emoji font (headless: the Argo UI check, tests/cluster/test_argo_ui.py, whose agent
#     logs have emoji)
set -euo pipefail
declare -A wanted=([prometheus]=prometheus [prometheus-alertmanager]=prometheus-alertmanager
                   [prometheus-pushgateway]=prometheus-pushgateway [jq]=jq [curl]=curl
                   [runc]=runc [iptables]=iptables [conntrack]=conntrack [buildah]=buildah
                   [mmdebstrap]=mmdebstrap [docker-registry]=docker-registry
                   [chromium]=chromium)
missing=()
for command in "${!wanted[@]}"; do
  command -v "$command" >/dev/null || missing+=("${wanted[$command]}")
done
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || missing+=(postgresql)
[ -x /usr/lib/cni/bridge ] || missing+=(containernetworking-plugins)
[ -e /usr/share/fonts/truetype/noto/NotoColorEmoji.ttf ] || missing+=(fonts-noto-color-emoji)
if [ ${#missing[@]} -eq 0 ]; then
  echo "[system-deps] the integration tests' servers and the cluster's packages are installed"
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
