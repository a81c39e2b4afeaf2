#!/usr/bin/env python3
"""Generate the AWS deployment files under docker/ from runner's exit-code table.

The exit-code table in runner/exitcode.c is the single source of truth (DESIGN §3).
This tool reads it from the built binary (`runner --exit-codes --json`) and writes:

  docker/batch/job-definition.json            one-node GPU job, retryStrategy from the table
  docker/batch/job-definition-multinode.json  multi-node parallel job, same retry rules
  docker/stepfunctions/train.asl.json         batch:submitJob.sync, Catch -> Choice on ExitCode
  docker/stepfunctions/train-callback.asl.json  aws-sdk submitJob.waitForTaskToken variant
  docker/stepfunctions/predict-map.asl.json   Map state fanning prediction out over array jobs
  docker/ec2/user-data.mime                   MIME multi-part user data for the launch template
  docker/ec2/launch-template.json             launch template data (IMDSv2, hop limit 2)
  docker/cloudformation/runner.json           the whole stack

  tools/deploy.py --runner build/release/runner          write the files
  tools/deploy.py --runner build/release/runner --check  exit 1 when a file differs
  tools/deploy.py --baked-model google-bert/bert-base-uncased --out DIR
                                         for an image built with that PRETRAINED_MODEL:
                                         jobs run with HF_HUB_OFFLINE=1 on its cache

Retry rules (Batch allows at most 5 evaluateOnExit entries; an exit no entry matches is
retried, so the list ends with catch-alls that EXIT): every retryable code shares the
decade 80-89, so one `8*` entry retries them all; spot loss ("Host EC2 (instance i-…)
terminated.") is retried by status reason. The generator refuses a table that breaks
that shape (a retryable code outside 80-89 or a non-retryable one inside it).
"""
import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCKER = ROOT / "docker"

IMAGE = "${ImageUri}"
REGION_DEFAULT = "eu-west-1"
SHM_MIB = 15360          # --shm-size=15gb, as the original's docker run used
STOP_TIMEOUT = "120s"    # ECS_CONTAINER_STOP_TIMEOUT: time between SIGTERM and SIGKILL
HEARTBEAT_SECONDS = 600  # the runner sends SendTaskHeartbeat well inside this
PORTS = (6006, 6007, 8265, 6379)
# --baked-model: the image was built with --build-arg PRETRAINED_MODEL=... (Dockerfile),
# so its Hugging Face cache holds the model and jobs need not reach the Hub.
BAKED_MODEL = None


def load_table(runner):
    out = subprocess.run([runner, "--exit-codes", "--json"], check=True,
                         capture_output=True, text=True).stdout
    table = json.loads(out)
    for row in table:
        retry = row["batch"] == "RETRY"
        in_decade = 80 <= row["code"] <= 89
        if retry != in_decade:
            raise SystemExit(f"deploy: exit code {row['code']} {row['name']} is "
                             f"{row['batch']} but {'inside' if in_decade else 'outside'} 80-89; "
                             "one `8*` retry rule could not express the table")
        if not retry and str(row["code"]).startswith("8"):
            raise SystemExit(f"deploy: exit code {row['code']} starts with 8 but is not retryable")
    return table


def retry_strategy(table):
    assert any(r["batch"] == "RETRY" for r in table)
    return {
        "attempts": 5,
        "evaluateOnExit": [
            {"onExitCode": "8*", "action": "RETRY"},
            {"onStatusReason": "Host EC2*", "action": "RETRY"},
            {"onExitCode": "*", "action": "EXIT"},
            {"onReason": "*", "action": "EXIT"},
        ],
    }


