#!/usr/bin/env bash
# Start-up time: from exec to the end of preflight (`runner --check --json`, which runs
# every check and exits), against the peer the original job paid before its first
# line of work: `python3 -c "import torch"`. Results go to docs/BENCHMARKS.md
# ("Start-up"). Usage: bench/startup.sh [RUNNER_BINARY]   (default build/release/runner)
set -euo pipefail
cd "$(dirname "$0")/.."
runner=${1:-${RUNNER_BIN:-build/release/runner}}
python=${PYTHON:-/usr/bin/python3}
out=${OUT:-build/bench}
mkdir -p "$out"
[[ -x "$runner" ]] || { echo "startup.sh: $runner is not built (cmake --workflow --preset release)" >&2; exit 2; }
"$python" -c "import torch" || { echo "startup.sh: $python cannot import torch (scripts/setup --test)" >&2; exit 2; }

# The runner's log lines go to stderr with --check; the report to stdout.
hyperfine --warmup 5 --min-runs 30 -N \
  --export-json "$out/startup.json" --export-markdown "$out/startup.md" \
  --command-name "runner --check --json" "$runner --check --json" \
  --command-name "python3 -c 'import torch'" "$python -c 'import torch'"
"$runner" --check --json 2>/dev/null | "$python" -c '
import json, sys
report = json.loads(sys.stdin.readline())
print("preflight itself (elapsed_ms in the report): %.2f ms" % report["elapsed_ms"])'
