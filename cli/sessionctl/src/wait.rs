//! `--wait`: polls a session until it reaches the goal, showing on stderr the elapsed
//! time and each status it passes through. Time is a port so that tests run the whole
//! loop without sleeping.

use std::io::Write;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::duration::{fmt_duration, fmt_elapsed};
use crate::error::Error;
use crate::goal::{Goal, Verdict};
use crate::render::text;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WaitOptions {
    /// `--wait-timeout`
    pub timeout: Duration,
    /// `--poll-interval`
    pub interval: Duration,
}

pub trait Clock {
    /// Time since the wait began.
    fn elapsed(&self) -> Duration;
    fn sleep(&mut self, duration: Duration);
}

pub struct SystemClock(Instant);

impl SystemClock {
    pub fn start() -> Self {
        Self(Instant::now())
    }
}

impl Clock for SystemClock {
    fn elapsed(&self) -> Duration {
        self.0.elapsed()
    }

    fn sleep(&mut self, duration: Duration) {
        std::thread::sleep(duration);
    }
}

/// The progress display. Each status change is a line of its own, so that a log or a
/// pipe keeps the whole story; on a terminal a live line also counts the seconds.
pub struct Progress<'a> {
    sink: &'a mut dyn Write,
    live: bool,
    last: Option<String>,
    line_open: bool,
}

impl<'a> Progress<'a> {
    pub fn new(sink: &'a mut dyn Write, terminal: bool) -> Self {
        Self {
            sink,
            live: terminal,
            last: None,
            line_open: false,
        }
    }

    // Progress is a courtesy: a stderr that cannot be written must not fail the command.
    fn clear_live_line(&mut self) {
        if self.line_open {
            let _ = write!(self.sink, "\r\x1b[2K");
            self.line_open = false;
        }
    }

    pub fn headline(&mut self, text: &str) {
        let _ = writeln!(self.sink, "{text}");
    }

    pub fn status(&mut self, elapsed: Duration, status: &str) {
        let line = format!("{:>8}  {status}", fmt_elapsed(elapsed));
        if self.last.as_deref() != Some(status) {
            self.clear_live_line();
            let _ = writeln!(self.sink, "{line}");
            self.last = Some(status.to_owned());
        } else if self.live {
            let _ = write!(self.sink, "\r\x1b[2K{line} …");
            self.line_open = true;
        }
        let _ = self.sink.flush();
    }

    /// A poll that failed but will be tried again: the first line of its error.
    pub fn retrying(&mut self, elapsed: Duration, err: &Error) {
        self.clear_live_line();
        let text = err.to_string();
        let first = text.lines().next().unwrap_or_default();
        let _ = writeln!(
            self.sink,
            "{:>8}  ({first}; polling on)",
            fmt_elapsed(elapsed)
        );
    }

    pub fn finish(&mut self) {
        self.clear_live_line();
        let _ = self.sink.flush();
    }
}

