#!/usr/bin/env python3
"""First download of a Hub checkpoint: runner --prefetch against huggingface_hub's
hf_hub_download, on the same local mock Hub (tests/integration/hub_mock.py) in the same
run, each into a fresh cache, alternating, so both see the same machine and load.

  .venv/bin/python bench/hub.py build/release/runner [--mib 420] [--rounds 3]

The mock serves a config.json and a model.safetensors of --mib MiB of random bytes (a
440 MB bert-base-uncased checkpoint is 420 MiB) through its LFS redirect to the CDN
host; the times are the wall time of the whole command (metadata, download, sha256,
rename, links). Prints one line per run and the medians.
"""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "integration"))
from hub_mock import MockHub  # noqa: E402

REPO = "bench/model"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("runner")
    ap.add_argument("--mib", type=int, default=420)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    hub = MockHub()
    weights = os.urandom(args.mib << 20)
    hub.add(REPO, {"config.json": b'{"model_type": "bert"}', "model.safetensors": weights})
    hub.sha256(weights)  # hashed once here, not inside the first timed run
    work = Path(tempfile.mkdtemp(prefix="bench-hub-"))
    env = dict(os.environ, HF_ENDPOINT=hub.endpoint, HF_HUB_DISABLE_TELEMETRY="1",
               HF_HUB_DISABLE_PROGRESS_BARS="1")
    code = ("import sys; from huggingface_hub import hf_hub_download as d; "
            "[d(sys.argv[1], f, cache_dir=sys.argv[2]) for f in ('config.json', 'model.safetensors')]")
    times = {"runner": [], "hf_hub_download": []}
    try:
        for r in range(args.rounds):
            for name in times:
                cache = work / f"{name}-{r}"
                if name == "runner":
                    cmd = [args.runner, "--prefetch", REPO, "--log-format", "json"]
                    run_env = dict(env, HF_HUB_CACHE=str(cache))
                else:
                    cmd = [sys.executable, "-c", code, REPO, str(cache)]
                    run_env = env
                t = time.perf_counter()
                proc = subprocess.run(cmd, env=run_env, capture_output=True, text=True)
                dt = time.perf_counter() - t
                if proc.returncode != 0:
                    raise SystemExit(f"{name}: exit {proc.returncode}\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
                times[name].append(dt)
                print(f"round {r + 1} {name:16s} {dt:6.2f} s  {args.mib / dt:7.1f} MiB/s", flush=True)
                shutil.rmtree(cache)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        hub.close()
    for name, ts in times.items():
        m = statistics.median(ts)
        print(f"median {name:16s} {m:6.2f} s  {args.mib / m:7.1f} MiB/s")


if __name__ == "__main__":
    main()
