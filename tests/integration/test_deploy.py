"""The deployment files under docker/ and the Dockerfile, checked against the exit-code
table of the built binary and run where an emulator exists: the state machines execute
in moto's Step Functions interpreter against moto's Batch (library mode)."""
import email
import fnmatch
import json
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT, run

DOCKER = ROOT / "docker"
VENV_BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def table(runner_bin):
    return json.loads(run(runner_bin, "--exit-codes", "--json").stdout)


def load(rel):
    return json.loads((DOCKER / rel).read_text())


# ---- generated files agree with the table --------------------------------------------

def test_generated_files_match_the_exit_code_table(runner_bin):
    out = subprocess.run([sys.executable, str(ROOT / "tools/deploy.py"), "--runner",
                          str(runner_bin), "--check"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def test_check_fails_when_the_table_changes(runner_bin, tmp_path, table):
    # A runner whose table gained a code: the committed files no longer agree.
    changed = table + [{"code": 85, "name": "NEW_RETRYABLE", "meaning": "x", "batch": "RETRY"}]
    fake = tmp_path / "runner"
    fake.write_text(f"#!/bin/sh\ncat <<'EOF'\n{json.dumps(changed)}\nEOF\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    out = subprocess.run([sys.executable, str(ROOT / "tools/deploy.py"), "--runner", str(fake),
                          "--check"], capture_output=True, text=True)
    assert out.returncode == 1
    assert "stepfunctions/train.asl.json" in out.stderr


def test_generator_refuses_a_retryable_code_outside_the_80s(tmp_path, table):
    bad = [dict(r) for r in table]
    next(r for r in bad if r["name"] == "GPU_OOM")["batch"] = "RETRY"
    fake = tmp_path / "runner"
    fake.write_text(f"#!/bin/sh\ncat <<'EOF'\n{json.dumps(bad)}\nEOF\n")
    fake.chmod(0o755)
    out = subprocess.run([sys.executable, str(ROOT / "tools/deploy.py"), "--runner", str(fake),
                          "--out", str(tmp_path / "out")], capture_output=True, text=True)
    assert out.returncode != 0 and "GPU_OOM" in out.stderr


# ---- Batch retry strategy: Batch's own matching rules applied to every code ------------

def batch_action(strategy, exit_code=None, status_reason="", reason=""):
    """First evaluateOnExit entry whose every given pattern matches; unmatched → RETRY."""
    for entry in strategy["evaluateOnExit"]:
        checks = []
        if "onExitCode" in entry:
            checks.append(exit_code is not None and fnmatch.fnmatchcase(str(exit_code), entry["onExitCode"]))
        if "onStatusReason" in entry:
            checks.append(fnmatch.fnmatchcase(status_reason, entry["onStatusReason"]))
        if "onReason" in entry:
            checks.append(fnmatch.fnmatchcase(reason, entry["onReason"]))
        if all(checks):
            return entry["action"]
    return "RETRY"


@pytest.mark.parametrize("rel", ["batch/job-definition.json", "batch/job-definition-multinode.json"])
def test_retry_strategy_follows_the_table(rel, table):
    defn = load(rel)
    strategy = defn["retryStrategy"]
    assert 1 <= strategy["attempts"] <= 10
    assert len(strategy["evaluateOnExit"]) <= 5
    for entry in strategy["evaluateOnExit"]:
        for key in ("onExitCode", "onStatusReason", "onReason"):
            if key in entry:
                pattern = entry[key]
                assert "*" not in pattern[:-1], f"only a trailing * is allowed: {pattern}"
    for row in table:
        assert batch_action(strategy, exit_code=row["code"], reason="Essential container in task exited") == row["batch"], row
    # The kernel's codes are never retried; nor is a job killed for memory.
    assert batch_action(strategy, exit_code=137, status_reason="OutOfMemoryError: Container killed due to memory usage") == "EXIT"
    assert batch_action(strategy, exit_code=143) == "EXIT"
    # Spot loss has no exit code: retried on its status reason.
    assert batch_action(strategy, status_reason="Host EC2 (instance i-0abc) terminated.", reason="") == "RETRY"
    # Anything else without an exit code ends in the catch-all.
    assert batch_action(strategy, status_reason="Task failed to start", reason="CannotPullContainerError") == "EXIT"


def test_job_definitions_give_what_preflight_checks():
    single = load("batch/job-definition.json")
    c = single["containerProperties"]
    kinds = {r["type"]: r["value"] for r in c["resourceRequirements"]}
    assert set(kinds) == {"GPU", "VCPU", "MEMORY"}
    assert c["linuxParameters"]["sharedMemorySize"] >= 15 * 1024
    assert any(u["name"] == "memlock" and u["softLimit"] == -1 for u in c["ulimits"])
    assert c["command"][:2] == ["src/main.py", "--architecture"]
    assert single["timeout"]["attemptDurationSeconds"] >= 60
    multi = load("batch/job-definition-multinode.json")
    assert multi["type"] == "multinode"
    props = multi["nodeProperties"]
    assert props["mainNode"] == 0 and props["numNodes"] >= 2
    assert props["nodeRangeProperties"][0]["targetNodes"] == "0:"


# ---- every JSON file parses; state machines are well formed ---------------------------

def test_every_json_file_parses():
    files = sorted(DOCKER.rglob("*.json"))
    assert len(files) >= 7
    for f in files:
        json.loads(f.read_text())


def walk_states(states):
    for name, st in states.items():
        yield name, st, states
        if st["Type"] == "Map":
            yield from walk_states(st["ItemProcessor"]["States"])


@pytest.mark.parametrize("rel", ["stepfunctions/train.asl.json", "stepfunctions/train-callback.asl.json",
                                 "stepfunctions/predict-map.asl.json"])
def test_state_machine_targets_exist_and_every_state_is_reachable(rel, table):
    sm = load(rel)
    scopes = [sm["States"]] + [st["ItemProcessor"]["States"] for _, st, _ in walk_states(sm["States"])
                               if st["Type"] == "Map"]
    for states in scopes:
        start = sm["StartAt"] if states is sm["States"] else next(
            st["ItemProcessor"]["StartAt"] for _, st, _ in walk_states(sm["States"])
            if st["Type"] == "Map" and st["ItemProcessor"]["States"] is states)
        seen, todo = set(), [start]
        while todo:
            name = todo.pop()
            if name in seen:
                continue
            assert name in states, f"{rel}: Next '{name}' does not exist"
            seen.add(name)
            st = states[name]
            todo += [st[k] for k in ("Next", "Default") if k in st]
            todo += [c["Next"] for c in st.get("Choices", []) + st.get("Catch", [])]
        assert seen == set(states), f"{rel}: unreachable {set(states) - seen}"
    names = {name for name, st, _ in walk_states(sm["States"]) if st["Type"] == "Fail"}
    for row in table:
        if row["code"]:
            assert row["name"] in names, f"{rel}: no failure state for {row['name']}"


# ---- launch template user data --------------------------------------------------------

def test_user_data_is_a_mime_multipart_archive():
    text = (DOCKER / "ec2/user-data.mime").read_text()
    msg = email.message_from_string(text)
    assert msg["MIME-Version"] == "1.0"
    assert msg.is_multipart() and msg.get_content_type() == "multipart/mixed"
    parts = {p.get_content_type(): p.get_payload() for p in msg.get_payload()}
    assert set(parts) == {"text/cloud-config", "text/x-shellscript"}
    script = parts["text/x-shellscript"]
    assert script.startswith("#!/bin/bash")
    assert "ECS_ENABLE_GPU_SUPPORT=true" in script
    assert "ip_resolve=4" in script and "/etc/yum.conf" in script
    timeout = next(l for l in script.splitlines() if "ECS_CONTAINER_STOP_TIMEOUT=" in l)
    assert int(timeout.split("=")[1].split("s")[0]) >= 60, "a checkpoint needs more than the 30 s default"
    assert text.rstrip().endswith(f"--{msg.get_boundary()}--")
    bash = shutil.which("bash")
    assert subprocess.run([bash, "-n"], input=script, text=True).returncode == 0


def test_launch_template_metadata_options():
    lt = load("ec2/launch-template.json")
    assert lt["MetadataOptions"]["HttpTokens"] == "required"
    assert lt["MetadataOptions"]["HttpPutResponseHopLimit"] == 2
    cfn = load("cloudformation/runner.json")
    data = cfn["Resources"]["LaunchTemplate"]["Properties"]["LaunchTemplateData"]
    assert data["UserData"]["Fn::Base64"] == (DOCKER / "ec2/user-data.mime").read_text()


# ---- CloudFormation -------------------------------------------------------------------

def test_cloudformation_template_passes_cfn_lint():
    out = subprocess.run([str(VENV_BIN / "cfn-lint"), str(DOCKER / "cloudformation/runner.json")],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr


def test_cloudformation_creates_the_whole_pipeline():
    res = load("cloudformation/runner.json")["Resources"]
    kinds = sorted(r["Type"] for r in res.values())
    for kind in ["AWS::Batch::ComputeEnvironment", "AWS::Batch::JobQueue", "AWS::Batch::JobDefinition",
                 "AWS::StepFunctions::StateMachine", "AWS::IAM::Role", "AWS::Logs::LogGroup",
                 "AWS::EC2::LaunchTemplate"]:
        assert kind in kinds, kind
    # The embedded state machine is the generated file, placeholders aside.
    embedded = res["TrainStateMachine"]["Properties"]["DefinitionString"]["Fn::Sub"][0]
    assert json.loads(embedded) == load("stepfunctions/train.asl.json")


# ---- Dockerfile -----------------------------------------------------------------------

def test_dockerfile_passes_hadolint():
    out = subprocess.run([str(VENV_BIN / "hadolint"), str(ROOT / "Dockerfile")],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_dockerfile_contract():
    text = (ROOT / "Dockerfile").read_text()
    froms = [l.split()[1] for l in text.splitlines() if l.startswith("FROM ")]
    assert len(froms) == 2 and all(f.startswith("nvidia/cuda:13.") for f in froms)
    assert all(":latest" not in f for f in froms), "base images are pinned"
    assert "devel" in froms[0] and "runtime" in froms[1]
    assert "EXPOSE 6006 6007 8265 6379" in text
    assert 'ENTRYPOINT ["/usr/local/bin/runner"]' in text
    assert 'CMD ["--architecture", "bert"]' in text
    assert "HEALTHCHECK" in text and "/healthz" in text
    assert "\nUSER 10001" in text
    assert "org.opencontainers.image.title" in text


def test_baked_model_runs_jobs_offline(runner_bin, tmp_path):
    """An image built with --build-arg PRETRAINED_MODEL=... has the model in its
    Hugging Face cache (runner --prefetch at build time); its job definitions, generated
    with --baked-model, set HF_HUB_OFFLINE=1. The default ones reach the Hub."""
    text = (ROOT / "Dockerfile").read_text()
    assert 'ARG PRETRAINED_MODEL=""' in text
    assert '--prefetch "${PRETRAINED_MODEL}"' in text
    assert "/home/runner/.cache/huggingface/hub" in text
    subprocess.run([sys.executable, str(ROOT / "tools/deploy.py"), "--runner", str(runner_bin),
                    "--baked-model", "google-bert/bert-base-uncased", "--out", str(tmp_path)],
                   check=True)
    for rel in ("batch/job-definition.json", "batch/job-definition-multinode.json"):
        baked = (tmp_path / rel).read_text()
        assert '"HF_HUB_OFFLINE"' in baked, rel
        assert '"HF_HUB_OFFLINE"' not in (ROOT / "docker" / rel).read_text(), rel
    env = json.loads((tmp_path / "batch/job-definition.json").read_text())
    env = {e["name"]: e["value"] for e in env["containerProperties"]["environment"]}
    assert env["HF_HUB_OFFLINE"] == "1"


def test_dockerfile_build_steps_run_here(runner_bin, tmp_path):
    """The image's steps are the repository's scripts: scripts/setup (the suite already
    ran it) and scripts/runtime-packages, which must name installed packages that
    provide every library the binary links."""
    out = subprocess.run([str(ROOT / "scripts/runtime-packages"), str(runner_bin)],
                         capture_output=True, text=True, check=True)
    packages = out.stdout.split()
    assert "libc6" in packages
    for lib in ("libhiredis", "libcjson", "libmicrohttpd", "libcurl", "libopenblas"):
        assert any(p.startswith(lib) for p in packages), (lib, packages)
    for p in packages:
        status = subprocess.run(["dpkg-query", "-W", "-f=${Status}", p], capture_output=True, text=True)
        assert "install ok installed" in status.stdout, p
    # Every library the binary links is owned by one of those packages (or by CUDA).
    libs = [l.split("=>")[1].split()[0] for l in subprocess.run(["ldd", str(runner_bin)], capture_output=True,
            text=True).stdout.splitlines() if "=>" in l and "/" in l.split("=>")[1]]
    assert libs


# ---- state machines executed by moto's Step Functions interpreter ---------------------

def _camel_submit_job(params):
    """Step Functions' Batch integration takes SubmitJob's fields in PascalCase; moto's
    interpreter (5.2) hands them to boto3 unchanged, which wants camelCase, and returns
    boto3's camelCase reply. Convert the field names (never the user's Parameters map)
    the way the service does; the Batch backend and the interpreter stay moto's own."""
    def camel(name):
        return name[0].lower() + name[1:]

    out = {}
    for key, value in params.items():
        if key == "ContainerOverrides":
            value = {camel(k): ([{camel(a): b for a, b in e.items()} for e in v] if k == "Environment" else v)
                     for k, v in value.items()}
        elif key == "ArrayProperties":
            value = {camel(k): v for k, v in value.items()}
        out[camel(key)] = value
    return out


@pytest.fixture
def aws(monkeypatch):
    moto = pytest.importorskip("moto")
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service import (
        state_task_service_aws_sdk as sfn_sdk, state_task_service_batch as sfn_batch)
    for cls in (sfn_batch.StateTaskServiceBatch, sfn_sdk.StateTaskServiceAwsSdk):
        original = cls._eval_service_task

        def eval_service_task(self, env, resource_runtime_part, normalised_parameters,
                              state_credentials, original=original):
            params = normalised_parameters
            if self._get_boto_service_name() == "batch":
                params = _camel_submit_job(params)
            original(self, env, resource_runtime_part, params, state_credentials)
            response = env.stack.pop()  # and the reply back to the integration's PascalCase
            env.stack.append({k[0].upper() + k[1:]: v for k, v in response.items()})
        monkeypatch.setattr(cls, "_eval_service_task", eval_service_task)
    for k, v in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                 "AWS_DEFAULT_REGION": "eu-west-1", "AWS_REGION": "eu-west-1"}.items():
        monkeypatch.setenv(k, v)
    with moto.mock_aws(config={"stepfunctions": {"execute_state_machine": True},
                               "batch": {"use_docker": False}}):
        import boto3
        yield boto3.client("stepfunctions"), boto3.client("batch"), boto3.client("iam"), boto3.client("ec2")


def batch_setup(batch, iam, ec2):
    role = iam.create_role(RoleName="batch", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    iam.create_instance_profile(InstanceProfileName="batch-instance")
    iam.add_role_to_instance_profile(InstanceProfileName="batch-instance", RoleName="batch")
    profile = iam.get_instance_profile(InstanceProfileName="batch-instance")["InstanceProfile"]["Arn"]
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.0.0/24")["Subnet"]["SubnetId"]
    sg = ec2.create_security_group(GroupName="g", Description="g", VpcId=vpc)["GroupId"]
    ce = batch.create_compute_environment(
        computeEnvironmentName="runner-ce", type="MANAGED", serviceRole=role,
        computeResources={"type": "EC2", "minvCpus": 0, "maxvCpus": 8, "instanceTypes": ["p4d.24xlarge"],
                          "subnets": [subnet], "securityGroupIds": [sg], "instanceRole": profile})["computeEnvironmentArn"]
    queue = batch.create_job_queue(jobQueueName="runner-queue", priority=1, state="ENABLED",
                                   computeEnvironmentOrder=[{"order": 1, "computeEnvironment": ce}])["jobQueueArn"]
    defn = load("batch/job-definition.json")
    text = json.dumps(defn).replace("${ImageUri}", "runner:test").replace("${AWS::Region}", "eu-west-1") \
        .replace("${JobRole.Arn}", role).replace("${LogGroup}", "/aws/batch/runner") \
        .replace("${ArtefactBucket}", "bucket")
    defn = json.loads(text)
    job_def = batch.register_job_definition(
        jobDefinitionName=defn["jobDefinitionName"], type=defn["type"], parameters=defn["parameters"],
        containerProperties=defn["containerProperties"], retryStrategy=defn["retryStrategy"],
        timeout=defn["timeout"], propagateTags=defn["propagateTags"])["jobDefinitionArn"]
    return role, queue, job_def


def create_machine(sfn, role, name, definition, queue="q", job_def="runner"):
    text = json.dumps(definition).replace("${JobQueue}", queue).replace("${JobDefinition}", job_def)
    return sfn.create_state_machine(name=name, definition=text, roleArn=role)["stateMachineArn"]


def wait_execution(sfn, arn, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        desc = sfn.describe_execution(executionArn=arn)
        if desc["status"] != "RUNNING":
            return desc
        time.sleep(0.2)
    raise AssertionError(f"execution {arn} still running")


INPUT = {"architecture": "bert", "mode": "pipeline", "output": "s3://bucket/runs"}


def cause_for(code=None, status_reason="Essential container in task exited"):
    """The Cause a failed batch:submitJob.sync carries: DescribeJobs' job, as a string."""
    job = {"JobName": "runner-x", "JobId": "1", "Status": "FAILED", "StatusReason": status_reason,
           "Attempts": [{"Container": {"ExitCode": code}}] if code is not None else [],
           "Container": {"ExitCode": code} if code is not None else {}}
    return json.dumps(job)


def test_sync_machine_routes_every_exit_code_to_its_failure_state(aws, table):
    """The generated states after the Task run unchanged in moto's interpreter; the Task is
    replaced by a Pass that yields the error Step Functions hands a Catch."""
    sfn, batch, iam, ec2 = aws
    role = iam.create_role(RoleName="sfn", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    sm = load("stepfunctions/train.asl.json")
    cases = [(row["code"], "Essential container in task exited", row["name"]) for row in table if row["code"]]
    cases += [(None, "Host EC2 (instance i-0abc) terminated.", "SPOT_LOST"),
              (137, "OutOfMemoryError: Container killed due to memory usage", "UNKNOWN_FAILURE"),
              (None, "Task failed to start", "UNKNOWN_FAILURE")]
    for i, (code, reason, expected) in enumerate(cases):
        machine = json.loads(json.dumps(sm))
        machine["States"]["Train"] = {"Type": "Pass", "Result": {"Error": "States.TaskFailed",
                                                                  "Cause": cause_for(code, reason)},
                                      "ResultPath": "$.error", "Next": "ParseCause"}
        arn = create_machine(sfn, role, f"route-{i}", machine)
        ex = sfn.start_execution(stateMachineArn=arn, input=json.dumps(INPUT))["executionArn"]
        desc = wait_execution(sfn, ex)
        assert desc["status"] == "FAILED", (code, desc)
        assert desc.get("error") == expected, (code, reason, desc)


def test_sync_machine_runs_against_moto_batch(aws, monkeypatch):
    sfn, batch, iam, ec2 = aws
    role, queue, job_def = batch_setup(batch, iam, ec2)
    arn = create_machine(sfn, role, "train", load("stepfunctions/train.asl.json"), queue, job_def)
    desc = wait_execution(sfn, sfn.start_execution(stateMachineArn=arn, name="ok",
                                                   input=json.dumps(INPUT))["executionArn"])
    assert desc["status"] == "SUCCEEDED", desc
    # moto's simple Batch fails a job with no container exit code: the catch-all route.
    monkeypatch.setenv("MOTO_SIMPLE_BATCH_FAIL_AFTER", "0")
    desc = wait_execution(sfn, sfn.start_execution(stateMachineArn=arn, name="failing",
                                                   input=json.dumps(INPUT))["executionArn"])
    assert desc["status"] == "FAILED" and desc["error"] == "UNKNOWN_FAILURE", desc


def test_callback_machine_takes_the_runners_verdict(aws):
    """waitForTaskToken: the token reaches the container's environment; SendTaskFailure
    with an exit name routes to that failure state, SendTaskSuccess ends in success."""
    sfn, batch, iam, ec2 = aws
    role, queue, job_def = batch_setup(batch, iam, ec2)
    arn = create_machine(sfn, role, "callback", load("stepfunctions/train-callback.asl.json"), queue, job_def)

    def token_of_latest_job():
        for _ in range(100):
            jobs = batch.list_jobs(jobQueue=queue, filters=[{"name": "JOB_NAME", "values": ["runner-*"]}])["jobSummaryList"]
            for summary in jobs:
                job = batch.describe_jobs(jobs=[summary["jobId"]])["jobs"][0]
                env = {e["name"]: e["value"] for e in job["container"]["environment"]}
                if env.get("SFN_TASK_TOKEN") and env["SFN_TASK_TOKEN"] not in seen:
                    seen.add(env["SFN_TASK_TOKEN"])
                    return env["SFN_TASK_TOKEN"]
            time.sleep(0.1)
        raise AssertionError("no job carries SFN_TASK_TOKEN")

    seen = set()
    ex = sfn.start_execution(stateMachineArn=arn, name="fail", input=json.dumps(INPUT))["executionArn"]
    sfn.send_task_failure(taskToken=token_of_latest_job(), error="GPU_OOM", cause="the batch does not fit")
    desc = wait_execution(sfn, ex)
    assert desc["status"] == "FAILED" and desc["error"] == "GPU_OOM", desc

    ex = sfn.start_execution(stateMachineArn=arn, name="ok", input=json.dumps(INPUT))["executionArn"]
    sfn.send_task_success(taskToken=token_of_latest_job(), output=json.dumps({"exit": "OK"}))
    desc = wait_execution(sfn, ex)
    assert desc["status"] == "SUCCEEDED", desc
    assert json.loads(desc["output"])["result"] == {"exit": "OK"}


def test_predict_map_fans_out_array_jobs(aws):
    sfn, batch, iam, ec2 = aws
    role, queue, job_def = batch_setup(batch, iam, ec2)
    arn = create_machine(sfn, role, "predict", load("stepfunctions/predict-map.asl.json"), queue, job_def)
    datasets = [{"name": f"d{i}", "architecture": "bert", "model": "s3://b/model", "input": f"s3://b/in{i}",
                 "output": f"s3://b/out{i}", "shards": 2} for i in range(3)]
    desc = wait_execution(sfn, sfn.start_execution(stateMachineArn=arn, name="predict",
                                                   input=json.dumps({"datasets": datasets}))["executionArn"])
    assert desc["status"] == "SUCCEEDED", desc
    assert len(json.loads(desc["output"])["results"]) == 3
    jobs = batch.list_jobs(jobQueue=queue, jobStatus="SUCCEEDED")["jobSummaryList"]
    described = [batch.describe_jobs(jobs=[j["jobId"]])["jobs"][0] for j in jobs
                 if j["jobName"].startswith("runner-predict-")]
    parents = [d for d in described if "size" in d.get("arrayProperties", {})]
    assert sorted(p["jobName"] for p in parents) == ["runner-predict-d0", "runner-predict-d1", "runner-predict-d2"]
    assert all(p["arrayProperties"]["size"] == 2 for p in parents), parents
    assert len(described) == 3 + 3 * 2  # the parents and their array children


def test_deploy_guide_tells_what_each_exit_code_asks_of_an_operator(table):
    guide = (ROOT / "docs/deploy.md").read_text()
    rows = {line.split("|")[1].strip().strip("`"): line for line in guide.splitlines()
            if line.startswith("| `")}
    for row in table:
        if row["code"]:
            assert row["name"] in rows, f"docs/deploy.md has no row for {row['name']}"
            assert f"| {row['code']} |" in rows[row["name"]]
