#!/usr/bin/env bash
# Regenerates reallocator/v1/*_pb2.py(i) and *_pb2_grpc.py from protos/ with grpcio-tools and
# mypy-protobuf. The output is committed; .ci/run regenerates and fails on any difference.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
# The mypy-protobuf plugins (protoc-gen-mypy, protoc-gen-mypy_grpc) live beside that interpreter.
PATH="$(dirname "$(command -v "$PY")"):$PATH"
export PATH
out=reallocator/v1
rm -f "$out"/*_pb2.py "$out"/*_pb2.pyi "$out"/*_pb2_grpc.py "$out"/*_pb2_grpc.pyi
"$PY" -m grpc_tools.protoc \
  -I protos -I third_party \
  --python_out=. --mypy_out=. \
  --grpc_python_out=. --mypy_grpc_out=. \
  protos/reallocator/v1/*.proto
mkdir -p "$out"
touch "$out/__init__.py" "$out/py.typed"
