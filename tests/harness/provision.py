#!/usr/bin/env python3
"""Provision the product's AWS resources in a moto server, from the project's own
definitions (the state machine under statemachine/, the table layout of DESIGN.md,
the session template's repositories and ports).

Usage:
    python provision.py --endpoint http://127.0.0.1:4566 --root REPO --out stack.json

Writes a JSON document with every id, name and ARN the functions and the tests need,
including `function_env`: the environment each function runs with.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import re
import sys
import zipfile
from pathlib import Path

import boto3

REGION = "us-east-1"
ACCOUNT = "123456789012"
CLUSTER = "sessions"
SESSIONS_TABLE = "sessions"
USERS_TABLE = "users"
STATE_MACHINE = "session-lifecycle"
TASK_LOG_GROUP = "/ecs/sessions"
EVENT_BUS = "sessions"
TASK_ROLE_PATH = "/sessions/users/"
# The versioned repositories of the default session template and the tags the
# fixtures push, as a release pipeline would: one image of each repository carries them
# all (`latest` is 1.0.0).
REPOSITORIES = ["api_service", "frontend", "suv_ui"]
IMAGE_TAGS = ["latest", "1.0.0"]
TEMPLATE_PORTS = [8000, 3000, 3030]
FUNCTIONS = ["authorize", "launch", "wait-for-ip", "record", "stop", "task-events", "reaper"]
PLACEHOLDER = re.compile(r"\$\{([a-z_]+)\}")


def client(name: str, endpoint: str):
    return boto3.client(
        name,
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def render_definition(text: str, function_arns: dict[str, str]) -> str:
    """Replaces `${<function>_arn}` placeholders as Terraform's templatefile does."""

    def arn(match: re.Match) -> str:
        name = match.group(1)
        if not name.endswith("_arn") or name[: -len("_arn")].replace("_", "-") not in function_arns:
            raise SystemExit(f"statemachine placeholder ${{{name}}} names no function")
        return function_arns[name[: -len("_arn")].replace("_", "-")]

    return PLACEHOLDER.sub(arn, text)


def network(ec2) -> dict:
    vpc = ec2.create_vpc(CidrBlock="10.42.0.0/16")["Vpc"]["VpcId"]
    # Task ENIs need DNS hostnames (and moto needs them to run awsvpc tasks).
    ec2.modify_vpc_attribute(VpcId=vpc, EnableDnsSupport={"Value": True})
    ec2.modify_vpc_attribute(VpcId=vpc, EnableDnsHostnames={"Value": True})
    igw = ec2.create_internet_gateway()["InternetGateway"]["InternetGatewayId"]
    ec2.attach_internet_gateway(InternetGatewayId=igw, VpcId=vpc)
    routes = ec2.create_route_table(VpcId=vpc)["RouteTable"]["RouteTableId"]
    ec2.create_route(RouteTableId=routes, DestinationCidrBlock="0.0.0.0/0", GatewayId=igw)
    subnets = []
    for i, az in enumerate(["us-east-1a", "us-east-1b"]):
        subnet = ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.42.{i}.0/24", AvailabilityZone=az)["Subnet"]["SubnetId"]
        ec2.modify_subnet_attribute(SubnetId=subnet, MapPublicIpOnLaunch={"Value": True})
        ec2.associate_route_table(RouteTableId=routes, SubnetId=subnet)
        subnets.append(subnet)
    sg = ec2.create_security_group(GroupName="session-tasks", Description="session tasks", VpcId=vpc)["GroupId"]
    ec2.authorize_security_group_ingress(
        GroupId=sg,
        IpPermissions=[
            {"IpProtocol": "tcp", "FromPort": p, "ToPort": p, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}
            for p in TEMPLATE_PORTS
        ],
    )
    return {"vpc_id": vpc, "subnets": subnets, "security_group": sg}


def images(ecr) -> str:
    registry = None
    for repo in REPOSITORIES:
        uri = ecr.create_repository(repositoryName=repo)["repository"]["repositoryUri"]
        registry = uri.rsplit("/", 1)[0]
        # moto derives an image's digest from its layers' digests alone.
        layer = "sha256:" + hashlib.sha256(f"{repo}:layer".encode()).hexdigest()
        manifest = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                "config": {"digest": "sha256:" + hashlib.sha256(repo.encode()).hexdigest()},
                "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "digest": layer, "size": 1}],
            }
        )
        for tag in IMAGE_TAGS:
            ecr.put_image(repositoryName=repo, imageManifest=manifest, imageTag=tag)
    return registry


