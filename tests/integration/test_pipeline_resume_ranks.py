"""Three data-parallel ranks resume from the same step: the newest one that every rank
holds as a complete, valid checkpoint of the run, or rank 0's newest, copied to the
ranks that hold none of it.

The ranks are three nodes of a multi-node job on this machine (coord_helpers: network
namespaces, or loopback addresses), each with its own output, as nodes with their own
disks: on one node all workers read the same folder, so only nodes can hold different
copies. Rank 0 writes the checkpoints.

- Copies everywhere: after the interruption every node gets a copy of rank 0's output,
  as an s3:// output fetched at start gives it. Then the newest checkpoint of ONE rank's
  copy is damaged (a truncated file, one flipped byte, the manifest deleted), and the
  restart must resume every rank from the step before, say which rank lacked which
  step, and still end with the bytes of an uninterrupted run.
- Node-local outputs: nothing is copied between the nodes' folders; only rank 0's holds
  checkpoints. The restart must copy rank 0's newest to the other two over the training
  group, and every rank resume it; interrupted again, the other nodes hold the copy
  of the older step, and rank 0's newer one is copied again. The end: the bytes of an
  uninterrupted run.
"""
import hashlib
import json
import shutil
import signal
import time

import pytest

from conftest import exit_line, free_port
from coord_helpers import Job, Network

pytestmark = [pytest.mark.timeout(600),
              pytest.mark.skipif(not shutil.which("redis-server"), reason="needs redis-server")]

# A short last call for the rendezvous; the heartbeat stays at its 5 s: on a busy
# 2-core machine 300 ms beats (0.9 s to be taken for dead) lost a node now and then,
# and this test is about resuming, not about dead nodes.
FAST = {"RUNNER_RDZV_LAST_CALL_MS": "200"}
# bert-tiny, 480 training sentences in global batches of 3 x 16: 10 steps an epoch (under
# a second), checkpoints at every epoch's end and at the stop; save_total_limit 2 (the
# default) keeps both of the interrupted run. 10 epochs, so that a SIGTERM sent 0.3 s
# after a restart's first checkpoint lands well before the end on a busy CI machine too
# (with 4, ranks 1 and 2 once finished the last epochs before the stop was agreed).
ARGS = ["--architecture", "bert-tiny", "--mode", "train", "--max-length", 32,
        "--instances", 600, "--epochs", 10, "--early-stopping-patience", 0,
        "--learning-rate", 3e-3, "--threads", 1, "--rendezvous-timeout", 60, "--no-serve",
        "--log-format", "json"]
MODEL = "artefacts/bert-tiny/prime/model/model.safetensors"
PRIME = "artefacts/bert-tiny/prime"


@pytest.fixture
def net3():
    network = Network(3)
    yield network
    network.close()


def start(net, runner_bin, outputs):
    job = Job(net, [runner_bin, *ARGS, "--redis-port", free_port()], env=FAST)
    for i, out in enumerate(outputs):
        job.start(i, ["--output", out])
    return job


def finish(job, timeout=240):
    try:
        codes = {i: p.wait(timeout) for i, p in job.nodes.items()}
    except Exception:
        job.kill_all()
        raise
    return codes


def steps(prime):
    return sorted(int(p.name.split("-")[1]) for p in prime.glob("checkpoint-*")
                  if p.name.split("-")[1].isdigit())


def damage(checkpoint, how):
    if how == "truncate":
        path = checkpoint / "state.bin"
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif how == "flip":
        path = checkpoint / "model.safetensors"
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0x01
        path.write_bytes(bytes(data))
    else:
        (checkpoint / "manifest.json").unlink()


