"""Run a command with its output on a small filesystem of its own (test_fault_disk.py).

Started inside `unshare -rm` (a mount namespace of its own, as root of a user
namespace): mounts a tmpfs of --size at --mount (read-only with --readonly) and runs
the command after `--`, a runner, echoing its output. With --fill, the runner is run
with RUNNER_FAULT_INJECT=worker_pause:… at the point the test chose: when its worker has
stopped itself there, the filesystem is filled to the last byte with a ballast file
beside the output and the worker continued (SIGCONT), so the disk is full from exactly
that point of the job on. When the command has ended the output (--mount/out) is copied
to --copy-to, since the mount dies with the namespace, and one last line
{"small_disk": {...}} gives the command's exit status.

  unshare -rm python3 small_disk.py --mount DIR --size 112m [--readonly]
      [--fill worker_pause:0:N:POINT] --copy-to DEST -- runner ...
"""
import argparse
import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time


def report(**fields):
    print(json.dumps({"small_disk": fields}), flush=True)


def fill(folder):
    """Write a ballast until the filesystem refuses a single byte more."""
    with open(os.path.join(folder, "ballast"), "wb", buffering=0) as f:
        for chunk in (1 << 20, 1 << 12, 1):
            block = b"\0" * chunk
            while True:
                try:
                    f.write(block)
                except OSError as e:
                    if e.errno != errno.ENOSPC:
                        raise
                    break
    vfs = os.statvfs(folder)
    return vfs.f_bavail * vfs.f_frsize


def wait_stopped(pid, timeout=60):
    """Until process pid is stopped (state T in /proc/pid/stat)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with open(f"/proc/{pid}/stat") as f:
            if f.read().rsplit(")", 1)[1].split()[0] == "T":
                return
        time.sleep(0.01)
    raise RuntimeError(f"worker {pid} did not stop at the fault point")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--mount", required=True)
    parser.add_argument("--size", required=True)
    parser.add_argument("--readonly", action="store_true")
    parser.add_argument("--fill")
    parser.add_argument("--copy-to", required=True)
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command

    os.makedirs(args.mount, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={args.size}", "tmpfs",
                              args.mount], capture_output=True, text=True)
    if mounted.returncode != 0:
        report(refused=f"mount -t tmpfs: {mounted.stderr.strip()}")
        return
    os.makedirs(os.path.join(args.mount, "out"))
    if args.readonly:
        ro = subprocess.run(["mount", "-o", "remount,ro", args.mount], capture_output=True,
                            text=True)
        if ro.returncode != 0:
            report(refused=f"mount -o remount,ro: {ro.stderr.strip()}")
            return

    env = dict(os.environ)
    if args.fill:
        env["RUNNER_FAULT_INJECT"] = args.fill
    worker, free_after = None, None
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=env)
    for line in proc.stdout:
        sys.stdout.write(line)
        sys.stdout.flush()
        if '"event":"worker_start"' in line:
            worker = json.loads(line)["pid"]
        if args.fill and free_after is None and '"event":"fault_inject"' in line \
                and "worker_pause" in line:
            wait_stopped(worker)
            free_after = fill(args.mount)
            report(filled=True, free_bytes=free_after, at=json.loads(line)["msg"])
            os.kill(worker, signal.SIGCONT)
    code = proc.wait()
    out = os.path.join(args.mount, "out")
    shutil.copytree(out, args.copy_to, symlinks=True)
    report(code=code, filled=free_after is not None)


if __name__ == "__main__":
    main()
