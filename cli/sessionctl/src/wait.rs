//! `--wait`: polls a session until it reaches the goal, showing on stderr the elapsed
//! time and each status it passes through. Time is a port so that tests run the whole
//! loop without sleeping.

use std::fmt;
use std::io::Write;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::error::Error;
use crate::render::text;

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

enum Verdict {
    Reached,
    Missed,
    Pending,
}

impl Goal {
    /// As the progress headline says it: "waiting for session … to run".
    fn verb(self) -> &'static str {
        match self {
            Goal::Running => "run",
            Goal::Ended => "end",
        }
    }

    fn judge(self, status: &str) -> Verdict {
        let ended = matches!(status, "stopped" | "failed");
        match self {
            Goal::Running if status == "running" => Verdict::Reached,
            Goal::Running if ended => Verdict::Missed,
            Goal::Ended if ended => Verdict::Reached,
            _ => Verdict::Pending,
        }
    }
}

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

/// Elapsed time in the progress display: `4.2s`, `2m05s`, `1h02m`.
pub fn fmt_elapsed(elapsed: Duration) -> String {
    let secs = elapsed.as_secs();
    match secs {
        0..=59 => format!("{:.1}s", elapsed.as_secs_f64()),
        60..=3599 => format!("{}m{:02}s", secs / 60, secs % 60),
        _ => format!("{}h{:02}m", secs / 3600, secs % 3600 / 60),
    }
}

/// A duration the way `--timeout` and friends take it: `500ms`, `30s`, `15m`, `1m30s`.
pub fn fmt_duration(duration: Duration) -> String {
    let millis = duration.as_millis();
    if millis % 1000 != 0 {
        return format!("{millis}ms");
    }
    let secs = duration.as_secs();
    let (h, m, s) = (secs / 3600, secs % 3600 / 60, secs % 60);
    let mut text = String::new();
    for (value, unit) in [(h, "h"), (m, "m"), (s, "s")] {
        if value > 0 {
            text.push_str(&format!("{value}{unit}"));
        }
    }
    if text.is_empty() {
        text.push_str("0s");
    }
    text
}

/// Parses `--timeout`, `--wait-timeout` and `--poll-interval`: a number of seconds, or
/// numbers with units `ms`, `s`, `m`, `h` (`1m30s`). Zero is refused.
pub fn parse_duration(raw: &str) -> Result<Duration, String> {
    let invalid = || format!("{raw:?} is not a duration: use e.g. 30s, 500ms, 15m or 1m30s");
    let raw_trimmed = raw.trim();
    if raw_trimmed.is_empty() {
        return Err(invalid());
    }
    let total = if let Ok(secs) = raw_trimmed.parse::<f64>() {
        if !secs.is_finite() || secs < 0.0 {
            return Err(invalid());
        }
        Duration::try_from_secs_f64(secs).map_err(|_| invalid())?
    } else {
        let mut total = Duration::ZERO;
        let mut rest = raw_trimmed;
        while !rest.is_empty() {
            let digits = rest
                .find(|c: char| !c.is_ascii_digit())
                .ok_or_else(invalid)?;
            if digits == 0 {
                return Err(invalid());
            }
            let value: u64 = rest[..digits].parse().map_err(|_| invalid())?;
            rest = &rest[digits..];
            let unit_len = rest
                .find(|c: char| c.is_ascii_digit())
                .unwrap_or(rest.len());
            let part = match &rest[..unit_len] {
                "ms" => Duration::from_millis(value),
                "s" => Duration::from_secs(value),
                "m" => Duration::from_secs(value.saturating_mul(60)),
                "h" => Duration::from_secs(value.saturating_mul(3600)),
                _ => return Err(invalid()),
            };
            total = total.saturating_add(part);
            rest = &rest[unit_len..];
        }
        total
    };
    if total.is_zero() {
        return Err(format!("{raw:?} is zero; give a duration above zero"));
    }
    Ok(total)
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

    #[test]
    fn durations_parse_as_documented() {
        let cases = [
            ("30", Duration::from_secs(30)),
            ("0.5", Duration::from_millis(500)),
            ("500ms", Duration::from_millis(500)),
            ("30s", Duration::from_secs(30)),
            ("15m", Duration::from_secs(900)),
            ("1h", Duration::from_secs(3600)),
            ("1m30s", Duration::from_secs(90)),
        ];
        for (raw, expected) in cases {
            assert_eq!(parse_duration(raw), Ok(expected), "{raw}");
            assert_eq!(parse_duration(&fmt_duration(expected)), Ok(expected));
        }
        for bad in [
            "", "0", "0s", "-1", "ten", "5 s", "5d", "m5", "s", "NaN", "inf",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn elapsed_time_reads_at_a_glance() {
        assert_eq!(fmt_elapsed(Duration::from_millis(4_240)), "4.2s");
        assert_eq!(fmt_elapsed(Duration::from_secs(125)), "2m05s");
        assert_eq!(fmt_elapsed(Duration::from_secs(3720)), "1h02m");
        assert_eq!(fmt_duration(Duration::from_secs(900)), "15m");
        assert_eq!(fmt_duration(Duration::from_millis(1500)), "1500ms");
    }
}