def test_three_ranks_resume_the_newest_step_all_of_them_hold(net3, runner_bin, tmp_path):
    straight = start(net3, runner_bin, [tmp_path / "straight" / f"node{i}" for i in range(3)])
    codes = finish(straight)
    assert codes == {0: 0, 1: 0, 2: 0}, {i: p.output()[-3000:] for i, p in straight.nodes.items()}
    want = (tmp_path / "straight/node0" / MODEL).read_bytes()

    # Interrupted a little after the first epoch's checkpoint (a stop at once would land
    # on that same step): SIGTERM to every node, as Batch sends it to a job's
    # containers; the ranks agree on the step to stop at.
    first = [tmp_path / "first" / f"node{i}" for i in range(3)]
    job = start(net3, runner_bin, first)
    saved = job.nodes[0].wait_event("checkpoint_saved", 120)
    assert "/prime/checkpoint-" in saved["msg"], saved
    time.sleep(0.3)
    for p in job.nodes.values():
        p.kill(signal.SIGTERM)
    codes = finish(job)
    outputs = {i: p.output()[-3000:] for i, p in job.nodes.items()}
    assert codes == {0: 80, 1: 80, 2: 80}, outputs
    assert all(exit_line(p.output())["name"] == "INTERRUPTED" for p in job.nodes.values())
    held = steps(first[0] / PRIME)
    assert len(held) == 2, (held, outputs[0])
    previous, newest = held
    assert not steps(first[1] / PRIME)  # only rank 0 writes checkpoints
    # Usually the stop lands inside the second epoch; where an epoch takes less than the
    # 0.3 s it may land at an epoch's end, a step that the restart saves again.
    state = json.loads((first[0] / PRIME / f"checkpoint-{newest}/trainer_state.json").read_text())
    mid_epoch = state["batch_in_epoch"] > 0

    for how, rank in (("truncate", 1), ("flip", 2), ("marker", 0)):
        run_dir = tmp_path / how
        copies = [run_dir / f"node{i}" for i in range(3)]
        for copy in copies:  # each node's copy of the output, as a fetch at start leaves it
            shutil.copytree(first[0], copy)
        damage(copies[rank] / PRIME / f"checkpoint-{newest}", how)

        job = start(net3, runner_bin, copies)
        codes = finish(job)
        outputs = {i: p.output()[-3000:] for i, p in job.nodes.items()}
        assert codes == {0: 0, 1: 0, 2: 0}, (how, outputs)
        for i, p in job.nodes.items():
            agreed = p.events("resume_agreed")
            assert len(agreed) == 1, (how, i, outputs[i])
            line = agreed[0]
            assert line["step"] == previous and line["world"] == 3, (how, i, line)
            resumed = p.events("checkpoint_resumed")
            assert len(resumed) == 1 and f"checkpoint-{previous}:" in resumed[0]["msg"], resumed
            if i == rank:  # its newest is damaged: it resumes its own newest valid one
                assert line["newest"] == previous and line["level"] == "info", (how, line)
                skipped = p.events("checkpoint_skipped")
                assert skipped and f"checkpoint-{newest}:" in skipped[0]["msg"], (how, skipped)
            else:  # its newest is sound, and left for a step that every rank holds
                assert line["newest"] == newest and line["level"] == "warn", (how, line)
                assert line["lacking"] == [{"rank": rank, "lacks": newest, "holds": previous}]
                assert f"rank {rank} holds no valid checkpoint-{newest}" in line["msg"], line
                assert not p.events("checkpoint_skipped"), (how, i)
        # Rank 0 deletes the newer checkpoint only by save_total_limit, once it has saved
        # two complete ones past it; a folder without its manifest it never counts nor
        # deletes.
        events = [json.loads(l) for l in job.nodes[0].lines if l.startswith("{")]
        deleted = [n for n, e in enumerate(events) if e.get("event") == "checkpoint_deleted"
                   and e["msg"].startswith(f"{copies[0] / PRIME}/checkpoint-{newest} ")]
        later = [n for n, e in enumerate(events) if e.get("event") == "checkpoint_saved"
                 and int(e["msg"].rsplit("-", 1)[1]) > newest]
        if deleted:
            assert len([n for n in later if n < deleted[0]]) >= 2, (how, deleted, later)
        if mid_epoch and rank == 0:
            assert not deleted and (copies[0] / PRIME / f"checkpoint-{newest}").is_dir(), how
        elif mid_epoch:  # never the best (that is an epoch's end): rotated once passed
            assert deleted, (how, outputs[0])
        # The other nodes write nothing: their copies stay as they were fetched.
        for i in (1, 2):
            assert steps(copies[i] / PRIME) == held

        got = (copies[0] / MODEL).read_bytes()
        assert hashlib.sha256(got).hexdigest() == hashlib.sha256(want).hexdigest(), how
        assert got == want, how


def interrupt(job):
    """SIGTERM to every node a little after rank 0's next checkpoint (a stop at once
    would land on that same step): each exits 80 with rank 0's checkpoint written."""
    saved = job.nodes[0].wait_event("checkpoint_saved", 120)
    assert "/prime/checkpoint-" in saved["msg"], saved
    time.sleep(0.3)
    for p in job.nodes.values():
        p.kill(signal.SIGTERM)
    codes = finish(job)
    outputs = {i: p.output()[-3000:] for i, p in job.nodes.items()}
    assert codes == {0: 80, 1: 80, 2: 80}, outputs
    assert all(exit_line(p.output())["name"] == "INTERRUPTED" for p in job.nodes.values())
    return outputs


