//! How the crates depend on each other: the domain knows no AWS and no Lambda, and
//! each function compiles only the AWS services it calls (`cargo metadata`, offline).

use std::collections::BTreeSet;
use std::process::Command;

use serde_json::Value;
use session_tests::repo_root;

/// The AWS services `session-aws` offers, one cargo feature and one module each.
const SERVICES: [&str; 8] = [
    "dynamodb",
    "ec2",
    "ecr",
    "ecs",
    "efs",
    "eventbridge",
    "iam",
    "sfn",
];

fn metadata() -> Value {
    let out = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(repo_root())
        .output()
        .expect("run cargo metadata");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("cargo metadata's JSON")
}

fn package<'a>(metadata: &'a Value, name: &str) -> &'a Value {
    metadata["packages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("package {name}"))
}

/// The package's dependencies of `kind` (`null` for normal ones).
fn dependencies<'a>(package: &'a Value, kind: &Value) -> impl Iterator<Item = &'a Value> {
    let kind = kind.clone();
    package["dependencies"]
        .as_array()
        .unwrap()
        .iter()
        .filter(move |d| d["kind"] == kind)
}

/// The `session_aws::{service}` modules a source file names in its `use`s and paths.
fn services_named(source: &str) -> BTreeSet<String> {
    let file = syn::parse_file(source).expect("Rust source");
    let mut named = BTreeSet::new();
    for item in &file.items {
        if let syn::Item::Use(u) = item {
            collect_use(&u.tree, false, &mut named);
        }
    }
    named
}

fn collect_use(tree: &syn::UseTree, under_session_aws: bool, named: &mut BTreeSet<String>) {
    match tree {
        syn::UseTree::Path(p) if p.ident == "session_aws" => collect_use(&p.tree, true, named),
        syn::UseTree::Path(syn::UsePath { ident, .. })
        | syn::UseTree::Name(syn::UseName { ident })
            if under_session_aws && SERVICES.contains(&ident.to_string().as_str()) =>
        {
            named.insert(ident.to_string());
        }
        syn::UseTree::Group(g) => {
            for tree in &g.items {
                collect_use(tree, under_session_aws, named);
            }
        }
        _ => {}
    }
}

#[test]
fn the_domain_crate_depends_on_no_aws_and_no_lambda_crate() {
    let metadata = metadata();
    let core = package(&metadata, "session-core");
    let foreign: Vec<&str> = dependencies(core, &Value::Null)
        .filter_map(|d| d["name"].as_str())
        .filter(|n| n.starts_with("aws") || n.starts_with("lambda"))
        .collect();
    assert!(foreign.is_empty(), "session-core depends on {foreign:?}");
    assert!(
        dependencies(core, &Value::Null).any(|d| d["name"] == "serde"),
        "the reader sees session-core's dependencies"
    );
}

#[test]
fn each_function_turns_on_exactly_the_aws_services_its_entry_point_uses() {
    let metadata = metadata();
    let functions = std::fs::read_dir(repo_root().join("functions"))
        .unwrap()
        .flatten()
        .filter(|e| e.path().join("src/main.rs").exists())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect::<BTreeSet<_>>();
    assert!(functions.len() >= 8, "{functions:?}");
    for function in &functions {
        let main = std::fs::read_to_string(
            repo_root()
                .join("functions")
                .join(function)
                .join("src/main.rs"),
        )
        .unwrap();
        let used = services_named(&main);
        assert!(!used.is_empty(), "{function} names no AWS service");
        let on: BTreeSet<String> = dependencies(package(&metadata, function), &Value::Null)
            .find(|d| d["name"] == "session-aws")
            .unwrap_or_else(|| panic!("{function} depends on session-aws"))["features"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f.as_str().unwrap().to_owned())
            .collect();
        assert_eq!(
            on, used,
            "{function}: session-aws features vs services its main.rs uses"
        );
    }
}

#[test]
fn every_service_is_a_feature_of_session_aws_and_nothing_else_is() {
    let metadata = metadata();
    let features: BTreeSet<String> = package(&metadata, "session-aws")["features"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    let services: BTreeSet<String> = SERVICES.map(str::to_owned).into();
    assert_eq!(features, services);
}

#[test]
fn the_service_reader_finds_services_in_groups_and_paths_only_under_session_aws() {
    let named = services_named(
        "use session_aws::{dynamodb::DynamoStore, ecs, lambda::input, sdk_config};\n\
         use session_aws::sfn::SfnWorkflow;\n\
         use other::ec2::Thing;\n\
         use session_core::ports::SystemClock;",
    );
    assert_eq!(named, ["dynamodb", "ecs", "sfn"].map(str::to_owned).into());
}
