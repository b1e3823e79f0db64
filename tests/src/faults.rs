//! AWS's answers that moto never gives, as faults for [`crate::Stack::inject_fault`]:
//! each in the shape its service sends (see `patch_injected_faults` in
//! `tests/harness/moto_server.py`). `times` is how many calls get the error; the SDK
//! retries a throttled call itself (three attempts in all, by default), so a throttle
//! that must reach our code lasts three calls.
//!
//! Also the [`Stack`] methods that set faults in the emulator's fault file (RunTask's
//! failures, errors and delays, StopTask's delay, the injected AWS errors) and read
//! them back.

use std::time::Duration;

use serde_json::{json, Value};

use crate::Stack;

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

impl Stack {
    /// Makes RunTask answer these failures (HTTP 200, no task) until cleared.
    pub fn set_run_task_failures(&self, failures: Value) {
        self.set_faults(json!({ "run_task_failures": failures }));
    }

    /// Makes RunTask answer an error; with `after_start` the task starts anyway, as
    /// when the answer to a successful call is lost.
    pub fn set_run_task_error(&self, code: &str, after_start: bool) {
        self.set_faults(json!({ "run_task_error": {
            "code": code, "message": "injected by the test", "after_start": after_start,
        }}));
    }

    /// Makes RunTask wait this long before it starts the task, until cleared.
    pub fn set_run_task_delay(&self, delay: Duration) {
        self.set_faults(json!({ "run_task_delay_s": delay.as_secs_f64() }));
    }

    /// Makes a task asked to stop keep running this long before it reaches STOPPED
    /// (as Fargate's stop timeout allows), until cleared.
    /// Set beside the faults already set.
    pub fn set_stop_task_delay(&self, delay: Duration) {
        let mut faults = self.read_faults();
        if !faults.is_object() {
            faults = json!({});
        }
        faults["stop_task_delay_s"] = json!(delay.as_secs_f64());
        self.set_faults(faults);
    }

    /// Whether a RunTask call has entered the delay of [`Stack::set_run_task_delay`].
    pub fn run_task_entered(&self) -> bool {
        self.dir
            .path()
            .join("faults.json.run-task-entered")
            .exists()
    }

    /// Clears every injected fault.
    pub fn clear_faults(&self) {
        self.set_faults(json!({}));
    }

    /// Makes the emulator answer calls with an AWS error, beside the faults already
    /// set (see [`crate::faults`] for the answers AWS gives).
    pub fn inject_fault(&self, fault: Value) {
        let mut faults = self.read_faults();
        if !faults.is_object() {
            faults = json!({});
        }
        match faults["faults"].as_array_mut() {
            Some(list) => list.push(fault),
            None => faults["faults"] = json!([fault]),
        }
        self.set_faults(faults);
    }

    /// The injected faults as they are now: `times` and `after` count down as calls
    /// come, `fired` counts the calls answered with the error, `seen` every call that
    /// matched.
    pub fn injected_faults(&self) -> Vec<Value> {
        self.read_faults()["faults"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    pub(crate) fn read_faults(&self) -> Value {
        std::fs::read(self.dir.path().join("faults.json"))
            .ok()
            .and_then(|raw| serde_json::from_slice(&raw).ok())
            .unwrap_or_else(|| json!({}))
    }

    pub(crate) fn set_faults(&self, faults: Value) {
        // The emulator reads the file on every call: replace it whole, never half-written.
        let path = self.dir.path().join("faults.json");
        let partial = self.dir.path().join("faults.json.partial");
        std::fs::write(&partial, faults.to_string()).expect("write faults");
        std::fs::rename(&partial, &path).expect("replace faults");
    }
}