def files_of(checkpoint):
    return {f.name: f.read_bytes() for f in checkpoint.iterdir()}


def check_copied(job, outputs, step, sent):
    """Every rank resumed rank 0's checkpoint-<step> (its files: `sent`, read before
    the start: rank 0 may rotate it away later); ranks 1 and 2 took a copy."""
    size = sum(len(data) for data in sent.values())
    for i, p in job.nodes.items():
        agreed = p.events("resume_agreed")
        assert len(agreed) == 1, (i, outputs[i])
        line = agreed[0]
        assert line["step"] == step and line["world"] == 3, (i, line)
        assert line["replicated_to"] == [1, 2], (i, line)
        assert "copied from rank 0 to ranks 1, 2" in line["msg"], line
        resumed = p.events("checkpoint_resumed")
        assert len(resumed) == 1 and f"checkpoint-{step}:" in resumed[0]["msg"], (i, resumed)
        copies = p.events("checkpoint_replicated")
        if i == 0:
            assert not copies, copies
            continue
        assert len(copies) == 1, (i, outputs[i])
        copy = copies[0]
        assert copy["step"] == step and copy["written"] is True, copy
        assert copy["bytes"] == size and copy["seconds"] >= 0, (copy, size)
        assert not p.events("checkpoint_replication_failed"), i


def test_node_local_outputs_resume_rank_0s_newest_copied_over_the_group(net3, runner_bin,
                                                                       tmp_path):
    straight = start(net3, runner_bin, [tmp_path / "straight" / f"node{i}" for i in range(3)])
    codes = finish(straight)
    assert codes == {0: 0, 1: 0, 2: 0}, {i: p.output()[-3000:] for i, p in straight.nodes.items()}
    want = (tmp_path / "straight/node0" / MODEL).read_bytes()

    # Each node's own output, from the first attempt to the last: nothing copied between.
    outs = [tmp_path / "local" / f"node{i}" for i in range(3)]
    interrupt(start(net3, runner_bin, outs))
    first = steps(outs[0] / PRIME)
    assert len(first) == 2 and not steps(outs[1] / PRIME) and not steps(outs[2] / PRIME), first
    newest = first[-1]

    # Restarted: without the copy the ranks would agree on no step (ranks 1 and 2 hold
    # none); with it every rank resumes rank 0's newest. Interrupted again at a later one.
    sent = files_of(outs[0] / PRIME / f"checkpoint-{newest}")
    assert sorted(sent) == ["manifest.json", "model.safetensors", "state.bin",
                            "trainer_state.json"], sorted(sent)
    job = start(net3, runner_bin, outs)
    outputs = interrupt(job)
    check_copied(job, outputs, newest, sent)
    for i in (1, 2):  # the copy, checked as any checkpoint, stays where it was written
        assert files_of(outs[i] / PRIME / f"checkpoint-{newest}") == sent, i
        assert not [p for p in (outs[i] / PRIME).iterdir() if ".replica" in p.name], i
    later = steps(outs[0] / PRIME)[-1]
    assert later > newest, steps(outs[0] / PRIME)

    # Now ranks 1 and 2 hold the copy of the older step: the agreement alone would fall
    # back to it, or to scratch once rank 0's save_total_limit has rotated it away; rank
    # 0's newer one is copied instead, and the run goes to its end.
    sent = files_of(outs[0] / PRIME / f"checkpoint-{later}")
    job = start(net3, runner_bin, outs)
    codes = finish(job)
    outputs = {i: p.output()[-3000:] for i, p in job.nodes.items()}
    assert codes == {0: 0, 1: 0, 2: 0}, outputs
    check_copied(job, outputs, later, sent)
    for i in (1, 2):
        assert files_of(outs[i] / PRIME / f"checkpoint-{later}") == sent, i
    for i in (1, 2):
        line = job.nodes[i].events("resume_agreed")[0]
        assert line["newest"] == newest, line  # its own newest: the copy it took before
    line = job.nodes[0].events("resume_agreed")[0]
    assert line["newest"] == later and line["level"] == "info", line
    assert {(l["rank"], l["lacks"]) for l in line["lacking"]} == {(1, later), (2, later)}, line

    got = (outs[0] / MODEL).read_bytes()
    assert hashlib.sha256(got).hexdigest() == hashlib.sha256(want).hexdigest()
    assert got == want
