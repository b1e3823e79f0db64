#!/usr/bin/env python3
"""End-to-end check of the moto harness (moto_server.py) with a real Rust Lambda.

Starts, on free loopback ports:
  1. `cargo lambda watch --only-lambda-apis` over a throwaway manifest that only
     declares the bin name "toy" (no compilation happens),
  2. the prebuilt toy Lambda binary attached to it (AWS_LAMBDA_RUNTIME_API=
     http://127.0.0.1:<port>/.rt/toy),
  3. moto_server.py --lambda-endpoint http://127.0.0.1:<port>
     --function-prefix sessions-
then drives Lambda, Step Functions, ECS/EC2 and DynamoDB through boto3 and
prints one PASS/FAIL line per check (INFO lines record observed facts).
Exit status 0 iff no check failed.

The toy Lambda (lambda_runtime 1.5) echoes its input as {"echo": <input>, ...}
and, for input {"fail": "T"}, returns an error whose Diagnostic error_type is T.

Usage:
  VENV=/root/.cache/session-provisioner/venv
  $VENV/bin/python tests/harness/verify_moto.py --toy-bin /tmp/toy-lambda/target/debug/toy \
      [--cargo-lambda $VENV/bin/cargo-lambda]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.request
import zipfile
from pathlib import Path
from typing import Any, Callable

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

HERE = Path(__file__).resolve().parent
DEFAULT_VENV = Path("/root/.cache/session-provisioner/venv")
REGION = "us-east-1"
ACCOUNT = "123456789012"  # moto's default account (any access key maps to it)
PREFIX = "sessions-"
FN = f"{PREFIX}toy"  # moto function name; the emulator / binary name is "toy"

RESULTS = {"pass": 0, "fail": 0}


def report(ok: bool, name: str, detail: str = "") -> None:
    RESULTS["pass" if ok else "fail"] += 1
    print(f"{'PASS' if ok else 'FAIL'} {name}{': ' + detail if detail else ''}", flush=True)


def info(msg: str) -> None:
    print(f"INFO {msg}", flush=True)


def check(name: str, fn: Callable[[], Any]) -> Any:
    """Run fn; a falsy result or an exception is a FAIL."""
    try:
        res = fn()
    except Exception as exc:  # noqa: BLE001
        report(False, name, f"{type(exc).__name__}: {exc}")
        traceback.print_exc(file=sys.stdout)
        return None
    if isinstance(res, tuple):
        ok, detail = res
    else:
        ok, detail = bool(res), ""
    report(ok, name, detail)
    return res


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port}")


class Procs:
    """Child processes we started; stopped by pid on exit."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen] = []

    def start(self, args: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
        fh = open(log, "wb")  # noqa: SIM115
        p = subprocess.Popen(args, stdout=fh, stderr=subprocess.STDOUT, env=env)
        self.procs.append(p)
        return p

    def stop_all(self) -> None:
        for p in reversed(self.procs):
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    p.kill()


def wait_execution(sfn, arn: str, timeout: float = 60.0) -> dict:
    deadline = time.time() + timeout
    while True:
        d = sfn.describe_execution(executionArn=arn)
        if d["status"] != "RUNNING" or time.time() > deadline:
            return d
        time.sleep(0.2)


def history(sfn, arn: str) -> list[dict]:
    return sfn.get_execution_history(executionArn=arn, maxResults=1000)["events"]


def wait_for_token(sfn, arn: str, timeout: float = 30.0) -> str:
    """The waitForTaskToken state passes $$.Task.Token to the toy, which echoes it:
    read it back from the TaskSubmitted event (the Invoke response)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        for ev in history(sfn, arn):
            if ev["type"] == "TaskSubmitted":
                out = json.loads(ev["taskSubmittedEventDetails"]["output"])
                return out["Payload"]["echo"]["token"]
        time.sleep(0.2)
    raise TimeoutError("no TaskSubmitted event")


def dummy_zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("bootstrap", "#!/bin/sh\n# never run: invokes go to the local emulator\n")
    return buf.getvalue()


def client_error_code(fn: Callable[[], Any]) -> tuple[str | None, dict]:
    try:
        fn()
    except ClientError as err:
        return err.response["Error"]["Code"], err.response
    return None, {}


# --------------------------------------------------------------------------- #
# Checks
# --------------------------------------------------------------------------- #


def lambda_checks(c: dict) -> None:
    lam = c["lambda"]
    r = lam.invoke(FunctionName=FN, Payload=json.dumps({"a": 1}))
    body = json.loads(r["Payload"].read())
    check(
        "lambda invoke forwards to the Rust binary (prefix stripped)",
        lambda: (
            body.get("echo") == {"a": 1} and body.get("function_name") == "toy" and "FunctionError" not in r,
            json.dumps(body),
        ),
    )
    r = lam.invoke(FunctionName=f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{FN}", Payload=b'{"fail":"NotAuthorized"}')
    raw = r["Payload"].read().decode()
    check(
        "lambda invoke function error -> FunctionError=Unhandled + runtime JSON",
        lambda: (
            r.get("FunctionError") == "Unhandled" and r["StatusCode"] == 200 and json.loads(raw)["errorType"] == "NotAuthorized",
            f"FunctionError={r.get('FunctionError')} status={r['StatusCode']} body={raw}",
        ),
    )
    code, _ = client_error_code(lambda: lam.invoke(FunctionName=f"{PREFIX}missing", Payload=b"{}"))
    check("lambda invoke of a function unknown to moto -> ResourceNotFoundException", lambda: (code == "ResourceNotFoundException", str(code)))
    r = lam.invoke(FunctionName=FN, InvocationType="Event", Payload=b'{"async":1}')
    check("lambda invoke InvocationType=Event -> 202", lambda: (r["StatusCode"] == 202, str(r["StatusCode"])))


def sfn_definition_main() -> dict:
    """Invoke -> WaitForToken (TimeoutSecondsPath) -> Choice -> Pass / Fail."""
    return {
        "StartAt": "Invoke",
        "States": {
            "Invoke": {
                "Type": "Task",
                "Resource": "arn:aws:states:::lambda:invoke",
                "Parameters": {
                    "FunctionName": FN,
                    "Payload": {
                        "a.$": "$.a",
                        "name.$": "$$.Execution.Name",
                        "id.$": "$$.Execution.Id",
                    },
                },
                "ResultSelector": {"echo.$": "$.Payload.echo"},
                "ResultPath": "$.invoke",
                "Next": "WaitForToken",
            },
            "WaitForToken": {
                "Type": "Task",
                "Resource": "arn:aws:states:::lambda:invoke.waitForTaskToken",
                "Parameters": {
                    "FunctionName": FN,
                    "Payload": {"token.$": "$$.Task.Token", "name.$": "$$.Execution.Name"},
                },
                "TimeoutSecondsPath": "$.timeout",
                "ResultPath": "$.callback",
                "Catch": [{"ErrorEquals": ["NotAuthorized"], "ResultPath": "$.error", "Next": "Denied"}],
                "Next": "Decide",
            },
            "Decide": {
                "Type": "Choice",
                "Choices": [{"Variable": "$.callback.ok", "BooleanEquals": True, "Next": "Done"}],
                "Default": "Denied",
            },
            "Done": {"Type": "Pass", "Result": "ok", "ResultPath": "$.result", "End": True},
            "Denied": {"Type": "Fail", "Error": "Denied", "Cause": "callback said no"},
        },
    }


def sfn_definition_errors() -> dict:
    """Catch of a custom errorType, Retry with BackoffRate, Lambda-ARN resource."""
    return {
        "StartAt": "Boom",
        "States": {
            "Boom": {
                "Type": "Task",
                "Resource": "arn:aws:states:::lambda:invoke",
                "Parameters": {"FunctionName": FN, "Payload": {"fail": "NotAuthorized"}},
                "Retry": [{"ErrorEquals": ["SomethingElse"], "MaxAttempts": 5}],
                "Catch": [
                    {"ErrorEquals": ["SomethingElse"], "Next": "Wrong"},
                    {"ErrorEquals": ["NotAuthorized"], "ResultPath": "$.caught", "Next": "Flaky"},
                ],
                "Next": "Wrong",
            },
            "Flaky": {
                "Type": "Task",
                "Resource": "arn:aws:states:::lambda:invoke",
                "Parameters": {"FunctionName": FN, "Payload": {"fail": "Transient"}},
                "Retry": [
                    {"ErrorEquals": ["Transient"], "IntervalSeconds": 1, "MaxAttempts": 2, "BackoffRate": 2.0}
                ],
                "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.retried", "Next": "ArnStyle"}],
                "Next": "Wrong",
            },
            "ArnStyle": {
                "Type": "Task",
                "Resource": f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{FN}",
                "Parameters": {"fail": "Conflict"},
                "Catch": [{"ErrorEquals": ["Conflict"], "ResultPath": "$.arnstyle", "Next": "Done"}],
                "Next": "Wrong",
            },
            "Done": {"Type": "Succeed"},
            "Wrong": {"Type": "Fail", "Error": "WrongBranch"},
        },
    }


def sfn_definition_timeouts() -> dict:
    """waitForTaskToken left unanswered: TimeoutSecondsPath / HeartbeatSeconds."""
    return {
        "StartAt": "Timeout",
        "States": {
            "Timeout": {
                "Type": "Task",
                "Resource": "arn:aws:states:::lambda:invoke.waitForTaskToken",
                "Parameters": {"FunctionName": FN, "Payload": {"token.$": "$$.Task.Token"}},
                "TimeoutSecondsPath": "$.timeout",
                "Catch": [{"ErrorEquals": ["States.Timeout"], "ResultPath": "$.timeout_err", "Next": "Heartbeat"}],
                "Next": "Wrong",
            },
            "Heartbeat": {
                "Type": "Task",
                "Resource": "arn:aws:states:::lambda:invoke.waitForTaskToken",
                "Parameters": {"FunctionName": FN, "Payload": {"token.$": "$$.Task.Token"}},
                "TimeoutSeconds": 30,
                "HeartbeatSeconds": 2,
                "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.heartbeat_err", "Next": "Done"}],
                "Next": "Wrong",
            },
            "Done": {"Type": "Succeed"},
            "Wrong": {"Type": "Fail", "Error": "WrongBranch"},
        },
    }


def sfn_checks(c: dict) -> None:
    sfn, iam = c["stepfunctions"], c["iam"]
    role = iam.get_role(RoleName="sfn-role")["Role"]["Arn"]

    def create(name: str, definition: dict) -> str:
        return sfn.create_state_machine(name=name, definition=json.dumps(definition), roleArn=role)["stateMachineArn"]

    main_sm = create("main", sfn_definition_main())
    err_sm = create("errors", sfn_definition_errors())
    to_sm = create("timeouts", sfn_definition_timeouts())

    # --- happy path: lambda:invoke + waitForTaskToken + send_task_success ----
    ex = sfn.start_execution(stateMachineArn=main_sm, name="exec-happy", input=json.dumps({"a": 42, "timeout": 60}))
    arn = ex["executionArn"]
    token = check("waitForTaskToken: $$.Task.Token reaches the Lambda", lambda: wait_for_token(sfn, arn))
    if token:
        sfn.send_task_success(taskToken=token, output=json.dumps({"ok": True}))
        d = wait_execution(sfn, arn)
        out = json.loads(d.get("output") or "{}")
        check(
            "execution SUCCEEDED after send_task_success; Payload {a.$, $$.Execution.Name, $$.Execution.Id}",
            lambda: (
                d["status"] == "SUCCEEDED"
                and out["invoke"]["echo"] == {"a": 42, "name": "exec-happy", "id": arn}
                and out["callback"] == {"ok": True}
                and out["result"] == "ok",
                f"status={d['status']} output={d.get('output')}",
            ),
        )
        code, resp = client_error_code(lambda: sfn.send_task_success(taskToken=token, output="{}"))
        check("second send_task_success for the same token -> TaskTimedOut", lambda: (code == "TaskTimedOut", f"{code}: {resp.get('Error', {}).get('Message')}"))
        code, _ = client_error_code(lambda: sfn.send_task_failure(taskToken=token, error="X"))
        check("send_task_failure for an answered token -> TaskTimedOut", lambda: (code == "TaskTimedOut", str(code)))
        code, _ = client_error_code(lambda: sfn.send_task_success(taskToken="not-a-token", output="{}"))
        check("send_task_success for an unknown token -> InvalidToken", lambda: (code == "InvalidToken", str(code)))

    # --- StartExecution without a name (moto_server.py patch) --------------
    a = sfn.start_execution(stateMachineArn=main_sm, input=json.dumps({"a": 7, "timeout": 60}))["executionArn"]
    b = sfn.start_execution(stateMachineArn=main_sm, input=json.dumps({"a": 7, "timeout": 60}))["executionArn"]
    check("StartExecution without name -> distinct UUID-named executions", lambda: (a != b and not a.endswith(":None"), f"{a} {b}"))
    token_a = wait_for_token(sfn, a)  # `a` now waits in WaitForToken
    for x in (a, b):
        sfn.stop_execution(executionArn=x, error="Cleanup", cause="verify")
    st = sfn.describe_execution(executionArn=a)["status"]
    code, _ = client_error_code(lambda: sfn.send_task_success(taskToken=token_a, output="{}"))
    check("StopExecution -> ABORTED; its pending task token -> TaskTimedOut", lambda: (st == "ABORTED" and code == "TaskTimedOut", f"status={st} send_task_success={code}"))

    # --- Choice default -> Fail state -------------------------------------
    ex = sfn.start_execution(stateMachineArn=main_sm, name="exec-choice-no", input=json.dumps({"a": 1, "timeout": 60}))
    token = wait_for_token(sfn, ex["executionArn"])
    sfn.send_task_success(taskToken=token, output=json.dumps({"ok": False}))
    d = wait_execution(sfn, ex["executionArn"])
    check(
        "Choice default -> Fail state gives FAILED with its Error/Cause",
        lambda: (d["status"] == "FAILED" and d.get("error") == "Denied" and d.get("cause") == "callback said no", f"{d['status']} {d.get('error')} {d.get('cause')}"),
    )

    # --- send_task_failure with a custom error is caught by ErrorEquals -----
    ex = sfn.start_execution(stateMachineArn=main_sm, name="exec-denied", input=json.dumps({"a": 1, "timeout": 60}))
    token = wait_for_token(sfn, ex["executionArn"])
    sfn.send_task_failure(taskToken=token, error="NotAuthorized", cause="nope")
    d = wait_execution(sfn, ex["executionArn"])
    ev = [e for e in history(sfn, ex["executionArn"]) if e["type"] == "TaskFailed"]
    check(
        "send_task_failure(error=NotAuthorized, cause) caught by Catch ErrorEquals [NotAuthorized], cause kept",
        lambda: (
            d["status"] == "FAILED"
            and d.get("error") == "Denied"
            and ev
            and ev[0]["taskFailedEventDetails"].get("error") == "NotAuthorized"
            and ev[0]["taskFailedEventDetails"].get("cause") == "nope",
            f"{d['status']} {d.get('error')} taskFailed={ev[0]['taskFailedEventDetails'] if ev else None}",
        ),
    )

    # --- function errors, Retry/BackoffRate, Lambda-ARN resource ----------
    t0 = time.time()
    ex = sfn.start_execution(stateMachineArn=err_sm, name="exec-errors", input="{}")
    d = wait_execution(sfn, ex["executionArn"], timeout=90)
    elapsed = time.time() - t0
    out = json.loads(d.get("output") or "{}")
    caught = out.get("caught", {})
    check(
        "Lambda function error -> Catch sees Error=<errorType>, Cause=<error payload JSON>",
        lambda: (
            caught.get("Error") == "NotAuthorized"
            and json.loads(caught.get("Cause", "{}")) == {"errorType": "NotAuthorized", "errorMessage": "toy failed with NotAuthorized"},
            json.dumps(caught),
        ),
    )
    info(f"Catch output for a lambda:invoke function error: {json.dumps(caught)}")
    fails = [e for e in history(sfn, ex["executionArn"]) if e["type"] == "TaskFailed"]
    flaky_fails = [e for e in fails if e["taskFailedEventDetails"].get("error") == "Transient"]
    check(
        "Retry MaxAttempts=2 BackoffRate=2 IntervalSeconds=1: 3 attempts, ~3s of backoff",
        lambda: (len(flaky_fails) == 3 and elapsed >= 3.0 and out.get("retried", {}).get("Error") == "Transient", f"attempts={len(flaky_fails)} elapsed={elapsed:.1f}s retried={out.get('retried')}"),
    )
    check(
        "Lambda-ARN Resource (arn:aws:lambda:...:function:N) function error caught by errorType",
        lambda: (d["status"] == "SUCCEEDED" and out.get("arnstyle", {}).get("Error") == "Conflict", f"{d['status']} {out.get('arnstyle')}"),
    )
    info(f"TaskFailed event for lambda:invoke error: {json.dumps(fails[0]['taskFailedEventDetails']) if fails else None}")

    # --- timeouts ------------------------------------------------------------
    t0 = time.time()
    ex = sfn.start_execution(stateMachineArn=to_sm, name="exec-timeouts", input=json.dumps({"timeout": 2}))
    d = wait_execution(sfn, ex["executionArn"], timeout=60)
    elapsed = time.time() - t0
    out = json.loads(d.get("output") or "{}")
    check(
        "TimeoutSecondsPath on waitForTaskToken -> States.Timeout after ~2s",
        lambda: (out.get("timeout_err", {}).get("Error") == "States.Timeout", json.dumps(out.get("timeout_err"))),
    )
    check(
        "HeartbeatSeconds=2 without heartbeats -> caught timeout error",
        lambda: (d["status"] == "SUCCEEDED" and bool(out.get("heartbeat_err")), f"{json.dumps(out.get('heartbeat_err'))} total={elapsed:.1f}s"),
    )
    info(f"HeartbeatSeconds expiry surfaces as: {json.dumps(out.get('heartbeat_err'))}")


def ecs_checks(c: dict) -> None:
    ec2, ecs = c["ec2"], c["ecs"]
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24")["Subnet"]["SubnetId"]
    sg = ec2.create_security_group(GroupName="sessions", Description="x", VpcId=vpc)["GroupId"]
    ecs.create_cluster(clusterName="sessions")
    ecs.register_task_definition(
        family="session",
        networkMode="awsvpc",
        requiresCompatibilities=["FARGATE"],
        cpu="256",
        memory="512",
        # No container-level memory (valid on Fargate): crashes RunTask in
        # upstream moto 5.2.5, fixed by moto_server.py's ECS patch.
        containerDefinitions=[{"name": "app", "image": "public.ecr.aws/x/y:latest", "essential": True}],
    )
    run = ecs.run_task(
        cluster="sessions",
        taskDefinition="session",
        launchType="FARGATE",
        startedBy="session-abc",
        networkConfiguration={"awsvpcConfiguration": {"subnets": [subnet], "securityGroups": [sg], "assignPublicIp": "ENABLED"}},
    )
    task = run["tasks"][0]
    task_arn = task["taskArn"]
    info(f"RunTask -> lastStatus={task.get('lastStatus')} desiredStatus={task.get('desiredStatus')} failures={run.get('failures')}")
    d = ecs.describe_tasks(cluster="sessions", tasks=[task_arn])["tasks"][0]
    details = {x["name"]: x.get("value") for a in d.get("attachments", []) for x in a.get("details", [])}
    eni_id = details.get("networkInterfaceId")
    info(f"task attachments: {json.dumps(d.get('attachments'))}")
    enis = ec2.describe_network_interfaces(NetworkInterfaceIds=[eni_id])["NetworkInterfaces"] if eni_id else []
    check(
        "RunTask FARGATE/awsvpc -> ENI in EC2 via attachments networkInterfaceId",
        lambda: (len(enis) == 1 and enis[0]["SubnetId"] == subnet, f"eni={eni_id} status={enis[0]['Status'] if enis else None}"),
    )
    info(f"ENI before EIP: Association={enis[0].get('Association') if enis else None} (assignPublicIp=ENABLED gives no public IP in moto)")
    alloc = ec2.allocate_address(Domain="vpc")
    ec2.associate_address(AllocationId=alloc["AllocationId"], NetworkInterfaceId=eni_id)
    eni = ec2.describe_network_interfaces(NetworkInterfaceIds=[eni_id])["NetworkInterfaces"][0]
    check(
        "associate_address(AllocationId, NetworkInterfaceId) -> Association.PublicIp on the ENI",
        lambda: (eni.get("Association", {}).get("PublicIp") == alloc["PublicIp"], json.dumps(eni.get("Association"))),
    )
    try:
        flt = ec2.describe_network_interfaces(Filters=[{"Name": "association.public-ip", "Values": [alloc["PublicIp"]]}])["NetworkInterfaces"]
        info(f"describe_network_interfaces Filter association.public-ip -> {[e['NetworkInterfaceId'] for e in flt]}")
    except Exception as exc:  # noqa: BLE001 - moto 5.2.5: FilterNotImplementedError -> HTTP 500
        info(f"describe_network_interfaces Filter association.public-ip unsupported: {type(exc).__name__}")
    addr = ec2.describe_addresses(AllocationIds=[alloc["AllocationId"]])["Addresses"][0]
    info(f"describe_addresses after associate: NetworkInterfaceId={addr.get('NetworkInterfaceId')} AssociationId={addr.get('AssociationId')} PrivateIpAddress={addr.get('PrivateIpAddress')}")

    other = ecs.run_task(
        cluster="sessions",
        taskDefinition="session",
        launchType="FARGATE",
        startedBy="someone-else",
        networkConfiguration={"awsvpcConfiguration": {"subnets": [subnet], "securityGroups": [sg]}},
    )["tasks"][0]["taskArn"]
    listed = ecs.list_tasks(cluster="sessions", startedBy="session-abc")["taskArns"]
    check("ListTasks startedBy filter", lambda: (listed == [task_arn], f"{listed} (other={other})"))

    ecs.stop_task(cluster="sessions", task=task_arn, reason="done")
    d = ecs.describe_tasks(cluster="sessions", tasks=[task_arn])["tasks"][0]
    check("StopTask -> lastStatus STOPPED", lambda: (d["lastStatus"] == "STOPPED", f"lastStatus={d['lastStatus']} desiredStatus={d['desiredStatus']} stoppedReason={d.get('stoppedReason')}"))
    left = ec2.describe_network_interfaces(Filters=[{"Name": "network-interface-id", "Values": [eni_id]}])["NetworkInterfaces"]
    info(f"after StopTask the task ENI still exists: {bool(left)} status={left[0]['Status'] if left else None}")
    running = ecs.list_tasks(cluster="sessions", startedBy="session-abc", desiredStatus="RUNNING")["taskArns"]
    stopped = ecs.list_tasks(cluster="sessions", startedBy="session-abc", desiredStatus="STOPPED")["taskArns"]
    info(f"ListTasks startedBy+desiredStatus after stop: RUNNING={running} STOPPED={stopped}")


def dynamodb_checks(c: dict) -> None:
    ddb = c["dynamodb"]
    ddb.create_table(
        TableName="sessions",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    ddb.put_item(TableName="sessions", Item={"pk": {"S": "user#1"}, "slots": {"SS": ["a", "b"]}, "v": {"N": "1"}})

    def add_slot(slot: str) -> str | None:
        code, _ = client_error_code(
            lambda: ddb.update_item(
                TableName="sessions",
                Key={"pk": {"S": "user#1"}},
                UpdateExpression="ADD slots :s",
                ConditionExpression="attribute_not_exists(slots) OR size(slots) < :n",
                ExpressionAttributeValues={":s": {"SS": [slot]}, ":n": {"N": "3"}},
            )
        )
        return code

    first, second = add_slot("c"), add_slot("d")
    slots = ddb.get_item(TableName="sessions", Key={"pk": {"S": "user#1"}})["Item"]["slots"]["SS"]
    check(
        "ConditionExpression size(<string set>) < :n (2<3 passes, 3<3 fails)",
        lambda: (first is None and second == "ConditionalCheckFailedException" and sorted(slots) == ["a", "b", "c"], f"first={first} second={second} slots={sorted(slots)}"),
    )

    ddb.put_item(TableName="sessions", Item={"pk": {"S": "user#2"}, "v": {"N": "1"}})
    code, resp = client_error_code(
        lambda: ddb.transact_write_items(
            TransactItems=[
                {
                    "ConditionCheck": {
                        "TableName": "sessions",
                        "Key": {"pk": {"S": "user#1"}},
                        "ConditionExpression": "size(slots) < :n",
                        "ExpressionAttributeValues": {":n": {"N": "3"}},
                    }
                },
                {
                    "Update": {
                        "TableName": "sessions",
                        "Key": {"pk": {"S": "user#2"}},
                        "UpdateExpression": "SET v = :v",
                        "ExpressionAttributeValues": {":v": {"N": "2"}},
                    }
                },
            ]
        )
    )
    reasons = resp.get("CancellationReasons")
    v2 = ddb.get_item(TableName="sessions", Key={"pk": {"S": "user#2"}})["Item"]["v"]["N"]
    check(
        "TransactWriteItems failing ConditionCheck -> TransactionCanceledException + CancellationReasons",
        lambda: (
            code == "TransactionCanceledException" and reasons and reasons[0].get("Code") == "ConditionalCheckFailed" and reasons[1].get("Code") == "None" and v2 == "1",
            f"{code} reasons={reasons} message={resp.get('Error', {}).get('Message')}",
        ),
    )
    code, resp = client_error_code(
        lambda: ddb.transact_write_items(
            TransactItems=[
                {
                    "Update": {
                        "TableName": "sessions",
                        "Key": {"pk": {"S": "user#2"}},
                        "UpdateExpression": "SET v = :v",
                        "ConditionExpression": "v = :old",
                        "ExpressionAttributeValues": {":v": {"N": "3"}, ":old": {"N": "999"}},
                        "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
                    }
                },
            ]
        )
    )
    reasons = resp.get("CancellationReasons")
    check(
        "TransactWriteItems failing Update condition -> TransactionCanceledException + CancellationReasons",
        lambda: (code == "TransactionCanceledException" and reasons and reasons[0].get("Code") == "ConditionalCheckFailed", f"{code} reasons={reasons}"),
    )


# --------------------------------------------------------------------------- #


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--toy-bin", required=True, help="prebuilt toy Lambda binary")
    ap.add_argument("--cargo-lambda", default=str(DEFAULT_VENV / "bin" / "cargo-lambda"))
    ap.add_argument("--python", default=sys.executable, help="python with moto[server]==5.2.5")
    ap.add_argument("--keep-logs", action="store_true")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="verify-moto-"))
    procs = Procs()
    try:
        # 1. Lambda emulator. It only serves function names that are bin
        #    targets of the manifest, so give it a manifest naming "toy"
        #    (cargo metadata does not need the source file to exist).
        (work / "fns").mkdir()
        (work / "fns" / "Cargo.toml").write_text(
            '[package]\nname = "lambda-fns"\nversion = "0.0.0"\nedition = "2021"\npublish = false\n\n'
            '[[bin]]\nname = "toy"\npath = "main.rs"\n'
        )
        lport = free_port()
        procs.start(
            [args.cargo_lambda, "lambda", "watch", "--only-lambda-apis", "-A", "127.0.0.1", "-P", str(lport),
             "--manifest-path", str(work / "fns" / "Cargo.toml")],
            work / "cargo-lambda.log",
        )
        wait_port(lport)
        # 2. The function binary, attached to the emulator under its name.
        env = dict(os.environ)
        env.update(
            AWS_LAMBDA_RUNTIME_API=f"http://127.0.0.1:{lport}/.rt/toy",
            AWS_LAMBDA_FUNCTION_NAME="toy",
            AWS_LAMBDA_FUNCTION_VERSION="1",
            AWS_LAMBDA_FUNCTION_MEMORY_SIZE="128",
        )
        toy = procs.start([args.toy_bin], work / "toy.log", env=env)
        # 3. moto.
        mport = free_port()
        moto = procs.start(
            [args.python, str(HERE / "moto_server.py"), "--host", "127.0.0.1", "--port", str(mport),
             "--lambda-endpoint", f"http://127.0.0.1:{lport}", "--function-prefix", PREFIX],
            work / "moto.log",
        )
        wait_port(mport)
        time.sleep(0.3)
        first_line = (work / "moto.log").read_text().splitlines()[:1]
        check("launcher prints 'moto ready on 127.0.0.1:PORT'", lambda: (first_line == [f"moto ready on 127.0.0.1:{mport}"], repr(first_line)))
        cfg = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{mport}/moto-api/config").read())
        # GET /moto-api/config only reports "batch" and "lambda"; that state
        # machines really execute is checked by sfn_checks.
        check("moto config applied at start (lambda.use_docker=false)", lambda: (cfg.get("lambda", {}).get("use_docker") is False, json.dumps(cfg)))

        session = boto3.session.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION)
        bcfg = Config(retries={"max_attempts": 1}, read_timeout=120)
        c = {s: session.client(s, endpoint_url=f"http://127.0.0.1:{mport}", config=bcfg) for s in ("lambda", "stepfunctions", "iam", "ec2", "ecs", "dynamodb")}

        trust = json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]})
        role = c["iam"].create_role(RoleName="lambda-role", AssumeRolePolicyDocument=trust)["Role"]["Arn"]
        c["iam"].create_role(RoleName="sfn-role", AssumeRolePolicyDocument=trust)
        c["lambda"].create_function(
            FunctionName=FN,
            Runtime="provided.al2023",
            Handler="bootstrap",
            Role=role,
            Code={"ZipFile": dummy_zip()},
            Architectures=["x86_64"],
        )

        for section in (lambda_checks, sfn_checks, ecs_checks, dynamodb_checks):
            try:
                section(c)
            except Exception as exc:  # noqa: BLE001
                report(False, f"{section.__name__} crashed", f"{type(exc).__name__}: {exc}")
                traceback.print_exc(file=sys.stdout)

        if toy.poll() is not None:
            report(False, "toy binary still running", f"exit={toy.returncode}")
        # 4. Clean shutdown on SIGTERM.
        moto.terminate()
        try:
            rc = moto.wait(timeout=10)
        except subprocess.TimeoutExpired:
            rc = None
        check("launcher exits 0 on SIGTERM", lambda: (rc == 0, f"rc={rc}"))
    finally:
        procs.stop_all()
        if RESULTS["fail"] or args.keep_logs:
            print(f"logs kept in {work}")
        else:
            for f in work.rglob("*"):
                if f.is_file():
                    f.unlink()
            for d in sorted(work.rglob("*"), reverse=True):
                d.rmdir()
            work.rmdir()

    print(f"{RESULTS['pass']} passed, {RESULTS['fail']} failed")
    return 1 if RESULTS["fail"] else 0


if __name__ == "__main__":
    sys.exit(main())
