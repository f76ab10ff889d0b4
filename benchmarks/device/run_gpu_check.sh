#!/bin/bash
# Issue 13 in one device call (~8 minutes: 411 s on an H100 in session 11, before step 4 was added;
# `python benchmarks/device/make_payload.py --kernels-only` first, then device run with carry [".devpayload"] and
# `bash .devpayload/run_gpu_check.sh`):
#   1. the kernel, Triton, top-k and objective test files, natively;
#   2. the fused top-k against chunked at 10,000 x 1,000,000 x 768, k 10 and 64, fp32 and bf16;
#   3. fused supcon forward + backward at B = 4096, M = 1,048,576, D = 768, bf16 (throughput) and the memory at
#      B = 256, M = 1,048,576;
#   4. where the time of that step goes (benchmarks/device/profile_supcon.py: per-kernel CUDA time).
# Results and logs land in $OUT/results.tgz; each step has its own time limit, so a slow one does not starve the rest.
T0=$(date +%s); el() { echo $(( $(date +%s) - T0 )); }
PY=${PY:-python3}
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1
$PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .devpayload/whl/*.whl || exit 3
export PYTHONPATH=/tmp/site:$PWD
R=$OUT/r; mkdir -p $R
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 | tee $R/gpu.txt
$PY -c "import torch, triton, sbert_align; print('torch', torch.__version__, 'triton', triton.__version__, 'cuda', torch.cuda.is_available())" 2>&1 | tee -a $R/gpu.txt || exit 5
timeout 270 $PY -m pytest -q -p no:cacheprovider -m "slow or not slow" tests/test_kernels.py tests/test_kernels_triton.py \
  tests/test_topk.py tests/test_objectives.py > $R/pytest.log 2>&1
echo "pytest rc=$? t=$(el)"; tail -n 5 $R/pytest.log
timeout 120 $PY benchmarks/bench_topk.py --device cuda --shapes 10000,1000000,768,10 10000,1000000,768,64 --reps 5 \
  --out-dir $R > $R/topk.log 2>&1
echo "topk rc=$? t=$(el)"
timeout 120 $PY benchmarks/bench_kernels.py --device cuda --objectives supcon --dims 768 --batches 256 4096 \
  --memories 1048576 --out-dir $R > $R/kernels.log 2>&1
echo "kernels rc=$? t=$(el)"
timeout 60 $PY benchmarks/device/profile_supcon.py --b 4096 --m 1048576 --d 768 > $R/profile.raw 2>&1
echo "profile rc=$? t=$(el)"; grep -v USDT $R/profile.raw > $R/profile.log; rm $R/profile.raw; grep "^B " $R/profile.log
tar czf $OUT/results.tgz -C $R .
grep -E "^\|" $R/topk_cuda.md 2>/dev/null; grep -E "^\|" $R/kernels_cuda.md 2>/dev/null | head -20
echo "end t=$(el)"
