#!/usr/bin/env bash
# Observability overhead (docs/BENCHMARKS.md, "Observability overhead"): training step
# time with the servers idle versus under 200 scrapes/s of /metrics plus the
# server-side load of an open dashboard (two event streams and the panel refreshes
# every 5 s), and the latency of /metrics under that load (wrk).
#
#   bench/serve_overhead.sh [BUILD_DIR] [SECONDS]     (default build/release, 120)
#
# The "training" is tests/tools/serve_demo: one worker process doing a fixed CPU step
# (--work N: N^3 multiply-adds) and logging 7 scalars a step through the /dev/shm ring,
# the supervisor serving 6006/6007/8265, as in the runner. It runs for SECONDS while
# the load is switched on and off every WINDOW seconds (default 2); every step is
# classed by the window it started in (steps near a switch are left out), so slow
# drifts of a shared machine fall equally on both classes. Reported: the median step
# wall time and the training thread's own CPU time per step in each class, the
# supervisor's CPU share, and wrk's /metrics request rate and latency percentiles.
#
# PIN chooses the placement (taskset):
#   PIN=split   the worker alone on CPU 0, supervisor (servers) and load on CPU 1: a GPU
#               node, where a worker's host thread has a core and the supervisor others
#               (default)
#   PIN=shared  supervisor and worker both on CPU 0, load on CPU 1: every cycle the
#               servers use comes out of the training core (worst case)
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build/release}
SECONDS_TOTAL=${2:-120}
WINDOW=${WINDOW:-2}
WORK=${WORK:-384}
PIN=${PIN:-split}
DEMO=$BUILD/tools/serve_demo
[[ -x $DEMO ]] || { echo "serve_overhead: $DEMO not built" >&2; exit 2; }
command -v wrk >/dev/null || { echo "serve_overhead: wrk not installed" >&2; exit 2; }
WORKER_CPU=0
LOAD_CPU=$(( $(nproc) > 1 ? 1 : 0 ))
if [[ $PIN == shared ]]; then SUPERVISOR_CPU=$WORKER_CPU; else SUPERVISOR_CPU=$LOAD_CPU; fi
tmp=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$tmp"' EXIT
# Each of the two connections waits 9 ms after every answer: ~200 requests a second.
printf 'function delay()\n  return 9\nend\n' > "$tmp/delay.lua"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

mp=$(free_port); ap=$(free_port); dp=$(free_port)
echo "# $(date -u +%FT%TZ) $(nproc) CPUs, PIN=$PIN, work $WORK^3, ${SECONDS_TOTAL}s in ${WINDOW}s windows" >&2
taskset -c "$SUPERVISOR_CPU" "$DEMO" --bind 127.0.0.1 --metrics-port "$mp" --api-port "$ap" \
  --dashboard-port "$dp" --workers 1 --worker-cpu "$WORKER_CPU" --trials 0 --steps 100000000 \
  --work "$WORK" --step-ms 0 --trace "$tmp/trace" > "$tmp/demo.out" 2>/dev/null &
demo=$!
until grep -q demo_ready "$tmp/demo.out" 2>/dev/null; do sleep 0.05; done
sleep 1
cpu_ticks() { awk '{print $14 + $15}' "/proc/$demo/stat"; }
: > "$tmp/windows"
: > "$tmp/wrk.all"
idle_ticks=0; loaded_ticks=0; idle_s=0; loaded_s=0
end=$(( $(date +%s) + SECONDS_TOTAL ))
while (( $(date +%s) < end )); do
  for mode in idle loaded; do
    t0=$(date +%s.%N); c0=$(cpu_ticks)
    if [[ $mode == loaded ]]; then
      loads=()
      taskset -c "$LOAD_CPU" wrk -t1 -c2 -d"${WINDOW}s" --latency -s "$tmp/delay.lua" \
        "http://127.0.0.1:$mp/metrics" > "$tmp/wrk.txt" 2>&1 &
      wrk_pid=$!
      for _ in 1 2; do
        taskset -c "$LOAD_CPU" curl -sN "http://127.0.0.1:$dp/api/v1/events" > /dev/null &
        loads+=($!)
      done
      for p in nodes trials preflight; do
        taskset -c "$LOAD_CPU" curl -s "http://127.0.0.1:$dp/api/v1/$p" > /dev/null
      done
      wait "$wrk_pid" || true
      kill "${loads[@]}" 2>/dev/null || true
      wait "${loads[@]}" 2>/dev/null || true
      cat "$tmp/wrk.txt" >> "$tmp/wrk.all"
    else
      sleep "$WINDOW"
    fi
    t1=$(date +%s.%N); c1=$(cpu_ticks)
    echo "$mode $t0 $t1 $((c1 - c0))" >> "$tmp/windows"
  done
