#!/usr/bin/env python3
"""Launch a moto server (pinned: moto[server]==5.2.5) for the integration tests.

What this adds on top of plain `moto_server`:

* Step Functions really execute state machines and the Lambda backend is the
  Docker-free "simple" one: the equivalent of
  ``POST /moto-api/config {"stepfunctions": {"execute_state_machine": true},
  "lambda": {"use_docker": false}}`` is applied before the socket serves.
* Lambda ``Invoke`` (the REST API, which is also what moto's Step Functions
  interpreter uses for ``arn:aws:states:::lambda:invoke[.waitForTaskToken]``
  and for plain Lambda-ARN resources) is forwarded to a locally hosted Lambda
  service (tests/src/lambda.rs), which answers as the real Invoke API does:
  ``POST {--lambda-endpoint}/2015-03-31/functions/{name}/invocations``.
  ``name`` is the moto function's name with ``--function-prefix`` stripped.
  Function errors come back the way real Lambda reports them
  (``X-Amz-Function-Error: Unhandled`` + ``{"errorType", "errorMessage"}``),
  so a state machine sees ``Error == errorType`` and ``Cause == payload``.
* Fixes for moto 5.2.5 bugs the session provisioner runs into (each patch_*
  function below says why):
  - SendTaskSuccess/Failure/Heartbeat for a token whose task is closed
    (answered, timed out, execution ended) -> TaskTimedOut, as on AWS;
  - SendTaskFailure keeps its ``cause``;
  - StartExecution without ``name`` gets a UUID name (not None);
  - StopExecution aborts an execution blocked in .waitForTaskToken at once;
  - ECS RunTask (Fargate, awsvpc) no longer fails with HTTP 500 when the
    containers have no container-level memory or the VPC has no
    enableDnsHostnames;
  - ECS RunTask refuses a deregistered (INACTIVE) task definition.
* AWS's answers under load and in races, which moto never gives, injected from
  ``--fault-file`` (see ``patch_injected_faults``): throttling of any action,
  DynamoDB's TransactionConflict, EFS's AccessPointAlreadyExists, in each service's
  own error shape, for a number of calls.
* AWS's API rate limits, switched on at run time from ``--fault-file`` (see
  ``patch_rate_limits``): token buckets of AWS's documented sizes and refill rates
  (``RATE_LIMITS``) in front of the calls the product makes, answering as each
  service does when it throttles, and counting what they let through and refused.

The function still has to exist in moto (CreateFunction with any role that
exists in moto IAM, a dummy zip, runtime provided.al2023, handler bootstrap);
invoking an unknown function gives ResourceNotFoundException as on AWS.

Usage:
    python moto_server.py --host 127.0.0.1 --port 5000 \
        --lambda-endpoint http://127.0.0.1:9000 [--function-prefix sessions-]

Prints ``moto ready on HOST:PORT`` once serving (``--port 0`` picks a free
port and prints it). SIGTERM/SIGINT stop it with exit status 0.

moto's Step Functions interpreter calls Lambda through boto3 at
http://localhost:$MOTO_PORT (account 123456789012, the state machine's
region), so --host must be reachable as localhost (127.0.0.1 or 0.0.0.0).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

MOTO_CONFIG = {
    "stepfunctions": {"execute_state_machine": True},
    "lambda": {"use_docker": False},
}

# Local addresses must never go through an HTTP proxy from the environment:
# both our forwarding and moto's own SFN->Lambda boto3 client talk to loopback.
_LOOPBACK = "localhost,127.0.0.1,::1"
for _var in ("NO_PROXY", "no_proxy"):
    os.environ[_var] = ",".join(filter(None, [os.environ.get(_var, ""), _LOOPBACK]))

_NO_PROXY_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument(
        "--fault-file",
        help="JSON file of injected faults, read on every call (tests only)",
    )
    p.add_argument("--port", type=int, default=5000, help="0 = pick a free port")
    p.add_argument(
        "--lambda-endpoint",
        required=True,
        help="base URL of the local Lambda Invoke API, e.g. http://127.0.0.1:9000",
    )
    p.add_argument(
        "--function-prefix",
        default="",
        help="stripped from moto function names before forwarding "
        "(sessions-authorize -> authorize)",
    )
    p.add_argument(
        "--invoke-timeout",
        type=float,
        default=900.0,
        help="seconds to wait for one forwarded invocation (Lambda max is 900)",
    )
    p.add_argument(
        "--task-addresses",
        help="a /24 on the loopback network (e.g. 127.17.214.0/24) that task ENIs take "
        "their private IPv4 addresses from, so that the pump can serve each task's "
        "ports on the task's own address; moto's random 10.x addresses otherwise",
    )
    return p.parse_args(argv)


def local_function_name(function_name: str, prefix: str) -> str:
    if prefix and function_name.startswith(prefix):
        return function_name[len(prefix) :]
    return function_name


def forward_invocation(
    endpoint: str, name: str, payload: bytes, timeout: float
) -> tuple[bytes, str | None]:
    """POST one invocation to the local Lambda emulator.

    Returns (response body, function-error kind or None). Raises
    ``_LocalLambdaUnavailable`` when the emulator could not run the function.
    """
    url = f"{endpoint.rstrip('/')}/2015-03-31/functions/{name}/invocations"
    req = urllib.request.Request(
        url,
        data=payload,
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    try:
        with _NO_PROXY_OPENER.open(req, timeout=timeout) as resp:
            # A function error is a 200 with X-Amz-Function-Error, as on AWS.
            return resp.read(), resp.headers.get("X-Amz-Function-Error")
    except urllib.error.HTTPError as err:
        body = err.read()
        status = err.code
    except (urllib.error.URLError, OSError) as err:  # refused, timeout, ...
        raise _LocalLambdaUnavailable(f"cannot reach {url}: {err}") from err

    # The Lambda service's own errors (no such function, stopped): a ServiceException.
    raise _LocalLambdaUnavailable(
        f"{url} answered HTTP {status}: {body[:500].decode('utf-8', 'replace')}"
    )


class _LocalLambdaUnavailable(Exception):
    pass


def patch_lambda_invoke(endpoint: str, prefix: str, timeout: float) -> None:
    """Forward moto's Lambda Invoke to the local emulator.

    Why: with {"lambda": {"use_docker": false}} every Lambda Invoke request
    (boto3 / SDK clients, and moto's Step Functions interpreter, which calls
    Invoke through a boto3 client pointed at http://localhost:$MOTO_PORT) ends
    in LambdaSimpleBackend.invoke(function_name, qualifier, body, headers,
    response_headers). Upstream it just echoes the request body (or a result
    queued via /moto-api/static/lambda-simple/response) without even checking
    that the function exists. We replace it so that the real Rust handler
    runs; that canned-result queue is no longer used.
    """
    from moto.awslambda.exceptions import LambdaClientError
    from moto.awslambda_simple.models import LambdaSimpleBackend

    class ServiceException(LambdaClientError):
        # Surfaces in a state machine as Error "Lambda.ServiceException".
        code = 500

        def __init__(self, message: str):
            super().__init__("ServiceException", message)

    def invoke(
        self: LambdaSimpleBackend,
        function_name: str,
        qualifier: str | None,
        body: Any,
        headers: Any,
        response_headers: Any,
    ) -> bytes:
        # Like real Lambda: the function must exist (name, ARN or partial ARN,
        # optional qualifier); raises ResourceNotFoundException (404) if not.
        fn = self.get_function(function_name, qualifier)
        name = local_function_name(fn.function_name, prefix)
        if body is None or body == "":
            payload = b"{}"
        elif isinstance(body, str):
            payload = body.encode("utf-8")
        else:
            payload = bytes(body)

        invocation_type = (headers or {}).get("X-Amz-Invocation-Type") or "RequestResponse"
        if invocation_type == "DryRun":
            return b""
        if invocation_type == "Event":
            # Asynchronous invoke: AWS answers 202 at once and runs it later.
            threading.Thread(
                target=_fire_and_forget,
                args=(endpoint, name, payload, timeout),
                daemon=True,
            ).start()
            return b""

        try:
            result, function_error = forward_invocation(endpoint, name, payload, timeout)
        except _LocalLambdaUnavailable as err:
            raise ServiceException(str(err)) from err
        if function_error:
            # Read by boto3 as InvokeResponse.FunctionError; moto's SFN
            # interpreter then raises LambdaFunctionErrorException and maps it
            # to Error=<errorType>, Cause=<payload JSON string>.
            response_headers["x-amz-function-error"] = function_error
        response_headers["x-amz-executed-version"] = fn.version
        response_headers["Content-Length"] = str(len(result))
        return result

    LambdaSimpleBackend.invoke = invoke  # type: ignore[method-assign]


def _fire_and_forget(endpoint: str, name: str, payload: bytes, timeout: float) -> None:
    try:
        forward_invocation(endpoint, name, payload, timeout)
    except Exception as err:  # noqa: BLE001 - nobody waits for an async invoke
        print(f"async invoke of {name} failed: {err}", file=sys.stderr, flush=True)


def patch_task_token_reuse() -> None:
    """Answer a token whose task is no longer waiting with TaskTimedOut.

    Why: in moto 5.2.5 a task token stays in its execution's callback pool
    after the task finished. A second SendTaskSuccess/SendTaskFailure for it
    then succeeds silently while the execution is still RUNNING (and
    SendTaskFailure even after it ended), while SendTaskSuccess on an ended
    execution says InvalidToken. AWS answers TaskTimedOut ("Provided task does
    not exist anymore") once the task is closed: answered, timed out, or its
    execution ended. Unknown tokens stay InvalidToken.
    """
    from moto.stepfunctions.parser.api import InvalidToken, TaskTimedOut
    from moto.stepfunctions.parser.asl.eval.callback import callback as cb
    from moto.stepfunctions.parser.models import StepFunctionsParserBackend

    def _send(self: StepFunctionsParserBackend, task_token: str, op: Any) -> None:
        for execution in self._get_executions():  # every status
            env = getattr(getattr(execution, "exec_worker", None), "env", None)
            if env is None:
                continue
            pool = env.callback_pool_manager
            endpoint = pool.get(task_token)
            if endpoint is None:
                continue
            closed = (
                execution.status != "RUNNING"
                or endpoint.get_outcome() is not None  # already answered
                # set by interrupt_all() once the task stopped waiting
                # (outcome, TimeoutSeconds/HeartbeatSeconds expiry, error)
                or endpoint._notify_event.is_set()  # noqa: SLF001
            )
            if closed:
                # (message, code, HTTP status): moto's AWSError signature.
                raise TaskTimedOut(
                    "Task Timed Out: 'Provided task does not exist anymore'", "TaskTimedOut", 400
                )
            op(pool)
            return
        raise InvalidToken()

    def send_task_success(self: StepFunctionsParserBackend, task_token: str, outcome: str):
        success = cb.CallbackOutcomeSuccess(callback_id=task_token, output=outcome)
        _send(self, task_token, lambda pool: pool.notify(task_token, success))

    def send_task_failure(
        self: StepFunctionsParserBackend,
        task_token: str,
        error: str | None = None,
        cause: str | None = None,
    ):
        failure = cb.CallbackOutcomeFailure(callback_id=task_token, error=error, cause=cause)
        _send(self, task_token, lambda pool: pool.notify(task_token, failure))

    def send_task_heartbeat(self: StepFunctionsParserBackend, task_token: str):
        # Upstream says InvalidToken when the waiting task has no
        # HeartbeatSeconds; we accept such a heartbeat as a no-op.
        _send(self, task_token, lambda pool: pool.heartbeat(task_token))

    StepFunctionsParserBackend.send_task_success = send_task_success  # type: ignore[method-assign]
    StepFunctionsParserBackend.send_task_failure = send_task_failure  # type: ignore[method-assign]
    StepFunctionsParserBackend.send_task_heartbeat = send_task_heartbeat  # type: ignore[method-assign]


def patch_start_execution_default_name() -> None:
    """Give a StartExecution without `name` a fresh UUID name, as AWS does.

    Why: moto 5.2.5's executing backend (StepFunctionsParserBackend) uses the
    missing name as is: the execution is called None (ARN "...:None",
    $$.Execution.Name null), and a second name-less StartExecution returns
    that same execution (same input, still RUNNING) or fails with
    ExecutionAlreadyExists. The non-executing backend already does this.
    """
    import uuid

    from moto.stepfunctions.parser.models import StepFunctionsParserBackend

    original = StepFunctionsParserBackend.start_execution

    def start_execution(
        self: Any, state_machine_arn: str, name: Any = None, *args: Any, **kwargs: Any
    ) -> Any:
        if not name:
            name = str(uuid.uuid4())
        return original(self, state_machine_arn, name, *args, **kwargs)

    StepFunctionsParserBackend.start_execution = start_execution  # type: ignore[method-assign]


def patch_stop_execution() -> None:
    """Make StopExecution abort an execution that waits for a task token.

    Why: moto 5.2.5 only flags the execution's environment as stopped; a
    thread blocked in a .waitForTaskToken wait is not woken, so the execution
    stays RUNNING (and the response has no stopDate) until the token is
    answered or its TimeoutSeconds (default 99999999) expires. AWS aborts at
    once. We wake the waits of that execution's callback tokens and give the
    worker a moment to record ABORTED (it runs no further state once stopped;
    an in-flight Lambda invocation still runs to its end). The woken task
    fails with States.Timeout (a TaskTimedOut history event), so we also keep
    a stopped program from being turned into FAILED/TIMED_OUT afterwards:
    the execution ends ABORTED with an ExecutionAborted event, as on AWS.
    """
    import time

    from moto.stepfunctions.parser.asl.eval.environment import Environment
    from moto.stepfunctions.parser.asl.eval.program_state import ProgramStopped
    from moto.stepfunctions.parser.models import StepFunctionsParserBackend

    for name in ("set_error", "set_timed_out"):
        setter = getattr(Environment, name)

        def keep_stopped(self: Any, *args: Any, _setter: Any = setter, **kwargs: Any) -> None:
            if isinstance(self.program_state(), ProgramStopped):
                return
            _setter(self, *args, **kwargs)

        setattr(Environment, name, keep_stopped)

    original = StepFunctionsParserBackend.stop_execution

    def stop_execution(self: Any, execution_arn: str, *args: Any, **kwargs: Any) -> Any:
        execution = original(self, execution_arn, *args, **kwargs)
        env = getattr(getattr(execution, "exec_worker", None), "env", None)
        if env is not None:
            for endpoint in list(env.callback_pool_manager._pool.values()):  # noqa: SLF001
                endpoint.interrupt_all()
            deadline = time.monotonic() + 5.0
            while execution.status == "RUNNING" and time.monotonic() < deadline:
                time.sleep(0.02)
        return execution

    StepFunctionsParserBackend.stop_execution = stop_execution  # type: ignore[method-assign]


def patch_send_task_failure_cause() -> None:
    """Pass SendTaskFailure's `cause` on to the backend.

    Why: moto 5.2.5's StepFunctionResponse.send_task_failure only forwards
    `error`, so the TaskFailed event and a Catch's {"Error", "Cause"} always
    have an empty Cause.
    """
    from moto.core.responses import EmptyResult
    from moto.stepfunctions.parser.models import StepFunctionsParserBackend
    from moto.stepfunctions.responses import StepFunctionResponse

    original = StepFunctionResponse.send_task_failure

    def send_task_failure(self: StepFunctionResponse) -> Any:
        backend = self.stepfunction_backend
        if not isinstance(backend, StepFunctionsParserBackend):
            return original(self)  # non-executing backend: no-op anyway
        backend.send_task_failure(
            self._get_param("taskToken"),
            error=self._get_param("error"),
            cause=self._get_param("cause"),
        )
        return EmptyResult()

    StepFunctionResponse.send_task_failure = send_task_failure  # type: ignore[method-assign]


def patch_ecs_fargate_task_memory() -> None:
    """Let RunTask accept container definitions without container-level memory.

    Why: on Fargate the memory may be given for the task only (task
    definition "memory"), which AWS accepts. moto 5.2.5's RunTask sums
    memory/memoryReservation over the containers and crashes with a
    TypeError (HTTP 500) when a container has neither. Count such a
    container as 0 MiB, which is all this bookkeeping is used for.
    """
    import copy

    from moto.ecs.models import EC2ContainerServiceBackend

    original = EC2ContainerServiceBackend._calculate_task_resource_requirements  # noqa: SLF001
    memory_keys = ("Memory", "MemoryReservation", "memory", "memoryReservation")

    def calculate(task_definition: Any) -> dict[str, Any]:
        containers = task_definition.container_definitions
        if all(any(c.get(k) is not None for k in memory_keys) for c in containers):
            return original(task_definition)
        proxy = copy.copy(task_definition)
        proxy.container_definitions = [
            c if any(c.get(k) is not None for k in memory_keys) else {**c, "memory": 0}
            for c in containers
        ]
        return original(proxy)

    EC2ContainerServiceBackend._calculate_task_resource_requirements = (  # noqa: SLF001
        staticmethod(calculate)
    )


def patch_ecs_awsvpc_eni_dns_name() -> None:
    """Let RunTask (awsvpc) work in a VPC without DNS hostnames.

    Why: moto 5.2.5's ECS Task reads eni.private_dns_name for the task's
    ElasticNetworkInterface attachment, but EC2's NetworkInterface only sets
    that attribute when the subnet's VPC has enableDnsHostnames (moto's
    default VPC has it, a CreateVpc one does not): RunTask then fails with
    AttributeError (HTTP 500). Default the attribute to None (the detail's
    value is then null) instead.
    """
    from moto.ec2.models.elastic_network_interfaces import NetworkInterface

    if not hasattr(NetworkInterface, "private_dns_name"):
        NetworkInterface.private_dns_name = None  # type: ignore[attr-defined]


def patch_ecs_task_addresses(network: str | None) -> None:
    """Give each new task ENI the next free address of `network`, round robin.

    Why: moto 5.2.5 gives a task's ENI a random 10.x.x.x address, unreachable on
    this machine and free to repeat. The local stack's pump serves each running
    task's ports on the task's private IP (what the session gateway forwards to),
    so addresses must be bindable (loopback) and never held by two live tasks:
    an address is skipped while a task that has it is not STOPPED, and round robin
    reuses one only after every other address of the /24.
    """
    if not network:
        return
    import ipaddress
    import itertools
    import threading

    import moto.ecs.models as ecs_models
    from moto.ecs.models import ecs_backends

    hosts = [str(h) for h in ipaddress.ip_network(network).hosts()]
    cycle = itertools.cycle(hosts)
    lock = threading.Lock()

    def in_use() -> set[str]:
        used = set()
        for account in list(ecs_backends.values()):
            for backend in list(account.values()):
                for tasks in list(backend.tasks.values()):
                    for task in list(tasks.values()):
                        if task.last_status == "STOPPED":
                            continue
                        for attachment in task.attachments:
                            for detail in attachment.get("details", []):
                                if detail.get("name") == "privateIPv4Address":
                                    used.add(detail.get("value"))
        return used

    def next_address(*_args: Any, **_kwargs: Any) -> str:
        with lock:
            used = in_use()
            for _ in hosts:
                address = next(cycle)
                if address not in used:
                    return address
        raise RuntimeError(f"every address of {network} is held by a running task")

    ecs_models.random_private_ip = next_address  # type: ignore[assignment]


def patch_ecs_capacity_faults(fault_file: str | None) -> None:
    """Fault injection for RunTask, read from ``fault_file`` on every call:

    * ``{"run_task_failures": [{"reason": "...", "detail": "..."}]}``: AWS answers
      HTTP 200 with ``failures[]`` when Fargate has no capacity, which moto never
      does; RunTask starts nothing and answers those failures.
    * ``{"run_task_error": {"code": "...", "message": "...", "after_start": true}}``:
      RunTask answers that error; with ``after_start`` the task is started first,
      as when the answer of a successful call is lost.
    * ``{"run_task_delay_s": N}``: RunTask waits N seconds before it starts the
      task, so that a test can act while Launch is inside the call; it creates
      ``{fault_file}.run-task-entered`` when a call enters the wait.
    """
    if not fault_file:
        return
    from moto.core.exceptions import JsonRESTError
    from moto.core.responses import ActionResult
    from moto.ecs.responses import EC2ContainerServiceResponse

    original = EC2ContainerServiceResponse.run_task

    def run_task(self: EC2ContainerServiceResponse) -> ActionResult:
        try:
            with open(fault_file, encoding="utf-8") as f:
                faults = json.load(f)
        except (FileNotFoundError, ValueError):
            faults = {}
        if faults.get("run_task_delay_s"):
            # Tells the test that a caller is inside RunTask now.
            with open(f"{fault_file}.run-task-entered", "w", encoding="utf-8"):
                pass
            time.sleep(float(faults["run_task_delay_s"]))
        if faults.get("run_task_failures"):
            return ActionResult({"tasks": [], "failures": faults["run_task_failures"]})
        error = faults.get("run_task_error")
        if error:
            if error.get("after_start"):
                original(self)
            raise JsonRESTError(error["code"], error.get("message", "injected fault"))
        return original(self)

    EC2ContainerServiceResponse.run_task = run_task  # type: ignore[method-assign]


def patch_ecs_stop_delay(fault_file: str | None) -> None:
    """``{"stop_task_delay_s": N}`` in ``fault_file``: a task asked to stop keeps
    running (desired status STOPPED, last status DEACTIVATING) until N seconds have
    passed since its StopTask, as a Fargate task does while its containers exit (up to
    their stop timeout). moto stops a task at once otherwise. N is read again every
    0.1 s, so a test can hold stopping tasks (a large N) and then let them go (0). A
    repeated StopTask changes nothing.
    """
    if not fault_file:
        return

    from moto.ecs.models import EC2ContainerServiceBackend

    original = EC2ContainerServiceBackend.stop_task

    def delay_s() -> float:
        try:
            with open(fault_file, encoding="utf-8") as f:
                return float(json.load(f).get("stop_task_delay_s") or 0)
        except (FileNotFoundError, ValueError):
            return 0.0

    def stop_task(self: Any, cluster_str: str, task_str: str, reason: str) -> Any:
        cluster = self._get_cluster(cluster_str)
        task_id = task_str.split("/")[-1]
        task = next(
            (t for arn, t in self.tasks.get(cluster.name, {}).items() if arn.endswith(task_id)),
            None,
        )
        if task is None or task.last_status == "STOPPED":
            return original(self, cluster_str, task_str, reason)
        if task.desired_status == "STOPPED":
            return task  # already stopping
        if delay_s() <= 0:
            return original(self, cluster_str, task_str, reason)
        task.desired_status = "STOPPED"
        task.last_status = "DEACTIVATING"
        task.stopped_reason = reason
        asked = time.monotonic()

        def stop_when_due() -> None:
            while time.monotonic() - asked < delay_s():
                time.sleep(0.1)
            task.last_status = "STOPPED"

        threading.Thread(target=stop_when_due, daemon=True).start()
        return task

    EC2ContainerServiceBackend.stop_task = stop_task  # type: ignore[method-assign]


# Error `__type` namespaces of the JSON-protocol services that send one (the SDKs keep
# what follows the `#`).
_JSON_ERROR_NAMESPACES = {"dynamodb": "com.amazonaws.dynamodb.v20120810#"}
# Keys of a fault that say when it applies; every other key goes into the error body.
_FAULT_KEYS = {
    "service", "action", "code", "message", "status", "times", "after", "match", "fired", "seen",
}
_fault_lock = threading.Lock()


def _read_faults(fault_file: str) -> tuple[dict[str, Any], bytes]:
    try:
        with open(fault_file, "rb") as f:
            raw = f.read()
        faults = json.loads(raw)
    except (FileNotFoundError, ValueError):
        return {}, b""
    return (faults if isinstance(faults, dict) else {}), raw


def _write_faults(fault_file: str, faults: dict[str, Any]) -> None:
    # Readers open the file without a lock: replace it whole, never rewrite it in place.
    tmp = f"{fault_file}.{threading.get_ident()}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(faults, f)
    os.replace(tmp, fault_file)


def _fault_matches(fault: Any, service: tuple[str, ...], action: str, body: Any) -> bool:
    if not isinstance(fault, dict) or fault.get("action") != action:
        return False
    if fault.get("service") not in service:
        return False
    match = fault.get("match")
    if match:
        text = body.decode("utf-8", "replace") if isinstance(body, bytes) else str(body or "")
        return match in text
    return True


def _armed(fault: dict[str, Any]) -> bool:
    return int(fault.get("after") or 0) <= 0 and (
        fault.get("times") is None or int(fault["times"]) > 0
    )


def _take_fault(fault_file: str, service: tuple[str, ...], action: str, body: Any) -> dict | None:
    """The fault this call answers with, if any; every fault it matches counts it."""
    faults, _ = _read_faults(fault_file)
    if not any(_fault_matches(f, service, action, body) for f in faults.get("faults", [])):
        return None  # the common case: no lock, no write
    with _fault_lock:
        while True:
            faults, raw = _read_faults(fault_file)
            matching = [
                f for f in faults.get("faults", []) if _fault_matches(f, service, action, body)
            ]
            if not matching:
                return None
            fault = next((f for f in matching if _armed(f)), None)
            for f in matching:
                f["seen"] = int(f.get("seen") or 0) + 1
                if int(f.get("after") or 0) > 0:
                    f["after"] = int(f["after"]) - 1
            if fault is not None:
                if fault.get("times") is not None:
                    fault["times"] = int(fault["times"]) - 1
                fault["fired"] = int(fault.get("fired") or 0) + 1
            # The test may have replaced the file since it was read: start again then.
            if _read_faults(fault_file)[1] != raw:
                continue
            _write_faults(fault_file, faults)
            return dict(fault) if fault is not None else None


def _fault_response(fault: dict[str, Any], service: str, protocol: str, json_version: str):
    """The error as `service` sends it on the wire, per its protocol."""
    import uuid
    from xml.sax.saxutils import escape

    code = fault["code"]
    message = fault.get("message", "injected fault")
    status = int(fault.get("status", 400))
    extra = {k: v for k, v in fault.items() if k not in _FAULT_KEYS}
    request_id = str(uuid.uuid4())
    if protocol == "json":
        body = {"__type": _JSON_ERROR_NAMESPACES.get(service, "") + code, "message": message}
        headers = {"Content-Type": f"application/x-amz-json-{json_version}"}
    elif protocol == "rest-json":
        # EFS's errors carry ErrorCode and Message members; others a `message`.
        body = (
            {"ErrorCode": code, "Message": message}
            if service == "efs"
            else {"message": message}
        )
        headers = {"Content-Type": "application/json", "x-amzn-ErrorType": code}
    elif protocol == "ec2":
        xml = (
            '<?xml version="1.0" encoding="UTF-8"?>\n<Response><Errors><Error>'
            f"<Code>{escape(code)}</Code><Message>{escape(message)}</Message>"
            f"</Error></Errors><RequestID>{request_id}</RequestID></Response>"
        )
        return status, {"Content-Type": "text/xml;charset=UTF-8", "x-amzn-RequestId": request_id}, xml
    else:  # query, rest-xml
        xml = (
            "<ErrorResponse><Error><Type>Sender</Type>"
            f"<Code>{escape(code)}</Code><Message>{escape(message)}</Message>"
            f"</Error><RequestId>{request_id}</RequestId></ErrorResponse>"
        )
        return status, {"Content-Type": "text/xml", "x-amzn-RequestId": request_id}, xml
    body.update(extra)
    headers["x-amzn-RequestId"] = request_id
    return status, headers, json.dumps(body)


def patch_injected_faults(fault_file: str | None) -> None:
    """Answer chosen calls of any service with the error AWS gives under load or in a
    race, which moto never does. Read from ``fault_file`` on every call::

        {"faults": [{"service": "ec2", "action": "DescribeNetworkInterfaces",
                     "code": "RequestLimitExceeded", "message": "Request limit exceeded.",
                     "status": 503, "times": 3, "after": 0}]}

    * ``service``: moto's or boto3's name (``ec2``, ``dynamodb``, ``stepfunctions``,
      ``ecs``, ``efs``); ``action``: the API action (``SendTaskSuccess``).
    * ``times``: how many calls get the error (absent: every call; 0: none, the fault
      only counts); ``after``: how many matching calls pass first; ``match``: a string
      the request body must contain. Both count down in the file; ``fired`` counts the
      calls answered with the error and ``seen`` every call that matched, so a test
      sees what happened. The first fault still armed answers.
    * The error has the service's wire shape: EC2's XML ``<Response><Errors>``, a JSON
      protocol's ``__type`` (namespaced for DynamoDB), a REST-JSON ``x-amzn-ErrorType``
      header. Any other key of the fault is added to a JSON error body, e.g. DynamoDB's
      ``CancellationReasons`` or EFS's ``AccessPointId``.

    Why here: ``BaseResponse.call_action`` is where every service's request, once
    parsed, is dispatched to its action, so one patch serves all of them.
    """
    if not fault_file:
        return
    from moto.core.responses import BaseResponse
    from moto.core.utils import get_service_model

    original = BaseResponse.call_action

    def call_action(self: BaseResponse) -> Any:
        action = self._get_action()  # noqa: SLF001
        if action:
            names = (self.service_name or "", self.boto3_service_name)
            fault = _take_fault(fault_file, names, action, self.raw_body)
            if fault is not None:
                metadata = get_service_model(self.boto3_service_name).metadata
                return _fault_response(
                    fault,
                    self.service_name or "",
                    metadata.get("protocol", "json"),
                    metadata.get("jsonVersion", "1.0"),
                )
        return original(self)

    BaseResponse.call_action = call_action  # type: ignore[method-assign]


# --- AWS's API rate limits ----------------------------------------------------------


@dataclass(frozen=True)
class Limit:
    """A token bucket: at most `burst` tokens (AWS's "bucket maximum capacity", the
    burst rate), refilled at `refill` tokens a second (the "bucket refill rate", the
    sustained rate). A call takes one token, or its cost; with too few, it is throttled.
    """

    burst: float
    refill: float


# AWS's default throttling quotas for the calls the product makes, per account and
# Region (us-east-1, the stack's Region, where a page gives figures per Region). The
# only place these figures live: each cites its page.
RATE_LIMITS: dict[str, Limit] = {
    # "AWS Fargate throttling quotas",
    # https://docs.aws.amazon.com/AmazonECS/latest/developerguide/throttling.html:
    # RunTask calls that launch Fargate tasks are limited to 20 a second, burst and
    # sustained ...
    "ecs.RunTask": Limit(20, 20),
    # ... and each task launched (RunTask's `count`) takes a token from the account's
    # task launch bucket: 100 tokens, refilled at 20 a second.
    "fargate.TaskLaunch": Limit(100, 20),
    # "Request throttling for the Amazon ECS API",
    # https://docs.aws.amazon.com/AmazonECS/latest/APIReference/request-throttling.html.
    # The copy of that page at hand showed its text but not its table: these three
    # figures are as quoted from it elsewhere (task definition modify actions 20/1,
    # matching launch.rs's "about one call a second"; cluster resource read actions,
    # ListTasks and DescribeTasks in one bucket, 100/20; StopTask as quoted once,
    # 100/20). Check them against the page before relying on them.
    "ecs.RegisterTaskDefinition": Limit(20, 1),
    "ecs.ClusterResourceRead": Limit(100, 20),
    "ecs.StopTask": Limit(100, 20),
    # "Request throttling for the Amazon EC2 API",
    # https://docs.aws.amazon.com/ec2/latest/devguide/ec2-api-throttling.html:
    # non-mutating (Describe*) actions, each in its own bucket, 100 refilled at 20.
    "ec2.DescribeNetworkInterfaces": Limit(100, 20),
    # Step Functions service quotas, "Quotas related to API action throttling" and
    # "Other quotas", https://docs.aws.amazon.com/step-functions/latest/dg/service-quotas.html
    # (Standard workflows, US East (N. Virginia)); each action its own bucket. Read in
    # the page's copy in awsdocs/aws-step-functions-developer-guide (limits-overview.md).
    "stepfunctions.StartExecution": Limit(1300, 300),
    "stepfunctions.SendTaskSuccess": Limit(3000, 500),
    "stepfunctions.SendTaskFailure": Limit(3000, 500),
    "stepfunctions.SendTaskHeartbeat": Limit(3000, 500),
    "stepfunctions.DescribeExecution": Limit(300, 15),
    "stepfunctions.StopExecution": Limit(1000, 200),
    # DynamoDB: "each individual partition is limited to 1000 write units per second",
    # on-demand tables too,
    # https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/warm-throughput-scenarios.html.
    # Every item of our tables has a partition key of its own, so every item has this
    # bucket; a write of up to 1 KB is one unit (ours are smaller).
    "dynamodb.ItemWrite": Limit(1000, 1000),
}
# Not limited, for want of a documented figure: EFS CreateAccessPoint (EFS throttles it,
# ThrottlingException with HTTP 429, only for calls in quick succession near the file
# system's access point quota; inject that as a fault), IAM's role calls, ECR. Lambda
# Invoke is Step Functions running the functions, not a call of the product.

# Which bucket an action draws on, by boto3 service name.
_ACTION_BUCKETS: dict[tuple[str, str], str] = {
    ("ecs", "RegisterTaskDefinition"): "ecs.RegisterTaskDefinition",
    ("ecs", "ListTasks"): "ecs.ClusterResourceRead",
    ("ecs", "DescribeTasks"): "ecs.ClusterResourceRead",
    ("ecs", "StopTask"): "ecs.StopTask",
    ("ec2", "DescribeNetworkInterfaces"): "ec2.DescribeNetworkInterfaces",
    **{
        ("stepfunctions", action): f"stepfunctions.{action}"
        for action in (
            "StartExecution",
            "SendTaskSuccess",
            "SendTaskFailure",
            "SendTaskHeartbeat",
            "DescribeExecution",
            "StopExecution",
        )
    },
}
_DYNAMODB_ITEM_WRITES = ("PutItem", "UpdateItem", "DeleteItem", "TransactWriteItems")

# How each service answers a throttled call: (code, message, HTTP status). ECS: the
# error its throttling page shows (400); EC2: RequestLimitExceeded (503); Step
# Functions: ThrottlingException (400); DynamoDB, over a partition's throughput:
# ProvisionedThroughputExceededException with a KeyRangeThroughputExceeded reason.
_THROTTLED: dict[str, tuple[str, str, int]] = {
    "ecs": ("ThrottlingException", "Rate exceeded", 400),
    "ec2": ("RequestLimitExceeded", "Request limit exceeded.", 503),
    "stepfunctions": ("ThrottlingException", "Rate exceeded", 400),
    "dynamodb": (
        "ProvisionedThroughputExceededException",
        "The level of configured provisioned throughput for the table was exceeded. "
        "Consider increasing your provisioning level with the UpdateTable API.",
        400,
    ),
}
_TRANSACTION_THROTTLED = {
    "Code": "ThrottlingError",
    "Message": "Throughput exceeds the current capacity of your table or index. DynamoDB "
    "is automatically scaling your table or index so please try again shortly.",
}

# Calls of the harness itself carry this SDK app name (`app/session-harness` in their
# user agent) and are never throttled: the pump plays Fargate and EventBridge, and the
# tests look at the state, none of which an account's quotas see on AWS.
HARNESS_APP = "session-harness"


class TokenBuckets:
    """Token buckets by key, each full when first used and refilled continuously.
    Thread-safe: moto's server answers every request on a thread of its own."""

    def __init__(self, clock: Any = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._levels: dict[str, tuple[float, float]] = {}  # key -> (tokens, as of)

    def take(self, wants: list[tuple[str, Limit, float]]) -> str | None:
        """Takes `cost` tokens from the bucket of every `(key, limit, cost)` if each has
        them, and returns None; otherwise takes none and returns the first key short."""
        with self._lock:
            now = self._clock()
            after = []
            for key, limit, cost in wants:
                tokens, at = self._levels.get(key, (limit.burst, now))
                tokens = min(limit.burst, tokens + (now - at) * limit.refill)
                if tokens < cost:
                    return key
                after.append((key, tokens - cost))
            for key, tokens in after:
                self._levels[key] = (tokens, now)
            return None


class RateLimiter:
    """`RATE_LIMITS` at `scale`, and what they did: per bucket, the tokens taken
    (`allowed`: calls, tasks launched, item writes) and the calls throttled."""

    def __init__(self, scale: float = 1.0, clock: Any = time.monotonic) -> None:
        self.scale = scale
        self._buckets = TokenBuckets(clock)
        self._lock = threading.Lock()
        self.allowed: dict[str, int] = {name: 0 for name in RATE_LIMITS}
        self.throttled: dict[str, int] = {name: 0 for name in RATE_LIMITS}

    def limit(self, name: str) -> Limit:
        # Every bucket keeps room for one call, or a small scale would refuse all.
        base = RATE_LIMITS[name]
        return Limit(max(1.0, base.burst * self.scale), base.refill * self.scale)

    def take(self, wants: list[tuple[str, str, int]]) -> str | None:
        """Takes tokens for one call: `(bucket name, key, cost)` for each bucket it
        draws on (the key tells apart the buckets of one name, e.g. one per item).
        Returns the key that throttled it, or None."""
        short = self._buckets.take([(key, self.limit(name), cost) for name, key, cost in wants])
        with self._lock:
            if short is None:
                for name, _, cost in wants:
                    self.allowed[name] += cost
            else:
                name = next(name for name, key, _ in wants if key == short)
                self.throttled[name] += 1
        return short

    def counts(self) -> dict[str, Any]:
        with self._lock:
            return {
                "scale": self.scale,
                "buckets": {
                    name: {
                        "burst": self.limit(name).burst,
                        "refill": self.limit(name).refill,
                        "allowed": self.allowed[name],
                        "throttled": self.throttled[name],
                    }
                    for name in RATE_LIMITS
                },
            }


def rate_limit_scale(setting: Any) -> float | None:
    """The fault file's ``rate_limits`` setting as a scale: ``true`` or ``{}`` for AWS's
    figures, ``{"scale": 0.1}`` for every bucket and refill at a tenth; None is off."""
    if setting is True:
        return 1.0
    if isinstance(setting, dict):
        scale = float(setting.get("scale", 1.0))
        if scale <= 0:
            raise ValueError(f"rate_limits scale must be above 0, got {scale}")
        return scale
    return None


def _item_key(table: Any, item: dict[str, Any]) -> dict[str, Any]:
    names = [table.hash_key_attr] + ([table.range_key_attr] if table.range_key_attr else [])
    return {name: item.get(name) for name in names}


def _item_writes(response: Any, action: str, body: dict[str, Any]) -> list[tuple[int, str]]:
    """The items a DynamoDB write request writes, as (position in the request, key)."""
    backend = response.dynamodb_backend

    def key_of(request: dict[str, Any]) -> str | None:
        name = request.get("TableName", "")
        try:
            table = backend.get_table(name)
        except Exception:  # noqa: BLE001 - no such table: DynamoDB answers that itself
            return None
        key = request.get("Key") or _item_key(table, request.get("Item") or {})
        return f"{name}/{json.dumps(key, sort_keys=True)}"

    if action != "TransactWriteItems":
        key = key_of(body)
        return [] if key is None else [(0, key)]
    writes = []
    for i, item in enumerate(body.get("TransactItems") or []):
        request = item.get("Put") or item.get("Update") or item.get("Delete")
        key = key_of(request) if request else None
        if key is not None:
            writes.append((i, key))
    return writes


def _wants(response: Any, service: str, action: str, body: dict[str, Any]) -> list | None:
    """The buckets this call draws on, as `RateLimiter.take` wants them; None if none."""
    if service == "dynamodb" and action in _DYNAMODB_ITEM_WRITES:
        return [("dynamodb.ItemWrite", key, 1) for _, key in _item_writes(response, action, body)]
    if (service, action) == ("ecs", "RunTask"):
        strategy = body.get("capacityProviderStrategy") or []
        fargate = body.get("launchType") == "FARGATE" or any(
            str(s.get("capacityProvider", "")).startswith("FARGATE") for s in strategy
        )
        tasks = int(body.get("count") or 1)
        return (
            [("ecs.RunTask", "ecs.RunTask", 1), ("fargate.TaskLaunch", "fargate.TaskLaunch", tasks)]
            if fargate
            else None
        )
    name = _ACTION_BUCKETS.get((service, action))
    return None if name is None else [(name, name, 1)]


def _throttled_answer(
    response: Any, service: str, action: str, body: dict[str, Any], short: str
) -> dict[str, Any]:
    """The service's answer to a call throttled on bucket key `short`, as a fault for
    `_fault_response`."""
    if service == "dynamodb" and action == "TransactWriteItems":
        # A transaction is cancelled whole, with the reason on the throttled item.
        throttled = {i for i, key in _item_writes(response, action, body) if key == short}
        reasons = [
            _TRANSACTION_THROTTLED if i in throttled else {"Code": "None"}
            for i in range(len(body.get("TransactItems") or []))
        ]
        codes = ", ".join(r["Code"] for r in reasons)
        return {
            "code": "TransactionCanceledException",
            "message": "Transaction cancelled, please refer cancellation reasons "
            f"for specific reasons [{codes}]",
            "CancellationReasons": reasons,
        }
    code, message, status = _THROTTLED[service]
    answer: dict[str, Any] = {"code": code, "message": message, "status": status}
    if service == "dynamodb":
        table = short.split("/", 1)[0]
        arn = f"arn:aws:dynamodb:{response.region}:{response.current_account}:table/{table}"
        answer["ThrottlingReasons"] = [
            {"reason": "TableWriteKeyRangeThroughputExceeded", "resource": arn}
        ]
    return answer


def patch_rate_limits(fault_file: str | None) -> None:
    """AWS's rate limits (`RATE_LIMITS`), switched on at run time by the fault file::

        {"rate_limits": {"scale": 1.0}}

    ``true`` or ``{}`` means AWS's figures; ``scale`` multiplies every bucket size and
    refill rate alike (a test on one machine may need smaller buckets to outrun them).
    Absent, false or null: off. A changed setting starts afresh: buckets full, counts
    zero. A throttled call gets its service's own answer and never reaches moto.

    What the limits did is kept in ``{fault_file}.rate-limits.json``, replaced whole on
    every limited call: ``{"scale", "buckets": {name: {"burst", "refill", "allowed",
    "throttled"}}}``.

    Why here: as for injected faults, ``BaseResponse.call_action`` is where every
    request, parsed, meets its action. Installed after ``patch_injected_faults``, so a
    throttled call is answered before any injected fault sees it.
    """
    if not fault_file:
        return
    from moto.core.responses import BaseResponse
    from moto.core.utils import get_service_model

    original = BaseResponse.call_action
    counts_file = f"{fault_file}.rate-limits.json"
    state: dict[str, Any] = {"stamp": None, "setting": None, "limiter": None}
    lock = threading.Lock()

    def limiter_now() -> RateLimiter | None:
        try:
            st = os.stat(fault_file)
            stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        except FileNotFoundError:
            stamp = None
        with lock:
            if stamp != state["stamp"]:
                state["stamp"] = stamp
                setting = _read_faults(fault_file)[0].get("rate_limits") if stamp else None
                if setting != state["setting"]:
                    state["setting"] = setting
                    scale = rate_limit_scale(setting)
                    state["limiter"] = None if scale is None else RateLimiter(scale)
                    if state["limiter"] is not None:
                        dump(state["limiter"])
            return state["limiter"]

    def dump(limiter: RateLimiter) -> None:
        # Under `lock`, so that the counts last written are the latest.
        tmp = f"{counts_file}.{threading.get_ident()}.tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(limiter.counts(), f)
        os.replace(tmp, counts_file)

    def write_counts(limiter: RateLimiter) -> None:
        with lock:
            if limiter is state["limiter"]:  # not one a changed setting replaced
                dump(limiter)

    def call_action(self: BaseResponse) -> Any:
        action = self._get_action()  # noqa: SLF001
        limiter = limiter_now() if action else None
        if limiter is None:
            return original(self)
        agent = f"{self.headers.get('User-Agent', '')} {self.headers.get('x-amz-user-agent', '')}"
        if f"app/{HARNESS_APP}" in agent:
            return original(self)
        service = self.boto3_service_name
        try:
            body = json.loads(self.raw_body or b"{}")
        except (TypeError, ValueError):  # EC2's form-encoded query, say
            body = {}
        body = body if isinstance(body, dict) else {}
        wants = _wants(self, service, action, body)
        if wants is None:
            return original(self)
        short = limiter.take(wants)
        write_counts(limiter)
        if short is None:
            return original(self)
        metadata = get_service_model(service).metadata
        return _fault_response(
            _throttled_answer(self, service, action, body, short),
            self.service_name or "",
            metadata.get("protocol", "json"),
            metadata.get("jsonVersion", "1.0"),
        )

    BaseResponse.call_action = call_action  # type: ignore[method-assign]


def patch_ecs_inactive_task_definition() -> None:
    """Refuse RunTask on a deregistered (INACTIVE) task definition, as ECS does.

    Why: moto 5.2.5 marks a deregistered revision INACTIVE but still runs tasks from
    it. ECS answers ``ClientException: TaskDefinition is inactive``.
    """
    from moto.ecs.exceptions import EcsClientException
    from moto.ecs.models import EC2ContainerServiceBackend

    original = EC2ContainerServiceBackend.run_task

    def run_task(self: EC2ContainerServiceBackend, cluster_str: str, task_definition_str: str, *args: Any, **kwargs: Any) -> Any:
        if self.describe_task_definition(task_definition_str).status == "INACTIVE":
            raise EcsClientException("TaskDefinition is inactive")
        return original(self, cluster_str, task_definition_str, *args, **kwargs)

    EC2ContainerServiceBackend.run_task = run_task  # type: ignore[method-assign]


def patch_dynamodb_write_atomicity() -> None:
    """moto's threaded server runs concurrent DynamoDB requests without any lock,
    so two TransactWriteItems (or UpdateItems) can both pass a condition that only
    one of them should: real DynamoDB evaluates each condition atomically with its
    write. Serialize every write so conditions hold as they do on AWS.
    """
    from moto.dynamodb.models import DynamoDBBackend

    lock = threading.RLock()
    for name in ("put_item", "update_item", "delete_item", "transact_write_items", "batch_write_item"):
        original = getattr(DynamoDBBackend, name, None)
        if original is None:
            continue

        def serialized(self: Any, *args: Any, __original: Any = original, **kwargs: Any) -> Any:
            with lock:
                return __original(self, *args, **kwargs)

        setattr(DynamoDBBackend, name, serialized)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    from moto.moto_api._internal.models import moto_api_backend
    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from werkzeug.serving import make_server

    # Same effect as POST /moto-api/config, but before the first request.
    # (POST /moto-api/reset resets the backends, not this config.)
    moto_api_backend.set_config(MOTO_CONFIG)
    # moto advances an ECS task one status per read (RUNNING -> DEACTIVATING -> ...
    # -> STOPPED), so polling a task would kill it. On AWS a task runs until it is
    # stopped or dies: keep tasks where StopTask (or RunTask) puts them.
    from moto.moto_api import state_manager

    state_manager.set_transition("ecs::task", {"progression": "manual", "times": 2**62})
    patch_lambda_invoke(args.lambda_endpoint, args.function_prefix, args.invoke_timeout)
    patch_task_token_reuse()
    patch_send_task_failure_cause()
    patch_start_execution_default_name()
    patch_stop_execution()
    patch_ecs_fargate_task_memory()
    patch_ecs_awsvpc_eni_dns_name()
    patch_ecs_task_addresses(args.task_addresses)
    patch_ecs_capacity_faults(args.fault_file)
    patch_ecs_inactive_task_definition()
    patch_injected_faults(args.fault_file)
    patch_rate_limits(args.fault_file)
    patch_ecs_stop_delay(args.fault_file)
    patch_dynamodb_write_atomicity()

    app = DomainDispatcherApplication(create_backend_app)
    server = make_server(
        args.host, args.port, app, threaded=True, request_handler=MotoRequestHandler
    )
    port = server.server_address[1]
    # moto's Step Functions interpreter calls Lambda (and other services) via
    # boto3 at http://localhost:$MOTO_PORT, so it must be the port we serve.
    os.environ["MOTO_PORT"] = str(port)

    def _stop(signum: int, _frame: Any) -> None:
        # shutdown() blocks until serve_forever() returns: call it off-thread.
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)

    print(f"moto ready on {args.host}:{port}", flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
