"""What the fault tests share (docs/faults.md): the cheap default pipeline they break, the
list of fault points an uninterrupted run reaches (RUNNER_FAULT_TRACE), a seeded draw of
points over the pipeline's phases, and the checks of what a fault left behind: which
checkpoints are complete (their manifest's sizes and CRC-32s, recomputed here), which
files hold the job's results, and whether two runs' results are the same bytes."""
import csv
import json
import random
import shutil
import subprocess
import threading
import zlib
from pathlib import Path

from harness import ROOT, base_env

ARCH = "bert"  # as the Batch job definitions pass it; on a CPU it runs as bert-tiny


def demo_copy(folder, rows):
    """The first `rows` sentences of the bundled demo data, with its vocabulary, label
    maps and search space, in `folder` (a reduced copy: one pipeline takes seconds)."""
    demo = ROOT / "data" / "demo"
    folder.mkdir(parents=True)
    for name in ("vocab.txt", "enumerator.json", "archetype.json", "hyperspace.json"):
        shutil.copy(demo / name, folder / name)
    lines = (demo / "dataset.csv").read_text().splitlines(keepends=True)
    (folder / "dataset.csv").write_text("".join(lines[:rows + 1]))
    return folder


def pipeline_args(data=None, trials=None, epochs=None, architecture=ARCH):
    """The default pipeline (split -> search -> prime -> evaluation -> export), on `data`
    with `trials` and `epochs` where given (else the defaults: the bundled demo data, 4
    trials, 2 epochs); no servers, no Redis (the soak test runs those)."""
    args = ["--architecture", architecture, "--no-serve", "--redis", "off",
            "--log-format", "json"]
    for flag, value in (("--data", data), ("--trials", trials), ("--epochs", epochs)):
        if value is not None:
            args += [flag, value]
    return [str(a) for a in args]


# The CI variant: 240 demo sentences, 2 trials of 2 epochs (about 2 s a run on the 2-core
# build machine); the long one (--fault-long): the full default job (17 s a run).
CI_JOB = {"rows": 240, "trials": 2, "epochs": 2}
LONG_JOB = {"rows": None, "trials": None, "epochs": None}


def job_args(folder, long):
    """The pipeline of the variant; a reduced copy of the demo data goes into `folder`."""
    job = LONG_JOB if long else CI_JOB
    data = demo_copy(folder, job["rows"]) if job["rows"] else None
    return pipeline_args(data, job["trials"], job["epochs"])


class Run:
    """A runner process whose merged output is collected line by line as it comes."""

    def __init__(self, argv, env, on_line=None):
        self.proc = subprocess.Popen([str(a) for a in argv], env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True)
        self.lines = []
        self.on_line = on_line
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append(line)
            if self.on_line:
                self.on_line(self, line)

    def wait(self, timeout):
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            self.reader.join(timeout=5)
            raise AssertionError(f"no end after {timeout} s (a hang?):\n{self.output[-3000:]}")
        self.reader.join(timeout=10)
        return code

    @property
    def output(self):
        return "".join(self.lines)

    def events(self, name):
        found = []
        for line in list(self.lines):
            if f'"event":"{name}"' not in line:
                continue
            try:
                found.append(json.loads(line))
            except ValueError:
                pass
        return found


def run_to_end(binary, args, env=None, timeout=300, on_line=None):
    r = Run([binary, *args], env or base_env(), on_line)
    r.code = r.wait(timeout)
    return r


def exit_event(run):
    exits = run.events("exit")
    assert exits, f"no exit line:\n{run.output[-3000:]}"
    return exits[-1]


# ---- fault points -----------------------------------------------------------------

def trace_points(run):
    """The fault points a traced run reached, in order: dicts point, n, detail, phase."""
    points = []
    for e in run.events("fault_point"):
        p = {"point": e["point"], "n": int(e["n"]), "detail": e.get("detail", "")}
        p["phase"] = phase_of(p)
        points.append(p)
    return points


def phase_of(p):
    """Where in the pipeline a point lies, from its name and detail (a run or a path)."""
    point, detail = p["point"], p["detail"]
    if point == "checkpoint_file" or "/checkpoint-" in detail:
        return "checkpoint"
    if point == "export_file" or "/prime/model/" in detail:
        return "export"
    if point == "evaluate_batch" and detail in ("validating", "testing"):
        return "evaluation"
    if "/prime/metrics/" in detail:
        return "evaluation"
    if point == "s3_upload":
        return "upload"
    if detail.startswith("trial-") or "/hyperparameters/" in detail:
        return "search"
    if detail == "prime" or "/prime/" in detail:
        return "prime"
    return "split"


def draw_points(points, count, seed, at_least):
    """`count` distinct points drawn with `seed`: first `at_least[phase]` of each phase
    named there, the rest from all points; in pipeline order."""
    rng = random.Random(seed)
    chosen = []
    for phase, k in at_least.items():
        pool = [i for i, p in enumerate(points) if p["phase"] == phase and i not in chosen]
        assert len(pool) >= k, f"the pipeline reaches {len(pool)} {phase} points, {k} wanted"
        chosen += rng.sample(pool, k)
    rest = [i for i in range(len(points)) if i not in chosen]
    chosen += rng.sample(rest, min(count - len(chosen), len(rest)))
    return [points[i] for i in sorted(chosen)]


def inject(kind, p):
    """RUNNER_FAULT_INJECT for fault `kind` at point p of rank 0."""
    return f"{kind}:0:{p['n']}:{p['point']}"


