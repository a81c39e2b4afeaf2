#!/usr/bin/env bash
# The CPU core against PyTorch on this machine, same thread count, same run
# (docs/BENCHMARKS.md "CPU core"):
#   bench/cpu.sh [threads] [iters]        defaults: nproc, 3
# Needs the release builds of bench_cpu_bert and bench_cpu_gemm (BUILD=build/release by
# default: cmake --preset release && cmake --build --preset release --target
# bench_cpu_bert bench_cpu_gemm)
# and .venv with Debian's torch (scripts/setup --test). Each case runs the C program and
# then PyTorch, one after the other; the last column is PyTorch time / C time (> 1: C is
# faster). The infer case runs twice: fp32, then bf16 (--precision bf16 on both sides:
# oneDNN's bf16 GEMMs in C, torch.autocast bf16 in PyTorch; only where the CPU has
# avx512_bf16 or AMX: elsewhere that row is left out). Takes several minutes on 2 cores:
# not part of the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
# Both sides wait passively in OpenMP, as the runner makes its workers do (main.c):
# libgomp's active waiting lets idle OpenMP threads spin beside OpenBLAS's and costs
# either side 10-40 % on two cores. Override with OMP_WAIT_POLICY=active to compare.
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
threads=${1:-$(nproc)}
iters=${2:-3}
bin=${BUILD:-build/release}/bench/bench_cpu_bert
gemm_bin=${BUILD:-build/release}/bench/bench_cpu_gemm
py=${PYTHON:-.venv/bin/python}
for b in "$bin" "$gemm_bin"; do
  if [[ ! -x $b ]]; then
    echo "bench/cpu.sh: $b is not built" >&2
    exit 2
  fi
done
log=$(mktemp)
trap 'rm -f "$log"' EXIT
echo "# $(date -u +%FT%TZ) $(nproc) cpus, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2-), load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "# threads=$threads iters=$iters OMP_WAIT_POLICY=$OMP_WAIT_POLICY (after one warm-up iteration)"
# Single sentences (1x128, 1x32) are latency cases: 20x the iterations, no profile.
for run in train:fp32:8x128 infer:fp32:32x128 infer:bf16:32x128 infer:fp32:1x128 \
    infer:bf16:1x128 infer:fp32:1x32 infer:bf16:1x32; do
  IFS=: read -r case precision shape <<<"$run"
  n=$iters profile=(--profile)
  if [[ $shape == 1x* ]]; then n=$((iters * 20)) profile=(); fi
  shape_flag=(); [[ $case == infer ]] && shape_flag=(--infer-shape "$shape")
  if ! "$bin" --threads "$threads" --iters "$n" --only "$case" --precision "$precision" \
      "${shape_flag[@]}" "${profile[@]}" | tee -a "$log"; then
    echo "# $case $precision $shape: not run here (see the message above)"
    continue
  fi
  # torch.set_num_threads does not bind the OpenBLAS pool of Debian's torch (its "1 thread"
  # run used 2 cores): the environment does
  OMP_NUM_THREADS=$threads OPENBLAS_NUM_THREADS=$threads \
    "$py" bench/pytorch_bert.py --threads "$threads" --iters "$n" --only "$case" \
    --precision "$precision" "${shape_flag[@]}" | tee -a "$log"
done
# The thread-independent tiled GEMM against one threaded OpenBLAS call, same shapes.
"$gemm_bin" --threads "$threads" | tee -a "$log"
"$py" - "$log" <<'PY'
import json, sys
rows, gemms = {}, []
for line in open(sys.argv[1]):
    if line.startswith("{"):
        r = json.loads(line)
        if "shape" in r:
            gemms.append(r)
            continue
        rows.setdefault(r["case"], {})[r["impl"]] = r
# The floor: OpenBLAS sgemm 2048^3 at the same thread count, measured in this run.
floor = next((g["threaded_gflops"] for g in gemms if g["shape"].startswith("sgemm 2048")), None)
print(f"| case | C s/iter (cpu s) | PyTorch s/iter (cpu s) | PyTorch / C | C of floor | PyTorch of floor |")
print(f"|---|---|---|---|---|---|")
for case, r in rows.items():
    c, t = r["c"], r["pytorch"]
    gflop = c.get("gflop_per_iter")
    share = (lambda x: f"{100 * gflop / (x['seconds_per_iter'] * floor):.0f} %") \
        if gflop and floor else (lambda x: "-")
    print(f"| {case} | {c['seconds_per_iter']:.2f} ({c['cpu_seconds_per_iter']:.2f}) | "
          f"{t['seconds_per_iter']:.2f} ({t['cpu_seconds_per_iter']:.2f}) | "
          f"{t['seconds_per_iter'] / c['seconds_per_iter']:.2f} | {share(c)} | {share(t)} |")
if floor:
    print(f"\nfloor: sgemm 2048^3 at {floor:.0f} GFLOP/s; a case's share = its GFLOP per "
          f"iteration (C's count: linear layers and attention GEMMs) / (s/iter x floor)")
print()
print("| GEMM | threaded OpenBLAS GFLOP/s | tiled GFLOP/s | tiled / threaded |")
print("|---|---|---|---|")
for g in gemms:
    print(f"| {g['shape']} ({g['M']}x{g['N']}x{g['K']}) | {g['threaded_gflops']:.0f} | "
          f"{g['tiled_gflops']:.0f} | {g['tiled_over_threaded']:.2f} |")
PY
