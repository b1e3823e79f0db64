//! How an AWS SDK error becomes a domain error: throttling and transport or 5xx
//! failures are retryable by the state machine, everything else is not.

use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_runtime_api::http::Response;
use aws_smithy_types::error::display::DisplayErrorContext;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use session_core::Error;

/// Service error codes that mean "slow down", across the services we call.
const THROTTLING_CODES: &[&str] = &[
    "ThrottlingException",
    "Throttling",
    "ThrottledException",
    "TooManyRequestsException",
    "RequestLimitExceeded",
    "ProvisionedThroughputExceededException",
    "RequestThrottled",
];

/// Classifies the SDK error of `operation` (the AWS API's name, which the error's
/// message carries).
pub fn from_sdk<E>(operation: &'static str, err: SdkError<E, Response>) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let code = err.code().map(str::to_owned);
    let message = match (&code, err.message()) {
        (Some(code), Some(message)) => format!("{code}: {message}"),
        (Some(code), None) => code.clone(),
        _ => DisplayErrorContext(&err).to_string(),
    };
    let server_error = err
        .raw_response()
        .is_some_and(|r| r.status().is_server_error());
    let transport = matches!(
        err,
        SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) | SdkError::ResponseError(_)
    );
    if code
        .as_deref()
        .is_some_and(|c| THROTTLING_CODES.contains(&c))
    {
        Error::Throttled { operation, message }
    } else if transport || server_error {
        Error::Transient { operation, message }
    } else {
        Error::Aws { operation, message }
    }
}
