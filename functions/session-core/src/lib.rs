//! The domain of the session lifecycle: sessions, statuses, the session template,
//! typed configuration, errors, the ports the steps need and the steps themselves.
//! Nothing here knows AWS or Lambda: the adapters of the ports live in `session-aws`.

pub mod config;
pub mod error;
pub mod events;
pub mod hosts;
pub mod limits;
pub mod metrics;
pub mod ports;
pub mod session;
pub mod steps;
pub mod template;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod versions;

pub use error::{Error, InvalidInput, Result};

/// Decodes a function's input. Malformed input is an `InvalidInput` error naming what
/// was wrong, never a panic and never a runtime-generated error type.
pub fn input<T: serde::de::DeserializeOwned>(payload: serde_json::Value) -> Result<T> {
    serde_json::from_value(payload).map_err(|e| InvalidInput::new("input", e.to_string()).into())
}

/// Encodes a step's output for the state machine.
pub fn output<T: serde::Serialize>(value: &T) -> Result<serde_json::Value> {
    serde_json::to_value(value).map_err(|e| Error::Aws {
        operation: "serialize output",
        message: e.to_string(),
    })
}
