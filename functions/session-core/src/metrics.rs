//! CloudWatch metrics in the embedded metric format: one JSON line on stdout per
//! emission, which Lambda's log delivery turns into metrics without an API call.

use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};

pub const NAMESPACE: &str = "SessionProvisioner";

pub const SESSION_START_SECONDS: &str = "SessionStartSeconds";
pub const IMAGE_PULL_SECONDS: &str = "ImagePullSeconds";
/// From the task's RUNNING to its HEALTHY: how long its services take to answer.
pub const TASK_HEALTHY_SECONDS: &str = "TaskHealthySeconds";
pub const ACTIVE_SESSIONS: &str = "ActiveSessions";
pub const SESSIONS_ENDED: &str = "SessionsEnded";
pub const ORPHANS_FOUND: &str = "OrphansFound";
pub const LOST_SESSIONS: &str = "LostSessions";
/// Sessions and tasks a reaper run could not act on (left for its next run).
pub const REAPER_ERRORS: &str = "ReaperErrors";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    Seconds,
    Count,
}

impl Unit {
    fn as_str(self) -> &'static str {
        match self {
            Unit::Seconds => "Seconds",
            Unit::Count => "Count",
        }
    }
}

/// One EMF document: the metrics share the dimensions given.
pub fn emf_line(
    at: DateTime<Utc>,
    dimensions: &[(&str, &str)],
    metrics: &[(&str, f64, Unit)],
) -> String {
    let mut doc = Map::new();
    let names: Vec<&str> = dimensions.iter().map(|(k, _)| *k).collect();
    doc.insert(
        "_aws".into(),
        json!({
            "Timestamp": at.timestamp_millis(),
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [names],
                "Metrics": metrics.iter().map(|(name, _, unit)| json!({"Name": name, "Unit": unit.as_str()})).collect::<Vec<_>>(),
            }],
        }),
    );
    for (key, value) in dimensions {
        doc.insert((*key).into(), Value::String((*value).into()));
    }
    for (name, value, _) in metrics {
        doc.insert((*name).into(), json!(value));
    }
    Value::Object(doc).to_string()
}

/// Writes one EMF document to stdout.
pub fn emit(dimensions: &[(&str, &str)], metrics: &[(&str, f64, Unit)]) {
    println!("{}", emf_line(Utc::now(), dimensions, metrics));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_emf_line_declares_its_metrics_and_carries_their_values() {
        let at = DateTime::parse_from_rfc3339("2026-11-25T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let line = emf_line(
            at,
            &[("Status", "stopped"), ("Reason", "idle")],
            &[(SESSIONS_ENDED, 1.0, Unit::Count)],
        );
        let doc: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(doc["_aws"]["Timestamp"], json!(1_795_600_800_000_i64));
        let directive = &doc["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], json!(NAMESPACE));
        assert_eq!(directive["Dimensions"], json!([["Status", "Reason"]]));
        assert_eq!(
            directive["Metrics"],
            json!([{"Name": "SessionsEnded", "Unit": "Count"}])
        );
        assert_eq!(doc["Status"], json!("stopped"));
        assert_eq!(doc["Reason"], json!("idle"));
        assert_eq!(doc["SessionsEnded"], json!(1.0));
        assert!(!line.contains('\n'), "one document per line");
    }
}
