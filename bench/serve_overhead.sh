#!/usr/bin/env bash
# Observability overhead (docs/BENCHMARKS.md, "Observability overhead"): training step
# time with the servers idle versus under 200 scrapes/s of /metrics plus the
# server-side load of an open dashboard (two event streams and the panel refreshes every
# 5 s), and the latency of /metrics under that load (wrk).
#
#   bench/serve_overhead.sh [BUILD_DIR] [ROUNDS]      (default build/release, 5)
#
# The "training" is tests/tools/serve_demo: one worker process doing a fixed CPU step
# (--work N: N^3 multiply-adds) and logging 7 scalars a step through the /dev/shm ring,
# the supervisor serving 6006/6007/8265, as in the runner. PIN chooses the placement:
#   PIN=split   the worker alone on CPU 0; supervisor (servers) and load on CPU 1: a
#               GPU node, where a worker's host thread has a core and the supervisor
#               has others (default)
#   PIN=shared  supervisor and worker both on CPU 0, load on CPU 1: every cycle the
#               servers use comes out of the training core (worst case)
# Rounds alternate the order of the two modes; the medians over rounds are reported.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build/release}
ROUNDS=${2:-5}
STEPS=${STEPS:-300}
WORK=${WORK:-384}
DEMO=$BUILD/tools/serve_demo
[[ -x $DEMO ]] || { echo "serve_overhead: $DEMO not built" >&2; exit 2; }
command -v wrk >/dev/null || { echo "serve_overhead: wrk not installed" >&2; exit 2; }
PIN=${PIN:-split}
WORKER_CPU=0
LOAD_CPU=$(( $(nproc) > 1 ? 1 : 0 ))
if [[ $PIN == shared ]]; then SUPERVISOR_CPU=$WORKER_CPU; else SUPERVISOR_CPU=$LOAD_CPU; fi
tmp=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$tmp"' EXIT
# Each of the two connections waits 9 ms after every answer: ~200 requests a second.
printf 'function delay()\n  return 9\nend\n' > "$tmp/delay.lua"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

run_once() { # $1 = idle|loaded; prints "mean_ms p50_ms supervisor_cpu_% cpu_p50_ms [rps p50 p99]"
  local mode=$1 mp ap dp out pid loads=()
  mp=$(free_port); ap=$(free_port); dp=$(free_port)
  out=$tmp/demo.$mode.$RANDOM.out
  rm -f "$out"
  taskset -c "$SUPERVISOR_CPU" "$DEMO" --bind 127.0.0.1 --metrics-port "$mp" --api-port "$ap" \
    --dashboard-port "$dp" --workers 1 --worker-cpu "$WORKER_CPU" --trials 0 --steps "$STEPS" \
    --work "$WORK" --step-ms 0 > "$out" 2>/dev/null &
  pid=$!
  until grep -q demo_ready "$out" 2>/dev/null; do sleep 0.05; done
  local cpu0 t0; cpu0=$(awk '{print $14 + $15}' "/proc/$pid/stat"); t0=$(date +%s.%N)
  if [[ $mode == loaded ]]; then
    taskset -c "$LOAD_CPU" wrk -t1 -c2 -d600s --latency -s "$tmp/delay.lua" \
      "http://127.0.0.1:$mp/metrics" > "$tmp/wrk.txt" 2>&1 &
    loads+=($!)
    for _ in 1 2; do
      taskset -c "$LOAD_CPU" curl -sN "http://127.0.0.1:$dp/api/v1/events" > /dev/null &
      loads+=($!)
    done
    ( while sleep 5; do
        for p in nodes trials preflight; do curl -s "http://127.0.0.1:$dp/api/v1/$p" > /dev/null; done
      done ) &
    loads+=($!)
  fi
  until grep -q demo_steps "$out" 2>/dev/null; do sleep 0.1; done
  # Supervisor CPU (servers, telemetry reader) as a share of one core over the run.
  local cpu1 t1 sup; cpu1=$(awk '{print $14 + $15}' "/proc/$pid/stat"); t1=$(date +%s.%N)
  sup=$(python3 -c "print(f'{100 * ($cpu1 - $cpu0) / $(getconf CLK_TCK) / ($t1 - $t0):.2f}')")
  if [[ $mode == loaded ]]; then
    kill -INT "${loads[0]}"; wait "${loads[0]}" 2>/dev/null || true
    kill "${loads[@]:1}" 2>/dev/null || true
    wait "${loads[@]:1}" 2>/dev/null || true
  fi
  kill "$pid"; wait "$pid" 2>/dev/null || true
  local line; line=$(grep demo_steps "$out")
  local mean p50 cpu50
  mean=$(sed -E 's/.*"mean_ms":([0-9.]+).*/\1/' <<<"$line")
  p50=$(sed -E 's/.*"p50_ms":([0-9.]+).*/\1/' <<<"$line")
  cpu50=$(sed -E 's/.*"cpu_p50_ms":([0-9.]+).*/\1/' <<<"$line")
  if [[ $mode == loaded ]]; then
    local rps l50 l99
    rps=$(awk '/Requests\/sec/ {print $2}' "$tmp/wrk.txt")
    l50=$(awk '$1=="50%" {print $2}' "$tmp/wrk.txt")
    l99=$(awk '$1=="99%" {print $2}' "$tmp/wrk.txt")
    echo "$mean $p50 $sup $cpu50 $rps $l50 $l99"
  else
    echo "$mean $p50 $sup $cpu50"
  fi
}

