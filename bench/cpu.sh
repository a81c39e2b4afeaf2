#!/usr/bin/env bash
# The CPU core against PyTorch on this machine, same thread count, same run
# (docs/BENCHMARKS.md "CPU core"):
#   bench/cpu.sh [threads] [iters]        defaults: nproc, 3
# Needs the release build of bench_cpu_bert (BUILD=build/release by default:
#   cmake --preset release && cmake --build --preset release --target bench_cpu_bert)
# and .venv with Debian's torch (scripts/setup --test). Each case runs the C program and
# then PyTorch, one after the other; the last column is PyTorch time / C time (> 1: C is
# faster). Takes several minutes on 2 cores: not part of the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
# Both sides wait passively in OpenMP, as the runner makes its workers do (main.c):
# libgomp's active waiting lets idle OpenMP threads spin beside OpenBLAS's and costs
# either side 10-40 % on two cores. Override with OMP_WAIT_POLICY=active to compare.
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
threads=${1:-$(nproc)}
iters=${2:-3}
bin=${BUILD:-build/release}/bench/bench_cpu_bert
py=${PYTHON:-.venv/bin/python}
if [[ ! -x $bin ]]; then
  echo "bench/cpu.sh: $bin is not built" >&2
  exit 2
fi
log=$(mktemp)
trap 'rm -f "$log"' EXIT
echo "# $(date -u +%FT%TZ) $(nproc) cpus, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2-), load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "# threads=$threads iters=$iters OMP_WAIT_POLICY=$OMP_WAIT_POLICY (after one warm-up iteration)"
for case in train infer; do
  "$bin" --threads "$threads" --iters "$iters" --only "$case" --profile | tee -a "$log"
  "$py" bench/pytorch_bert.py --threads "$threads" --iters "$iters" --only "$case" | tee -a "$log"
done
"$py" - "$log" <<'PY'
import json, sys
rows = {}
for line in open(sys.argv[1]):
    if line.startswith("{"):
        r = json.loads(line)
        rows.setdefault(r["case"], {})[r["impl"]] = r
print(f"| case | C s/iter (cpu s) | PyTorch s/iter (cpu s) | PyTorch / C |")
print(f"|---|---|---|---|")
for case, r in rows.items():
    c, t = r["c"], r["pytorch"]
    print(f"| {case} | {c['seconds_per_iter']:.2f} ({c['cpu_seconds_per_iter']:.2f}) | "
          f"{t['seconds_per_iter']:.2f} ({t['cpu_seconds_per_iter']:.2f}) | "
          f"{t['seconds_per_iter'] / c['seconds_per_iter']:.2f} |")
PY
