//! `sessionctl`, the command-line client of the session API. `main` only parses the
//! command line and wires the real HTTP client, clock and terminal into [`run`]; all
//! the rest is here, tested without a server.

pub mod cli;
pub mod client;
pub mod duration;
pub mod error;
pub mod goal;
pub mod render;
pub mod wait;

use std::io::Write;

use serde_json::{json, Value};

use cli::{Command, Output, Settings};
use client::SessionsApi;
use error::Error;
use goal::Goal;
use wait::{wait_for, Clock, Progress};

/// The largest page the API serves.
const MAX_PAGE: u32 = 100;

/// Where a run writes: results to `out`, messages and progress to `err`.
pub struct Terminal<'a> {
    pub out: &'a mut dyn Write,
    pub err: &'a mut dyn Write,
    /// `err` is a terminal: the progress display may redraw its line.
    pub err_is_terminal: bool,
}

/// Runs one command against `api`.
pub fn run(
    settings: &Settings,
    api: &dyn SessionsApi,
    clock: &mut dyn Clock,
    terminal: &mut Terminal<'_>,
) -> Result<(), Error> {
    let output = settings.output;
    let Terminal {
        out,
        err,
        err_is_terminal,
    } = terminal;
    match &settings.command {
        Command::Start {
            version,
            wait,
            idempotency_key,
        } => {
            let started = match api.start(version.as_deref(), idempotency_key.as_deref()) {
                Err(Error::Api(mut failure)) if failure.status == 409 => {
                    failure.active_sessions = failure
                        .active_session_ids()
                        .into_iter()
                        .map(|id| {
                            api.session(&id)
                                .unwrap_or_else(|_| json!({ "session_id": id }))
                        })
                        .collect();
                    return Err(Error::Api(failure));
                }
                started => started?,
            };
            if !wait {
                emit(out, output, &started, render::session_detail)?;
                if output == Output::Table {
                    let id = render::text(&started["session_id"]);
                    let _ = writeln!(
                        err,
                        "`sessionctl status {id}` shows it; `start --wait` waits until it runs"
                    );
                }
                return Ok(());
            }
            let id = render::text(&started["session_id"]);
            let mut progress = Progress::new(&mut **err, *err_is_terminal);
            let running = wait_for(
                Goal::Running,
                started,
                || api.session(&id),
                settings.wait,
                clock,
                &mut progress,
            )?;
            emit(out, output, &running, render::session_detail)
        }
        Command::Stop { session_id, wait } => {
            let answer = api.stop(session_id)?;
            if !wait {
                return emit(out, output, &answer, render::session_detail);
            }
            let mut progress = Progress::new(&mut **err, *err_is_terminal);
            let ended = wait_for(
                Goal::Ended,
                answer,
                || api.session(session_id),
                settings.wait,
                clock,
                &mut progress,
            )?;
            emit(out, output, &ended, render::session_detail)
        }
        Command::Status { session_id } => emit(
            out,
            output,
            &api.session(session_id)?,
            render::session_detail,
        ),
        Command::Heartbeat { session_id } => {
            emit(out, output, &api.heartbeat(session_id)?, render::heartbeat)
        }
        Command::Versions => emit(out, output, &api.versions()?, render::versions),
        Command::List { limit } => {
            let listed = list(api, *limit)?;
            emit(out, output, &listed, |listed| {
                render::session_table(listed["sessions"].as_array().map_or(&[], Vec::as_slice))
            })?;
            if output == Output::Table && !listed["next_token"].is_null() {
                let _ = writeln!(
                    err,
                    "there are more: raise --limit, or leave it out for all"
                );
            }
            Ok(())
        }
    }
}

/// Every session of the caller, newest first, following `next_token`; with a limit,
/// the newest `limit` and the token of what follows (null when nothing does). The
/// answer has the shape of one page of the API.
fn list(api: &dyn SessionsApi, limit: Option<u32>) -> Result<Value, Error> {
    let mut sessions: Vec<Value> = Vec::new();
    let mut next_token: Option<String> = None;
    loop {
        let wanted = match limit {
            Some(limit) => {
                let missing =
                    limit.saturating_sub(u32::try_from(sessions.len()).unwrap_or(u32::MAX));
                if missing == 0 {
                    break;
                }
                missing.min(MAX_PAGE)
            }
            None => MAX_PAGE,
        };
        let page = api.list_page(Some(wanted), next_token.as_deref())?;
        sessions.extend(page["sessions"].as_array().cloned().unwrap_or_default());
        next_token = page["next_token"].as_str().map(str::to_owned);
        if next_token.is_none() {
            break;
        }
    }
    Ok(json!({ "sessions": sessions, "next_token": next_token }))
}