def container_properties(gpus):
    return {
        "image": IMAGE,
        "command": ["src/main.py", "--architecture", "Ref::architecture", "--mode", "Ref::mode",
                    "--output", "Ref::output"],
        "environment": [
            {"name": "AWS_DEFAULT_REGION", "value": "${AWS::Region}"},
            {"name": "NVIDIA_DRIVER_CAPABILITIES", "value": "compute,utility"},
        ] + ([{"name": "HF_HUB_OFFLINE", "value": "1"}] if BAKED_MODEL else []),
        "resourceRequirements": [
            {"type": "GPU", "value": str(gpus)},
            {"type": "VCPU", "value": str(8 * gpus)},
            {"type": "MEMORY", "value": str(61440 * gpus)},
        ],
        # runner is PID 1 and handles SIGTERM itself (DESIGN §4): no init process.
        "linuxParameters": {"sharedMemorySize": SHM_MIB, "initProcessEnabled": False},
        "ulimits": [
            {"name": "memlock", "softLimit": -1, "hardLimit": -1},
            {"name": "nofile", "softLimit": 65536, "hardLimit": 65536},
        ],
        "jobRoleArn": "${JobRole.Arn}",
        "logConfiguration": {"logDriver": "awslogs",
                             "options": {"awslogs-group": "${LogGroup}",
                                         "awslogs-stream-prefix": "runner"}},
    }


def job_definition(table):
    return {
        "jobDefinitionName": "runner",
        "type": "container",
        "platformCapabilities": ["EC2"],
        "parameters": {"architecture": "bert", "mode": "pipeline", "output": "s3://${ArtefactBucket}/runs"},
        "containerProperties": container_properties(gpus=1),
        "retryStrategy": retry_strategy(table),
        "timeout": {"attemptDurationSeconds": 86400},
        "propagateTags": True,
    }


def job_definition_multinode(table):
    container = container_properties(gpus=8)
    return {
        "jobDefinitionName": "runner-multinode",
        "type": "multinode",
        "platformCapabilities": ["EC2"],
        "parameters": {"architecture": "bert", "mode": "pipeline", "output": "s3://${ArtefactBucket}/runs"},
        "nodeProperties": {
            "numNodes": 2,
            "mainNode": 0,
            "nodeRangeProperties": [{"targetNodes": "0:", "container": container}],
        },
        "retryStrategy": retry_strategy(table),
        "timeout": {"attemptDurationSeconds": 172800},
        "propagateTags": True,
    }


def failure_states(table):
    """One Fail state per exit name, plus the two failures that carry no exit code."""
    states = {}
    for row in table:
        if row["code"] == 0:
            continue
        states[row["name"]] = {"Type": "Fail", "Error": row["name"],
                               "Cause": f"runner exit {row['code']}: {row['meaning']}"}
    states["SPOT_LOST"] = {"Type": "Fail", "Error": "SPOT_LOST",
                           "Cause": "the instance was reclaimed and Batch retries ran out"}
    states["UNKNOWN_FAILURE"] = {"Type": "Fail", "Error": "UNKNOWN_FAILURE",
                                 "Cause": "the job failed with no exit code of runner's table "
                                          "(137: killed for memory, 143: SIGTERM without handler)"}
    return states


def exit_code_routing(table, cause_path):
    """Pass that parses Cause (a JSON string) + Choice on Container.ExitCode."""
    exit_path = f"{cause_path}.Container.ExitCode"
    choices = []
    for row in table:
        if row["code"] == 0:
            continue
        choices.append({"And": [{"Variable": exit_path, "IsPresent": True},
                                {"Variable": exit_path, "NumericEquals": row["code"]}],
                        "Next": row["name"]})
    choices.append({"And": [{"Variable": f"{cause_path}.StatusReason", "IsPresent": True},
                            {"Variable": f"{cause_path}.StatusReason", "StringMatches": "Host EC2*"}],
                    "Next": "SPOT_LOST"})
    return {
        "ParseCause": {"Type": "Pass",
                       "Parameters": {"Cause.$": "States.StringToJson($.error.Cause)"},
                       "ResultPath": "$.failure", "Next": "RouteExitCode"},
        "RouteExitCode": {"Type": "Choice", "Choices": choices, "Default": "UNKNOWN_FAILURE"},
    }


def submit_parameters(extra_env=None):
    params = {
        "JobName.$": "States.Format('runner-{}', $$.Execution.Name)",
        "JobQueue": "${JobQueue}",
        "JobDefinition": "${JobDefinition}",
        "Parameters": {"architecture.$": "$.architecture", "mode.$": "$.mode",
                       "output.$": "$.output"},
    }
    if extra_env:
        params["ContainerOverrides"] = {"Environment": extra_env}
    return params


