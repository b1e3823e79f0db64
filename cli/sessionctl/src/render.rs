//! `--output table`: the API's JSON objects as aligned text, under the API's own field
//! names so that what a person reads is what a script finds in `--output json`.

use serde_json::Value;

/// The fields of a session shown by `status`, `start` and `stop`, in this order; the
/// ones the API gives as null are left out.
const SESSION_FIELDS: [&str; 12] = [
    "session_id",
    "status",
    "version",
    "user_id",
    "created_at",
    "started_at",
    "stopped_at",
    "last_activity_at",
    "stop_reason",
    "stop_code",
    "stopped_reason",
    "task_arn",
];

/// The columns of `list`.
const LIST_COLUMNS: [&str; 5] = [
    "session_id",
    "status",
    "version",
    "created_at",
    "stop_reason",
];

/// A JSON value as a cell: strings bare, null as `-`.
pub fn text(value: &Value) -> String {
    match value {
        Value::Null => "-".to_owned(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Rows of cells with each column as wide as its widest cell; no trailing spaces.
pub fn align(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|cell| cell.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    rows.iter()
        .map(|row| {
            let line: Vec<String> = row
                .iter()
                .enumerate()
                .map(|(c, cell)| format!("{cell:<width$}", width = widths[c]))
                .collect();
            line.join("  ").trim_end().to_owned()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

pub fn indent(text: &str) -> String {
    text.lines()
        .map(|line| format!("  {line}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// One session, a field per line; its URLs as `urls.api`, `urls.frontend`, ... and the
/// API's `message` (the answer to a stop) last.
pub fn session_detail(session: &Value) -> String {
    let mut rows: Vec<Vec<String>> = SESSION_FIELDS
        .iter()
        .filter(|field| !session[**field].is_null())
        .map(|field| vec![(*field).to_owned(), text(&session[*field])])
        .collect();
    if let Some(urls) = session["urls"].as_object() {
        rows.extend(
            urls.iter()
                .map(|(name, url)| vec![format!("urls.{name}"), text(url)]),
        );
    }
    if let Some(message) = session["message"].as_str() {
        rows.push(vec!["message".to_owned(), message.to_owned()]);
    }
    align(&rows)
}

/// Sessions, one per line under a header.
pub fn session_table(sessions: &[Value]) -> String {
    if sessions.is_empty() {
        return "no sessions".to_owned();
    }
    let header = LIST_COLUMNS.iter().map(|c| c.to_uppercase()).collect();
    let rows = sessions
        .iter()
        .map(|s| LIST_COLUMNS.iter().map(|c| text(&s[*c])).collect());
    align(&std::iter::once(header).chain(rows).collect::<Vec<_>>())
}

/// The versions a session can run, newest first, the one `latest` names marked; or why
/// there is no list.
pub fn versions(answer: &Value) -> String {
    if answer["listed"] == Value::Bool(false) {
        return "this deployment lists no versions (its image check is off): start takes any \
                version tag, `latest` by default"
            .to_owned();
    }
    let versions = answer["versions"].as_array().map_or(&[][..], Vec::as_slice);
    if versions.is_empty() {
        return "no versions: no tag is on every image of the session template".to_owned();
    }
    let header = ["VERSION", "PUSHED_AT", "LATEST"]
        .map(str::to_owned)
        .to_vec();
    let rows = versions.iter().map(|v| {
        let latest = if v["latest"] == Value::Bool(true) {
            "yes"
        } else {
            ""
        };
        vec![
            text(&v["version"]),
            text(&v["pushed_at"]),
            latest.to_owned(),
        ]
    });
    align(&std::iter::once(header).chain(rows).collect::<Vec<_>>())
}

/// The answer to a heartbeat.
pub fn heartbeat(answer: &Value) -> String {
    let id = text(&answer["session_id"]);
    let last = text(&answer["last_activity_at"]);
    if answer["recorded"] == Value::Bool(true) {
        format!("heartbeat recorded for session {id}; last activity {last}")
    } else {
        format!(
            "session {id} already had a heartbeat within the heartbeat interval; last activity {last}"
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn running() -> Value {
        json!({
            "session_id": "sess-0123",
            "user_id": "alice",
            "status": "running",
            "version": "1.0.0",
            "task_arn": "arn:aws:ecs:us-east-1:123456789012:task/sessions/abc",
            "urls": {
                "api": "http://203.0.113.7:8000",
                "frontend": "http://203.0.113.7:3000",
                "suv_ui": "http://203.0.113.7:3030",
            },
            "created_at": "2026-11-26T10:00:00.000Z",
            "started_at": "2026-11-26T10:00:41.000Z",
            "stopped_at": null,
            "last_activity_at": null,
            "stop_reason": null,
            "stop_code": null,
            "stopped_reason": null,
        })
    }

    #[test]
    fn a_session_shows_its_known_fields_and_urls_aligned() {
        assert_eq!(
            session_detail(&running()),
            "\
session_id     sess-0123
status         running
version        1.0.0
user_id        alice
created_at     2026-11-26T10:00:00.000Z
started_at     2026-11-26T10:00:41.000Z
task_arn       arn:aws:ecs:us-east-1:123456789012:task/sessions/abc
urls.api       http://203.0.113.7:8000
urls.frontend  http://203.0.113.7:3000
urls.suv_ui    http://203.0.113.7:3030"
        );
    }

    #[test]
    fn a_stop_answer_ends_with_the_apis_message() {
        let mut stopping = running();
        stopping["status"] = json!("stopping");
        stopping["stop_reason"] = json!("user");
        stopping["message"] = json!("the session is stopping");
        let text = session_detail(&stopping);
        assert!(text.contains("\nstop_reason    user\n"), "{text}");
        assert!(
            text.ends_with("\nmessage        the session is stopping"),
            "{text}"
        );
    }

    #[test]
    fn the_list_has_a_header_and_a_dash_for_what_is_unknown() {
        let mut ended = running();
        ended["session_id"] = json!("sess-0122");
        ended["status"] = json!("stopped");
        ended["stop_reason"] = json!("idle");
        assert_eq!(
            session_table(&[running(), ended]),
            "\
SESSION_ID  STATUS   VERSION  CREATED_AT                STOP_REASON
sess-0123   running  1.0.0    2026-11-26T10:00:00.000Z  -
sess-0122   stopped  1.0.0    2026-11-26T10:00:00.000Z  idle"
        );
        assert_eq!(session_table(&[]), "no sessions");
    }

    #[test]
    fn a_heartbeat_says_whether_it_was_recorded() {
        let answer = json!({
            "session_id": "sess-1", "status": "running", "recorded": true,
            "last_activity_at": "2026-11-26T10:05:00.000Z",
        });
        assert_eq!(
            heartbeat(&answer),
            "heartbeat recorded for session sess-1; last activity 2026-11-26T10:05:00.000Z"
        );
        let mut repeated = answer;
        repeated["recorded"] = json!(false);
        assert!(heartbeat(&repeated).contains("already had a heartbeat"));
    }

    #[test]
    fn versions_are_listed_as_given_with_latest_marked() {
        let answer = json!({"listed": true, "versions": [
            {"version": "1.9.1", "pushed_at": "2026-11-26T10:00:00.000Z", "latest": false},
            {"version": "2.0.0", "pushed_at": "2026-11-20T10:00:00.000Z", "latest": true},
        ]});
        assert_eq!(
            versions(&answer),
            "\
VERSION  PUSHED_AT                 LATEST
1.9.1    2026-11-26T10:00:00.000Z
2.0.0    2026-11-20T10:00:00.000Z  yes"
        );
        assert!(versions(&json!({"listed": true, "versions": []})).starts_with("no versions"));
        assert!(versions(&json!({"listed": false, "versions": []}))
            .contains("lists no versions (its image check is off)"));
    }

    #[test]
    fn cells_are_aligned_by_characters_not_bytes() {
        assert_eq!(
            align(&[vec!["é".into(), "x".into()], vec!["ab".into(), "y".into()]]),
            "é   x\nab  y"
        );
    }
}
