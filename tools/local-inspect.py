#!/usr/bin/env python3
"""What AWS itself says about a session on the local stack: its ECS task and its Step
Functions execution, read with boto3 from the emulator on 127.0.0.1:4566 (override
with --endpoint). Prints JSON: {"session_id", "tasks": [...], "execution": {...}}."""

import argparse
import json
import sys

import boto3
import botocore.config

CLUSTER = "sessions"
STATE_MACHINE = "session-lifecycle"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("session_id")
    parser.add_argument("--endpoint", default="http://127.0.0.1:4566")
    parser.add_argument("--region", default="us-east-1")
    args = parser.parse_args()
    # Looking on is not the product's work: the emulator's rate limits
    # (LOCAL_RATE_LIMITS) never throttle calls that name the harness app.
    client = lambda service: boto3.client(  # noqa: E731
        service,
        endpoint_url=args.endpoint,
        region_name=args.region,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=botocore.config.Config(user_agent_appid="session-harness"),
    )
    ecs, sfn = client("ecs"), client("stepfunctions")
    arns = []
    for desired in ("RUNNING", "STOPPED"):
        arns += ecs.list_tasks(cluster=CLUSTER, startedBy=args.session_id, desiredStatus=desired)["taskArns"]
    tasks = ecs.describe_tasks(cluster=CLUSTER, tasks=arns)["tasks"] if arns else []
    machine = next(m for m in sfn.list_state_machines()["stateMachines"] if m["name"] == STATE_MACHINE)
    execution_arn = machine["stateMachineArn"].replace(":stateMachine:", ":execution:") + ":" + args.session_id
    try:
        execution = sfn.describe_execution(executionArn=execution_arn)
        execution = {"name": execution["name"], "status": execution["status"]}
    except sfn.exceptions.ExecutionDoesNotExist:
        execution = None
    json.dump(
        {
            "session_id": args.session_id,
            "tasks": [
                {"taskArn": t["taskArn"], "lastStatus": t["lastStatus"], "startedBy": t.get("startedBy")}
                for t in tasks
            ],
            "execution": execution,
        },
        sys.stdout,
        indent=2,
    )
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
