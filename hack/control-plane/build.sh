#!/usr/bin/env bash
# Build the e2e control plane from the Go module proxy into the cache, once per version
# (hack/versions.env): kube-apiserver (k8s.io/kubernetes), etcd (go.etcd.io/etcd/server/v3),
# workflow-controller and argo (github.com/argoproj/argo-workflows/v4; argo with Argo's web app
# in it, built with Node.js and yarn), and helm (helm.sh/helm/v3), which renders and installs the
# chart. Does nothing for a binary that is already there. Records the paths in
# $cache/control-plane.env.
set -euo pipefail
component=control-plane
# shellcheck source=../lib.sh
source "$(dirname "$0")/../lib.sh"
need_go

# kube-apiserver -----------------------------------------------------------------------------
check_gomod "$hack/kubernetes" "k8s.io/kubernetes $KUBERNETES_VERSION"
build_apiserver() {
  (cd "$hack/kubernetes" && go build -trimpath -ldflags "$(kubernetes_ldflags)" -o "$1" \
    k8s.io/kubernetes/cmd/kube-apiserver)
}
apiserver=$bin/kube-apiserver-$KUBERNETES_VERSION/kube-apiserver
timed kube-apiserver "$apiserver" build_apiserver "$apiserver"

# etcd ---------------------------------------------------------------------------------------
check_gomod "$hack/control-plane/etcd" "go.etcd.io/etcd/server/v3 $ETCD_VERSION"
etcd=$bin/etcd-$ETCD_VERSION/etcd
build_etcd() { (cd "$hack/control-plane/etcd" && go build -trimpath -ldflags "-s -w" -o "$1" .); }
timed etcd "$etcd" build_etcd "$etcd"

# Argo ---------------------------------------------------------------------------------------
controller=$bin/argo-$ARGO_VERSION/workflow-controller
argo=$bin/argo-$ARGO_VERSION/ui-${argo_ui##*-}/argo  # rebuilt when its web app is
timed workflow-controller "$controller" build_argo_cmd workflow-controller "$controller"
timed argo "$argo" build_argo "$argo"

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
ARGO_SRC=$argo_src
ARGO_CRDS=$argo_src/manifests/base/crds/full
HELM=$helm
KUBERNETES_VERSION=$KUBERNETES_VERSION
ETCD_VERSION=$ETCD_VERSION
ARGO_VERSION=$ARGO_VERSION
HELM_VERSION=$HELM_VERSION
ENV
say "ready: $cache/control-plane.env"
