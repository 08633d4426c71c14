#!/usr/bin/env bash
# Static binaries and images for docker-compose.yml (FROM scratch: no base
# image can be pulled on our machines). Incremental: cargo rebuilds only
# what changed and docker reuses its layers, so a second run takes seconds.
#   scripts/compose-build.sh [docker-compose options, e.g. -p NAME]
set -euo pipefail
cd "$(dirname "$0")/.."
triple=x86_64-unknown-linux-gnu
bins=(virtmesh-gateway virtmesh-test)

# --target keeps RUSTFLAGS off build scripts and proc macros (they must stay
# dynamic); only the two role binaries are linked statically.
RUSTFLAGS='-C target-feature=+crt-static' \
  cargo build --release --target "$triple" "${bins[@]/#/--bin=}"

# The images copy from target/compose/, wherever cargo's target dir is.
out="${CARGO_TARGET_DIR:-target}/$triple/release"
mkdir -p target/compose
for bin in "${bins[@]}"; do
  if ldd "$out/$bin" 2>&1 | grep -q '=>'; then
    echo "compose-build.sh: $out/$bin is dynamically linked; a FROM scratch image cannot run it" >&2
    exit 1
  fi
  # cp -p keeps the mtime so an unchanged binary keeps docker's layer cache valid.
  cp -p "$out/$bin" "target/compose/$bin.tmp"
  mv -f "target/compose/$bin.tmp" "target/compose/$bin"
done

# The classic builder: BuildKit is not available with the installed client.
export DOCKER_BUILDKIT=0 COMPOSE_DOCKER_CLI_BUILD=0 COMPOSE_BAKE=false
docker-compose "$@" build
# A rebuild leaves the previous images untagged; drop only ours.
docker image prune --force --filter label=org.virtmesh.role >/dev/null