def describe(p, seed):
    detail = p["detail"].split("/artefacts/", 1)[-1]
    return (f"{p['point']} #{p['n']} ({p['phase']}: {detail}); seed {seed}, rerun with "
            f"--fault-seed {seed}")


# ---- what a run leaves ------------------------------------------------------------

def artefacts(out, architecture=ARCH):
    return Path(out) / "artefacts" / architecture


def result_files(art):
    """The job's results under its artefacts folder, relative path -> bytes: everything
    but TensorBoard event files (wall times) and checkpoints (which steps are kept
    depends on where a run was stopped: save_total_limit keeps the newest)."""
    found = {}
    for path in sorted(Path(art).rglob("*")):
        rel = path.relative_to(art).as_posix()
        if not path.is_file() or "/logs/" in f"/{rel}" or "/checkpoint-" in f"/{rel}":
            continue
        found[rel] = path.read_bytes()
    return found


def assert_same_results(art, reference, context):
    ours, theirs = result_files(art), result_files(reference)
    assert sorted(ours) == sorted(theirs), (context, sorted(set(ours) ^ set(theirs)))
    differ = [rel for rel in theirs if ours[rel] != theirs[rel]]
    assert not differ, (context, differ)
    assert "prime/model/model.safetensors" in ours, context


def temporaries(root):
    return [p for p in Path(root).rglob("*") if ".tmp." in p.name]


def checkpoint_status(ck):
    """None when checkpoint folder `ck` is complete (its manifest, written last, names
    each file with the size and CRC-32 it has), else why it is not."""
    manifest = ck / "manifest.json"
    if not manifest.exists():
        return "no manifest"
    try:
        files = json.loads(manifest.read_text())["files"]
    except (ValueError, KeyError) as e:
        return f"manifest unreadable: {e}"
    for name in ("state.bin", "model.safetensors", "trainer_state.json"):
        path = ck / name
        if name not in files or not path.exists():
            return f"{name} missing"
        data = path.read_bytes()
        if len(data) != files[name]["size"] or f"{zlib.crc32(data):08x}" != files[name]["crc32"]:
            return f"{name} does not match the manifest"
    return None


def checkpoints(art):
    """{run dir relative to the artefacts (e.g. "prime"): {step: status}} of every
    checkpoint-<step> folder; status None = complete."""
    runs = {}
    for ck in Path(art).rglob("checkpoint-*"):
        suffix = ck.name.split("-", 1)[1]
        if not ck.is_dir() or not suffix.isdigit():
            continue
        runs.setdefault(ck.parent.relative_to(art).as_posix(), {})[int(suffix)] = \
            checkpoint_status(ck)
    return runs


def checkpoint_place(path):
    """(run dir, step) of a checkpoint path in a log line, relative to the artefacts
    folder, wherever that was (a local output, an s3:// output's staging folder)."""
    rel = path.split("/artefacts/", 1)[1].split("/", 1)[1]
    folder, name = rel.rsplit("/", 1)
    return folder, int(name.split("-", 1)[1])


def resume_events(run):
    """From a run's log: {run dir: step resumed} and {run dir: {steps skipped}}."""
    resumed, skipped = {}, {}
    for e in run.events("checkpoint_resumed"):
        folder, step = checkpoint_place(e["msg"].split(":", 1)[0])
        resumed[folder] = step
    for e in run.events("checkpoint_skipped"):
        folder, step = checkpoint_place(e["msg"].split(":", 1)[0])
        skipped.setdefault(folder, set()).add(step)
    return resumed, skipped


def started_runs(run):
    """The training runs (their folders) an attempt started: trials and the prime run."""
    runs = {"hyperparameters/" + e["msg"].split(":", 1)[0] for e in run.events("trial_start")}
    if run.events("prime_start"):
        runs.add("prime")
    return runs


def assert_resumed_only_complete_checkpoints(before, run, context):
    """Each run the attempt started resumed the newest checkpoint that was complete
    before it (`before`: checkpoints()), and logged every newer, incomplete one as
    skipped: no torn checkpoint is ever loaded."""
    resumed, skipped = resume_events(run)
    for folder, step in resumed.items():
        assert before.get(folder, {}).get(step, "absent") is None, \
            (context, f"{folder}/checkpoint-{step} resumed but was {before.get(folder)}")
    for folder in started_runs(run):
        steps = before.get(folder, {})
        complete = [s for s, status in steps.items() if status is None]
        newest = max(complete) if complete else None
        assert resumed.get(folder) == newest, (context, folder, steps, resumed)
        torn = {s for s, status in steps.items() if status and (newest is None or s > newest)}
        assert torn <= skipped.get(folder, set()), (context, folder, steps, skipped)


def whole_files_only(root, context):
    """Every file under a final name below `root` is whole: JSON parses, JSON lines
    parse, CSV rows have every column, safetensors load; temporaries are none."""
    from safetensors.numpy import load_file
    assert not temporaries(root), (context, temporaries(root))
    for path in Path(root).rglob("*"):
        if not path.is_file():
            continue
        if path.suffix == ".json":
            json.loads(path.read_text())
        elif path.suffix == ".jsonl":
            for line in path.read_text().splitlines():
                json.loads(line)
        elif path.suffix == ".csv":
            with open(path, newline="") as f:
                rows = list(csv.reader(f))
            assert rows and all(len(r) == len(rows[0]) for r in rows), (context, path)
        elif path.suffix == ".safetensors":
            load_file(str(path))