def state_machine_sync(table):
    states = {
        "Train": {
            "Type": "Task",
            "Resource": "arn:aws:states:::batch:submitJob.sync",
            "Parameters": submit_parameters(),
            "ResultPath": "$.job",
            "Catch": [{"ErrorEquals": ["States.TaskFailed"], "ResultPath": "$.error",
                       "Next": "ParseCause"},
                      {"ErrorEquals": ["States.ALL"], "ResultPath": "$.error",
                       "Next": "UNKNOWN_FAILURE"}],
            "Next": "Succeeded",
        },
        "Succeeded": {"Type": "Succeed"},
    }
    states.update(exit_code_routing(table, "$.failure.Cause"))
    states.update(failure_states(table))
    return {"Comment": "Train with runner on AWS Batch; route failures by runner's exit code. "
                       "Generated by tools/deploy.py from runner --exit-codes --json.",
            "StartAt": "Train", "States": states}


def state_machine_callback(table):
    """The runner reports through SendTaskSuccess/SendTaskFailure with its exit name as
    the error; the Choice routes on that name (the Batch job's own exit code is not in
    the payload of this integration)."""
    choices = [{"Variable": "$.error.Error", "StringEquals": row["name"], "Next": row["name"]}
               for row in table if row["code"] != 0]
    states = {
        "Train": {
            "Type": "Task",
            "Resource": "arn:aws:states:::aws-sdk:batch:submitJob.waitForTaskToken",
            "Parameters": submit_parameters(
                [{"Name": "SFN_TASK_TOKEN", "Value.$": "$$.Task.Token"}]),
            "HeartbeatSeconds": HEARTBEAT_SECONDS,
            "TimeoutSeconds": 172800,
            "ResultPath": "$.result",
            "Catch": [{"ErrorEquals": ["States.HeartbeatTimeout"], "ResultPath": "$.error",
                       "Next": "HEARTBEAT_LOST"},
                      {"ErrorEquals": ["States.ALL"], "ResultPath": "$.error",
                       "Next": "RouteExitName"}],
            "Next": "Succeeded",
        },
        "Succeeded": {"Type": "Succeed"},
        "RouteExitName": {"Type": "Choice", "Choices": choices, "Default": "UNKNOWN_FAILURE"},
        "HEARTBEAT_LOST": {"Type": "Fail", "Error": "HEARTBEAT_LOST",
                           "Cause": f"no SendTaskHeartbeat for {HEARTBEAT_SECONDS} s: "
                                    "the container died or lost the network"},
    }
    states.update(failure_states(table))
    del states["SPOT_LOST"]
    return {"Comment": "Callback variant: runner calls SendTaskHeartbeat/Success/Failure with "
                       "SFN_TASK_TOKEN. Generated by tools/deploy.py.",
            "StartAt": "Train", "States": states}


def state_machine_predict_map(table):
    item_states = {
        "Predict": {
            "Type": "Task",
            "Resource": "arn:aws:states:::batch:submitJob.sync",
            "Parameters": {
                "JobName.$": "States.Format('runner-predict-{}', $.name)",
                "JobQueue": "${JobQueue}",
                "JobDefinition": "${JobDefinition}",
                # One array child per shard: runner reads AWS_BATCH_JOB_ARRAY_INDEX and
                # AWS_BATCH_JOB_ARRAY_SIZE to pick its share of the input.
                "ArrayProperties": {"Size.$": "$.shards"},
                "Parameters": {"architecture.$": "$.architecture", "mode": "predict",
                               "output.$": "$.output"},
                "ContainerOverrides": {"Command.$": "States.Array('src/main.py', '--architecture', $.architecture, '--mode', 'predict', '--model', $.model, '--input', $.input, '--output', $.output)"},
            },
            "ResultPath": "$.job",
            "Catch": [{"ErrorEquals": ["States.TaskFailed"], "ResultPath": "$.error",
                       "Next": "ParseCause"},
                      {"ErrorEquals": ["States.ALL"], "ResultPath": "$.error",
                       "Next": "UNKNOWN_FAILURE"}],
            "End": True,
        },
    }
    item_states.update(exit_code_routing(table, "$.failure.Cause"))
    item_states.update(failure_states(table))
    return {
        "Comment": "Fan prediction out: one Batch array job per dataset, shards as array "
                   "children. Generated by tools/deploy.py.",
        "StartAt": "PredictEach",
        "States": {
            "PredictEach": {
                "Type": "Map",
                "ItemsPath": "$.datasets",
                "MaxConcurrency": 4,
                "ItemProcessor": {"ProcessorConfig": {"Mode": "INLINE"},
                                  "StartAt": "Predict", "States": item_states},
                "ResultPath": "$.results",
                "End": True,
            }
        },
    }


