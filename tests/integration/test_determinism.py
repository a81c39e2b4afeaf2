"""The determinism contract (docs/kernels.md "Determinism"), tested as it holds:
- with the same binary and the same OpenBLAS core, a job's weights and reports are
  bitwise the same for any thread count, and a job stopped on one thread count and
  resumed on another ends bitwise where an uninterrupted run ends (a Batch retry may
  land on an instance with another vCPU count);
- across OpenBLAS cores (CPU vendors) results are close, not equal: every core this
  CPU can run (forced through OPENBLAS_CORETYPE, so an Intel machine checks AMD's
  kernels too) reaches the same F1 within 0.02 and weights within 1e-3 of each other."""
import hashlib
import json
import signal
import subprocess

import numpy as np
import pytest
from safetensors.numpy import load_file

from conftest import base_env, run

pytestmark = pytest.mark.timeout(600)

# A short pipeline: 2 trials, 3 epochs (about 3 s). bert-tiny's batches (16 x 128 rows)
# span several GEMM tiles, so a thread-count dependence would show.
ARGS = ["--architecture", "bert", "--instances", 480, "--trials", 2, "--epochs", 3,
        "--early-stopping-patience", 0, "--no-serve", "--redis", "off", "--log-format", "json"]

# Cores OpenBLAS picks on x86-64 machines of this project's kind, with what they execute.
CORES = {"Haswell": {"avx2", "fma"}, "Zen": {"avx2", "fma"},
         "SkylakeX": {"avx512f", "avx512bw", "avx512dq", "avx512vl"},
         "Cooperlake": {"avx512f", "avx512bw", "avx512dq", "avx512vl", "avx512_bf16"}}


def cpu_flags():
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    return set()


def artefacts(out):
    return out / "artefacts" / "bert"


def model_bytes(out):
    return (artefacts(out) / "prime" / "model" / "model.safetensors").read_bytes()


def reports(out):
    folder = artefacts(out) / "prime" / "metrics"
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


def pipeline(runner_bin, out, threads, core=None):
    env = base_env(**({"OPENBLAS_CORETYPE": core} if core else {}))
    proc = run(runner_bin, *ARGS, "--threads", threads, "--output", out, env=env, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:]
    if core:  # the forced core was taken (preflight logs it), or nothing is compared
        assert f'"blas_core":"{core}"' in proc.stdout, proc.stdout[:3000]
    return proc


def runnable_cores():
    flags = cpu_flags()
    return [core for core, needs in CORES.items() if needs <= flags]


# Each core rounds its own way, and which of them ties results to the thread count
# differs (OpenBLAS 0.3.21's threaded Haswell and Zen kernels did; SkylakeX's happened not
# to on these shapes): every core this CPU can run is checked, not only its own.
@pytest.mark.parametrize("core", list(CORES))
def test_weights_and_reports_are_bitwise_the_same_for_1_2_and_3_threads(runner_bin, tmp_path,
                                                                        core):
    if core not in runnable_cores():
        pytest.skip(f"this CPU cannot run OpenBLAS's {core} kernels")
    outs = {t: tmp_path / f"threads{t}" for t in (1, 2, 3)}
    for t, out in outs.items():
        pipeline(runner_bin, out, t, core)
    digests = {t: hashlib.sha256(model_bytes(out)).hexdigest() for t, out in outs.items()}
    assert len(set(digests.values())) == 1, digests
    assert reports(outs[1]) == reports(outs[2]) == reports(outs[3])


def test_a_run_stopped_on_1_thread_and_resumed_on_2_ends_bitwise_as_an_uninterrupted_one(
        runner_bin, tmp_path):
    # AMD's kernels where this CPU runs them (the ones a thread-count dependence showed in)
    core = "Zen" if "Zen" in runnable_cores() else None
    env = base_env(**({"OPENBLAS_CORETYPE": core} if core else {}))
    straight = tmp_path / "straight"
    pipeline(runner_bin, straight, 1, core)

    resumed = tmp_path / "resumed"
    proc = subprocess.Popen([str(runner_bin), *map(str, ARGS), "--threads", "1",
                             "--output", str(resumed)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    sent = False
    for line in proc.stdout:
        # in the middle of the prime run's first epoch: the data position is resumed too
        if not sent and '"event":"train_progress"' in line and '"run":"prime"' in line:
            proc.send_signal(signal.SIGTERM)
            sent = True
    proc.wait(timeout=300)
    assert sent and proc.returncode == 80
    again = pipeline(runner_bin, resumed, 2, core)
    assert '"event":"checkpoint_resumed"' in again.stdout
    assert model_bytes(resumed) == model_bytes(straight)
    assert reports(resumed) == reports(straight)


def test_every_openblas_core_this_cpu_runs_reaches_the_same_result_within_tolerance(
        runner_bin, tmp_path):
    runnable = runnable_cores()
    if len(runnable) < 2:
        pytest.skip(f"this CPU runs fewer than two OpenBLAS x86-64 cores ({runnable})")
    results = {}
    for core in runnable:
        out = tmp_path / core
        pipeline(runner_bin, out, 2, core)
        score = json.loads((artefacts(out) / "prime" / "metrics" / "testing" /
                            "score.json").read_text())
        weights = load_file(str(artefacts(out) / "prime" / "model" / "model.safetensors"))
        results[core] = (score, weights)
    f1s = {core: score["seqeval_overall_f1_score"] for core, (score, _) in results.items()}
    assert max(f1s.values()) - min(f1s.values()) <= 0.02, f1s
    reference = results[runnable[0]][1]
    for core in runnable[1:]:
        weights = results[core][1]
        assert weights.keys() == reference.keys()
        worst = max(float(np.max(np.abs(weights[k] - reference[k]))) for k in reference)
        assert worst <= 1e-3, (core, worst)