def tables(ddb) -> None:
    ddb.create_table(
        TableName=USERS_TABLE,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": "user_id", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "user_id", "KeyType": "HASH"}],
    )
    ddb.create_table(
        TableName=SESSIONS_TABLE,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[
            {"AttributeName": "session_id", "AttributeType": "S"},
            {"AttributeName": "user_id", "AttributeType": "S"},
            {"AttributeName": "active_user_id", "AttributeType": "S"},
            {"AttributeName": "created_at", "AttributeType": "S"},
        ],
        KeySchema=[{"AttributeName": "session_id", "KeyType": "HASH"}],
        GlobalSecondaryIndexes=[
            {
                "IndexName": "by-user",
                "KeySchema": [
                    {"AttributeName": "user_id", "KeyType": "HASH"},
                    {"AttributeName": "created_at", "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "ALL"},
            },
            {
                "IndexName": "active",
                "KeySchema": [
                    {"AttributeName": "active_user_id", "KeyType": "HASH"},
                    {"AttributeName": "created_at", "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "ALL"},
            },
        ],
    )


def dummy_zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("bootstrap", "#!/bin/sh\n# code runs in the local Lambda host, not here\n")
    return buf.getvalue()


def provision(endpoint: str, root: Path) -> dict:
    ec2, ecs, efs, ecr = (client(n, endpoint) for n in ("ec2", "ecs", "efs", "ecr"))
    ddb, iam, lam, sfn = (client(n, endpoint) for n in ("dynamodb", "iam", "lambda", "stepfunctions"))

    net = network(ec2)
    cluster_arn = ecs.create_cluster(clusterName=CLUSTER)["cluster"]["clusterArn"]
    fs = efs.create_file_system(CreationToken="session-data", Encrypted=True)["FileSystemId"]
    for subnet in net["subnets"]:
        efs.create_mount_target(FileSystemId=fs, SubnetId=subnet, SecurityGroups=[net["security_group"]])
    registry = images(ecr)
    tables(ddb)

    def role(name: str, service: str) -> str:
        policy = {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}],
        }
        return iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(policy))["Role"]["Arn"]

    function_role = role("session-functions", "lambda.amazonaws.com")
    execution_role = role("session-task-execution", "ecs-tasks.amazonaws.com")
    # What bounds each user's task role, which Launch creates under TASK_ROLE_PATH (as
    # terraform/ecs.tf declares them; moto stores IAM policies without enforcing them).
    def policy(name: str, actions: list[str]) -> str:
        document = {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": actions, "Resource": "*"}],
        }
        return iam.create_policy(PolicyName=name, Path="/sessions/", PolicyDocument=json.dumps(document))[
            "Policy"
        ]["Arn"]

    efs_client = ["elasticfilesystem:ClientMount", "elasticfilesystem:ClientWrite"]
    task_boundary = policy("sessions-task-boundary", efs_client)
    task_user_data = policy("sessions-task-user-data", efs_client)
    states_role = role("session-lifecycle", "states.amazonaws.com")

    code = dummy_zip()
    function_arns = {}
    for name in FUNCTIONS:
        function_arns[name] = lam.create_function(
            FunctionName=name,
            Runtime="provided.al2023",
            Architectures=["arm64"],
            Handler="bootstrap",
            Role=function_role,
            Code={"ZipFile": code},
        )["FunctionArn"]

    # The project's bus, and a queue subscribed to everything on it so that tests and
    # the local stack can read the lifecycle events.
    events, sqs = client("events", endpoint), client("sqs", endpoint)
    events.create_event_bus(Name=EVENT_BUS)
    queue_url = sqs.create_queue(QueueName="session-events")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events.put_rule(Name="all-session-events", EventBusName=EVENT_BUS, EventPattern=json.dumps({"source": ["session-provisioner"]}))
    events.put_targets(Rule="all-session-events", EventBusName=EVENT_BUS, Targets=[{"Id": "queue", "Arn": queue_arn}])

    definition = render_definition((root / "statemachine" / "lifecycle.asl.json").read_text(), function_arns)
    state_machine_arn = sfn.create_state_machine(name=STATE_MACHINE, definition=definition, roleArn=states_role)[
        "stateMachineArn"
    ]

    function_env = {
        "SESSIONS_TABLE": SESSIONS_TABLE,
        "USERS_TABLE": USERS_TABLE,
        "CLUSTER": CLUSTER,
        "SUBNETS": ",".join(net["subnets"]),
        "SECURITY_GROUPS": net["security_group"],
        "EXECUTION_ROLE_ARN": execution_role,
        "TASK_ROLE_PATH": TASK_ROLE_PATH,
        "TASK_ROLE_BOUNDARY_ARN": task_boundary,
        "TASK_ROLE_POLICY_ARN": task_user_data,
        "EFS_FILE_SYSTEM_ID": fs,
        "ECR_REGISTRY": registry,
        "TASK_LOG_GROUP": TASK_LOG_GROUP,
        "EVENT_BUS": EVENT_BUS,
        "STATE_MACHINE_ARN": state_machine_arn,
        # Fixed, so that page tokens stay valid across restarts of the local stack.
        "CURSOR_KEY": "local-stack-cursor-key-not-a-secret-0123456789",
        "AWS_REGION": REGION,
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
    }
    return {
        "endpoint": endpoint,
        "region": REGION,
        "account": ACCOUNT,
        "cluster": CLUSTER,
        "cluster_arn": cluster_arn,
        "file_system_id": fs,
        "registry": registry,
        "sessions_table": SESSIONS_TABLE,
        "users_table": USERS_TABLE,
        "state_machine_arn": state_machine_arn,
        "event_bus": EVENT_BUS,
        "events_queue_url": queue_url,
        "function_arns": function_arns,
        "function_env": function_env,
        **net,
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--endpoint", required=True)
    p.add_argument("--root", type=Path, default=Path(__file__).resolve().parents[2])
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    stack = provision(args.endpoint, args.root)
    args.out.write_text(json.dumps(stack, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