BOUNDARY = "==RUNNER-BOUNDARY=="


def user_data():
    """MIME multi-part user data (Batch requires the multi-part form)."""
    script = f"""#!/bin/bash
# ECS GPU host for runner: GPU support, a stop timeout long enough for a checkpoint,
# and IPv4-only yum (the GPU-optimised AMI's IPv6 breaks yum).
set -euo pipefail
echo "ECS_ENABLE_GPU_SUPPORT=true" >> /etc/ecs/ecs.config
echo "ECS_CONTAINER_STOP_TIMEOUT={STOP_TIMEOUT}" >> /etc/ecs/ecs.config
grep -q '^ip_resolve=4' /etc/yum.conf || echo "ip_resolve=4" >> /etc/yum.conf
"""
    cloud_config = """#cloud-config
repo_upgrade: none
"""
    return (f'MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary="{BOUNDARY}"\n\n'
            f"--{BOUNDARY}\nContent-Type: text/cloud-config; charset=\"us-ascii\"\n\n{cloud_config}\n"
            f"--{BOUNDARY}\nContent-Type: text/x-shellscript; charset=\"us-ascii\"\n\n{script}\n"
            f"--{BOUNDARY}--\n")


def launch_template_data():
    return {
        "MetadataOptions": {"HttpTokens": "required", "HttpPutResponseHopLimit": 2,
                            "HttpEndpoint": "enabled"},
        "BlockDeviceMappings": [{"DeviceName": "/dev/xvda",
                                 "Ebs": {"VolumeSize": 200, "VolumeType": "gp3",
                                         "Encrypted": True}}],
        "UserData": {"Fn::Base64": user_data()},
    }


def sub(value):
    """Wrap strings holding ${...} in Fn::Sub, recursively, for CloudFormation."""
    if isinstance(value, dict):
        return {k: sub(v) for k, v in value.items()}
    if isinstance(value, list):
        return [sub(v) for v in value]
    if isinstance(value, str) and "${" in value:
        return {"Fn::Sub": value}
    return value


def cfn_job_definition(defn):
    props = {"Type": defn["type"], "PlatformCapabilities": defn["platformCapabilities"],
             "Parameters": defn["parameters"], "RetryStrategy": {
                 "Attempts": defn["retryStrategy"]["attempts"],
                 "EvaluateOnExit": [{k[0].upper() + k[1:]: v for k, v in e.items()}
                                    for e in defn["retryStrategy"]["evaluateOnExit"]]},
             "Timeout": {"AttemptDurationSeconds": defn["timeout"]["attemptDurationSeconds"]},
             "PropagateTags": defn["propagateTags"], "JobDefinitionName": defn["jobDefinitionName"]}

    def container(c):
        return {
            "Image": c["image"], "Command": c["command"],
            "Environment": [{"Name": e["name"], "Value": e["value"]} for e in c["environment"]],
            "ResourceRequirements": [{"Type": r["type"], "Value": r["value"]}
                                     for r in c["resourceRequirements"]],
            "LinuxParameters": {"SharedMemorySize": c["linuxParameters"]["sharedMemorySize"],
                                "InitProcessEnabled": c["linuxParameters"]["initProcessEnabled"]},
            "Ulimits": [{"Name": u["name"], "SoftLimit": u["softLimit"], "HardLimit": u["hardLimit"]}
                        for u in c["ulimits"]],
            "JobRoleArn": c["jobRoleArn"],
            "LogConfiguration": {"LogDriver": c["logConfiguration"]["logDriver"],
                                 "Options": c["logConfiguration"]["options"]},
        }
    if defn["type"] == "container":
        props["ContainerProperties"] = container(defn["containerProperties"])
    else:
        n = defn["nodeProperties"]
        props["NodeProperties"] = {"NumNodes": n["numNodes"], "MainNode": n["mainNode"],
                                   "NodeRangeProperties": [{"TargetNodes": r["targetNodes"],
                                                            "Container": container(r["container"])}
                                                           for r in n["nodeRangeProperties"]]}
    return {"Type": "AWS::Batch::JobDefinition", "Properties": sub(props)}


