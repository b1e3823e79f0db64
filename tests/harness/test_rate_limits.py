"""The emulator's rate limits (`moto_server.py`) without a server: token buckets on a
clock the test moves, and the answer each service gives a throttled call.

Run by `tests/tests/rate_limits.rs`, or: python tests/harness/test_rate_limits.py
"""

from __future__ import annotations

import json
import sys
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import moto_server as ms  # noqa: E402

RUN_TASK = [("ecs.RunTask", "ecs.RunTask", 1), ("fargate.TaskLaunch", "fargate.TaskLaunch", 1)]


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class TokenBucketsTest(unittest.TestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.buckets = ms.TokenBuckets(self.clock)
        self.limit = ms.Limit(3, 1)

    def take(self) -> str | None:
        return self.buckets.take([("b", self.limit, 1)])

    def test_a_bucket_lets_its_burst_through_then_throttles_the_next_call(self) -> None:
        self.assertEqual([self.take() for _ in range(4)], [None, None, None, "b"])

    def test_a_bucket_refills_at_its_rate_and_never_beyond_its_burst(self) -> None:
        for _ in range(3):
            self.take()
        self.clock.now += 1.0
        self.assertEqual([self.take(), self.take()], [None, "b"])
        self.clock.now += 0.5
        self.assertEqual(self.take(), "b")
        self.clock.now += 0.5
        self.assertIsNone(self.take())
        self.clock.now += 3600
        self.assertEqual([self.take() for _ in range(4)], [None, None, None, "b"])

    def test_a_call_short_on_one_bucket_takes_from_none(self) -> None:
        calls, tasks = ms.Limit(4, 1), ms.Limit(5, 1)
        wants = [("calls", calls, 1), ("tasks", tasks, 10)]
        self.assertEqual(self.buckets.take(wants), "tasks")
        # The refused call cost the calls bucket nothing: all four calls are left.
        self.assertEqual(
            [self.buckets.take([("calls", calls, 1)]) for _ in range(5)],
            [None, None, None, None, "calls"],
        )


class RateLimiterTest(unittest.TestCase):
    def test_every_documented_size_and_rate_scales_alike(self) -> None:
        limiter = ms.RateLimiter(0.1, Clock())
        self.assertEqual(limiter.limit("ecs.RunTask"), ms.Limit(2, 2))
        self.assertEqual(limiter.limit("fargate.TaskLaunch"), ms.Limit(10, 2))
        for name, documented in ms.RATE_LIMITS.items():
            scaled = limiter.limit(name)
            self.assertAlmostEqual(scaled.refill, documented.refill * 0.1, msg=name)
            self.assertAlmostEqual(scaled.burst, max(1.0, documented.burst * 0.1), msg=name)

    def test_the_run_task_burst_is_exact_and_what_passed_and_was_refused_is_counted(self) -> None:
        limiter = ms.RateLimiter(1.0, Clock())
        outcomes = [limiter.take(RUN_TASK) for _ in range(21)]
        self.assertEqual(outcomes, [None] * 20 + ["ecs.RunTask"])
        buckets = limiter.counts()["buckets"]
        self.assertEqual(buckets["ecs.RunTask"]["allowed"], 20)
        self.assertEqual(buckets["ecs.RunTask"]["throttled"], 1)
        self.assertEqual(buckets["fargate.TaskLaunch"]["allowed"], 20)
        self.assertEqual(buckets["fargate.TaskLaunch"]["throttled"], 0)

    def test_the_fargate_task_launch_rate_binds_calls_that_launch_ten_tasks(self) -> None:
        limiter = ms.RateLimiter(1.0, Clock())
        ten = [("ecs.RunTask", "ecs.RunTask", 1), ("fargate.TaskLaunch", "fargate.TaskLaunch", 10)]
        outcomes = [limiter.take(ten) for _ in range(11)]
        self.assertEqual(outcomes, [None] * 10 + ["fargate.TaskLaunch"])
        self.assertEqual(limiter.counts()["buckets"]["fargate.TaskLaunch"]["allowed"], 100)

    def test_every_item_has_a_write_bucket_of_its_own(self) -> None:
        limiter = ms.RateLimiter(1.0, Clock())
        hot = [("dynamodb.ItemWrite", "users/hot", 1)]
        self.assertEqual([limiter.take(hot) for _ in range(1001)][-2:], [None, "users/hot"])
        self.assertIsNone(limiter.take([("dynamodb.ItemWrite", "users/other", 1)]))

    def test_the_setting_reads_as_a_scale(self) -> None:
        self.assertEqual(ms.rate_limit_scale(True), 1.0)
        self.assertEqual(ms.rate_limit_scale({}), 1.0)
        self.assertEqual(ms.rate_limit_scale({"scale": 0.1}), 0.1)
        for off in (None, False):
            self.assertIsNone(ms.rate_limit_scale(off))
        with self.assertRaises(ValueError):
            ms.rate_limit_scale({"scale": 0})


class FakeTable:
    hash_key_attr = "id"
    range_key_attr = None


class FakeBackend:
    def get_table(self, name: str) -> FakeTable:
        return FakeTable()


class FakeResponse:
    region = "us-east-1"
    current_account = "123456789012"
    dynamodb_backend = FakeBackend()


def answer(service: str, action: str, body: dict, short: str, protocol: str, version: str):
    fault = ms._throttled_answer(FakeResponse(), service, action, body, short)  # noqa: SLF001
    return ms._fault_response(fault, service, protocol, version)  # noqa: SLF001


class ThrottledAnswersTest(unittest.TestCase):
    """Each service says "slow down" as it does on AWS: code, HTTP status, wire shape."""

    def test_ecs_and_step_functions_answer_throttling_exception_400(self) -> None:
        for service, action, version in [
            ("ecs", "RunTask", "1.1"),
            ("stepfunctions", "StartExecution", "1.0"),
        ]:
            status, headers, body = answer(service, action, {}, "x", "json", version)
            self.assertEqual(status, 400)
            self.assertEqual(
                json.loads(body), {"__type": "ThrottlingException", "message": "Rate exceeded"}
            )
            self.assertEqual(headers["Content-Type"], f"application/x-amz-json-{version}")

    def test_ec2_answers_request_limit_exceeded_503_in_xml(self) -> None:
        status, _, body = answer("ec2", "DescribeNetworkInterfaces", {}, "x", "ec2", "")
        self.assertEqual(status, 503)
        self.assertIn("<Code>RequestLimitExceeded</Code>", body)

    def test_a_hot_dynamodb_item_answers_provisioned_throughput_exceeded(self) -> None:
        body = {"TableName": "users", "Key": {"id": {"S": "a"}}}
        status, _, raw = answer("dynamodb", "UpdateItem", body, 'users/{"id": {"S": "a"}}', "json", "1.0")
        self.assertEqual(status, 400)
        error = json.loads(raw)
        self.assertEqual(
            error["__type"],
            "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException",
        )
        self.assertEqual(
            error["ThrottlingReasons"],
            [
                {
                    "reason": "TableWriteKeyRangeThroughputExceeded",
                    "resource": "arn:aws:dynamodb:us-east-1:123456789012:table/users",
                }
            ],
        )

    def test_a_transaction_with_a_hot_item_is_cancelled_with_a_throttling_reason(self) -> None:
        body = {
            "TransactItems": [
                {"ConditionCheck": {"TableName": "users", "Key": {"id": {"S": "b"}}}},
                {"Put": {"TableName": "sessions", "Item": {"id": {"S": "s"}, "x": {"N": "1"}}}},
                {"Update": {"TableName": "users", "Key": {"id": {"S": "a"}}}},
            ]
        }
        wants = ms._wants(FakeResponse(), "dynamodb", "TransactWriteItems", body)  # noqa: SLF001
        self.assertEqual(
            wants,
            [
                ("dynamodb.ItemWrite", 'sessions/{"id": {"S": "s"}}', 1),
                ("dynamodb.ItemWrite", 'users/{"id": {"S": "a"}}', 1),
            ],
        )
        status, _, raw = answer(
            "dynamodb", "TransactWriteItems", body, 'users/{"id": {"S": "a"}}', "json", "1.0"
        )
        self.assertEqual(status, 400)
        error = json.loads(raw)
        self.assertEqual(
            error["__type"], "com.amazonaws.dynamodb.v20120810#TransactionCanceledException"
        )
        self.assertEqual(
            [r["Code"] for r in error["CancellationReasons"]], ["None", "None", "ThrottlingError"]
        )

    def test_only_fargate_run_task_calls_draw_on_the_fargate_buckets(self) -> None:
        fargate = ms._wants(FakeResponse(), "ecs", "RunTask", {"launchType": "FARGATE", "count": 3})  # noqa: SLF001
        self.assertEqual(
            fargate,
            [("ecs.RunTask", "ecs.RunTask", 1), ("fargate.TaskLaunch", "fargate.TaskLaunch", 3)],
        )
        spot = {"capacityProviderStrategy": [{"capacityProvider": "FARGATE_SPOT"}]}
        self.assertIsNotNone(ms._wants(FakeResponse(), "ecs", "RunTask", spot))  # noqa: SLF001
        self.assertIsNone(ms._wants(FakeResponse(), "ecs", "RunTask", {"launchType": "EC2"}))  # noqa: SLF001
        self.assertIsNone(ms._wants(FakeResponse(), "ecs", "CreateCluster", {}))  # noqa: SLF001


if __name__ == "__main__":
    unittest.main(verbosity=2)
