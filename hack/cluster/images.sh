#!/usr/bin/env bash
# Build the cluster's images with buildah (Dockerfiles under hack/cluster/images/ and
# runtime-image/Dockerfile) into buildah storage in the cache. Each image is tagged with a hash
# of its inputs, so that a change rebuilds that image and nothing else:
#   base      Debian $DEBIAN_SUITE made with mmdebstrap: python3 + venv, curl, jq, CA certificates
#   runtime   runtime-image/Dockerfile on that base with kubectl from our Kubernetes build: the
#             image of every step pod and of the operator's Deployment
#   workflow-controller, argoexec, coredns   our builds of them on the base
#   pause     the pod sandbox
# Records the names in $cache/cluster-images.env; `python -m hack.cluster up` pushes them to the
# cluster's registry. Build output goes to $cache/logs/image-NAME.log (its tail on failure).
set -euo pipefail
component=images
# shellcheck source=../lib.sh
source "$(dirname "$0")/../lib.sh"
# shellcheck disable=SC1091
source "$cache/cluster.env"
root=$(cd "$hack/.." && pwd)
storage=$cache/containers
logs=$cache/logs
mkdir -p "$logs"
for tool in buildah mmdebstrap; do
  command -v "$tool" >/dev/null || { say "$tool is not installed: run hack/cluster/deps.sh"; exit 3; }
done

buildah_() { buildah --root "$storage/root" --runroot "$storage/run" --storage-driver overlay "$@"; }
have() { buildah_ inspect --type image "$1" >/dev/null 2>&1; }
hash_of() { sha256sum | cut -c1-12; }  # of contents only: tags do not depend on paths
files_hash() {  # files_hash PATH...: the names and contents of the files under PATHs (repo root)
  (cd "$root" && find "$@" -type f ! -name '*.pyc' ! -path '*/__pycache__/*' -print0 \
    | sort -z | xargs -0 sha256sum) | hash_of
}

image() {  # image NAME TAG CONTEXT DOCKERFILE [bud args...]: build unless present; print the name
  local name=$1 tag=$2 context=$3 file=$4; shift 4
  local ref=localhost/punchingfist/$name:$tag log=$logs/image-$name.log
  if have "$ref"; then
    say "$name: cached ($ref)"
  else
    say "$name: building $ref (log: $log) ..."
    local start=$SECONDS
    if ! buildah_ bud --isolation chroot --layers -f "$file" -t "$ref" "$@" "$context" >"$log" 2>&1
    then
      tail -n 40 "$log" >&2
      say "$name: the build failed (whole log: $log)"
      exit 1
    fi
    say "$name: built in $((SECONDS - start)) s"
  fi
  echo "$ref"
}

# base: a root filesystem from Debian's mirror. The machine's extra CA certificates (such as a
# TLS-inspecting proxy's) are added, so that pip and apt inside image builds trust what it trusts.
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
security=${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
packages=python3,python3-venv,ca-certificates,curl,jq
extra_cas=(/usr/local/share/ca-certificates/*.crt)
[ -e "${extra_cas[0]}" ] || extra_cas=()
base_tag=$DEBIAN_SUITE-$( (echo "$DEBIAN_SUITE $packages $mirror"; cat "${extra_cas[@]}" \
  "$hack/cluster/images/base.Dockerfile") | hash_of)
base=localhost/punchingfist/base:$base_tag
if ! have "$base"; then
  context=$(mktemp -d)
  trap 'rm -rf "$context"' EXIT
  say "base: mmdebstrap $DEBIAN_SUITE ($packages) ..."
  start=$SECONDS
  hook='true'
  if [ ${#extra_cas[@]} -gt 0 ]; then
    hook='cp /usr/local/share/ca-certificates/*.crt "$1/usr/local/share/ca-certificates/" && chroot "$1" update-ca-certificates >/dev/null'
  fi
  if ! mmdebstrap --variant=minbase --include="$packages" \
      --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
      --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/locale/*' \
      --dpkgopt='path-exclude=/usr/share/info/*' \
      --customize-hook="$hook" \
      "$DEBIAN_SUITE" "$context/rootfs.tar" \
      "deb $mirror $DEBIAN_SUITE main" "deb $mirror $DEBIAN_SUITE-updates main" \
      "deb $security $DEBIAN_SUITE-security main" >"$logs/image-base.log" 2>&1; then
    tail -n 40 "$logs/image-base.log" >&2
    say "base: mmdebstrap failed (whole log: $logs/image-base.log)"
    exit 1
  fi
  say "base: root filesystem in $((SECONDS - start)) s"
  image base "$base_tag" "$context" "$hack/cluster/images/base.Dockerfile" >/dev/null
  rm -rf "$context"
  trap - EXIT
fi
say "base: $base"

binary_image() {  # binary_image NAME PATH USER
  local tag
  tag=$( (echo "$base_tag"; cat "$2" "$hack/cluster/images/binary.Dockerfile") | hash_of)
  image "$1" "$tag" "$(dirname "$2")" "$hack/cluster/images/binary.Dockerfile" \
    --build-arg BASE_IMAGE="$base" --build-arg BINARY="$(basename "$2")" --build-arg USER="$3"
}

dockerfile=$hack/cluster/images/pause.Dockerfile
pause=$(image pause "$(cat "$PAUSE" "$dockerfile" | hash_of)" "$(dirname "$PAUSE")" "$dockerfile")
dockerfile=$hack/cluster/images/kubectl.Dockerfile
kubectl=$(image kubectl "$KUBERNETES_VERSION-$(cat "$KUBECTL" "$dockerfile" | hash_of)" \
  "$(dirname "$KUBECTL")" "$dockerfile")
workflow_controller=$(binary_image workflow-controller "$WORKFLOW_CONTROLLER" 8737)
argoexec=$(binary_image argoexec "$ARGOEXEC" 0)
coredns=$(binary_image coredns "$COREDNS" 65532)
runtime_tag=dev-$( (echo "$base $kubectl"; files_hash runtime-image pyproject.toml README.md punchingfist) | hash_of)
runtime=$(image runtime "$runtime_tag" "$root" "$root/runtime-image/Dockerfile" \
  --build-arg BASE_IMAGE="$base" --build-arg KUBECTL_IMAGE="$kubectl")

# buildah 1.28 keeps a working container for each `COPY --from` stage: drop them (and their
# mounts); images and the layer cache stay.
buildah_ rm --all >/dev/null 2>&1 || true

cat > "$cache/cluster-images.env" <<ENV
BUILDAH_ROOT=$storage/root
BUILDAH_RUNROOT=$storage/run
IMAGE_PAUSE=$pause
IMAGE_RUNTIME=$runtime
IMAGE_WORKFLOW_CONTROLLER=$workflow_controller
IMAGE_ARGOEXEC=$argoexec
IMAGE_COREDNS=$coredns
ENV
say "images ready: $cache/cluster-images.env"
