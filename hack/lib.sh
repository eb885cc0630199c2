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
# module with what its zip lacks put back: the zip drops symlinks, among them argoexec's
# signal_linux.go -> signal_darwin.go; ui/dist, the web app `argo` embeds, is built by
# build_argo_ui below.
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
  ln -s signal_darwin.go "$argo_src/workflow/executor/osspecific/signal_linux.go"
  touch "$argo_src/.ready"
}
build_argo_cmd() {  # build_argo_cmd PACKAGE OUTPUT
  prepare_argo_src
  (cd "$argo_src" && go build -trimpath \
    -ldflags "-s -w -X $argo_module.version=$ARGO_VERSION -X $argo_module.gitTreeState=clean" \
    -o "$2" "./cmd/$1")
}

# Argo's web app (ui/ in its module), which `argo server` serves: built with yarn from the
# lock file's versions (npm registry), except its one git dependency, argo-ui at the commit
# ui/package.json pins, which comes from the tarball in ../shared/vendor/ beside the repo
# (PUNCHINGFIST_VENDOR elsewhere). Cached under $cache/ui/ by a key of its inputs (the Argo and
# yarn versions, the recipe below); a failed build fails the build of `argo`.
vendor=${PUNCHINGFIST_VENDOR:-$(cd "$hack/../.." && pwd)/shared/vendor}
need_node() {
  local major
  major=$(node --version 2>/dev/null | sed -n 's/^v\([0-9]*\)\..*/\1/p')
  [ -n "$major" ] && [ "$major" -ge 20 ] || {
    say "Node.js >= 20 is needed to build Argo's UI (found: ${major:-none}); install it"; exit 1
  }
}
logged() {  # logged LOG DIR WHAT COMMAND...: in DIR, output to LOG, its tail and exit on failure
  local log=$1 dir=$2 what=$3 start=$SECONDS; shift 3
  say "$what (log: $log) ..."
  if ! (cd "$dir" && "$@") >>"$log" 2>&1; then
    tail -n 40 "$log" >&2
    say "$what failed (whole log: $log; sources in $dir)"
    exit 1
  fi
  say "$what: done in $((SECONDS - start)) s"
}
build_argo_ui() {  # build_argo_ui OUTPUT: OUTPUT/app is what upstream's `yarn build` makes
  need_node
  prepare_argo_src
  local work=$cache/src/argo-ui-build log=$cache/logs/argo-ui.log commit tarball
  local tools=$cache/tools/yarn-$YARN_VERSION
  commit=$(sed -n 's/.*"argo-ui": "git+[^"#]*#\([0-9a-f]\{40\}\)".*/\1/p' \
    "$argo_src/ui/package.json")
  [ -n "$commit" ] || { say "argo UI: no argo-ui git commit in $argo_src/ui/package.json"; exit 1; }
  tarball=$vendor/argo-ui-${commit:0:7}.tar.gz
  [ -f "$tarball" ] || { say "argo UI: $tarball (argo-ui at $commit) is missing"; exit 1; }
  rm -rf "$work"
  mkdir -p "$work/argo-ui" "$work/api" "$(dirname "$log")"
  : >"$log"
  # The sources as webpack expects them (ui/ beside api/, whose schemas it copies), argo-ui
  # from the tarball as a directory dependency, in package.json and the lock file alike.
  cp -r "$argo_src/ui" "$work/ui"
  cp -r "$argo_src/api/openapi-spec" "$argo_src/api/jsonschema" "$work/api/"
  rm -rf "$work/ui/dist"
  tar -xzf "$tarball" -C "$work/argo-ui"
  sed -i "s|\"git+[^\"]*argo-ui\\.git#$commit\"|\"file:../argo-ui\"|" "$work/ui/package.json"
  sed -i -e "s|^\"argo-ui@git+[^\"]*#$commit\":\$|\"argo-ui@file:../argo-ui\":|" \
    -e "/^  resolved \"git+[^\"]*argo-ui\\.git#$commit\"\$/d" "$work/ui/yarn.lock"
  grep -q '"argo-ui": "file:../argo-ui"' "$work/ui/package.json" \
    && grep -q '^"argo-ui@file:../argo-ui":$' "$work/ui/yarn.lock" \
    && ! grep -q "$commit" "$work/ui/yarn.lock" \
    || { say "argo UI: could not point argo-ui at the tarball in $work/ui"; exit 1; }
  [ -x "$tools/node_modules/.bin/yarn" ] || logged "$log" "$work" "argo UI: npm install yarn" \
    npm install --prefix "$tools" --no-save --no-package-lock "yarn@$YARN_VERSION"
  # --frozen-lockfile: every package at the lock file's version, none resolved anew.
  logged "$log" "$work/ui" "argo UI: yarn install (the lock file's versions)" \
    "$tools/node_modules/.bin/yarn" install --frozen-lockfile --non-interactive --no-progress \
    --network-timeout 600000 --cache-folder "$work/yarn-cache"
  # Upstream's `yarn build`: webpack in production mode, about 2.5 GB and 2 min on 2 cores.
  logged "$log" "$work/ui" "argo UI: webpack production build" env NODE_ENV=production \
    VERSION="$ARGO_VERSION" NODE_OPTIONS=--max-old-space-size=4096 \
    node_modules/.bin/webpack --mode production
  grep -q '<script' "$work/ui/dist/app/index.html" \
    || { say "argo UI: $work/ui/dist/app/index.html loads no script"; exit 1; }
  rm -rf "$1.tmp"
  mkdir -p "$1.tmp"
  mv "$work/ui/dist/app" "$1.tmp/app"
  rm -rf "$1"
  mv "$1.tmp" "$1"
  rm -rf "$work"
}
argo_ui=$cache/ui/argo-ui-$ARGO_VERSION-$( { echo "$ARGO_VERSION $YARN_VERSION"
  declare -f build_argo_ui; } | sha256sum | cut -c1-12)
build_argo() {  # build_argo OUTPUT: the argo command with the web app in it (ui/dist/app)
  # One build at a time (two `make` runs would share the work directory and ui/dist).
  local lock
  mkdir -p "$cache/ui"
  exec {lock}>"$cache/ui/.lock"
  flock -n "$lock" || { say "argo: waiting for another build of it ..."; flock "$lock"; }
  if [ ! -e "$1" ]; then
    timed "argo UI" "$argo_ui/app/index.html" build_argo_ui "$argo_ui"
    prepare_argo_src
    rm -rf "$argo_src/ui/dist"
    mkdir -p "$argo_src/ui/dist"
    cp -r "$argo_ui/app" "$argo_src/ui/dist/app"
    build_argo_cmd argo "$1"
  fi
  exec {lock}>&-
}
