//! What `--wait` waits for, and how a session's status stands to it.

use std::fmt;

/// What `--wait` waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Goal {
    /// `start --wait`: running; ending first is an error.
    Running,
    /// `stop --wait`: stopped or failed.
    Ended,
}

impl fmt::Display for Goal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Goal::Running => "running",
            Goal::Ended => "ended",
        })
    }
}

/// Where a status leaves the wait.
pub(crate) enum Verdict {
    Reached,
    Missed,
    Pending,
}

impl Goal {
    /// As the progress headline says it: "waiting for session … to run".
    pub(crate) fn verb(self) -> &'static str {
        match self {
            Goal::Running => "run",
            Goal::Ended => "end",
        }
    }

    pub(crate) fn judge(self, status: &str) -> Verdict {
        let ended = matches!(status, "stopped" | "failed");
        match self {
            Goal::Running if status == "running" => Verdict::Reached,
            Goal::Running if ended => Verdict::Missed,
            Goal::Ended if ended => Verdict::Reached,
            _ => Verdict::Pending,
        }
    }
}