/// Polls with `fetch` until the session reaches `goal`, starting from `first` (the
/// session as last seen). Errors that the next poll may not see (the API unreachable or
/// unwell) are shown and polled through until the deadline; any other ends the wait.
pub fn wait_for(
    goal: Goal,
    first: Value,
    mut fetch: impl FnMut() -> Result<Value, Error>,
    options: WaitOptions,
    clock: &mut dyn Clock,
    progress: &mut Progress<'_>,
) -> Result<Value, Error> {
    let id = text(&first["session_id"]);
    progress.headline(&format!(
        "waiting for session {id} to {} (at most {}; Ctrl-C stops waiting, not the session)",
        goal.verb(),
        fmt_duration(options.timeout)
    ));
    let mut session = first;
    loop {
        let status = text(&session["status"]);
        progress.status(clock.elapsed(), &status);
        match goal.judge(&status) {
            Verdict::Reached => {
                progress.finish();
                return Ok(session);
            }
            Verdict::Missed => {
                progress.finish();
                return Err(Error::Ended { session });
            }
            Verdict::Pending => {}
        }
        loop {
            let elapsed = clock.elapsed();
            if elapsed >= options.timeout {
                progress.finish();
                return Err(Error::WaitTimeout {
                    session_id: id,
                    status,
                    goal,
                    after: options.timeout,
                });
            }
            clock.sleep(options.interval.min(options.timeout - elapsed));
            match fetch() {
                Ok(next) => {
                    session = next;
                    break;
                }
                Err(err) if err.is_transient() => {
                    progress.retrying(clock.elapsed(), &err);
                }
                Err(err) => {
                    progress.finish();
                    return Err(err);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ApiFailure;
    use serde_json::json;
    use std::collections::VecDeque;

    /// Time that passes only when the code under test sleeps.
    #[derive(Default)]
    struct FakeClock {
        now: Duration,
        sleeps: Vec<Duration>,
    }

    impl Clock for FakeClock {
        fn elapsed(&self) -> Duration {
            self.now
        }
        fn sleep(&mut self, duration: Duration) {
            self.now += duration;
            self.sleeps.push(duration);
        }
    }

    fn session(status: &str) -> Value {
        json!({"session_id": "sess-1", "status": status, "stop_reason": null})
    }

    fn options() -> WaitOptions {
        WaitOptions {
            timeout: Duration::from_secs(60),
            interval: Duration::from_secs(2),
        }
    }

    fn run(
        goal: Goal,
        first: &str,
        answers: Vec<Result<Value, Error>>,
        options: WaitOptions,
    ) -> (Result<Value, Error>, String, FakeClock) {
        let mut answers: VecDeque<_> = answers.into();
        let mut clock = FakeClock::default();
        let mut sink = Vec::new();
        let result = {
            let mut progress = Progress::new(&mut sink, false);
            wait_for(
                goal,
                session(first),
                || answers.pop_front().expect("no more polls expected"),
                options,
                &mut clock,
                &mut progress,
            )
        };
        (result, String::from_utf8(sink).unwrap(), clock)
    }

    #[test]
    fn start_wait_shows_each_status_once_with_the_elapsed_time() {
        let (result, shown, clock) = run(
            Goal::Running,
            "starting",
            vec![
                Ok(session("starting")),
                Ok(session("provisioning")),
                Ok(session("provisioning")),
                Ok(session("running")),
            ],
            options(),
        );
        assert_eq!(result.unwrap()["status"], "running");
        assert_eq!(
            shown,
            "\
waiting for session sess-1 to run (at most 1m; Ctrl-C stops waiting, not the session)
    0.0s  starting
    4.0s  provisioning
    8.0s  running
"
        );
        assert_eq!(clock.sleeps, vec![Duration::from_secs(2); 4]);
    }

    #[test]
    fn a_session_that_fails_instead_of_running_is_an_error_with_it() {
        let mut failed = session("failed");
        failed["stop_reason"] = json!("image_not_found");
        let (result, shown, _) = run(Goal::Running, "starting", vec![Ok(failed)], options());
        let Err(Error::Ended { session }) = result else {
            panic!("expected Ended, got {result:?}");
        };
        assert_eq!(session["stop_reason"], "image_not_found");
        assert!(shown.ends_with("    2.0s  failed\n"), "{shown}");
    }

    #[test]
    fn stopping_on_the_way_to_running_waits_for_the_end_and_its_reason() {
        let mut stopped = session("stopped");
        stopped["stop_reason"] = json!("user");
        let (result, _, _) = run(
            Goal::Running,
            "provisioning",
            vec![Ok(session("stopping")), Ok(stopped)],
            options(),
        );
        assert!(
            matches!(result, Err(Error::Ended { session }) if session["stop_reason"] == "user")
        );
    }

    #[test]
    fn the_wait_ends_at_the_deadline_with_the_last_status() {
        let options = WaitOptions {
            timeout: Duration::from_secs(5),
            interval: Duration::from_secs(2),
        };
        let (result, _, clock) = run(
            Goal::Running,
            "starting",
            vec![
                Ok(session("provisioning")),
                Ok(session("provisioning")),
                Ok(session("provisioning")),
            ],
            options,
        );
        match result {
            Err(Error::WaitTimeout { status, after, .. }) => {
                assert_eq!(status, "provisioning");
                assert_eq!(after, Duration::from_secs(5));
            }
            other => panic!("expected WaitTimeout, got {other:?}"),
        }
        // The last sleep is cut short so the deadline is kept.
        assert_eq!(clock.now, Duration::from_secs(5));
    }

    #[test]
    fn an_unreachable_api_is_polled_through_and_shown() {
        let (result, shown, _) = run(
            Goal::Ended,
            "stopping",
            vec![
                Err(Error::Network {
                    url: "http://api/sessions/sess-1".into(),
                    detail: "connection reset".into(),
                }),
                Ok(session("stopped")),
            ],
            options(),
        );
        assert_eq!(result.unwrap()["status"], "stopped");
        assert!(
            shown.contains("    2.0s  (could not reach the API at http://api/sessions/sess-1: connection reset; polling on)"),
            "{shown}"
        );
    }

    #[test]
    fn a_refusal_while_polling_ends_the_wait() {
        let gone = Error::from(ApiFailure::from_answer(
            404,
            r#"{"error":{"code":"session_not_found","message":"gone"}}"#,
        ));
        let (result, _, _) = run(Goal::Running, "starting", vec![Err(gone)], options());
        assert_eq!(result.unwrap_err().exit_code(), 4);
    }

    #[test]
    fn on_a_terminal_a_live_line_counts_and_is_cleared_on_change() {
        let mut sink = Vec::new();
        {
            let mut progress = Progress::new(&mut sink, true);
            progress.status(Duration::ZERO, "starting");
            progress.status(Duration::from_secs(1), "starting");
            progress.status(Duration::from_secs(2), "running");
            progress.finish();
        }
        assert_eq!(
            String::from_utf8(sink).unwrap(),
            "    0.0s  starting\n\r\x1b[2K    1.0s  starting …\r\x1b[2K    2.0s  running\n"
        );
    }
}
