//! Checks of the state machine definitions under `statemachine/` against the code.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::Value;

/// Every `statemachine/*.json` definition.
pub fn definitions(root: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(root.join("statemachine"))
        .expect("statemachine/ exists")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    files
}

/// The functions a definition names, through its `${<function>_arn}` placeholders
/// (the Terraform `templatefile` variables), as crate names (`wait_for_ip` ->
/// `wait-for-ip`).
pub fn functions_named(definition: &Value) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    collect(definition, &mut names);
    names
}

fn collect(value: &Value, names: &mut BTreeSet<String>) {
    match value {
        Value::String(s) => {
            let mut rest = s.as_str();
            while let Some(start) = rest.find("${") {
                let Some(end) = rest[start..].find('}') else {
                    break;
                };
                let variable = &rest[start + 2..start + end];
                names.insert(
                    variable
                        .strip_suffix("_arn")
                        .unwrap_or(variable)
                        .replace('_', "-"),
                );
                rest = &rest[start + end..];
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect(v, names)),
        Value::Object(map) => map.values().for_each(|v| collect(v, names)),
        _ => {}
    }
}

/// Task states whose function is not given by a placeholder (a hard-coded ARN would
/// bypass the deployment's own functions).
pub fn tasks_without_placeholder(definition: &Value) -> Vec<String> {
    let mut found = Vec::new();
    let Some(states) = definition.get("States").and_then(Value::as_object) else {
        return found;
    };
    for (name, state) in states {
        if state.get("Type").and_then(Value::as_str) != Some("Task") {
            continue;
        }
        let target = state
            .pointer("/Parameters/FunctionName")
            .or_else(|| state.get("Resource"));
        if !target
            .and_then(Value::as_str)
            .is_some_and(|t| t.starts_with("${") && t.ends_with("_arn}"))
        {
            found.push(name.clone());
        }
    }
    found
}

/// Functions named by the definition that have no crate under `functions/`.
pub fn missing_functions(root: &Path, definition: &Value) -> Vec<String> {
    functions_named(definition)
        .into_iter()
        .filter(|f| !root.join("functions").join(f).join("src/main.rs").exists())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn placeholders_map_to_crate_names() {
        let def = json!({"States": {"A": {"Type": "Task", "Parameters": {"FunctionName": "${wait_for_ip_arn}"}}}});
        assert_eq!(
            functions_named(&def),
            BTreeSet::from(["wait-for-ip".to_owned()])
        );
        assert!(tasks_without_placeholder(&def).is_empty());
    }

    #[test]
    fn a_function_without_a_crate_is_reported() {
        let def = json!({"States": {"A": {"Type": "Task", "Parameters": {"FunctionName": "${no_such_step_arn}"}}}});
        assert_eq!(
            missing_functions(&crate::repo_root(), &def),
            vec!["no-such-step".to_owned()]
        );
    }

    #[test]
    fn a_hard_coded_function_arn_is_reported() {
        let def = json!({"States": {"A": {"Type": "Task", "Resource": "arn:aws:lambda:us-east-1:1:function:x"}}});
        assert_eq!(tasks_without_placeholder(&def), vec!["A".to_owned()]);
    }
}
