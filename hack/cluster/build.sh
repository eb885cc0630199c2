#!/usr/bin/env bash
# Build what the single-node cluster runs beyond the e2e control plane, into the cache, once per
# version (hack/versions.env): kubelet, kube-controller-manager, kube-scheduler, kube-proxy and
# kubectl (k8s.io/kubernetes), containerd with its runc shim and ctr, CoreDNS, Argo's argoexec,
# and the pod sandbox's pause program. Then the images (images.sh). Records every path in
# $cache/cluster.env, which `python -m hack.cluster` reads.
set -euo pipefail
component=cluster
# shellcheck source=../lib.sh
source "$(dirname "$0")/../lib.sh"
need_go
"$hack/control-plane/build.sh"

# Kubernetes: one `go build` of the five commands (they share most packages) ----------------
check_gomod "$hack/kubernetes" "k8s.io/kubernetes $KUBERNETES_VERSION"
kube=$bin/kubernetes-$KUBERNETES_VERSION
kube_commands=(kubelet kube-controller-manager kube-scheduler kube-proxy kubectl)
build_kubernetes() {
  local packages=()
  for command in "${kube_commands[@]}"; do packages+=("k8s.io/kubernetes/cmd/$command"); done
  (cd "$hack/kubernetes" && go build -trimpath -ldflags "$(kubernetes_ldflags)" -o "$kube/" \
    "${packages[@]}")
  touch "$1"
}
timed "kubelet, kube-controller-manager, kube-scheduler, kube-proxy, kubectl" "$kube/.built" \
  build_kubernetes "$kube/.built"

# containerd ---------------------------------------------------------------------------------
check_gomod "$hack/cluster/containerd" "github.com/containerd/containerd/v2 $CONTAINERD_VERSION"
containerd=$bin/containerd-$CONTAINERD_VERSION
build_containerd() {
  (cd "$hack/cluster/containerd" && go build -trimpath -tags "no_btrfs no_devmapper no_zfs" \
    -ldflags "-s -w -X github.com/containerd/containerd/v2/version.Version=$CONTAINERD_VERSION" \
    -o "$containerd/" github.com/containerd/containerd/v2/cmd/containerd \
    github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2 \
    github.com/containerd/containerd/v2/cmd/ctr)
  touch "$1"
}
timed "containerd, containerd-shim-runc-v2, ctr" "$containerd/.built" build_containerd \
  "$containerd/.built"

# CoreDNS (only the plugins hack/cluster/coredns/main.go names) -------------------------------
check_gomod "$hack/cluster/coredns" "github.com/coredns/coredns $COREDNS_VERSION"
coredns=$bin/coredns-$COREDNS_VERSION/coredns
build_coredns() { (cd "$hack/cluster/coredns" && go build -trimpath -ldflags "-s -w" -o "$1" .); }
timed coredns "$coredns" build_coredns "$coredns"

# argoexec: the executor Argo puts in every step pod -----------------------------------------
argoexec=$bin/argo-$ARGO_VERSION/argoexec
timed argoexec "$argoexec" build_argo_cmd argoexec "$argoexec"

# pause: rebuilt when its source changes -----------------------------------------------------
pause=$bin/pause-$(sha256sum "$hack/cluster/pause/main.go" | cut -c1-12)/pause
build_pause() { (cd "$hack/cluster/pause" && go build -trimpath -ldflags "-s -w" -o "$1" .); }
timed pause "$pause" build_pause "$pause"

cat > "$cache/cluster.env" <<ENV
$(cat "$cache/control-plane.env")
KUBELET=$kube/kubelet
KUBE_CONTROLLER_MANAGER=$kube/kube-controller-manager
KUBE_SCHEDULER=$kube/kube-scheduler
KUBE_PROXY=$kube/kube-proxy
KUBECTL=$kube/kubectl
CONTAINERD=$containerd/containerd
CONTAINERD_SHIM=$containerd/containerd-shim-runc-v2
CTR=$containerd/ctr
COREDNS=$coredns
ARGOEXEC=$argoexec
PAUSE=$pause
CONTAINERD_VERSION=$CONTAINERD_VERSION
COREDNS_VERSION=$COREDNS_VERSION
ENV
say "binaries ready: $cache/cluster.env"
"$hack/cluster/images.sh"
