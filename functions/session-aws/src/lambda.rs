//! What every function's entry point shares with the Lambda runtime: its input
//! decoded, its output encoded, and its errors reported under the names the state
//! machine's Retry and Catch match.

use lambda_runtime::{Diagnostic, LambdaEvent};
use serde_json::Value;
use session_core::{Error, InvalidInput};

/// A step's error on its way to the Lambda runtime. The runtime reports
/// [`Diagnostic`]s; this carries the domain error there with its contract name as the
/// `errorType` Step Functions sees.
#[derive(Debug)]
pub struct Failure(pub Error);

impl From<Error> for Failure {
    fn from(err: Error) -> Self {
        Self(err)
    }
}

impl From<InvalidInput> for Failure {
    fn from(err: InvalidInput) -> Self {
        Self(err.into())
    }
}

impl From<Failure> for Diagnostic {
    fn from(Failure(err): Failure) -> Self {
        Diagnostic {
            error_type: err.error_type().to_owned(),
            error_message: err.to_string(),
        }
    }
}

/// Decodes a function's input. Malformed input is an `InvalidInput` error naming what
/// was wrong, never a panic and never a runtime-generated error type.
pub fn input<T: serde::de::DeserializeOwned>(event: LambdaEvent<Value>) -> Result<T, Failure> {
    session_core::input(event.payload).map_err(Failure)
}

/// Encodes a step's output for the state machine.
pub fn output<T: serde::Serialize>(value: &T) -> Result<Value, Failure> {
    session_core::output(value).map_err(Failure)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diagnostics_carry_the_names_the_state_machine_matches() {
        let d: Diagnostic = Failure(Error::CapacityUnavailable("RESOURCE:FARGATE".into())).into();
        assert_eq!(d.error_type, "CapacityUnavailable");
        assert_eq!(d.error_message, "no Fargate capacity: RESOURCE:FARGATE");
        let d: Diagnostic = Failure::from(InvalidInput::new("version", "bad")).into();
        assert_eq!(d.error_type, "InvalidInput");
        assert_eq!(d.error_message, "invalid version: bad");
    }

    #[test]
    fn input_of_the_wrong_shape_is_invalid_input_naming_what_was_wrong() {
        let event = LambdaEvent::new(serde_json::json!({"a": 1}), Default::default());
        let Err(Failure(err)) = input::<Vec<u8>>(event) else {
            panic!("a map is not a list");
        };
        assert_eq!(err.error_type(), "InvalidInput");
        assert!(err.to_string().contains("invalid input"), "{err}");
    }
}