fn emit(
    out: &mut dyn Write,
    output: Output,
    value: &Value,
    table: impl Fn(&Value) -> String,
) -> Result<(), Error> {
    let text = match output {
        Output::Json => serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string()),
        Output::Table => table(value),
    };
    writeln!(out, "{text}")
        .and_then(|()| out.flush())
        .map_err(Error::Output)
}

/// Shows an error on stderr: as text, or with `--output json` as a JSON object with the
/// API's error code (or one of ours) and the exit status.
pub fn report(err: &Error, output: Output, stderr: &mut dyn Write) {
    let _ = match output {
        Output::Table => writeln!(stderr, "sessionctl: {err}"),
        Output::Json => writeln!(stderr, "{}", err.json()),
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::Token;
    use crate::error::ApiFailure;
    use crate::wait::WaitOptions;
    use std::cell::RefCell;
    use std::collections::VecDeque;
    use std::time::Duration;

    /// The API as a script: each call takes the next answer of its queue.
    #[derive(Default)]
    struct FakeApi {
        starts: RefCell<VecDeque<Result<Value, Error>>>,
        sessions: RefCell<VecDeque<Result<Value, Error>>>,
        stops: RefCell<VecDeque<Result<Value, Error>>>,
        pages: RefCell<VecDeque<Result<Value, Error>>>,
        versions: RefCell<VecDeque<Result<Value, Error>>>,
        calls: RefCell<Vec<String>>,
    }

    fn next(queue: &RefCell<VecDeque<Result<Value, Error>>>, call: &str) -> Result<Value, Error> {
        queue
            .borrow_mut()
            .pop_front()
            .unwrap_or_else(|| panic!("unexpected call {call}"))
    }

    impl SessionsApi for FakeApi {
        fn start(&self, version: Option<&str>, key: Option<&str>) -> Result<Value, Error> {
            self.calls
                .borrow_mut()
                .push(format!("start {version:?} {key:?}"));
            next(&self.starts, "start")
        }
        fn session(&self, id: &str) -> Result<Value, Error> {
            self.calls.borrow_mut().push(format!("session {id}"));
            next(&self.sessions, "session")
        }
        fn stop(&self, id: &str) -> Result<Value, Error> {
            self.calls.borrow_mut().push(format!("stop {id}"));
            next(&self.stops, "stop")
        }
        fn heartbeat(&self, id: &str) -> Result<Value, Error> {
            self.calls.borrow_mut().push(format!("heartbeat {id}"));
            Ok(
                json!({"session_id": id, "status": "running", "recorded": true,
                      "last_activity_at": "2026-11-26T10:05:00.000Z"}),
            )
        }
        fn list_page(&self, limit: Option<u32>, token: Option<&str>) -> Result<Value, Error> {
            self.calls
                .borrow_mut()
                .push(format!("list {limit:?} {token:?}"));
            next(&self.pages, "list")
        }
        fn versions(&self) -> Result<Value, Error> {
            self.calls.borrow_mut().push("versions".to_owned());
            next(&self.versions, "versions")
        }
    }

    struct InstantClock(Duration);

    impl Clock for InstantClock {
        fn elapsed(&self) -> Duration {
            self.0
        }
        fn sleep(&mut self, duration: Duration) {
            self.0 += duration;
        }
    }

    fn settings(output: Output, command: Command) -> Settings {
        Settings {
            api_url: "http://api".into(),
            token: Token::from("dev:alice".to_owned()),
            output,
            timeout: Duration::from_secs(30),
            wait: WaitOptions {
                timeout: Duration::from_secs(60),
                interval: Duration::from_secs(1),
            },
            command,
        }
    }

    /// Runs a command; returns its result, stdout and stderr.
    fn execute(api: &FakeApi, settings: &Settings) -> (Result<(), Error>, String, String) {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let result = {
            let mut terminal = Terminal {
                out: &mut out,
                err: &mut err,
                err_is_terminal: false,
            };
            run(
                settings,
                api,
                &mut InstantClock(Duration::ZERO),
                &mut terminal,
            )
        };
        (
            result,
            String::from_utf8(out).unwrap(),
            String::from_utf8(err).unwrap(),
        )
    }

    fn session(id: &str, status: &str) -> Value {
        let mut session = json!({
            "session_id": id, "status": status, "version": "1.0.0", "user_id": "alice",
            "urls": {}, "created_at": "2026-11-26T10:00:00.000Z", "stop_reason": null,
        });
        if status == "running" {
            session["urls"] = json!({
                "api": "http://203.0.113.7:8000",
                "frontend": "http://203.0.113.7:3000",
                "suv_ui": "http://203.0.113.7:3030",
            });
        }
        session
    }

    fn start(wait: bool) -> Command {
        Command::Start {
            version: Some("1.0.0".into()),
            wait,
            idempotency_key: None,
        }
    }

    #[test]
    fn start_wait_shows_the_progress_then_prints_the_urls() {
        let api = FakeApi::default();
        api.starts
            .borrow_mut()
            .push_back(Ok(session("sess-1", "starting")));
        api.sessions.borrow_mut().extend([
            Ok(session("sess-1", "provisioning")),
            Ok(session("sess-1", "running")),
        ]);
        let (result, out, err) = execute(&api, &settings(Output::Table, start(true)));
        result.unwrap();
        for url in [
            "urls.api       http://203.0.113.7:8000",
            "urls.frontend  http://203.0.113.7:3000",
            "urls.suv_ui    http://203.0.113.7:3030",
        ] {
            assert!(out.contains(url), "{url} missing from:\n{out}");
        }
        assert!(
            err.contains("    0.0s  starting\n    1.0s  provisioning\n    2.0s  running\n"),
            "{err}"
        );
        assert_eq!(
            *api.calls.borrow(),
            [
                "start Some(\"1.0.0\") None",
                "session sess-1",
                "session sess-1"
            ]
        );
    }

    #[test]
    fn start_without_wait_prints_the_session_and_returns() {
        let api = FakeApi::default();
        api.starts
            .borrow_mut()
            .push_back(Ok(session("sess-1", "starting")));
        let (result, out, err) = execute(&api, &settings(Output::Table, start(false)));
        result.unwrap();
        assert!(
            out.starts_with("session_id  sess-1\nstatus      starting\n"),
            "{out}"
        );
        assert!(err.contains("sessionctl status sess-1"), "{err}");
    }

    #[test]
    fn json_output_is_the_apis_object() {
        let api = FakeApi::default();
        api.sessions
            .borrow_mut()
            .push_back(Ok(session("sess-1", "running")));
        let command = Command::Status {
            session_id: "sess-1".into(),
        };
        let (result, out, _) = execute(&api, &settings(Output::Json, command));
        result.unwrap();
        let printed: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(printed, session("sess-1", "running"));
    }

    #[test]
    fn a_start_at_the_limit_names_the_active_sessions() {
        let api = FakeApi::default();
        api.starts
            .borrow_mut()
            .push_back(Err(Error::from(ApiFailure::from_answer(
            409,
            &json!({"error": {
                "code": "session_limit_reached",
                "message": "the limit of 1 active session(s) is reached; stop one first: sess-a",
                "active_sessions": ["sess-a"],
            }})
            .to_string(),
        ))));
        api.sessions
            .borrow_mut()
            .push_back(Ok(session("sess-a", "running")));
        let (result, out, _) = execute(&api, &settings(Output::Table, start(true)));
        let err = result.unwrap_err();
        assert_eq!(err.exit_code(), 5);
        assert!(out.is_empty());
        let text = err.to_string();
        assert!(text.contains("  sess-a      running  1.0.0"), "{text}");
    }

    #[test]
    fn start_wait_for_a_session_that_fails_exits_6_with_its_reason() {
        let api = FakeApi::default();
        api.starts
            .borrow_mut()
            .push_back(Ok(session("sess-1", "starting")));
        let mut failed = session("sess-1", "failed");
        failed["stop_reason"] = json!("capacity_unavailable");
        api.sessions.borrow_mut().push_back(Ok(failed));
        let (result, out, _) = execute(&api, &settings(Output::Table, start(true)));
        let err = result.unwrap_err();
        assert_eq!(err.exit_code(), 6);
        assert!(err.to_string().contains("stop_reason capacity_unavailable"));
        assert!(out.is_empty(), "{out}");
    }

    #[test]
    fn stop_wait_follows_the_session_until_it_ended() {
        let api = FakeApi::default();
        let mut stopping = session("sess-1", "stopping");
        stopping["message"] = json!("the session is stopping");
        api.stops.borrow_mut().push_back(Ok(stopping));
        let mut stopped = session("sess-1", "stopped");
        stopped["stop_reason"] = json!("user");
        api.sessions.borrow_mut().push_back(Ok(stopped));
        let command = Command::Stop {
            session_id: "sess-1".into(),
            wait: true,
        };
        let (result, out, err) = execute(&api, &settings(Output::Table, command));
        result.unwrap();
        assert!(out.contains("status       stopped\n"), "{out}");
        assert!(out.contains("stop_reason  user"), "{out}");
        assert!(
            err.contains("stopping\n") && err.contains("stopped\n"),
            "{err}"
        );
    }

    #[test]
    fn list_follows_next_token_to_the_end() {
        let api = FakeApi::default();
        api.pages.borrow_mut().extend([
            Ok(json!({"sessions": [session("sess-3", "running")], "next_token": "t1"})),
            Ok(json!({"sessions": [session("sess-2", "stopped"), session("sess-1", "failed")], "next_token": null})),
        ]);
        let command = Command::List { limit: None };
        let (result, out, _) = execute(&api, &settings(Output::Json, command));
        result.unwrap();
        let listed: Value = serde_json::from_str(&out).unwrap();
        let ids: Vec<&str> = listed["sessions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["session_id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, ["sess-3", "sess-2", "sess-1"]);
        assert!(listed["next_token"].is_null());
        assert_eq!(
            *api.calls.borrow(),
            ["list Some(100) None", "list Some(100) Some(\"t1\")"]
        );
    }

    #[test]
    fn list_with_a_limit_asks_only_for_what_is_missing_and_says_there_is_more() {
        let api = FakeApi::default();
        api.pages.borrow_mut().extend([
            Ok(json!({"sessions": [session("sess-3", "running"), session("sess-2", "stopped")], "next_token": "t1"})),
            Ok(json!({"sessions": [session("sess-1", "failed")], "next_token": "t2"})),
        ]);
        let command = Command::List { limit: Some(3) };
        let (result, out, err) = execute(&api, &settings(Output::Table, command));
        result.unwrap();
        assert_eq!(out.lines().count(), 4, "{out}");
        assert!(out.starts_with("SESSION_ID  STATUS"), "{out}");
        assert!(err.contains("there are more"), "{err}");
        assert_eq!(
            *api.calls.borrow(),
            ["list Some(3) None", "list Some(1) Some(\"t1\")"]
        );
    }

    #[test]
    fn a_heartbeat_reports_what_was_recorded() {
        let api = FakeApi::default();
        let command = Command::Heartbeat {
            session_id: "sess-1".into(),
        };
        let (result, out, _) = execute(&api, &settings(Output::Table, command));
        result.unwrap();
        assert_eq!(
            out,
            "heartbeat recorded for session sess-1; last activity 2026-11-26T10:05:00.000Z\n"
        );
    }

    #[test]
    fn versions_prints_the_apis_list_newest_first_with_latest_marked() {
        let api = FakeApi::default();
        let answer = json!({"listed": true, "versions": [
            {"version": "1.9.1", "pushed_at": "2026-11-26T10:00:00.000Z", "latest": false},
            {"version": "2.0.0", "pushed_at": "2026-11-20T10:00:00.000Z", "latest": true},
        ]});
        api.versions
            .borrow_mut()
            .extend([Ok(answer.clone()), Ok(answer.clone())]);
        let (result, out, _) = execute(&api, &settings(Output::Table, Command::Versions));
        result.unwrap();
        let rows: Vec<Vec<&str>> = out
            .lines()
            .map(|l| l.split_whitespace().collect())
            .collect();
        assert_eq!(
            rows,
            [
                vec!["VERSION", "PUSHED_AT", "LATEST"],
                vec!["1.9.1", "2026-11-26T10:00:00.000Z"],
                vec!["2.0.0", "2026-11-20T10:00:00.000Z", "yes"],
            ]
        );
        let (result, out, _) = execute(&api, &settings(Output::Json, Command::Versions));
        result.unwrap();
        assert_eq!(serde_json::from_str::<Value>(&out).unwrap(), answer);
        assert_eq!(*api.calls.borrow(), ["versions", "versions"]);
    }

    #[test]
    fn errors_are_text_or_json_on_stderr() {
        let err = Error::from(ApiFailure::from_answer(
            404,
            r#"{"error":{"code":"session_not_found","message":"session sess-x does not exist"}}"#,
        ));
        let mut text = Vec::new();
        report(&err, Output::Table, &mut text);
        assert_eq!(
            String::from_utf8(text).unwrap(),
            "sessionctl: session sess-x does not exist (404 session_not_found)\n"
        );
        let mut json = Vec::new();
        report(&err, Output::Json, &mut json);
        let parsed: Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(parsed["error"]["code"], "session_not_found");
        assert_eq!(parsed["error"]["exit_code"], 4);
    }
}