def cloudformation(table):
    def machine(name, definition, job_definition_ref):
        return {
            "Type": "AWS::StepFunctions::StateMachine",
            "Properties": {
                "StateMachineName": {"Fn::Sub": f"${{AWS::StackName}}-{name}"},
                "RoleArn": {"Fn::GetAtt": ["StateMachineRole", "Arn"]},
                "DefinitionString": {"Fn::Sub": [json.dumps(definition, indent=2),
                                                 {"JobQueue": {"Ref": "JobQueue"},
                                                  "JobDefinition": {"Ref": job_definition_ref}}]},
            },
        }

    assume = lambda service: {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}]}
    return {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": "runner: GPU BERT training on AWS Batch, orchestrated by Step Functions "
                       "(generated by tools/deploy.py)",
        "Parameters": {
            "ImageUri": {"Type": "String", "Description": "ECR image URI of runner"},
            "ArtefactBucket": {"Type": "String", "Description": "S3 bucket for data and artefacts"},
            "SubnetIds": {"Type": "List<AWS::EC2::Subnet::Id>"},
            "SecurityGroupIds": {"Type": "List<AWS::EC2::SecurityGroup::Id>"},
            "MaxVcpus": {"Type": "Number", "Default": 256},
            "InstanceTypes": {"Type": "CommaDelimitedList", "Default": "p5.48xlarge,p4d.24xlarge,g6e.xlarge"},
        },
        "Resources": {
            "LogGroup": {"Type": "AWS::Logs::LogGroup",
                         "Properties": {"LogGroupName": {"Fn::Sub": "/aws/batch/${AWS::StackName}"},
                                        "RetentionInDays": 30}},
            "InstanceRole": {"Type": "AWS::IAM::Role", "Properties": {
                "AssumeRolePolicyDocument": assume("ec2.amazonaws.com"),
                "ManagedPolicyArns": ["arn:aws:iam::aws:policy/service-role/AmazonEC2ContainerServiceforEC2Role"]}},
            "InstanceProfile": {"Type": "AWS::IAM::InstanceProfile",
                                "Properties": {"Roles": [{"Ref": "InstanceRole"}]}},
            "JobRole": {"Type": "AWS::IAM::Role", "Properties": {
                "AssumeRolePolicyDocument": assume("ecs-tasks.amazonaws.com"),
                "Policies": [{"PolicyName": "artefacts", "PolicyDocument": {
                    "Version": "2012-10-17", "Statement": [
                        {"Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject",
                                                       "s3:AbortMultipartUpload"],
                         "Resource": {"Fn::Sub": "arn:${AWS::Partition}:s3:::${ArtefactBucket}/*"}},
                        {"Effect": "Allow", "Action": ["s3:ListBucket"],
                         "Resource": {"Fn::Sub": "arn:${AWS::Partition}:s3:::${ArtefactBucket}"}},
                        {"Effect": "Allow", "Action": ["states:SendTaskSuccess", "states:SendTaskFailure",
                                                       "states:SendTaskHeartbeat"], "Resource": "*"}]}}]}},
            "StateMachineRole": {"Type": "AWS::IAM::Role", "Properties": {
                "AssumeRolePolicyDocument": assume("states.amazonaws.com"),
                "Policies": [{"PolicyName": "batch", "PolicyDocument": {
                    "Version": "2012-10-17", "Statement": [
                        {"Effect": "Allow", "Action": ["batch:SubmitJob", "batch:DescribeJobs",
                                                       "batch:TerminateJob"], "Resource": "*"},
                        {"Effect": "Allow", "Action": ["events:PutTargets", "events:PutRule",
                                                       "events:DescribeRule"],
                         "Resource": {"Fn::Sub": "arn:${AWS::Partition}:events:${AWS::Region}:${AWS::AccountId}:rule/StepFunctionsGetEventsForBatchJobsRule"}}]}}]}},
            "LaunchTemplate": {"Type": "AWS::EC2::LaunchTemplate", "Properties": {
                "LaunchTemplateData": launch_template_data()}},
            "ComputeEnvironment": {"Type": "AWS::Batch::ComputeEnvironment", "Properties": {
                "Type": "MANAGED", "State": "ENABLED",
                "ComputeResources": {
                    "Type": "SPOT", "AllocationStrategy": "SPOT_PRICE_CAPACITY_OPTIMIZED",
                    "MinvCpus": 0, "MaxvCpus": {"Ref": "MaxVcpus"},
                    "InstanceTypes": {"Ref": "InstanceTypes"},
                    "Subnets": {"Ref": "SubnetIds"}, "SecurityGroupIds": {"Ref": "SecurityGroupIds"},
                    "InstanceRole": {"Fn::GetAtt": ["InstanceProfile", "Arn"]},
                    "Ec2Configuration": [{"ImageType": "ECS_AL2_NVIDIA"}],
                    "LaunchTemplate": {"LaunchTemplateId": {"Ref": "LaunchTemplate"},
                                       "Version": {"Fn::GetAtt": ["LaunchTemplate", "LatestVersionNumber"]}}}}},
            "JobQueue": {"Type": "AWS::Batch::JobQueue", "Properties": {
                "Priority": 1, "State": "ENABLED",
                "ComputeEnvironmentOrder": [{"Order": 1, "ComputeEnvironment": {"Ref": "ComputeEnvironment"}}]}},
            "JobDefinition": cfn_job_definition(job_definition(table)),
            "JobDefinitionMultiNode": cfn_job_definition(job_definition_multinode(table)),
            "TrainStateMachine": machine("train", state_machine_sync(table), "JobDefinition"),
            "TrainCallbackStateMachine": machine("train-callback", state_machine_callback(table),
                                                 "JobDefinition"),
            "PredictMapStateMachine": machine("predict-map", state_machine_predict_map(table),
                                              "JobDefinition"),
        },
        "Outputs": {
            "JobQueue": {"Value": {"Ref": "JobQueue"}},
            "JobDefinition": {"Value": {"Ref": "JobDefinition"}},
            "TrainStateMachine": {"Value": {"Ref": "TrainStateMachine"}},
        },
    }


