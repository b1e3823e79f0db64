//! AWS's answers that moto never gives, as faults for [`crate::Stack::inject_fault`]:
//! each in the shape its service sends (see `patch_injected_faults` in
//! `tests/harness/moto_server.py`). `times` is how many calls get the error; the SDK
//! retries a throttled call itself (three attempts in all, by default), so a throttle
//! that must reach our code lasts three calls.

use serde_json::{json, Value};

/// The attempts the SDK's standard retry mode makes for one call.
pub const SDK_ATTEMPTS: u64 = 3;

/// A control-plane throttle: EC2's `RequestLimitExceeded` (HTTP 503), EFS's
/// `ThrottlingException` (HTTP 429, as its API model says), DynamoDB's and the other
/// JSON services' `ThrottlingException` (HTTP 400), as the emulator's rate limits
/// answer for ECS, EC2 and Step Functions (`_THROTTLED` in
/// `tests/harness/moto_server.py`; a hot DynamoDB item gets
/// `ProvisionedThroughputExceededException` there).
pub fn throttled(service: &str, action: &str, times: u64) -> Value {
    let (code, message, status) = match service {
        "ec2" => ("RequestLimitExceeded", "Request limit exceeded.", 503),
        "efs" => ("ThrottlingException", "Rate exceeded", 429),
        "dynamodb" => (
            "ThrottlingException",
            "Rate of requests exceeds the allowed throughput.",
            400,
        ),
        _ => ("ThrottlingException", "Rate exceeded", 400),
    };
    json!({
        "service": service, "action": action, "times": times,
        "code": code, "message": message, "status": status,
    })
}

/// DynamoDB cancelling a transaction because another one was working on one of its
/// items: `TransactionCanceledException` with a `TransactionConflict` reason, one
/// reason per item of the transaction (`items`), the conflict on item `conflicting`.
pub fn transaction_conflict(items: usize, conflicting: usize, times: u64) -> Value {
    let reasons: Vec<Value> = (0..items)
        .map(|i| {
            if i == conflicting {
                json!({"Code": "TransactionConflict", "Message": "Transaction is ongoing for the item"})
            } else {
                json!({"Code": "None"})
            }
        })
        .collect();
    let codes: Vec<&str> = reasons
        .iter()
        .map(|r| r["Code"].as_str().unwrap_or("None"))
        .collect();
    json!({
        "service": "dynamodb", "action": "TransactWriteItems", "times": times,
        "code": "TransactionCanceledException",
        "message": format!(
            "Transaction cancelled, please refer cancellation reasons for specific reasons [{}]",
            codes.join(", ")
        ),
        "CancellationReasons": reasons,
    })
}

/// EFS answering a CreateAccessPoint whose client token was used before: HTTP 409
/// `AccessPointAlreadyExists`, with the existing access point's id.
pub fn access_point_already_exists(access_point_id: &str, times: u64) -> Value {
    json!({
        "service": "efs", "action": "CreateAccessPoint", "times": times, "status": 409,
        "code": "AccessPointAlreadyExists",
        "message": "Access point already exists with the given client token.",
        "AccessPointId": access_point_id,
    })
}

/// No error, only a count of the calls (in `seen`).
pub fn count(service: &str, action: &str) -> Value {
    json!({"service": service, "action": action, "times": 0})
}

/// The fault of `faults` for this action, as it is now.
pub fn find<'a>(faults: &'a [Value], action: &str, code: Option<&str>) -> Option<&'a Value> {
    faults
        .iter()
        .find(|f| f["action"] == action && f["code"].as_str() == code)
}
