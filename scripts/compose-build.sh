#!/usr/bin/env bash
# Static binaries for the FROM-scratch images of docker-compose.yml.
set -euo pipefail
cd "$(dirname "$0")/.."
RUSTFLAGS='-C target-feature=+crt-static' \
  cargo build --release --target x86_64-unknown-linux-gnu \
  --bin virtmesh-gateway --bin virtmesh-test
export DOCKER_BUILDKIT=0 COMPOSE_BAKE=false
docker-compose build