def render(table):
    as_json = lambda obj: json.dumps(obj, indent=2) + "\n"
    return {
        "batch/job-definition.json": as_json(job_definition(table)),
        "batch/job-definition-multinode.json": as_json(job_definition_multinode(table)),
        "stepfunctions/train.asl.json": as_json(state_machine_sync(table)),
        "stepfunctions/train-callback.asl.json": as_json(state_machine_callback(table)),
        "stepfunctions/predict-map.asl.json": as_json(state_machine_predict_map(table)),
        "ec2/user-data.mime": user_data(),
        "ec2/launch-template.json": as_json({k: v for k, v in launch_template_data().items()
                                             if k != "UserData"}
                                            | {"UserData": "(base64 of docker/ec2/user-data.mime)"}),
        "cloudformation/runner.json": as_json(cloudformation(table)),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runner", default=str(ROOT / "build/release/runner"),
                    help="the built runner whose --exit-codes --json is the source")
    ap.add_argument("--check", action="store_true", help="compare instead of writing")
    ap.add_argument("--out", default=str(DOCKER), help="folder to write (default docker/)")
    ap.add_argument("--baked-model", metavar="ORG/NAME[@REV]",
                    help="the image bakes this Hub model (Dockerfile PRETRAINED_MODEL): jobs "
                         "start from it with HF_HUB_OFFLINE=1")
    args = ap.parse_args()
    global BAKED_MODEL
    BAKED_MODEL = args.baked_model
    files = render(load_table(args.runner))
    out = Path(args.out)
    stale = []
    for rel, text in files.items():
        path = out / rel
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(rel)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    if stale:
        print("deploy: out of date with the exit-code table (run tools/deploy.py): "
              + ", ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
