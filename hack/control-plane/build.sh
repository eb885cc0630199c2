#!/usr/bin/env bash
# Build the e2e control plane from the Go module proxy into the cache, once per version:
#   kube-apiserver (k8s.io/kubernetes), etcd (go.etcd.io/etcd/server/v3),
#   workflow-controller and argo (github.com/argoproj/argo-workflows/v4), and helm
#   (helm.sh/helm/v3), which renders the chart for its tests.
# Does nothing for a binary that is already there. Prints where each binary is.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=versions.env
source "$here/versions.env"
cache=${PUNCHINGFIST_CACHE:-$HOME/.cache/punchingfist}
bin=$cache/bin
export CGO_ENABLED=0 GOFLAGS=-buildvcs=false

say() { printf '[control-plane] %s\n' "$*" >&2; }

command -v go >/dev/null || { say "Go is not installed: the e2e tier needs Go >= 1.26"; exit 3; }

timed() {  # timed NAME TARGET-BINARY COMMAND...
  local name=$1 target=$2; shift 2
  if [ -x "$target" ]; then
    say "$name: cached at $target"
    return
  fi
  say "$name: building (this takes minutes on a cold cache) ..."
  local start=$SECONDS
  mkdir -p "$(dirname "$target")"
  "$@"
  say "$name: built in $((SECONDS - start)) s -> $target"
}

check_gomod() {  # the wrapper go.mod must name the version in versions.env
  grep -q "$2" "$here/$1/go.mod" || {
    say "$1/go.mod does not require $2 (versions.env); update it and run go mod tidy there"
    exit 2
  }
}

# kube-apiserver ---------------------------------------------------------------------------
check_gomod kube-apiserver "k8s.io/kubernetes $KUBERNETES_VERSION"
k8s_minor=$(echo "$KUBERNETES_VERSION" | cut -d. -f2)
version_pkg=k8s.io/component-base/version
build_apiserver() {
  (cd "$here/kube-apiserver" && go build -trimpath \
    -ldflags "-s -w -X $version_pkg.gitVersion=$KUBERNETES_VERSION -X $version_pkg.gitMajor=1 \
      -X $version_pkg.gitMinor=$k8s_minor -X $version_pkg.gitTreeState=clean \
      -X $version_pkg.buildDate=1970-01-01T00:00:00Z" \
    -o "$1" k8s.io/kubernetes/cmd/kube-apiserver)
}
apiserver=$bin/kube-apiserver-$KUBERNETES_VERSION/kube-apiserver
timed kube-apiserver "$apiserver" build_apiserver "$apiserver"

# etcd ---------------------------------------------------------------------------------------
check_gomod etcd "go.etcd.io/etcd/server/v3 $ETCD_VERSION"
etcd=$bin/etcd-$ETCD_VERSION/etcd
build_etcd() { (cd "$here/etcd" && go build -trimpath -ldflags "-s -w" -o "$1" .); }
timed etcd "$etcd" build_etcd "$etcd"

# Argo ---------------------------------------------------------------------------------------
# The module has no `replace` lines, so it builds as it is; `argo` embeds ui/dist, which the
# module zip lacks, so the CLI is built from a copy with a placeholder page.
argo_module=github.com/argoproj/argo-workflows/v4
argo_src=$cache/src/argo-workflows-$ARGO_VERSION
prepare_argo_src() {
  [ -f "$argo_src/.ready" ] && return
  local dir
  dir=$(cd "$here/argo" && go mod download -json "$argo_module@$ARGO_VERSION" | sed -n 's/^\s*"Dir": "\(.*\)",$/\1/p')
  rm -rf "$argo_src" && mkdir -p "$(dirname "$argo_src")"
  cp -r "$dir" "$argo_src" && chmod -R u+w "$argo_src"
  mkdir -p "$argo_src/ui/dist/app"
  echo '<!doctype html><title>Argo UI not built</title>' > "$argo_src/ui/dist/app/index.html"
  touch "$argo_src/.ready"
}
argo_ldflags="-s -w -X $argo_module.version=$ARGO_VERSION -X $argo_module.gitTreeState=clean"
build_argo_cmd() {  # build_argo_cmd PACKAGE OUTPUT
  prepare_argo_src
  (cd "$argo_src" && go build -trimpath -ldflags "$argo_ldflags" -o "$2" "./cmd/$1")
}
controller=$bin/argo-$ARGO_VERSION/workflow-controller
argo=$bin/argo-$ARGO_VERSION/argo
timed workflow-controller "$controller" build_argo_cmd workflow-controller "$controller"
timed argo "$argo" build_argo_cmd argo "$argo"
argo_crds=$argo_src/manifests/base/crds/full

# helm ---------------------------------------------------------------------------------------
helm=$bin/helm-$HELM_VERSION/helm
build_helm() {
  GOBIN=$(dirname "$1") go install -trimpath -ldflags "-s -w \
    -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION \
    -X helm.sh/helm/v3/internal/version.gitTreeState=clean" \
    "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
}
timed helm "$helm" build_helm "$helm"

# What the tests read ------------------------------------------------------------------------
cat > "$cache/control-plane.env" <<ENV
KUBE_APISERVER=$apiserver
ETCD=$etcd
WORKFLOW_CONTROLLER=$controller
ARGO=$argo
ARGO_CRDS=$argo_crds
HELM=$helm
KUBERNETES_VERSION=$KUBERNETES_VERSION
ETCD_VERSION=$ETCD_VERSION
ARGO_VERSION=$ARGO_VERSION
HELM_VERSION=$HELM_VERSION
ENV
say "ready: $cache/control-plane.env"
