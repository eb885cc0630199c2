# Shared by the build scripts under hack/: versions, cache paths, logging and cached builds.
# Source it after setting `component` (the tag of the script's log lines).
hack=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=versions.env
source "$hack/versions.env"
cache=${PUNCHINGFIST_CACHE:-$HOME/.cache/punchingfist}
bin=$cache/bin
export CGO_ENABLED=0 GOFLAGS=-buildvcs=false

say() { printf '[%s] %s\n' "${component:-hack}" "$*" >&2; }

need_go() {
  command -v go >/dev/null || { say "Go is not installed: this needs Go >= 1.26"; exit 3; }
}

timed() {  # timed NAME TARGET COMMAND...: run COMMAND unless TARGET exists, and say how long
  local name=$1 target=$2; shift 2
  if [ -e "$target" ]; then
    say "$name: cached at $target"
    return
  fi
  say "$name: building (this takes minutes on a cold cache) ..."
  local start=$SECONDS
  mkdir -p "$(dirname "$target")"
  "$@"
  say "$name: built in $((SECONDS - start)) s -> $target"
}

check_gomod() {  # check_gomod DIR "MODULE VERSION": the wrapper go.mod must name versions.env's
  grep -q "$2" "$1/go.mod" || {
    say "$1/go.mod does not require $2 (hack/versions.env); update it and run go mod tidy there"
    exit 2
  }
}

kubernetes_ldflags() {  # the version `kubectl version` and the API server report
  local pkg=k8s.io/component-base/version minor
  minor=$(echo "$KUBERNETES_VERSION" | cut -d. -f2)
  echo "-s -w -X $pkg.gitVersion=$KUBERNETES_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor" \
    "-X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
}

# Argo's module has no `replace` lines, so its commands build as they are, from a copy of the
# module with what its zip lacks put back: `argo` embeds ui/dist (a placeholder page here), and
# the zip drops symlinks, among them argoexec's signal_linux.go -> signal_darwin.go.
argo_module=github.com/argoproj/argo-workflows/v4
argo_src=$cache/src/argo-workflows-$ARGO_VERSION
prepare_argo_src() {
  [ -f "$argo_src/.ready" ] && [ -e "$argo_src/workflow/executor/osspecific/signal_linux.go" ] \
    && return
  local dir
  dir=$(cd "$hack/control-plane/argo" && go mod download -json "$argo_module@$ARGO_VERSION" \
    | sed -n 's/^\s*"Dir": "\(.*\)",$/\1/p')
  rm -rf "$argo_src" && mkdir -p "$(dirname "$argo_src")"
  cp -r "$dir" "$argo_src" && chmod -R u+w "$argo_src"
  mkdir -p "$argo_src/ui/dist/app"
  echo '<!doctype html><title>Argo UI not built</title>' > "$argo_src/ui/dist/app/index.html"
  ln -s signal_darwin.go "$argo_src/workflow/executor/osspecific/signal_linux.go"
  touch "$argo_src/.ready"
}
build_argo_cmd() {  # build_argo_cmd PACKAGE OUTPUT
  prepare_argo_src
  (cd "$argo_src" && go build -trimpath \
    -ldflags "-s -w -X $argo_module.version=$ARGO_VERSION -X $argo_module.gitTreeState=clean" \
    -o "$2" "./cmd/$1")
}
