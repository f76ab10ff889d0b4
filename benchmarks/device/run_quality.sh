#!/bin/bash
# One device call (benchmarks/device/make_payload.py builds what it needs): set-up, the fused top-k timing (GPU
# alone), then quality rows ($EPOCHS epochs, seeds 0-2, $METHODS on $DATASETS, one process per data set and seed, all
# sharing the GPU) beside the native Triton tests; stops the rows at $DEADLINE s. Everything lands in
# $OUT/results.tgz (+ the tables in the output). Session 8 ran it as `DEADLINE=470 bash .devpayload/run_quality.sh`,
# then the `ce` rows alone (METHODS=ce, no top-k / tests) in a second call.
T0=$(date +%s); el() { echo $(( $(date +%s) - T0 )); }
PY=${PY:-python3}; DEV=${DEV:-cuda}; EPOCHS=${EPOCHS:-10}; DEADLINE=${DEADLINE:-500}; EXTRA=${EXTRA:-}
METHODS=${METHODS:-ca-default pml-xbm ce}; DATASETS=${DATASETS:-trec50 trec6 banking77}
. .devpayload/setup_payload.sh
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
tail -n 3 $R/pytest.log 2>/dev/null; tail -n 25 $R/topk_cuda.md 2>/dev/null
for f in $R/quality_*.md; do echo "== $f"; grep -E "^\|" $f | head -20; done
grep -h "FAILED\|Error" $R/q_*.log | head -20
echo "end t=$(el)"
