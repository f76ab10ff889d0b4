#!/bin/bash
# Quality rows and the kernel checks in one device call, for a session whose whole device time (15 minutes, the
# machine's start included) fits one call. Build the payload with
# `python benchmarks/device/make_payload.py --datasets banking77`, then device run with carry [".devpayload"] and
# `bash .devpayload/run_rows_and_checks.sh`. Order, each step with its own time limit under $DEADLINE s:
#   1. set-up (wheels, the pruned encoder; as run_quality.sh);
#   2. $METHODS on $DATASETS, $EPOCHS epochs, seeds $SEEDS, one process per (data set, seed), in the background
#      (default: pml-xbm on Banking77, 10 epochs, seeds 0-2, the row session 16 added to issue 9's GPU table);
#   3. meanwhile the native kernel, Triton, top-k and objective tests (correctness only, so sharing the GPU is fine);
#   4. once the rows are done, with the GPU to themselves: the fused supcon memory at B = 256, M = 1,048,576 and
#      throughput at B = 4096 (bench_kernels.py), where that step's time goes (profile_supcon.py), then the fused
#      top-k at 10,000 x 1,000,000 x 768 (bench_topk.py), as far as the time left allows.
# Results and logs land in $OUT/results.tgz.
# Session 16 ran it as `DEADLINE=500 bash .devpayload/run_rows_and_checks.sh` on an H100: set-up 20 s, rows and tests
# done at 202 s, kernels at 280 s, profile at 305 s, top-k at 400 s.
T0=$(date +%s); el() { echo $(( $(date +%s) - T0 )); }
left() { local l=$(( DEADLINE - $(el) )); echo $(( l > 1 ? l : 1 )); }  # >= 1: timeout 0 means none
PY=${PY:-python3}; EPOCHS=${EPOCHS:-10}; DEADLINE=${DEADLINE:-500}; EXTRA=${EXTRA:-}
METHODS=${METHODS:-pml-xbm}; DATASETS=${DATASETS:-banking77}; SEEDS=${SEEDS:-0 1 2}
. .devpayload/setup_payload.sh
echo "setup done t=$(el)"
Q="--epochs $EPOCHS --threads 1 --device cuda --out-dir $R $EXTRA"
for s in $SEEDS; do
  for d in $DATASETS; do
    timeout $(left) $PY benchmarks/bench_quality.py --dataset $d --seed $s $Q --methods $METHODS > $R/q_${d}_$s.log 2>&1 &
  done
done
l=$(left); [ $l -gt 240 ] && l=240
timeout $l $PY -m pytest -q -p no:cacheprovider -m "slow or not slow" tests/test_kernels.py tests/test_kernels_triton.py \
  tests/test_topk.py tests/test_objectives.py > $R/pytest.log 2>&1
echo "pytest rc=$? t=$(el)"; tail -n 5 $R/pytest.log
wait
echo "rows done t=$(el)"
for f in $R/quality_*.md; do echo "== $f"; grep -E "^\|" $f | head -8; done
grep -h "FAILED\|Error" $R/q_*.log | head -10
l=$(left); [ $l -gt 150 ] && l=150
if [ $l -gt 20 ]; then
  timeout $l $PY benchmarks/bench_kernels.py --device cuda --objectives supcon --dims 768 --batches 256 4096 \
    --memories 1048576 --out-dir $R > $R/kernels.log 2>&1
  echo "kernels rc=$? t=$(el)"; grep -E "^\|" $R/kernels_cuda.md 2>/dev/null | head -14
fi
l=$(left); [ $l -gt 60 ] && l=60
if [ $l -gt 20 ]; then
  timeout $l $PY benchmarks/device/profile_supcon.py --b 4096 --m 1048576 --d 768 > $R/profile.raw 2>&1
  echo "profile rc=$? t=$(el)"; grep -v USDT $R/profile.raw > $R/profile.log; rm $R/profile.raw; grep "^B " $R/profile.log
fi
l=$(left)
if [ $l -gt 30 ]; then
  timeout $l $PY benchmarks/bench_topk.py --device cuda --shapes 10000,1000000,768,10 10000,1000000,768,64 --reps 5 \
    --out-dir $R > $R/topk.log 2>&1
  echo "topk rc=$? t=$(el)"; grep -E "^\|" $R/topk_cuda.md 2>/dev/null
fi
tar czf $OUT/results.tgz -C $R .
echo "end t=$(el)"
