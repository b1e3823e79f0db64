//! The state machine definitions: valid ASL, and naming only functions that exist.

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
