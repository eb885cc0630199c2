#!/usr/bin/env bash
# Build the Vault server (github.com/hashicorp/vault at VAULT_VERSION, hack/versions.env) from the
# Go module proxy into the cache, once per version: $cache/bin/vault-$VAULT_VERSION/vault, a
# full `vault` (every built-in plugin; no web UI). The integration tests start it as
# `vault server -dev` (tests/integration/secret_servers.py) for the secret references of issue
# #26: KV v2 and the Kubernetes auth method. Records the path in $cache/vault.env.
#
# Vault's go.mod replaces its sdk and api modules with its repository's ./sdk and ./api, which
# its module zip lacks, so it builds here from the wrapper module hack/vault with the published
# modules its go.mod names. Vault 1.21.4's own ./sdk is not one of the published sdk versions:
# it is sdk v0.21.0 (what its go.mod names) with framework.Backend.ActivationFunc still taking
# two arguments (v0.21.0 added a third) and keysutil's RestorePolicy returning the restored
# name (as from v0.24.0). hack/vault/sdk.patch makes a copy of v0.21.0 so; the wrapper module
# is copied beside it and pointed at it.
set -euo pipefail
component=vault
# shellcheck source=../lib.sh
source "$(dirname "$0")/../lib.sh"
need_go

check_gomod "$hack/vault" "github.com/hashicorp/vault $VAULT_VERSION"
vault=$bin/vault-$VAULT_VERSION/vault
src=$cache/src/vault-$VAULT_VERSION
log=$cache/logs/vault-build.log
sdk_module=github.com/hashicorp/vault/sdk

prepare_vault_src() {  # $src/sdk: the patched sdk; $src/build: the wrapper module using it
  local sdk_version dir
  sdk_version=$(sed -n "s|^\t$sdk_module \(v[^ ]*\).*|\1|p" "$hack/vault/go.mod")
  [ -n "$sdk_version" ] || { say "hack/vault/go.mod requires no $sdk_module"; return 1; }
  dir=$(cd "$hack/vault" && go mod download -json "$sdk_module@$sdk_version" \
    | tee -a "$log" | sed -n 's/^\s*"Dir": "\(.*\)",$/\1/p')
  [ -d "$dir" ] || { say "vault: could not download $sdk_module@$sdk_version"; return 1; }
  rm -rf "$src" && mkdir -p "$src/build"
  cp -r "$dir" "$src/sdk" && chmod -R u+w "$src/sdk"
  (cd "$src/sdk" && git apply "$hack/vault/sdk.patch") || {
    say "vault: hack/vault/sdk.patch does not apply to $sdk_module $sdk_version"; return 1
  }
  cp "$hack/vault/go.mod" "$hack/vault/go.sum" "$src/build/"
  (cd "$src/build" && go mod edit -replace "$sdk_module=$src/sdk")
}

build_vault() {
  mkdir -p "$(dirname "$log")"
  : >"$log"
  # Vault reads its version from its module (version/VERSION): no -X flags needed.
  if ! { prepare_vault_src && (cd "$src/build" && go build -trimpath -ldflags "-s -w" \
    -o "$1.tmp" github.com/hashicorp/vault); } >>"$log" 2>&1; then
    tail -n 40 "$log" >&2
    say "vault: the build failed (whole log: $log; module in $src/build)"
    exit 1
  fi
  mv "$1.tmp" "$1"
}
timed vault "$vault" build_vault "$vault"

cat > "$cache/vault.env" <<ENV
VAULT=$vault
VAULT_VERSION=$VAULT_VERSION
ENV
say "ready: $("$vault" version) ($cache/vault.env)"
