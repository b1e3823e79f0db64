//! The state machine definitions: valid ASL, naming only functions that exist and
//! only error names the functions report.

use std::process::Command;

use session_tests::definition::{definitions, missing_functions, tasks_without_placeholder};
use session_tests::repo_root;

fn read(path: &std::path::Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn every_definition_passes_asl_validator() {
    let tools = std::env::var_os("SESSION_TOOLS_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::PathBuf::from(std::env::var_os("HOME").unwrap())
                .join(".cache/session-provisioner")
        });
    let validator = tools.join("npm/node_modules/.bin/asl-validator");
    assert!(
        validator.exists(),
        "asl-validator missing at {} (run `make tools`)",
        validator.display()
    );
    let files = definitions(&repo_root());
    assert!(!files.is_empty(), "statemachine/ holds definitions");
    for file in files {
        let out = Command::new(&validator)
            .arg("--json-path")
            .arg(&file)
            .output()
            .expect("run asl-validator");
        assert!(
            out.status.success(),
            "{} is not valid ASL:\n{}{}",
            file.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn every_state_names_a_function_that_exists_under_functions() {
    for file in definitions(&repo_root()) {
        let definition = read(&file);
        assert_eq!(
            missing_functions(&repo_root(), &definition),
            Vec::<String>::new(),
            "{}",
            file.display()
        );
        assert_eq!(
            tasks_without_placeholder(&definition),
            Vec::<String>::new(),
            "{}",
            file.display()
        );
    }
}

/// A throttled step waits for the account's token buckets to refill, so it is retried
/// longer than a step that failed otherwise, and every retrier spreads its waits with
/// full jitter, so that a burst of executions throttled together does not come back
/// together.
#[test]
fn every_task_retries_throttling_longest_with_full_jitter() {
    for file in definitions(&repo_root()) {
        let definition = read(&file);
        let states = definition["States"].as_object().expect("States");
        for (name, state) in states.iter().filter(|(_, s)| s["Type"] == "Task") {
            let retriers = state["Retry"].as_array().map(Vec::as_slice).unwrap_or(&[]);
            let matching = |error: &str| {
                retriers
                    .iter()
                    .find(|r| {
                        r["ErrorEquals"]
                            .as_array()
                            .is_some_and(|e| e.iter().any(|x| x == error))
                    })
                    .unwrap_or_else(|| panic!("{}: {name} does not retry {error}", file.display()))
            };
            let throttled = matching("Throttled");
            let transient = matching("Transient");
            assert!(
                throttled["MaxAttempts"].as_u64() > transient["MaxAttempts"].as_u64(),
                "{}: {name}",
                file.display()
            );
            assert!(
                throttled["MaxDelaySeconds"].as_u64().is_some(),
                "{}: {name}: throttled waits are capped",
                file.display()
            );
            for retrier in retriers {
                assert_eq!(
                    retrier["JitterStrategy"],
                    "FULL",
                    "{}: {name}",
                    file.display()
                );
            }
        }
    }
}

/// Every error name a definition's Retry or Catch matches, with its state.
fn matched_error_names(definition: &serde_json::Value) -> Vec<(String, String)> {
    let mut names = Vec::new();
    let states = definition["States"].as_object().expect("States");
    for (state, body) in states {
        for field in ["Retry", "Catch"] {
            for rule in body[field].as_array().into_iter().flatten() {
                for name in rule["ErrorEquals"].as_array().into_iter().flatten() {
                    names.push((state.clone(), name.as_str().unwrap_or_default().to_owned()));
                }
            }
        }
    }
    names
}

/// The definitions match only names the code reports (the one list of
/// `session_core::error::ErrorName`), Step Functions' own (`States.*`) and the Lambda
/// service's (`Lambda.*`): a misspelt or retired name would never match, silently.
#[test]
fn every_error_name_the_state_machine_matches_is_one_the_code_reports_or_an_aws_one() {
    use session_core::error::ErrorName;
    for file in definitions(&repo_root()) {
        let names = matched_error_names(&read(&file));
        assert!(!names.is_empty(), "{}: matches no error", file.display());
        let unknown: Vec<_> = names
            .iter()
            .filter(|(_, name)| {
                !(name.starts_with("States.")
                    || name.starts_with("Lambda.")
                    || ErrorName::parse(name).is_some())
            })
            .collect();
        assert!(
            unknown.is_empty(),
            "{}: names no function reports: {unknown:?}",
            file.display()
        );
        // What the lifecycle depends on: a stop requested mid-step goes to Stop.
        assert!(
            names
                .iter()
                .any(|(_, name)| name == ErrorName::StopRequested.as_str()),
            "{}: StopRequested is caught nowhere",
            file.display()
        );
    }
}

#[test]
fn the_error_name_check_finds_a_name_in_a_catch_and_a_retry() {
    let definition = serde_json::json!({"States": {
        "A": {"Type": "Task", "Retry": [{"ErrorEquals": ["Throttled", "Transient"]}],
              "Catch": [{"ErrorEquals": ["Misspelt"], "Next": "B"}]},
        "B": {"Type": "Succeed"}
    }});
    let names: Vec<String> = matched_error_names(&definition)
        .into_iter()
        .map(|(_, name)| name)
        .collect();
    assert_eq!(names, ["Throttled", "Transient", "Misspelt"]);
}
