"""Helpers for the coordination tests: nodes with their own addresses, a real
redis-server, and processes of the runner (or of tools/coord_node) started as AWS Batch
starts the nodes of a multi-node parallel job.

Each node gets a network namespace with a veth pair on a bridge (10.77.X.0/24), as the
nodes of a Batch job each have their own address; where namespaces are refused, nodes
use loopback addresses 127.0.0.1, 127.0.0.2, ... instead (RUNNER_TEST_NO_NETNS=1
forces that).
"""
import json
import os
import random
import shutil
import signal
import subprocess
import threading
import time
import uuid
from pathlib import Path

from conftest import base_env, free_port


def _ip(*args, check=True):
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check)


class Network:
    """n node addresses; `wrap(i, argv)` runs argv as node i (inside its namespace)."""

    def __init__(self, n):
        self.n = n
        self.namespaces = []
        self.bridge = None
        tag = f"rc{os.getpid() % 100000}{random.randint(0, 99)}"
        subnet = random.randint(1, 250)
        try:
            if os.geteuid() != 0 or not shutil.which("ip") or os.environ.get("RUNNER_TEST_NO_NETNS"):
                raise OSError("no network namespaces here")
            self.bridge = f"{tag}b"
            _ip("link", "add", self.bridge, "type", "bridge")
            _ip("addr", "add", f"10.77.{subnet}.254/24", "dev", self.bridge)
            _ip("link", "set", self.bridge, "up")
            self.host_address = f"10.77.{subnet}.254"
            self.addresses = []
            for i in range(n):
                ns, outside, inside = f"{tag}n{i}", f"{tag}v{i}", f"{tag}p{i}"
                _ip("netns", "add", ns)
                self.namespaces.append(ns)
                _ip("link", "add", outside, "type", "veth", "peer", "name", inside)
                _ip("link", "set", inside, "netns", ns)
                _ip("link", "set", outside, "master", self.bridge, "up")
                address = f"10.77.{subnet}.{i + 1}"
                _ip("-n", ns, "addr", "add", f"{address}/24", "dev", inside)
                _ip("-n", ns, "link", "set", inside, "up")
                _ip("-n", ns, "link", "set", "lo", "up")
                self.addresses.append(address)
            self.isolated = True
        except (OSError, subprocess.CalledProcessError):
            self.close()
            self.isolated = False
            self.host_address = "127.0.0.1"
            self.addresses = [f"127.0.0.{i + 1}" for i in range(n)]

    def wrap(self, i, argv):
        if self.isolated:
            return ["ip", "netns", "exec", self.namespaces[i], *map(str, argv)]
        return list(map(str, argv))

    def close(self):
        for ns in self.namespaces:
            _ip("netns", "del", ns, check=False)
        self.namespaces = []
        if self.bridge:
            _ip("link", "del", self.bridge, check=False)
            self.bridge = None


class Proc:
    """A running process whose output lines are collected as they come."""

    def __init__(self, argv, env):
        self.p = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True)
        self.lines = []
        self._cv = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for line in self.p.stdout:
            with self._cv:
                self.lines.append(line.rstrip("\n"))
                self._cv.notify_all()
        with self._cv:
            self._cv.notify_all()

    def events(self, name):
        out = []
        for line in list(self.lines):
            try:
                obj = json.loads(line)
            except ValueError:
                continue
            if isinstance(obj, dict) and obj.get("event") == name:
                out.append(obj)
        return out

    def wait_event(self, name, timeout):
        deadline = time.monotonic() + timeout
        with self._cv:
            while True:
                found = self.events(name)
                if found:
                    return found[0]
                left = deadline - time.monotonic()
                if left <= 0 or (self.p.poll() is not None and not self._reader.is_alive()):
                    raise AssertionError(f"no {name} event in {timeout} s:\n" + self.output()[-3000:])
                self._cv.wait(min(left, 0.2))

    def wait(self, timeout):
        code = self.p.wait(timeout=timeout)
        self._reader.join(timeout=5)
        return code

    def output(self):
        return "\n".join(self.lines)

    def kill(self, sig=signal.SIGKILL):
        if self.p.poll() is None:
            self.p.send_signal(sig)


class Job:
    """A multi-node job: node i runs `argv` with the Batch variables of node i."""

    def __init__(self, network, argv, env=None, main_index=0, attempt=1, password=None):
        self.network = network
        self.argv = list(map(str, argv))
        self.extra_env = dict(env or {})
        self.main_index = main_index
        self.attempt = attempt
        self.job_id = f"job-{uuid.uuid4().hex[:12]}"
        self.password = password if password is not None else uuid.uuid4().hex
        self.nodes = {}

    @property
    def prefix(self):
        return f"runner:{self.job_id}:{self.attempt}:"

    def env(self, i):
        env = base_env(
            AWS_BATCH_JOB_ID=f"{self.job_id}#{i}",
            AWS_BATCH_JOB_ATTEMPT=self.attempt,
            AWS_BATCH_JOB_NUM_NODES=self.network.n,
            AWS_BATCH_JOB_NODE_INDEX=i,
            AWS_BATCH_JOB_MAIN_NODE_INDEX=self.main_index,
            REDIS_PASSWORD=self.password,
            RUNNER_LOG_FORMAT="json",
            **self.extra_env,
        )
        if i != self.main_index:  # Batch sets it on the other nodes only
            env["AWS_BATCH_JOB_MAIN_NODE_PRIVATE_IPV4_ADDRESS"] = \
                self.network.addresses[self.main_index]
        if not self.network.isolated:
            env["RUNNER_NODE_ADDRESS"] = self.network.addresses[i]
        return env

    def start(self, i, extra_argv=()):
        argv = self.network.wrap(i, [*self.argv, *extra_argv])
        self.nodes[i] = Proc(argv, self.env(i))
        return self.nodes[i]

    def start_all(self):
        for i in range(self.network.n):
            self.start(i)
        return self

    def kill_all(self):
        for p in self.nodes.values():
            p.kill()


class RedisServer:
    """A real redis-server with a password, stopped by close()."""

    def __init__(self, bind="127.0.0.1", password=None):
        self.port = free_port()
        self.bind = bind
        self.password = password or uuid.uuid4().hex
        self.p = subprocess.Popen(
            ["redis-server", "-"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, text=True)
        self.p.stdin.write(f'port {self.port}\nbind {bind}\nrequirepass "{self.password}"\n'
                           'save ""\nappendonly no\nprotected-mode no\n')
        self.p.stdin.close()
        deadline = time.monotonic() + 5
        while self.cli("PING") != "PONG":
            if time.monotonic() > deadline:
                raise AssertionError("redis-server did not start")
            time.sleep(0.05)

    @property
    def url(self):
        return f"redis://:{self.password}@{self.bind}:{self.port}"

    def cli(self, *args, host=None, port=None, wrap=None):
        argv = ["redis-cli", "--no-auth-warning", "-h", host or self.bind, "-p",
                str(port or self.port), "-a", self.password, *map(str, args)]
        r = subprocess.run(wrap(argv) if wrap else argv, capture_output=True, text=True)
        return r.stdout.strip()

    def close(self):
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait()


def redis_cli(password, host, port, *args, wrap=None):
    argv = ["redis-cli", "--no-auth-warning", "-h", host, "-p", str(port), "-a", password,
            *map(str, args)]
    r = subprocess.run(wrap(argv) if wrap else argv, capture_output=True, text=True)
    return r.stdout.strip()


def tool(runner_bin, name):
    path = Path(runner_bin).parent / "tools" / name
    if not path.exists():
        import pytest
        pytest.skip(f"{path} is not built")
    return path
