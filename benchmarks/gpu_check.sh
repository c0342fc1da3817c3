#!/usr/bin/env bash
# Every check that needs a GPU, in one script sized for well under 8 minutes on one
# large GPU (an H200 here). Usage, in the project root on a CUDA machine with CuPy:
#
#   bash benchmarks/gpu_check.sh OUTDIR
#
# Dask is not preinstalled on the device machines: run ../shared/offline-wheels.sh
# here first (it fills ./.whl) and carry .whl; this script installs from it.
# Results land in OUTDIR as JSON and text logs.
set -uo pipefail
out=${1:?usage: gpu_check.sh OUTDIR}
mkdir -p "$out"
cd "$(dirname "$0")/.."
if [ -d .whl ] && ! python3 -c "import dask, distributed" 2>/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site:${PYTHONPATH:-}
fi
export PYTHONPATH=$PWD:${PYTHONPATH:-}
python3 -c "import gpuopt, json; print(json.dumps(gpuopt.backend.info()))" | tee "$out/info.json"
nvidia-smi --query-gpu=name,memory.total,clocks.max.memory --format=csv > "$out/nvidia-smi.csv" 2>&1

status=0
run() {  # name, timeout seconds, command...
  local name=$1 limit=$2; shift 2
  echo "== $name" | tee -a "$out/summary.txt"
  local t0=$SECONDS
  timeout "$limit" "$@" > "$out/$name.log" 2>&1
  local rc=$?
  echo "   rc=$rc in $((SECONDS - t0)) s" | tee -a "$out/summary.txt"
  tail -n 25 "$out/$name.log" >> "$out/summary.txt"
  [ $rc -eq 0 ] || status=1
}

# 1. The GPU tests: real CuPy kernels against the NumPy path (they skip on CPUs).
run gpu_tests 150 python3 -m pytest -q -x -k "cupy or gpu" tests -p no:cacheprovider
# 2. Update kernels: effective bandwidth against a device copy, vs torch fused CUDA Adam.
run bench_update 120 python3 benchmarks/bench_update.py --device gpu --sizes 1M,8M,64M --json "$out/bench_update.json"
# 3. Grid studies at GPU size: 1,000,000 Rosenbrock/Adam runs x 1,000 steps and 65,536 MLP
#    runs x 100 GD steps as one batch each, against per-run loops (a few runs, extrapolated)
#    and jax (when jax has a GPU backend); one repetition each (kernels are built by a
#    warm-up first). Study 3 (Dask, one worker per GPU) runs only when dask imports.
#    The JSON is rewritten after each study, so a timeout keeps what was measured.
run bench_study 180 python3 benchmarks/bench_study.py --device gpu --reps 1 \
  --rosenbrock-runs 1000000 --rosenbrock-loop-runs 10 --mlp-runs 65536 --mlp-loop-runs 8 \
  --dask-runs 16384 --dask-chunk-size 4096 --json "$out/bench_study.json"
exit $status