done
kill "$demo"; wait "$demo" 2>/dev/null || true

python3 - "$tmp/trace" "$tmp/windows" "$tmp/wrk.all" "$(getconf CLK_TCK)" <<'EOF'
import bisect, re, statistics, sys
steps = [tuple(map(float, l.split())) for l in open(sys.argv[1]) if l.strip()]
windows = [l.split() for l in open(sys.argv[2]) if l.strip()]
ticks = float(sys.argv[4])
MARGIN = 0.2  # seconds after a switch (and before the next) during which steps are left out
classes = {"idle": ([], []), "loaded": ([], [])}
starts = [s[0] for s in steps]
cpu = {"idle": [0.0, 0.0], "loaded": [0.0, 0.0]}
for mode, t0, t1, dticks in windows:
    t0, t1 = float(t0), float(t1)
    cpu[mode][0] += float(dticks) / ticks
    cpu[mode][1] += t1 - t0
    lo, hi = bisect.bisect_left(starts, t0 + MARGIN), bisect.bisect_left(starts, t1 - MARGIN)
    for start, wall, c in steps[lo:hi]:
        if start + wall <= t1:
            classes[mode][0].append(wall)
            classes[mode][1].append(c)
(iw, ic), (lw, lc) = classes["idle"], classes["loaded"]
med = statistics.median
print(f"steps: {len(iw)} idle, {len(lw)} loaded (in {sum(1 for w in windows if w[0] == 'loaded')} windows of each)")
print(f"step wall time p50: idle {1e3 * med(iw):.3f} ms, loaded {1e3 * med(lw):.3f} ms, "
      f"change {100 * (med(lw) / med(iw) - 1):+.2f} %")
print(f"step wall time mean: idle {1e3 * statistics.fmean(iw):.3f} ms, loaded {1e3 * statistics.fmean(lw):.3f} ms, "
      f"change {100 * (statistics.fmean(lw) / statistics.fmean(iw) - 1):+.2f} %")
print(f"step CPU time p50 (the training thread's own): idle {1e3 * med(ic):.3f} ms, "
      f"loaded {1e3 * med(lc):.3f} ms, change {100 * (med(lc) / med(ic) - 1):+.2f} %")
print(f"supervisor CPU: idle {100 * cpu['idle'][0] / cpu['idle'][1]:.2f} % of a core, "
      f"loaded {100 * cpu['loaded'][0] / cpu['loaded'][1]:.2f} %")
text = open(sys.argv[3]).read()
def ms(v):
    for unit, f in (("us", 1e-3), ("ms", 1.0), ("s", 1e3)):
        if v.endswith(unit): return float(v[:-len(unit)]) * f
    return float(v)
rps = [float(x) for x in re.findall(r"Requests/sec:\s+([\d.]+)", text)]
p50 = [ms(x) for x in re.findall(r"\n\s+50%\s+(\S+)", text)]
p99 = [ms(x) for x in re.findall(r"\n\s+99%\s+(\S+)", text)]
errors = re.findall(r"Non-2xx or 3xx responses: (\d+)|Socket errors: (.*)", text)
print(f"/metrics: {med(rps):.0f} requests/s, latency p50 {med(p50):.3f} ms, p99 {med(p99):.3f} ms "
      f"(medians over windows), worst window p99 {max(p99):.3f} ms, errors: {errors or 'none'}")
EOF
