//! Errors of the lifecycle functions. Each variant has a stable name ([`ErrorName`]):
//! the `errorType` Step Functions sees, which the state machine's Retry and Catch match
//! (see `statemachine/lifecycle.asl.json`) and RecordFailed turns into a stop reason, so
//! these strings are part of the contract and never derived from Rust type names.

/// Input that does not have the expected shape or values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {field}: {message}")]
pub struct InvalidInput {
    pub field: String,
    pub message: String,
}

impl InvalidInput {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// The error names of the contract, in one list: what a function reports as its
/// `errorType` and what a step sends with a task token's failure (`Workflow::fail`).
/// The state machine matches some of them (tests/tests/statemachine.rs checks it names
/// no other) and `Reason::from_error_name` gives each its stop reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorName {
    InvalidInput,
    InvalidVersion,
    NotAuthorized,
    SessionLimitReached,
    ImageNotFound,
    CapacityUnavailable,
    LaunchFailed,
    /// Direct access: the running task's interface has no public IP.
    NoPublicIp,
    /// The task is RUNNING but its health checks fail.
    Unhealthy,
    /// The task stopped before it was running (WaitForIp's token).
    TaskStoppedBeforeRunning,
    /// A stop was requested while a step ran or waited.
    StopRequested,
    SessionNotFound,
    Throttled,
    Transient,
    AwsError,
}

impl ErrorName {
    pub const ALL: [ErrorName; 15] = [
        Self::InvalidInput,
        Self::InvalidVersion,
        Self::NotAuthorized,
        Self::SessionLimitReached,
        Self::ImageNotFound,
        Self::CapacityUnavailable,
        Self::LaunchFailed,
        Self::NoPublicIp,
        Self::Unhealthy,
        Self::TaskStoppedBeforeRunning,
        Self::StopRequested,
        Self::SessionNotFound,
        Self::Throttled,
        Self::Transient,
        Self::AwsError,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidInput => "InvalidInput",
            Self::InvalidVersion => "InvalidVersion",
            Self::NotAuthorized => "NotAuthorized",
            Self::SessionLimitReached => "SessionLimitReached",
            Self::ImageNotFound => "ImageNotFound",
            Self::CapacityUnavailable => "CapacityUnavailable",
            Self::LaunchFailed => "LaunchFailed",
            Self::NoPublicIp => "NoPublicIp",
            Self::Unhealthy => "Unhealthy",
            Self::TaskStoppedBeforeRunning => "TaskStoppedBeforeRunning",
            Self::StopRequested => "StopRequested",
            Self::SessionNotFound => "SessionNotFound",
            Self::Throttled => "Throttled",
            Self::Transient => "Transient",
            Self::AwsError => "AwsError",
        }
    }

    /// The name of the contract spelled `name`, if it is one.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|n| n.as_str() == name)
    }
}

impl std::fmt::Display for ErrorName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    InvalidInput(#[from] InvalidInput),
    #[error("invalid version: {}", .0.message)]
    InvalidVersion(InvalidInput),
    #[error("user is unknown or not authorized to start sessions")]
    NotAuthorized,
    #[error("session limit of {max} reached; active: {}", active.join(", "))]
    SessionLimitReached { max: u32, active: Vec<String> },
    #[error("image {image} was not found in ECR")]
    ImageNotFound { image: String },
    #[error("no Fargate capacity: {0}")]
    CapacityUnavailable(String),
    #[error("task launch failed: {0}")]
    LaunchFailed(String),
    /// RunTask refused the task definition revision: it was deregistered. Launch
    /// registers a fresh one; escaping Launch, it is a launch failure.
    #[error("task definition is inactive: {0}")]
    TaskDefinitionInactive(String),
    /// A stop was requested while this step ran: the state machine goes straight to
    /// Stop instead of on to the next step.
    #[error("a stop was requested ({0})")]
    StopRequested(String),
    #[error("session {0} does not exist")]
    SessionNotFound(String),
    #[error("AWS throttled {operation}: {message}")]
    Throttled {
        operation: &'static str,
        message: String,
    },
    #[error("transient failure of {operation}: {message}")]
    Transient {
        operation: &'static str,
        message: String,
    },
    #[error("{operation} failed: {message}")]
    Aws {
        operation: &'static str,
        message: String,
    },
}

impl Error {
    /// The name of the contract this error is reported under.
    pub fn name(&self) -> ErrorName {
        match self {
            Error::InvalidInput(_) => ErrorName::InvalidInput,
            Error::InvalidVersion(_) => ErrorName::InvalidVersion,
            Error::NotAuthorized => ErrorName::NotAuthorized,
            Error::SessionLimitReached { .. } => ErrorName::SessionLimitReached,
            Error::ImageNotFound { .. } => ErrorName::ImageNotFound,
            Error::CapacityUnavailable(_) => ErrorName::CapacityUnavailable,
            Error::LaunchFailed(_) | Error::TaskDefinitionInactive(_) => ErrorName::LaunchFailed,
            Error::StopRequested(_) => ErrorName::StopRequested,
            Error::SessionNotFound(_) => ErrorName::SessionNotFound,
            Error::Throttled { .. } => ErrorName::Throttled,
            Error::Transient { .. } => ErrorName::Transient,
            Error::Aws { .. } => ErrorName::AwsError,
        }
    }

    /// The `error_type` reported to Lambda, which Step Functions exposes as `Error`.
    pub fn error_type(&self) -> &'static str {
        self.name().as_str()
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_error_name_is_listed_once_and_parses_back() {
        let mut seen = std::collections::HashSet::new();
        for name in ErrorName::ALL {
            assert!(seen.insert(name.as_str()), "{name} listed twice");
            assert_eq!(ErrorName::parse(name.as_str()), Some(name));
        }
        assert_eq!(ErrorName::parse("States.Timeout"), None);
    }
}
