#!/usr/bin/env bash
# Regenerates Python code for every proto under protos/ into libs/.
# Generated files are committed and never edited by hand; `make check-protos`
# fails when they differ from what this script produces.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
find libs/sluice -path '*/v1/*_pb2*.py*' -delete
mapfile -t files < <(cd protos && find sluice -name '*.proto' | sort)
(cd protos && "$OLDPWD/$PY" -m grpc_tools.protoc -I . \
  --python_out="$OLDPWD/libs" --pyi_out="$OLDPWD/libs" --grpc_python_out="$OLDPWD/libs" \
  "${files[@]}")