echo "# $(date -u +%FT%TZ) $(nproc) CPUs, PIN=$PIN, steps $STEPS, work $WORK^3, rounds $ROUNDS" >&2
: > "$tmp/idle"; : > "$tmp/loaded"
for ((r = 1; r <= ROUNDS; r++)); do
  if ((r % 2)); then order=(idle loaded); else order=(loaded idle); fi
  for mode in "${order[@]}"; do
    result=$(run_once "$mode")
    echo "$result" >> "$tmp/$mode"
    echo "round $r $mode: $result" >&2
  done
done
python3 - "$tmp/idle" "$tmp/loaded" <<'EOF'
import statistics, sys
idle = [list(map(str, l.split())) for l in open(sys.argv[1]) if l.strip()]
loaded = [list(map(str, l.split())) for l in open(sys.argv[2]) if l.strip()]
med = lambda rows, i: statistics.median(float(r[i]) for r in rows)
def ms(v):  # wrk prints 1.23ms / 456.00us / 1.02s
    for unit, f in (("us", 1e-3), ("ms", 1.0), ("s", 1e3)):
        if v.endswith(unit): return float(v[:-len(unit)]) * f
    return float(v)
i50, l50 = med(idle, 1), med(loaded, 1)
imean, lmean = med(idle, 0), med(loaded, 0)
spread = lambda rows: f"{min(float(r[1]) for r in rows):.2f}-{max(float(r[1]) for r in rows):.2f}"
print(f"step time p50: idle {i50:.3f} ms (rounds {spread(idle)}), loaded {l50:.3f} ms "
      f"(rounds {spread(loaded)}), change {100 * (l50 / i50 - 1):+.2f} %")
print(f"step time mean: idle {imean:.3f} ms, loaded {lmean:.3f} ms, change {100 * (lmean / imean - 1):+.2f} %")
c50, lc50 = med(idle, 3), med(loaded, 3)
print(f"step CPU time p50 (the training thread's own): idle {c50:.3f} ms, loaded {lc50:.3f} ms, "
      f"change {100 * (lc50 / c50 - 1):+.2f} %")
print(f"supervisor CPU: idle {med(idle, 2):.2f} % of a core, loaded {med(loaded, 2):.2f} %")
print(f"/metrics: {med(loaded, 4):.0f} requests/s, latency p50 {statistics.median(ms(r[5]) for r in loaded):.3f} ms, "
      f"p99 {statistics.median(ms(r[6]) for r in loaded):.3f} ms (median over rounds), "
      f"worst p99 {max(ms(r[6]) for r in loaded):.3f} ms")
EOF
