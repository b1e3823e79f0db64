//! The Terraform configuration under `terraform/`, checked offline against the code
//! (no provider registry is reachable, so no `terraform init` or `validate`):
//!
//! 1. every `.tf` file parses, and `terraform fmt -check` passes;
//! 2. checkov reports no failed check, and every check it skips is listed, with its
//!    reason, in `terraform/.checkov.yaml`;
//! 3. each function crate is exactly one Lambda and each Lambda a crate; each gets
//!    exactly the environment variables its configuration reads; its role grants
//!    exactly the AWS actions its code calls; the state machine names only our
//!    functions and may invoke nothing else;
//! 4. no deployment setting can turn on a development-only authentication mode;
//! 5. every resource, data and ephemeral block is one its provider's schema allows
//!    (types, arguments, blocks, required ones), read from the provider's prebuilt
//!    bindings (tools/npm), every reference names something declared, and an
//!    ephemeral value goes only to a write-only argument (schema.rs);
//! 6. no name, path or description is one AWS refuses when `apply` sends it, which
//!    neither `plan` nor the provider would find out (refused.rs);
//! 7. what each access mode deploys, evaluated for its variables (plan.rs): in gateway
//!    mode no task has a public IP, the session ports admit the gateway only, the
//!    gateway's role reads a few attributes of the sessions table and nothing else,
//!    only the login host signs in with the identity provider (one exact callback
//!    URL) and every other host goes to the gateway, the gateway's container gets
//!    only variables its configuration reads, its secrets through `secrets` only, and
//!    its execution role reads only the sign-in key, which never enters the state; in
//!    direct mode nothing of the gateway exists and allowed_cidrs must be given;
//! 8. the release workflow passes actionlint and the gateway's Dockerfile hadolint.
//!
//! What the code reads and calls is found in the code itself, parsed with `syn`: the
//! configuration groups' `VARS` and the `X::from_source` calls of each `main.rs`, and
//! every `self.client.<operation>()` of the AWS adapters reached from a function's
//! `main.rs`, through its crate's own modules and the steps, by their calls of the
//! ports (`store.apply(..)`, ...). The IAM actions live only in the `.tf` policies;
//! there is no third list to keep in step. Likewise the API's routes: the route keys
//! of `terraform/api.tf` are compared with the `api::Route::KEYS` the function serves.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Command;

use hcl::{Block, Body, Expression};
use session_tests::definition::{definitions, functions_named};
use session_tests::repo_root;

#[path = "terraform/calls.rs"]
mod calls;
#[path = "terraform/config_reader.rs"]
mod config_reader;
#[path = "terraform/hcl_reader.rs"]
mod hcl_reader;
#[path = "terraform/lint.rs"]
mod lint;
#[path = "terraform/plan.rs"]
mod plan;
#[path = "terraform/refused.rs"]
mod refused;
#[path = "terraform/schema.rs"]
mod schema;

use calls::{
    actions_called, core_index, function_crates, function_index, parse_rust, Adapters,
    RUNTIME_ACTIONS,
};
use config_reader::{collect_str_literals, readme_configuration, Config};
use hcl_reader::{
    attr, document_statements, literal, object_key, route_keys, strings, terraform_dir, tf_files,
    written, Module, Statement, FUNCTION_MODULE,
};
use lint::{
    actionlint, checkov, dev_auth_mentions, failed_checks, hadolint, is_dev_auth, run_scripts,
    shellcheck, skipped_checks, tool, tools_dir, unexplained_wildcards, wrong_pass_role,
};

// ---------------------------------------------------------------------------------
// 1. Every .tf file parses, and `terraform fmt -check` passes.

#[test]
fn every_tf_file_parses() {
    let files = tf_files(&terraform_dir());
    assert!(
        files.len() >= 10,
        "terraform/ holds the configuration: {files:?}"
    );
    let errors: Vec<String> = files
        .iter()
        .filter_map(|f| {
            hcl::parse(&std::fs::read_to_string(f).unwrap())
                .err()
                .map(|e| format!("{}: {e}", f.display()))
        })
        .collect();
    assert!(errors.is_empty(), "unparseable HCL:\n{}", errors.join("\n"));
}

#[test]
fn an_unparseable_tf_file_is_reported() {
    assert!(hcl::parse("resource \"aws_vpc\" \"x\" {\n  cidr_block = \n}\n").is_err());
    assert!(hcl::parse("locals {\n  a = [1, 2\n}\n").is_err());
}

#[test]
fn terraform_fmt_check_passes() {
    let out = Command::new(tool("terraform"))
        .current_dir(repo_root())
        .args(["fmt", "-check", "-recursive", "-diff", "terraform"])
        .output()
        .expect("run terraform fmt");
    assert!(
        out.status.success(),
        "terraform fmt -check -recursive terraform/ failed; run `{} fmt -recursive terraform` to fix:\n{}{}",
        tool("terraform").display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

// ---------------------------------------------------------------------------------
// 2. checkov: 0 failed checks; every skip listed once, with its reason.

#[test]
fn checkov_reports_no_failed_check() {
    let report = checkov(true);
    let summary = &report["summary"];
    assert_eq!(
        summary["parsing_errors"], 0,
        "checkov could not parse terraform/: {summary}"
    );
    assert!(
        summary["resource_count"].as_u64().unwrap_or(0) > 50,
        "checkov scanned (almost) nothing: {summary}"
    );
    let failed: Vec<String> = failed_checks(&report).into_iter().map(|(_, d)| d).collect();
    assert!(
        failed.is_empty(),
        "checkov failed {} checks over terraform/ (fix them, or skip one in terraform/.checkov.yaml with its reason):\n{}",
        failed.len(),
        failed.join("\n")
    );
}

#[test]
fn every_skipped_check_has_a_reason_and_is_needed() {
    let yaml = std::fs::read_to_string(terraform_dir().join(".checkov.yaml")).unwrap();
    let skipped = skipped_checks(&yaml);
    assert!(
        !skipped.is_empty(),
        ".checkov.yaml lists its skipped checks under skip-check"
    );
    for (id, reason) in &skipped {
        assert!(id.starts_with("CKV"), "{id:?} is not a checkov check id");
        assert!(
            reason.len() >= 40,
            "skipped check {id} needs its reason as a comment on its line, got {reason:?}"
        );
    }
    let ids: BTreeSet<&str> = skipped.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(ids.len(), skipped.len(), "a check is skipped twice");
    // The one place: no inline `checkov:skip` comments anywhere else.
    for file in tf_files(&terraform_dir()) {
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(
            !text.contains("checkov:skip"),
            "{}: skip checks in terraform/.checkov.yaml only",
            file.display()
        );
    }
    // A skip that nothing fails any more is stale.
    let failing: BTreeSet<String> = failed_checks(&checkov(false))
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    let stale: Vec<&&str> = ids.iter().filter(|id| !failing.contains(**id)).collect();
    assert!(
        stale.is_empty(),
        "skipped checks that no resource fails any more: {stale:?}"
    );
}

// ---------------------------------------------------------------------------------
// 3. Consistency between the code and the infrastructure.

/// The crates under `functions/` are the one list of the functions; every other list
/// of them (the Makefile's, the test harness's, the emulator's fixtures, the cold-start
/// bench's, Terraform's output) names exactly those, so that none is forgotten.
#[test]
fn every_list_of_the_functions_names_exactly_the_function_crates() {
    let root = repo_root();
    let read = |path: &str| std::fs::read_to_string(root.join(path)).unwrap();
    let crates = function_crates(&root);
    let makefile: BTreeSet<String> = read("Makefile")
        .lines()
        .find_map(|l| l.strip_prefix("FUNCTIONS :="))
        .expect("the Makefile's FUNCTIONS")
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    let harness: BTreeSet<String> = session_tests::FUNCTIONS.map(str::to_owned).into();
    // `("name", &["dynamodb", ...]),`: the first string of each entry.
    let bench: BTreeSet<String> = read("tests/coldstart/benches/coldstart.rs")
        .lines()
        .skip_while(|l| !l.starts_with("const FUNCTIONS"))
        .take_while(|l| *l != "];")
        .filter_map(|l| l.trim_start().strip_prefix("(\"")?.split('"').next())
        .map(str::to_owned)
        .collect();
    let outputs = read("terraform/outputs.tf");
    let output: BTreeSet<String> = outputs
        .split("output \"function_names\"")
        .nth(1)
        .expect("the function_names output")
        .lines()
        .take_while(|l| l.trim() != "}")
        .filter_map(|l| {
            l.split_once("= module.")
                .map(|(key, _)| key.trim().trim_matches('"').to_owned())
        })
        .collect();
    // The emulator registers the functions moto's Step Functions and EventBridge
    // invoke; the api is reached through the local HTTP API, never through moto.
    let mut fixtures: BTreeSet<String> = read("tests/harness/provision.py")
        .lines()
        .find_map(|l| l.strip_prefix("FUNCTIONS = ["))
        .expect("provision.py's FUNCTIONS, on one line")
        .split('"')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect();
    fixtures.insert("api".to_owned());
    for (list, names) in [
        ("Makefile FUNCTIONS", makefile),
        ("session_tests::FUNCTIONS", harness),
        ("the cold-start bench's FUNCTIONS", bench),
        ("terraform/outputs.tf function_names", output),
        (
            "tests/harness/provision.py FUNCTIONS, and the api",
            fixtures,
        ),
    ] {
        assert_eq!(names, crates, "{list} against functions/*");
    }
}

#[test]
fn each_function_crate_is_exactly_one_lambda_and_each_lambda_a_crate() {
    let root = repo_root();
    let config = Module::load(&terraform_dir());
    let crates = function_crates(&root);
    assert!(
        crates.len() >= 6,
        "functions/ holds the lifecycle functions: {crates:?}"
    );

    let calls = config.function_calls();
    let mut deployed = BTreeMap::<String, Vec<String>>::new();
    for call in &calls {
        let name = call
            .crate_name()
            .unwrap_or_else(|| panic!("module.{}: crate must be a literal", call.label));
        assert_eq!(
            call.label,
            name.replace('-', "_"),
            "module.{} deploys crate {name}: name it after the crate",
            call.label
        );
        deployed
            .entry(name.to_owned())
            .or_default()
            .push(call.label.clone());
    }
    for (name, labels) in &deployed {
        assert_eq!(
            labels.len(),
            1,
            "crate {name} is deployed by several modules: {labels:?}"
        );
    }
    let deployed: BTreeSet<String> = deployed.into_keys().collect();
    assert_eq!(
        deployed, crates,
        "every crate under functions/ with a main.rs must be deployed by one `module \"<crate>\" {{ source = \"{FUNCTION_MODULE}\" }}` in terraform/, and nothing else"
    );

    // The module itself makes exactly one function, and no other Lambda exists.
    let module = Module::load(&terraform_dir().join("modules/function"));
    let lambdas = module.resources("resource", "aws_lambda_function");
    assert_eq!(
        lambdas.len(),
        1,
        "the function module makes exactly one Lambda function"
    );
    for meta in ["count", "for_each"] {
        assert!(
            attr(lambdas[0].1.body(), meta).is_none(),
            "the function module's Lambda must not use {meta}"
        );
    }
    assert!(
        config
            .resources("resource", "aws_lambda_function")
            .is_empty(),
        "Lambdas are made only through the function module"
    );
    assert!(
        config
            .blocks("module")
            .all(
                |b| attr(b.body(), "source").and_then(literal) == Some(FUNCTION_MODULE)
                    && attr(b.body(), "count").is_none()
                    && attr(b.body(), "for_each").is_none()
            ),
        "every module call is one function (no count, no for_each, no other module)"
    );
}

#[test]
fn each_function_gets_exactly_the_environment_its_config_reads() {
    let root = repo_root();
    let config = Module::load(&terraform_dir());
    let locals = config.locals();
    let code = Config::load(&root);
    let mut problems = Vec::new();
    for call in config.function_calls() {
        let name = call.crate_name().unwrap().to_owned();
        let main = parse_rust(&root.join("functions").join(&name).join("src/main.rs"));
        let read: BTreeSet<String> = code
            .read_by(&main)
            .into_iter()
            .filter(|v| !is_dev_auth(v))
            .collect();
        let set = call
            .environment(&locals)
            .unwrap_or_else(|e| panic!("module.{}: {e}", call.label));
        let unset: Vec<_> = read.difference(&set).collect();
        let unread: Vec<_> = set.difference(&read).collect();
        if !unset.is_empty() || !unread.is_empty() {
            problems.push(format!(
                "{name}: read but not set {unset:?}; set but never read {unread:?}"
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "environment of the functions:\n{}",
        problems.join("\n")
    );
}

#[test]
fn the_readme_configuration_table_names_each_variable_with_exactly_its_readers() {
    let root = repo_root();
    let config = Module::load(&terraform_dir());
    let code = Config::load(&root);
    let mut read: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut functions = BTreeSet::new();
    for call in config.function_calls() {
        let name = call.crate_name().unwrap().to_owned();
        let main = parse_rust(&root.join("functions").join(&name).join("src/main.rs"));
        for var in code.read_by(&main).into_iter().filter(|v| !is_dev_auth(v)) {
            read.entry(var).or_default().insert(name.clone());
        }
        functions.insert(name);
    }
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let mut documented: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (vars, readers) in readme_configuration(&readme, &functions) {
        let unknown: Vec<_> = readers.difference(&functions).collect();
        assert!(
            unknown.is_empty(),
            "{vars:?} read by no such function {unknown:?}"
        );
        for var in vars {
            documented
                .entry(var)
                .or_default()
                .extend(readers.iter().cloned());
        }
    }
    assert_eq!(
        documented, read,
        "README's configuration table (left) against what each function reads (right)"
    );
}

#[test]
fn the_readme_function_table_lists_exactly_the_functions() {
    let config = Module::load(&terraform_dir());
    let functions: BTreeSet<String> = config
        .function_calls()
        .iter()
        .map(|call| call.crate_name().unwrap().to_owned())
        .collect();
    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
    let table = readme
        .split("| function | state | what it does |")
        .nth(1)
        .expect("the README's function table");
    let listed: BTreeSet<String> = table
        .lines()
        .skip(2)
        .take_while(|line| line.starts_with('|'))
        .filter_map(|line| line.split('`').nth(1).map(str::to_owned))
        .collect();
    assert_eq!(listed, functions);
}

#[test]
fn the_config_groups_vars_name_what_they_read() {
    use session_core::config::{AdmissionSettings, ApiSettings, Cluster, LaunchSettings, Tables};
    let code = Config::load(&repo_root());
    let set = |vars: &[&str]| vars.iter().map(|v| v.to_string()).collect::<BTreeSet<_>>();
    // The parser agrees with the constants the code exports...
    assert_eq!(code.vars["Tables"], set(Tables::VARS));
    assert_eq!(code.vars["Cluster"], set(Cluster::VARS));
    assert_eq!(code.vars["LaunchSettings"], set(LaunchSettings::VARS));
    assert_eq!(code.vars["AdmissionSettings"], set(AdmissionSettings::VARS));
    assert_eq!(code.vars["ApiSettings"], set(ApiSettings::VARS));
    // ...and each group's VARS are exactly what its from_source reads.
    for (group, vars) in &code.vars {
        let reads = &code.reads[&format!("{group}::from_source")];
        assert_eq!(
            reads, vars,
            "{group}::VARS must list exactly the variables {group}::from_source reads"
        );
    }
}

#[test]
fn each_function_role_grants_exactly_the_aws_actions_its_code_calls() {
    let root = repo_root();
    let config = Module::load(&terraform_dir());
    let core = core_index(&root);
    let adapters = Adapters::load(&root.join("functions/session-aws/src"));
    let mut problems = Vec::new();
    for call in config.function_calls() {
        let name = call.crate_name().unwrap().to_owned();
        let main = parse_rust(&root.join("functions").join(&name).join("src/main.rs"));
        let index = function_index(&core, &root, &name);
        let called =
            actions_called(&main, &index, &adapters).unwrap_or_else(|e| panic!("{name}: {e}"));
        let granted = call
            .granted()
            .unwrap_or_else(|e| panic!("module.{}: {e}", call.label));
        let missing: Vec<_> = called.difference(&granted).collect();
        let extra: Vec<_> = granted.difference(&called).collect();
        if !missing.is_empty() || !extra.is_empty() {
            problems.push(format!(
                "{name}: called but not granted {missing:?}; granted but never called {extra:?}"
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "IAM of the functions:\n{}",
        problems.join("\n")
    );
}

#[test]
fn the_function_module_adds_only_what_the_lambda_runtime_needs() {
    let module = Module::load(&terraform_dir().join("modules/function"));
    let documents = module.resources("data", "aws_iam_policy_document");
    let (_, policy) = documents
        .iter()
        .find(|(name, _)| *name == "this")
        .expect("the function module's policy is data.aws_iam_policy_document.this");
    let runtime: BTreeSet<String> = document_statements(policy)
        .into_iter()
        .flat_map(|s| s.actions)
        .collect();
    let allowed: BTreeSet<String> = RUNTIME_ACTIONS.iter().map(|s| s.to_string()).collect();
    assert!(runtime.is_subset(&allowed), "the function module grants {runtime:?}; beyond the runtime's needs {allowed:?} a function gets only its own statements");
    // The caller's statements are passed through, and are the role's only other policy.
    let dynamic = policy
        .body()
        .blocks()
        .filter(|b| b.identifier() == "dynamic")
        .filter_map(|b| attr(b.body(), "for_each"))
        .any(|e| e.to_string() == "var.statements");
    assert!(dynamic, "the function module's policy holds var.statements");
    assert_eq!(module.resources("resource", "aws_iam_role_policy").len(), 1);
    for config in [&module, &Module::load(&terraform_dir())] {
        assert!(
            config
                .resources("resource", "aws_iam_role_policy_attachment")
                .is_empty(),
            "{}: no managed policies",
            config.dir.display()
        );
    }
}

#[test]
fn the_state_machine_names_only_our_functions_and_may_invoke_nothing_else() {
    let root = repo_root();
    let config = Module::load(&terraform_dir());
    let modules: BTreeMap<String, String> = config
        .function_calls()
        .iter()
        .map(|c| (c.crate_name().unwrap().to_owned(), c.label.clone()))
        .collect();
    let machines = config.resources("resource", "aws_sfn_state_machine");
    assert!(!machines.is_empty(), "terraform/ deploys the state machine");

    let mut deployed_files = BTreeSet::new();
    let mut invoked = BTreeSet::new();
    for (name, machine) in &machines {
        let Some(Expression::FuncCall(call)) = attr(machine.body(), "definition") else {
            panic!("aws_sfn_state_machine.{name}: definition must be templatefile(<statemachine/...>, {{...}})");
        };
        assert_eq!(
            call.name.name.as_str(),
            "templatefile",
            "aws_sfn_state_machine.{name}"
        );
        let path = call.args[0].to_string();
        let file = path
            .split("../statemachine/")
            .nth(1)
            .map(|f| f.trim_end_matches('"'))
            .unwrap_or_else(|| panic!("aws_sfn_state_machine.{name}: the definition comes from statemachine/, got {path}"));
        deployed_files.insert(file.to_owned());
        let definition: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(root.join("statemachine").join(file)).unwrap(),
        )
        .unwrap();
        let Expression::Object(vars) = &call.args[1] else {
            panic!("templatefile's variables must be an object")
        };
        let bound: BTreeMap<String, String> = vars
            .iter()
            .map(|(k, v)| (object_key(k), v.to_string()))
            .collect();
        let named = functions_named(&definition);
        let expected: BTreeMap<String, String> = named
            .iter()
            .map(|f| {
                let label = modules.get(f).unwrap_or_else(|| {
                    panic!("{file} names function {f}, which terraform/ does not deploy")
                });
                (
                    format!("{}_arn", f.replace('-', "_")),
                    format!("module.{label}.arn"),
                )
            })
            .collect();
        assert_eq!(
            bound, expected,
            "{file}: each placeholder bound to our function's ARN, and no other variable"
        );
        invoked.extend(expected.into_values());
    }
    let files: BTreeSet<String> = definitions(&root)
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        deployed_files, files,
        "every definition under statemachine/ is deployed"
    );

    // The state machine's role: lambda:InvokeFunction on exactly those functions.
    let role_policies = config.resources("data", "aws_iam_policy_document");
    let (_, lifecycle) = role_policies
        .iter()
        .find(|(n, _)| *n == "lifecycle")
        .expect("the state machine role's policy is data.aws_iam_policy_document.lifecycle");
    let statements = document_statements(lifecycle);
    let invokes: BTreeSet<String> = statements
        .iter()
        .filter(|s| s.actions.iter().any(|a| a.starts_with("lambda:")))
        .flat_map(|s| {
            assert_eq!(
                s.actions,
                BTreeSet::from(["lambda:InvokeFunction".to_owned()]),
                "the state machine only invokes"
            );
            s.resources.clone()
        })
        .collect();
    assert_eq!(
        invokes, invoked,
        "the state machine may invoke exactly the functions its definition names"
    );
}

#[test]
fn the_api_routes_in_terraform_are_exactly_the_route_keys_the_function_serves() {
    let config = Module::load(&terraform_dir());
    let mut deployed = route_keys(&config).unwrap_or_else(|e| panic!("{e}"));
    deployed.sort();
    let mut served: Vec<String> = api::Route::KEYS.iter().map(|k| k.to_string()).collect();
    served.sort();
    assert_eq!(
        deployed, served,
        "the aws_apigatewayv2_route resources of terraform/ must declare each of api::Route::KEYS (functions/api/src/route.rs) once, and nothing else"
    );
}

#[test]
fn every_api_route_requires_a_jwt_and_goes_to_the_api_function() {
    let config = Module::load(&terraform_dir());
    let authorizers = config.resources("resource", "aws_apigatewayv2_authorizer");
    let [(authorizer, jwt)] = authorizers.as_slice() else {
        panic!("terraform/ has one authorizer, got {}", authorizers.len())
    };
    assert_eq!(
        attr(jwt.body(), "authorizer_type").and_then(literal),
        Some("JWT")
    );

    // Each integration's target, by how a route names it.
    let api_module = config
        .function_calls()
        .into_iter()
        .find(|c| c.crate_name() == Some("api"))
        .expect("terraform/ deploys the api function")
        .label;
    let integrations = config.resources("resource", "aws_apigatewayv2_integration");
    assert!(!integrations.is_empty(), "the routes need an integration");
    for (name, integration) in &integrations {
        let body = integration.body();
        let get =
            |key| attr(body, key).map(|e| literal(e).map_or_else(|| e.to_string(), str::to_owned));
        assert_eq!(
            get("integration_type").as_deref(),
            Some("AWS_PROXY"),
            "{name}"
        );
        assert_eq!(
            get("payload_format_version").as_deref(),
            Some("2.0"),
            "{name}: the api reads payload 2.0"
        );
        assert_eq!(
            get("integration_uri"),
            Some(format!("module.{api_module}.invoke_arn")),
            "aws_apigatewayv2_integration.{name} must invoke the api function"
        );
    }
    let targets: BTreeSet<String> = integrations
        .iter()
        .map(|(name, _)| format!("\"integrations/${{aws_apigatewayv2_integration.{name}.id}}\""))
        .collect();
    let routes = config.resources("resource", "aws_apigatewayv2_route");
    assert!(!routes.is_empty(), "terraform/ deploys the API's routes");
    for (name, route) in &routes {
        let body = route.body();
        assert_eq!(
            attr(body, "authorization_type").and_then(literal),
            Some("JWT"),
            "aws_apigatewayv2_route.{name}: every route requires a JWT"
        );
        assert_eq!(
            attr(body, "authorizer_id").map(ToString::to_string),
            Some(format!("aws_apigatewayv2_authorizer.{authorizer}.id")),
            "aws_apigatewayv2_route.{name}"
        );
        let target = attr(body, "target")
            .map(ToString::to_string)
            .unwrap_or_default();
        assert!(
            targets.contains(&target),
            "aws_apigatewayv2_route.{name}: target {target} is not an integration of the api function"
        );
    }

    // API Gateway may invoke the api function, from this API only.
    let permissions: Vec<_> = config
        .resources("resource", "aws_lambda_permission")
        .into_iter()
        .filter(|(_, p)| {
            attr(p.body(), "function_name").map(ToString::to_string)
                == Some(format!("module.{api_module}.function_name"))
        })
        .collect();
    let [(name, permission)] = permissions.as_slice() else {
        panic!(
            "one aws_lambda_permission lets API Gateway invoke the api, got {}",
            permissions.len()
        )
    };
    let body = permission.body();
    assert_eq!(
        attr(body, "action").and_then(literal),
        Some("lambda:InvokeFunction"),
        "{name}"
    );
    assert_eq!(
        attr(body, "principal").and_then(literal),
        Some("apigateway.amazonaws.com"),
        "{name}"
    );
    let source = attr(body, "source_arn")
        .map(ToString::to_string)
        .unwrap_or_default();
    assert!(
        source.starts_with("\"${aws_apigatewayv2_api.sessions.execution_arn}/"),
        "aws_lambda_permission.{name}: source_arn must be within the API's execution ARN, got {source}"
    );
}

#[test]
fn pass_role_is_only_for_the_task_roles_to_ecs_tasks() {
    let config = Module::load(&terraform_dir());
    let mut statements: Vec<Statement> = config
        .function_calls()
        .iter()
        .flat_map(|c| c.statements().unwrap())
        .collect();
    for dir in [terraform_dir(), terraform_dir().join("modules/function")] {
        for (_, doc) in Module::load(&dir).resources("data", "aws_iam_policy_document") {
            statements.extend(document_statements(doc));
        }
    }
    assert!(
        statements
            .iter()
            .any(|s| s.actions.contains("iam:PassRole")),
        "launch passes the task roles"
    );
    let wrong: Vec<String> = statements.iter().filter_map(wrong_pass_role).collect();
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    let wildcard: Vec<&Statement> = statements
        .iter()
        .filter(|s| s.actions.iter().any(|a| a.ends_with('*')))
        .filter(|s| s.sid.as_deref() != Some("TlsOnly"))
        .collect();
    assert!(wildcard.is_empty(), "wildcard actions: {wildcard:?}");
}

#[test]
fn every_wildcard_resource_says_why() {
    let mut problems = Vec::new();
    for file in tf_files(&terraform_dir()) {
        for line in unexplained_wildcards(&std::fs::read_to_string(&file).unwrap()) {
            problems.push(format!("{}:{line}", file.display()));
        }
    }
    assert!(
        problems.is_empty(),
        "resources = [\"*\"] needs a comment saying why nothing narrower works:\n{}",
        problems.join("\n")
    );
}

#[test]
fn the_default_session_template_is_the_codes_default() {
    use session_core::template::SessionTemplate;
    let json = std::fs::read_to_string(terraform_dir().join("session_template.json")).unwrap();
    let template = SessionTemplate::from_json(&json)
        .expect("terraform/session_template.json is a valid template");
    assert_eq!(
        template,
        SessionTemplate::default(),
        "terraform/session_template.json must equal SessionTemplate::default()"
    );
}

#[test]
fn the_dashboard_and_alarms_read_exactly_the_metrics_the_code_emits() {
    // The string constants of metrics.rs: NAMESPACE and the metric names.
    let file = parse_rust(&repo_root().join("functions/session-core/src/metrics.rs"));
    let mut constants = BTreeMap::new();
    for item in &file.items {
        if let syn::Item::Const(c) = item {
            if let syn::Expr::Lit(syn::ExprLit {
                lit: syn::Lit::Str(s),
                ..
            }) = c.expr.as_ref()
            {
                constants.insert(c.ident.to_string(), s.value());
            }
        }
    }
    let namespace = constants
        .remove("NAMESPACE")
        .expect("metrics.rs names its NAMESPACE");
    let emitted: BTreeSet<String> = constants.into_values().collect();

    let config = Module::load(&terraform_dir());
    let Some(Expression::Object(metrics)) = config.locals().remove("metrics") else {
        panic!("monitoring.tf names the metrics it reads in local.metrics");
    };
    let mut read: BTreeMap<String, String> = metrics
        .iter()
        .map(|(k, v)| {
            (
                object_key(k),
                literal(v).expect("metric names are literals").to_owned(),
            )
        })
        .collect();
    assert_eq!(
        read.remove("namespace").as_ref(),
        Some(&namespace),
        "local.metrics.namespace"
    );
    let read: BTreeSet<String> = read.into_values().collect();
    assert_eq!(
        read, emitted,
        "local.metrics in monitoring.tf must name exactly the metrics of metrics.rs"
    );
}

// ---------------------------------------------------------------------------------
// 4. No deployment setting turns on a development-only authentication mode.

#[test]
fn no_setting_can_turn_on_development_authentication() {
    let mut mentions = Vec::new();
    let mut dirs = vec![terraform_dir()];
    while let Some(dir) = dirs.pop() {
        for path in std::fs::read_dir(&dir).unwrap().flatten().map(|e| e.path()) {
            if path.is_dir() {
                dirs.push(path);
            } else {
                let text = std::fs::read_to_string(&path).unwrap_or_default();
                mentions.extend(
                    dev_auth_mentions(&text)
                        .into_iter()
                        .map(|l| format!("{}: {l}", path.display())),
                );
            }
        }
    }
    assert!(
        mentions.is_empty(),
        "terraform/ must not be able to set a development-only authentication mode:\n{}",
        mentions.join("\n")
    );

    // Neither through a variable nor through any function's environment.
    let config = Module::load(&terraform_dir());
    for variable in config.blocks("variable") {
        assert!(
            !is_dev_auth(variable.labels()[0].as_str()),
            "variable {}",
            variable.labels()[0].as_str()
        );
    }
    let locals = config.locals();
    for call in config.function_calls() {
        for key in call.environment(&locals).unwrap() {
            assert!(!is_dev_auth(&key), "{}: {key}", call.label);
        }
    }
}

// ---------------------------------------------------------------------------------
// 5. The provider schemas, and references.

fn schemas() -> schema::Schemas {
    schema::Schemas::load(&tools_dir())
}

/// terraform/ and the modules its calls reach, by their `source`.
fn configuration() -> (Module, BTreeMap<String, Module>) {
    let root = Module::load(&terraform_dir());
    let children = root
        .blocks("module")
        .filter_map(|b| attr(b.body(), "source").and_then(literal))
        .filter(|s| s.starts_with("./") || s.starts_with("../"))
        .map(|s| (s.to_owned(), Module::load(&terraform_dir().join(s))))
        .collect();
    (root, children)
}

/// The providers a module requires and the version constraint on each.
fn required_providers(module: &Module) -> BTreeMap<String, (String, String)> {
    module
        .blocks("terraform")
        .flat_map(|t| t.body().blocks())
        .filter(|b| b.identifier() == "required_providers")
        .flat_map(|b| b.body().attributes())
        .filter_map(|a| {
            let Expression::Object(o) = a.expr() else {
                return None;
            };
            let get = |key: &str| {
                o.iter()
                    .find(|(k, _)| object_key(k) == key)
                    .and_then(|(_, v)| literal(v))
                    .unwrap_or_default()
                    .to_owned()
            };
            Some((a.key().to_owned(), (get("source"), get("version"))))
        })
        .collect()
}

#[test]
fn the_terraform_matches_the_aws_provider_schema() {
    let schemas = schemas();
    let (root, children) = configuration();
    let mut findings: Vec<String> = schema::findings(&root, &children, &schemas)
        .into_iter()
        .map(|f| format!("terraform/: {f}"))
        .collect();
    let mut checked = 0;
    for (source, module) in
        std::iter::once(("./", &root)).chain(children.iter().map(|(s, m)| (s.as_str(), m)))
    {
        if source != "./" {
            findings.extend(
                schema::findings(module, &BTreeMap::new(), &schemas)
                    .into_iter()
                    .map(|f| format!("terraform/{}: {f}", source.trim_start_matches("./"))),
            );
        }
        checked += module.blocks("resource").count() + module.blocks("data").count();
        // The schema checked against is one the module admits.
        for (name, (source_address, constraint)) in required_providers(module) {
            let Some(provider) = schemas.provider(&name) else {
                findings.push(format!("{source}: no schema of provider {name}"));
                continue;
            };
            if source_address != provider.source || !schema::admits(&constraint, &provider.version)
            {
                findings.push(format!(
                    "{source}: requires {name} = {source_address} {constraint}, but the schema checked is {} {}: pin a matching package in tools/npm",
                    provider.source, provider.version
                ));
            }
        }
    }
    assert!(
        checked > 50,
        "only {checked} resource and data blocks checked"
    );
    assert!(
        findings.is_empty(),
        "terraform/ against the providers' schemas ({} findings):\n{}",
        findings.len(),
        findings.join("\n")
    );
}

// ---------------------------------------------------------------------------------
// 6. Values AWS refuses only at apply time.

#[test]
fn the_terraform_holds_no_value_aws_refuses_at_apply() {
    let (root, children) = configuration();
    let report = refused::refused(&root, &children);
    // The names are known before apply, through var.name and the module calls: the
    // check is about values, not about nothing.
    let known = |what: &str| {
        report
            .checked
            .iter()
            .filter(|(_, w, v)| *w == what && v.text().is_some())
            .count()
    };
    let calls = root.function_calls().len();
    assert!(known("IAM role name") > calls, "{:?}", report.checked);
    assert_eq!(known("Lambda function name"), calls);
    for what in [
        "DynamoDB table or index name",
        "Step Functions state machine name",
        "EventBridge rule name",
        "CloudWatch Logs log group name",
        "ECS cluster name",
        "ECS task definition family",
        "ECS service name",
        "load balancer name",
        "target group name",
        "S3 bucket name prefix",
        "Secrets Manager secret name prefix",
        "security group name",
        "security group (rule) description",
    ] {
        assert!(known(what) > 0, "no {what} checked");
    }
    assert!(
        report.refused.is_empty(),
        "values AWS refuses at apply time (with var.name as long as its validation allows):\n{}",
        report.refused.join("\n")
    );
}

// ---------------------------------------------------------------------------------
// 7. What each access mode deploys.

/// The variables of a gateway-mode deployment (the required ones; the rest default).
fn gateway_mode() -> Vec<(&'static str, hcl::Value)> {
    let s = |v: &str| hcl::Value::from(v);
    vec![
        ("access_mode", s("gateway")),
        (
            "jwt_issuer",
            s("https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_AbCdEf012"),
        ),
        ("jwt_audience", hcl::Value::Array(vec![s("client")])),
        (
            "image_registry",
            s("111122223333.dkr.ecr.eu-west-1.amazonaws.com"),
        ),
        ("domain_name", s("sessions.example.com")),
        ("hosted_zone_id", s("Z0123456789ABCDEFGHIJ")),
        (
            "oidc_authorization_endpoint",
            s("https://login.example.com/oauth2/authorize"),
        ),
        (
            "oidc_token_endpoint",
            s("https://login.example.com/oauth2/token"),
        ),
        (
            "oidc_user_info_endpoint",
            s("https://login.example.com/oauth2/userInfo"),
        ),
        ("oidc_client_id", s("gateway-client")),
        ("oidc_client_secret", s("gateway-secret")),
        (
            "gateway_image",
            s("111122223333.dkr.ecr.eu-west-1.amazonaws.com/sessions-gateway:v1.0.0"),
        ),
    ]
}

/// The variables of a direct-mode deployment.
fn direct_mode() -> Vec<(&'static str, hcl::Value)> {
    let s = |v: &str| hcl::Value::from(v);
    vec![
        ("access_mode", s("direct")),
        (
            "jwt_issuer",
            s("https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_AbCdEf012"),
        ),
        ("jwt_audience", hcl::Value::Array(vec![s("client")])),
        (
            "image_registry",
            s("111122223333.dkr.ecr.eu-west-1.amazonaws.com"),
        ),
        (
            "allowed_cidrs",
            hcl::Value::Array(vec![s("203.0.113.0/24")]),
        ),
    ]
}

/// A mode's variables with some replaced (`null` unsets one).
fn with(
    mut vars: Vec<(&'static str, hcl::Value)>,
    changes: &[(&'static str, hcl::Value)],
) -> Vec<(&'static str, hcl::Value)> {
    for (name, value) in changes {
        vars.retain(|(n, _)| n != name);
        vars.push((name, value.clone()));
    }
    vars
}

/// The `resource` (or `ephemeral`: `kind`) blocks of `terraform/gateway.tf`, by type
/// and name.
fn gateway_resources(kind: &str) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(terraform_dir().join("gateway.tf")).unwrap();
    let body = hcl::parse(&text).unwrap();
    body.blocks()
        .filter(|b| b.identifier() == kind)
        .map(|b| {
            (
                b.labels()[0].as_str().to_owned(),
                b.labels()[1].as_str().to_owned(),
            )
        })
        .collect()
}

/// The instances of a resource, which must have been evaluated.
fn instances<'a>(plan: &'a plan::Plan, ty: &str, name: &str) -> &'a [plan::Instance] {
    plan.instances(ty, name)
        .unwrap_or_else(|| panic!("{ty}.{name}: its count or for_each does not evaluate"))
}

/// The one instance of a resource.
fn only<'a>(plan: &'a plan::Plan, ty: &str, name: &str) -> &'a plan::Instance {
    match instances(plan, ty, name) {
        [one] => one,
        other => panic!("{ty}.{name} has {} instances, not 1", other.len()),
    }
}

fn argument(
    plan: &plan::Plan,
    ty: &str,
    name: &str,
    instance: &plan::Instance,
    path: &[&str],
) -> Option<hcl::Value> {
    plan.argument(ty, name, instance, path)
        .unwrap_or_else(|e| panic!("{ty}.{name}.{}: {e}", path.join(".")))
}

/// The IDs the subnets of a group (`public`, `private`) get.
fn subnet_ids(plan: &plan::Plan, group: &str) -> Vec<String> {
    (0..instances(plan, "aws_subnet", group).len())
        .map(|i| format!("aws_subnet.{group}[{i}].id"))
        .collect()
}

fn strings_of(value: &hcl::Value) -> Vec<String> {
    value
        .as_array()
        .unwrap_or_else(|| panic!("{value:?} is not a list"))
        .iter()
        .map(|v| v.as_str().expect("a string").to_owned())
        .collect()
}

#[test]
fn in_gateway_mode_no_task_gets_a_public_ip() {
    let config = Module::load(&terraform_dir());
    let plan = plan::Plan::new(&config, &gateway_mode());
    let private = subnet_ids(&plan, "private");
    assert_eq!(
        private.len(),
        2,
        "a private subnet in each of the default two zones"
    );
    // The sessions' tasks: what Launch passes to RunTask.
    let launch = plan.module_argument("launch", "environment").unwrap();
    let launch = launch.as_object().unwrap();
    assert_eq!(launch["ASSIGN_PUBLIC_IP"], hcl::Value::from("false"));
    assert_eq!(launch["SUBNETS"], hcl::Value::from(private.join(",")));
    // The gateway's tasks.
    let service = only(&plan, "aws_ecs_service", "gateway");
    assert_eq!(
        argument(
            &plan,
            "aws_ecs_service",
            "gateway",
            service,
            &["network_configuration", "assign_public_ip"]
        ),
        Some(hcl::Value::Bool(false))
    );
    let subnets = argument(
        &plan,
        "aws_ecs_service",
        "gateway",
        service,
        &["network_configuration", "subnets"],
    )
    .unwrap();
    assert_eq!(strings_of(&subnets), private);
    // The private subnets reach out through the NAT gateway only, and no subnet hands
    // out public addresses.
    assert_eq!(instances(&plan, "aws_nat_gateway", "this").len(), 1);
    for group in ["public", "private"] {
        for subnet in instances(&plan, "aws_subnet", group) {
            let public = argument(
                &plan,
                "aws_subnet",
                group,
                subnet,
                &["map_public_ip_on_launch"],
            );
            assert!(
                public.is_none() || public == Some(hcl::Value::Bool(false)),
                "aws_subnet.{group} maps public IPs on launch"
            );
        }
    }

    // Direct mode is what turns public IPs on.
    let direct = plan::Plan::new(&config, &direct_mode());
    let launch = direct.module_argument("launch", "environment").unwrap();
    let launch = launch.as_object().unwrap();
    assert_eq!(launch["ASSIGN_PUBLIC_IP"], hcl::Value::from("true"));
    assert_eq!(
        launch["SUBNETS"],
        hcl::Value::from(subnet_ids(&direct, "public").join(","))
    );
    assert!(instances(&direct, "aws_subnet", "private").is_empty());
    assert!(instances(&direct, "aws_nat_gateway", "this").is_empty());
}

/// Every ingress rule of the session tasks' security group: (port, the security group
/// it admits, the address ranges it admits).
fn task_ingress(plan: &plan::Plan) -> Vec<(u64, Option<String>, Vec<String>)> {
    let tasks = hcl::Value::from("aws_security_group.tasks.id");
    let mut rules = Vec::new();
    for (ty, name, block, found) in plan.resources() {
        match ty {
            "aws_vpc_security_group_ingress_rule" => {
                for instance in found {
                    let get = |a: &str| argument(plan, ty, name, instance, &[a]);
                    if get("security_group_id").as_ref() != Some(&tasks) {
                        continue;
                    }
                    let ranges = ["cidr_ipv4", "cidr_ipv6", "prefix_list_id"]
                        .iter()
                        .filter_map(|a| get(a))
                        .filter(|v| !v.is_null())
                        .map(|v| v.as_str().unwrap_or("?").to_owned())
                        .collect();
                    let port = get("from_port").and_then(|p| p.as_u64()).unwrap();
                    assert_eq!(get("to_port").and_then(|p| p.as_u64()), Some(port));
                    let group = get("referenced_security_group_id")
                        .and_then(|g| g.as_str().map(str::to_owned));
                    rules.push((port, group, ranges));
                }
            }
            // The other ways to write ingress: none may touch the tasks' group.
            "aws_security_group_rule" => {
                for instance in found {
                    let group = argument(plan, ty, name, instance, &["security_group_id"]);
                    assert_ne!(
                        group,
                        Some(tasks.clone()),
                        "{ty}.{name}: use aws_vpc_security_group_ingress_rule"
                    );
                }
            }
            "aws_security_group" if name == "tasks" => {
                let body = block.body();
                assert!(
                    attr(body, "ingress").is_none()
                        && body.blocks().all(|b| b.identifier() != "ingress"
                            && !(b.identifier() == "dynamic"
                                && b.labels().first().is_some_and(|l| l.as_str() == "ingress"))),
                    "aws_security_group.tasks must not hold inline ingress rules"
                );
            }
            _ => {}
        }
    }
    rules.sort();
    rules
}

#[test]
fn in_gateway_mode_the_session_ports_admit_only_the_gateway() {
    let config = Module::load(&terraform_dir());
    let plan = plan::Plan::new(&config, &gateway_mode());
    let ports: Vec<u64> = plan
        .local("session_ports")
        .expect("local.session_ports evaluates")
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_u64().unwrap())
        .collect();
    assert_eq!(
        ports,
        vec![8000, 3000, 3030],
        "the default template's ports"
    );
    let rules = task_ingress(&plan);
    let mut expected: Vec<_> = ports
        .iter()
        .map(|p| {
            (
                *p,
                Some("aws_security_group.gateway[0].id".to_owned()),
                Vec::<String>::new(),
            )
        })
        .collect();
    expected.sort();
    assert_eq!(
        rules, expected,
        "each session port admits the gateway's security group and no address range"
    );
    // The gateway's group is the load balancer's only way in, and the gateway's tasks
    // are its only members.
    let service = only(&plan, "aws_ecs_service", "gateway");
    let groups = argument(
        &plan,
        "aws_ecs_service",
        "gateway",
        service,
        &["network_configuration", "security_groups"],
    )
    .unwrap();
    assert_eq!(strings_of(&groups), ["aws_security_group.gateway[0].id"]);

    // In direct mode the ports admit allowed_cidrs, and nothing else.
    let direct = plan::Plan::new(&config, &direct_mode());
    let mut expected: Vec<_> = ports
        .iter()
        .map(|p| (*p, None, vec!["203.0.113.0/24".to_owned()]))
        .collect();
    expected.sort();
    assert_eq!(task_ingress(&direct), expected);
}

#[test]
fn a_session_port_open_to_an_address_range_is_found() {
    let config = Module::parse(
        r#"
        resource "aws_security_group" "tasks" {}
        resource "aws_security_group" "gateway" {
          count = 1
        }
        resource "aws_vpc_security_group_ingress_rule" "from_gateway" {
          security_group_id            = aws_security_group.tasks.id
          from_port                    = 8000
          to_port                      = 8000
          referenced_security_group_id = aws_security_group.gateway[0].id
        }
        resource "aws_vpc_security_group_ingress_rule" "open" {
          security_group_id = aws_security_group.tasks.id
          from_port         = 3000
          to_port           = 3000
          cidr_ipv4         = "0.0.0.0/0"
        }
        resource "aws_vpc_security_group_ingress_rule" "elsewhere" {
          security_group_id = aws_security_group.gateway[0].id
          from_port         = 443
          to_port           = 443
          cidr_ipv4         = "0.0.0.0/0"
        }
        "#,
    );
    let plan = plan::Plan::new(&config, &[]);
    assert_eq!(
        task_ingress(&plan),
        vec![
            (3000, None, vec!["0.0.0.0/0".to_owned()]),
            (
                8000,
                Some("aws_security_group.gateway[0].id".to_owned()),
                vec![]
            ),
        ]
    );
}

#[test]
fn in_direct_mode_nothing_of_the_gateway_exists() {
    let config = Module::load(&terraform_dir());
    let gateway = plan::Plan::new(&config, &gateway_mode());
    let direct = plan::Plan::new(&config, &direct_mode());
    let resources = gateway_resources("resource");
    assert!(resources.len() > 20, "gateway.tf: {resources:?}");
    for (ty, name) in &resources {
        assert!(
            !instances(&gateway, ty, name).is_empty(),
            "{ty}.{name} is made in gateway mode"
        );
        assert!(
            instances(&direct, ty, name).is_empty(),
            "{ty}.{name} is made in direct mode"
        );
    }
    // The sign-in key's password is not even asked for in direct mode.
    let ephemeral = gateway_resources("ephemeral");
    assert!(
        !ephemeral.is_empty(),
        "gateway.tf: the sign-in key's password"
    );
    for (ty, name) in &ephemeral {
        let made = |plan: &plan::Plan| {
            plan.ephemeral_instances(ty, name)
                .unwrap_or_else(|| panic!("ephemeral.{ty}.{name}: its count does not evaluate"))
                .len()
        };
        assert!(made(&gateway) > 0, "ephemeral.{ty}.{name} in gateway mode");
        assert_eq!(made(&direct), 0, "ephemeral.{ty}.{name} in direct mode");
    }
    // The new pieces of the sign-in on one login host among them.
    for (ty, name) in [
        ("aws_lb_listener_rule", "gateway_login"),
        ("aws_secretsmanager_secret", "gateway_sign_in_key"),
        ("aws_secretsmanager_secret_version", "gateway_sign_in_key"),
    ] {
        assert!(
            resources.contains(&(ty.to_owned(), name.to_owned())),
            "gateway.tf: {ty}.{name}"
        );
    }
    for (ty, name) in [
        ("aws_vpc_security_group_ingress_rule", "tasks_from_gateway"),
        ("aws_eip", "nat"),
        ("aws_route_table", "private"),
    ] {
        assert!(instances(&direct, ty, name).is_empty(), "{ty}.{name}");
    }
}

#[test]
fn behind_the_gateway_no_function_role_may_call_ec2() {
    let config = Module::load(&terraform_dir());
    let gateway = plan::Plan::new(&config, &gateway_mode());
    let direct = plan::Plan::new(&config, &direct_mode());
    // Every action of a function module call's statements, evaluated for the mode.
    let actions = |plan: &plan::Plan, module: &str| -> BTreeSet<String> {
        let statements = plan
            .module_argument(module, "statements")
            .unwrap_or_else(|e| panic!("module.{module}: {e}"));
        let hcl::Value::Array(statements) = statements else {
            panic!("module.{module}: statements is {statements:?}");
        };
        statements
            .iter()
            .flat_map(|s| match s.as_object().and_then(|s| s.get("actions")) {
                Some(hcl::Value::Array(actions)) => actions.clone(),
                other => panic!("module.{module}: actions {other:?}"),
            })
            .map(|a| a.as_str().expect("an action name").to_owned())
            .collect()
    };
    let calls = config.function_calls();
    assert!(calls.len() >= 8, "function module calls: {}", calls.len());
    for call in &calls {
        let in_gateway_mode = actions(&gateway, &call.label);
        assert!(
            !in_gateway_mode.iter().any(|a| a.starts_with("ec2:")),
            "module.{} may call EC2 in gateway mode: {in_gateway_mode:?}",
            call.label
        );
    }
    // In direct mode the two functions that look up a task's public IP may.
    for module in ["wait_for_ip", "task_events"] {
        assert!(
            actions(&direct, module).contains("ec2:DescribeNetworkInterfaces"),
            "module.{module} in direct mode: {:?}",
            actions(&direct, module)
        );
    }
}

/// `test variable = values` of each `condition` of a policy document's statement.
fn statement_conditions(statement: &Body) -> BTreeMap<String, (String, Expression)> {
    statement
        .blocks()
        .filter(|b| b.identifier() == "condition")
        .map(|c| {
            let get = |k| attr(c.body(), k).unwrap_or_else(|| panic!("condition without {k}"));
            (
                literal(get("variable")).unwrap().to_owned(),
                (
                    literal(get("test")).unwrap().to_owned(),
                    get("values").clone(),
                ),
            )
        })
        .collect()
}

/// The attributes the gateway reads of a session: `gateway::sessions::ATTRIBUTES`.
fn gateway_reads() -> BTreeSet<String> {
    let file = parse_rust(&repo_root().join("gateway/src/sessions.rs"));
    let mut names = BTreeSet::new();
    for item in &file.items {
        if let syn::Item::Const(c) = item {
            if c.ident == "ATTRIBUTES" {
                collect_str_literals(&c.expr, &mut names);
            }
        }
    }
    assert!(
        !names.is_empty(),
        "gateway/src/sessions.rs lists the attributes it reads in `const ATTRIBUTES`"
    );
    names
}

#[test]
fn the_gateways_role_may_only_read_a_few_attributes_of_the_sessions_table() {
    let config = Module::load(&terraform_dir());
    let plan = plan::Plan::new(&config, &gateway_mode());
    // The task role the gateway runs with, and its one policy.
    let task = only(&plan, "aws_ecs_task_definition", "gateway");
    assert_eq!(
        argument(
            &plan,
            "aws_ecs_task_definition",
            "gateway",
            task,
            &["task_role_arn"]
        ),
        Some(hcl::Value::from("aws_iam_role.gateway_task[0].arn"))
    );
    let role = &config.resources("resource", "aws_iam_role");
    let (_, role) = role.iter().find(|(n, _)| *n == "gateway_task").unwrap();
    for inline in ["inline_policy", "managed_policy_arns"] {
        assert!(
            attr(role.body(), inline).is_none()
                && role.body().blocks().all(|b| b.identifier() != inline),
            "aws_iam_role.gateway_task: {inline}"
        );
    }
    let policies: Vec<_> = config
        .resources("resource", "aws_iam_role_policy")
        .into_iter()
        .filter(|(_, p)| {
            attr(p.body(), "role").map(ToString::to_string)
                == Some("aws_iam_role.gateway_task[0].id".to_owned())
        })
        .collect();
    let [(_, policy)] = policies.as_slice() else {
        panic!(
            "the gateway's task role has one policy, got {}",
            policies.len()
        )
    };
    assert_eq!(
        attr(policy.body(), "policy").map(ToString::to_string),
        Some("data.aws_iam_policy_document.gateway_task[0].json".to_owned())
    );

    // The document: GetItem on the sessions table, of the listed attributes only.
    let documents = config.resources("data", "aws_iam_policy_document");
    let (_, document) = documents
        .iter()
        .find(|(n, _)| *n == "gateway_task")
        .unwrap();
    let statements: Vec<&Block> = document
        .body()
        .blocks()
        .filter(|b| b.identifier() == "statement" || b.identifier() == "dynamic")
        .collect();
    let [statement] = statements.as_slice() else {
        panic!("the gateway's policy has one statement")
    };
    let body = statement.body();
    assert!(attr(body, "effect").is_none_or(|e| literal(e) == Some("Allow")));
    assert!(attr(body, "not_actions").is_none() && attr(body, "not_resources").is_none());
    assert_eq!(
        strings(attr(body, "actions").unwrap()).unwrap(),
        ["dynamodb:GetItem"]
    );
    assert_eq!(
        written(attr(body, "resources").unwrap()),
        ["aws_dynamodb_table.sessions.arn"]
    );
    let conditions = statement_conditions(body);
    assert_eq!(
        conditions.keys().map(String::as_str).collect::<Vec<_>>(),
        ["dynamodb:Attributes", "dynamodb:Select"]
    );
    let (test, values) = &conditions["dynamodb:Attributes"];
    assert_eq!(test, "ForAllValues:StringEquals");
    let attributes: BTreeSet<String> = strings_of(&plan.eval(None, values).unwrap())
        .into_iter()
        .collect();
    let mut read = gateway_reads();
    read.insert("session_id".to_owned());
    assert_eq!(
        attributes, read,
        "the policy allows exactly the attributes gateway::sessions::ATTRIBUTES names, and the key"
    );
    for secret in [
        "task_token",
        "stop_token",
        "task_arn",
        "execution_arn",
        "failure_cause",
    ] {
        assert!(!attributes.contains(secret), "{secret}");
    }
    let (test, values) = &conditions["dynamodb:Select"];
    assert!(
        test == "StringEquals" || test == "StringEqualsIfExists",
        "dynamodb:Select: {test}"
    );
    assert_eq!(
        strings_of(&plan.eval(None, values).unwrap()),
        ["SPECIFIC_ATTRIBUTES"]
    );
}

/// The `authenticate-oidc` settings of an action: sign-in with the provider, never
/// through without it, scope `openid`, the API's provider unless told otherwise.
fn assert_signs_in_with_the_provider(plan: &plan::Plan, action: &Body, at: &str) {
    assert_eq!(
        attr(action, "type").and_then(literal),
        Some("authenticate-oidc"),
        "{at}"
    );
    let oidc = action
        .blocks()
        .find(|b| b.identifier() == "authenticate_oidc")
        .unwrap_or_else(|| panic!("{at}: authenticate_oidc"))
        .body();
    assert_eq!(
        attr(oidc, "on_unauthenticated_request").and_then(literal),
        Some("authenticate"),
        "{at}: a request without a sign-in is sent to the identity provider, never through"
    );
    assert!(
        attr(oidc, "scope")
            .and_then(literal)
            .is_some_and(|s| s.split(' ').any(|s| s == "openid")),
        "{at}: scope openid"
    );
    // Same provider as the API's tokens unless told otherwise.
    let issuer = plan.eval(None, attr(oidc, "issuer").unwrap()).unwrap();
    assert_eq!(issuer, *plan.variable("jwt_issuer"), "{at}");
    for (argument, variable) in [
        ("authorization_endpoint", "oidc_authorization_endpoint"),
        ("token_endpoint", "oidc_token_endpoint"),
        ("user_info_endpoint", "oidc_user_info_endpoint"),
        ("client_id", "oidc_client_id"),
        ("client_secret", "oidc_client_secret"),
        ("session_timeout", "oidc_session_timeout_s"),
    ] {
        let value = plan.eval(None, attr(oidc, argument).unwrap()).unwrap();
        assert_eq!(value, *plan.variable(variable), "{at}: {argument}");
    }
}

/// An action (a `default_action` or a rule's `action`) that forwards to the gateway's
/// target group.
fn assert_forwards_to_the_gateway(action: &Body, at: &str) {
    assert_eq!(
        attr(action, "type").and_then(literal),
        Some("forward"),
        "{at}"
    );
    assert_eq!(
        attr(action, "target_group_arn")
            .map(ToString::to_string)
            .as_deref(),
        Some("aws_lb_target_group.gateway[0].arn"),
        "{at}"
    );
}

#[test]
fn only_the_login_host_signs_in_with_the_provider_and_every_other_host_goes_to_the_gateway() {
    let config = Module::load(&terraform_dir());
    let plan = plan::Plan::new(&config, &gateway_mode());
    assert!(
        config
            .resources("resource", "aws_alb_listener_rule")
            .is_empty()
            && config.resources("resource", "aws_alb_listener").is_empty(),
        "the listeners and their rules are aws_lb_listener and aws_lb_listener_rule"
    );
    let listeners = config.resources("resource", "aws_lb_listener");
    assert_eq!(listeners.len(), 2, "HTTPS, and HTTP redirecting to it");
    let lb_arn = "aws_lb.gateway[0].arn";
    let mut https = None;
    for (name, listener) in &listeners {
        let body = listener.body();
        assert_eq!(
            attr(body, "load_balancer_arn")
                .map(ToString::to_string)
                .as_deref(),
            Some(lb_arn),
            "aws_lb_listener.{name}"
        );
        let actions: Vec<&Body> = body
            .blocks()
            .filter(|b| b.identifier() == "default_action")
            .map(Block::body)
            .collect();
        let instance = only(&plan, "aws_lb_listener", name);
        let value = |path: &[&str]| argument(&plan, "aws_lb_listener", name, instance, path);
        match value(&["protocol"]).as_ref().and_then(|p| p.as_str()) {
            Some("HTTPS") => {
                assert_eq!(value(&["port"]), Some(hcl::Value::from(443u64)));
                let policy = value(&["ssl_policy"]).unwrap();
                assert!(
                    policy
                        .as_str()
                        .unwrap()
                        .starts_with("ELBSecurityPolicy-TLS13-"),
                    "TLS 1.3 policy, got {policy:?}"
                );
                // Every host the rules do not name goes to the gateway as it is: the
                // gateway signs session hosts in itself (its own cookie), and sends
                // a browser without one to the login host.
                let [forward] = actions.as_slice() else {
                    panic!("aws_lb_listener.{name}: one default action, forward")
                };
                assert_forwards_to_the_gateway(forward, &format!("aws_lb_listener.{name}"));
                https = Some(format!("aws_lb_listener.{name}[0].arn"));
            }
            Some("HTTP") => {
                let [only_action] = actions.as_slice() else {
                    panic!("aws_lb_listener.{name}: one action")
                };
                assert_eq!(
                    attr(only_action, "type").and_then(literal),
                    Some("redirect")
                );
                let redirect = only_action
                    .blocks()
                    .find(|b| b.identifier() == "redirect")
                    .unwrap()
                    .body();
                assert_eq!(attr(redirect, "protocol").and_then(literal), Some("HTTPS"));
            }
            other => panic!("aws_lb_listener.{name}: protocol {other:?}"),
        }
    }
    let https = https.expect("an HTTPS listener");

    // One rule: the login host, and only it, signs in with the provider, then forwards.
    let rules = config.resources("resource", "aws_lb_listener_rule");
    let [(name, rule)] = rules.as_slice() else {
        panic!("one listener rule, the login host's: {}", rules.len())
    };
    let at = format!("aws_lb_listener_rule.{name}");
    let instance = only(&plan, "aws_lb_listener_rule", name);
    assert_eq!(
        argument(
            &plan,
            "aws_lb_listener_rule",
            name,
            instance,
            &["listener_arn"]
        ),
        Some(hcl::Value::from(https.as_str())),
        "{at} is on the HTTPS listener"
    );
    let conditions: Vec<&Body> = rule
        .body()
        .blocks()
        .filter(|b| b.identifier() == "condition")
        .map(Block::body)
        .collect();
    let [condition] = conditions.as_slice() else {
        panic!("{at}: one condition, the host")
    };
    let kinds: Vec<&str> = condition.blocks().map(|b| b.identifier()).collect();
    assert_eq!(kinds, ["host_header"], "{at}: the host and nothing else");
    let hosts = plan
        .eval(
            Some(instance),
            attr(condition.blocks().next().unwrap().body(), "values").unwrap(),
        )
        .unwrap();
    assert_eq!(
        strings_of(&hosts),
        ["login.sessions.example.com"],
        "{at}: exactly the login host, login.{{domain_name}}"
    );
    let mut actions: Vec<&Body> = rule
        .body()
        .blocks()
        .filter(|b| b.identifier() == "action")
        .map(Block::body)
        .collect();
    let order = |a: &Body| {
        attr(a, "order")
            .and_then(|o| plan.eval(None, o).ok())
            .and_then(|o| o.as_u64())
            .unwrap_or_else(|| panic!("{at}: every action has its order"))
    };
    actions.sort_by_key(|a| order(a));
    let [sign_in, forward] = actions.as_slice() else {
        panic!("{at}: sign-in, then forward")
    };
    assert!(order(sign_in) < order(forward), "{at}: sign-in comes first");
    assert_signs_in_with_the_provider(&plan, sign_in, &at);
    assert_forwards_to_the_gateway(forward, &at);

    // The one callback URL the provider needs is the login host's, and the
    // certificate and the records cover that host.
    let callback = config
        .blocks("output")
        .find(|o| o.labels()[0].as_str() == "oidc_callback_url")
        .expect("output oidc_callback_url");
    assert_eq!(
        plan.eval(None, attr(callback.body(), "value").unwrap())
            .unwrap(),
        hcl::Value::from("https://login.sessions.example.com/oauth2/idpresponse")
    );
    let certificate = only(&plan, "aws_acm_certificate", "gateway");
    let names = argument(
        &plan,
        "aws_acm_certificate",
        "gateway",
        certificate,
        &["subject_alternative_names"],
    )
    .unwrap();
    assert!(strings_of(&names).contains(&"*.sessions.example.com".to_owned()));
    let record = only(&plan, "aws_route53_record", "gateway");
    assert_eq!(
        argument(&plan, "aws_route53_record", "gateway", record, &["name"]),
        Some(hcl::Value::from("*.sessions.example.com"))
    );
    // In direct mode there is no callback URL.
    let direct = plan::Plan::new(&config, &direct_mode());
    assert_eq!(
        direct
            .eval(None, attr(callback.body(), "value").unwrap())
            .unwrap(),
        hcl::Value::Null
    );

    // The gateway keeps an idle connection from the load balancer open longer than
    // the load balancer does, and accepts only this load balancer's signature.
    let lb = only(&plan, "aws_lb", "gateway");
    let idle = argument(&plan, "aws_lb", "gateway", lb, &["idle_timeout"])
        .and_then(|v| v.as_u64())
        .unwrap();
    let env = plan
        .local("gateway_env")
        .expect("local.gateway_env evaluates");
    let env = env.as_object().unwrap();
    let keep_alive: u64 = env["HEADER_READ_TIMEOUT_S"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        keep_alive > idle,
        "HEADER_READ_TIMEOUT_S {keep_alive} s vs idle_timeout {idle} s"
    );
    assert_eq!(env["ALB_ARN"], hcl::Value::from(lb_arn));
    assert_eq!(
        argument(
            &plan,
            "aws_lb",
            "gateway",
            lb,
            &["drop_invalid_header_fields"]
        ),
        Some(hcl::Value::Bool(true))
    );
}

/// The `VARS` of `gateway/src/config.rs`.
fn gateway_config_vars() -> BTreeSet<String> {
    let file = parse_rust(&repo_root().join("gateway/src/config.rs"));
    let mut vars = BTreeSet::new();
    for item in &file.items {
        if let syn::Item::Impl(i) = item {
            for item in &i.items {
                if let syn::ImplItem::Const(c) = item {
                    if c.ident == "VARS" {
                        collect_str_literals(&c.expr, &mut vars);
                    }
                }
            }
        }
    }
    assert!(
        !vars.is_empty(),
        "gateway/src/config.rs lists what it reads in Config::VARS"
    );
    vars
}

/// Words that mark a variable's value as a secret, which only the container's
/// `secrets` may carry (read by ECS from Secrets Manager), never its plain
/// `environment` (written in the task definition, for anyone who may describe it).
const SECRET_WORDS: &[&str] = &["KEY", "SECRET", "PASSWORD", "TOKEN"];

/// Variable name -> its value, or where ECS reads it.
type Variables = BTreeMap<String, String>;

/// A container definition's variables: (plain `environment`, `secrets`). `Err` for a
/// secret in plain environment, or a name given twice.
fn container_variables(container: &serde_json::Value) -> Result<(Variables, Variables), String> {
    let read = |list: &str, field: &str| -> Result<Variables, String> {
        let mut out = BTreeMap::new();
        for entry in container[list].as_array().map_or(&[][..], Vec::as_slice) {
            let name = entry["name"]
                .as_str()
                .ok_or_else(|| format!("{list}: {entry}"))?;
            let value = entry[field]
                .as_str()
                .ok_or_else(|| format!("{list}: {entry}"))?;
            if out.insert(name.to_owned(), value.to_owned()).is_some() {
                return Err(format!("{name} is set twice in {list}"));
            }
        }
        Ok(out)
    };
    let environment = read("environment", "value")?;
    let secrets = read("secrets", "valueFrom")?;
    let plain: Vec<&String> = environment
        .keys()
        .filter(|name| {
            let upper = name.to_ascii_uppercase();
            SECRET_WORDS.iter().any(|w| upper.contains(w))
        })
        .collect();
    if !plain.is_empty() {
        return Err(format!(
            "secrets in plain environment (give them through `secrets`, from Secrets Manager): {plain:?}"
        ));
    }
    if let Some(both) = environment.keys().find(|n| secrets.contains_key(*n)) {
        return Err(format!("{both} is both in environment and in secrets"));
    }
    Ok((environment, secrets))
}

#[test]
fn a_secret_in_plain_environment_is_found() {
    let container = serde_json::json!({
        "environment": [
            { "name": "SESSIONS_TABLE", "value": "sessions" },
            { "name": "SIGN_IN_KEY", "value": "in clear in the task definition" }
        ],
        "secrets": [{ "name": "OTHER", "valueFrom": "arn:aws:secretsmanager:eu-west-1:111122223333:secret:x" }]
    });
    let refused = container_variables(&container).unwrap_err();
    assert!(refused.contains("SIGN_IN_KEY"), "{refused}");
    for name in ["API_TOKEN", "db_password", "CLIENT_SECRET"] {
        let container = serde_json::json!({ "environment": [{ "name": name, "value": "x" }] });
        assert!(container_variables(&container).is_err(), "{name}");
    }
    let twice = serde_json::json!({
        "environment": [{ "name": "A", "value": "1" }],
        "secrets": [{ "name": "A", "valueFrom": "arn" }]
    });
    assert!(container_variables(&twice).is_err());
    let good = serde_json::json!({
        "environment": [{ "name": "SESSIONS_TABLE", "value": "sessions" }],
        "secrets": [{ "name": "SIGN_IN_KEY", "valueFrom": "arn" }]
    });
    let (environment, secrets) = container_variables(&good).unwrap();
    assert_eq!(environment.keys().collect::<Vec<_>>(), ["SESSIONS_TABLE"]);
    assert_eq!(secrets.keys().collect::<Vec<_>>(), ["SIGN_IN_KEY"]);
}

/// The gateway's one container, as its task definition gives it in gateway mode.
fn gateway_container(plan: &plan::Plan) -> serde_json::Value {
    let task = only(plan, "aws_ecs_task_definition", "gateway");
    let definitions = argument(
        plan,
        "aws_ecs_task_definition",
        "gateway",
        task,
        &["container_definitions"],
    )
    .expect("container_definitions");
    let definitions: serde_json::Value =
        serde_json::from_str(definitions.as_str().unwrap()).unwrap();
    let [container] = definitions.as_array().unwrap().as_slice() else {
        panic!("the gateway task has one container")
    };
    container.clone()
}

#[test]
fn the_gateway_container_gets_only_variables_its_configuration_reads() {
    let config = Module::load(&terraform_dir());
    let plan = plan::Plan::new(&config, &gateway_mode());
    let container = gateway_container(&plan);
    assert_eq!(container["name"], "gateway");
    assert_eq!(
        container["image"],
        *"111122223333.dkr.ecr.eu-west-1.amazonaws.com/sessions-gateway:v1.0.0"
    );
    let (env, secrets) = container_variables(&container).unwrap_or_else(|e| panic!("{e}"));
    let set: BTreeSet<String> = env.keys().chain(secrets.keys()).cloned().collect();
    let read = gateway_config_vars();
    let unread: Vec<_> = set.difference(&read).collect();
    assert!(
        unread.is_empty(),
        "the gateway container gets variables gateway::config::Config::VARS does not list: {unread:?}"
    );
    // What it cannot start without.
    for required in [
        "SESSIONS_TABLE",
        "SESSION_DOMAIN",
        "ALB_ARN",
        "AWS_REGION",
        "SIGN_IN_KEY",
    ] {
        assert!(set.contains(required), "{required} is not set");
    }
    // The sign-in key comes from its secret, read when the task starts.
    assert_eq!(
        secrets.keys().collect::<Vec<_>>(),
        ["SIGN_IN_KEY"],
        "the container's secrets"
    );
    assert_eq!(
        secrets["SIGN_IN_KEY"],
        format!(
            "aws_secretsmanager_secret.gateway_sign_in_key[0].arn:::{}",
            "aws_secretsmanager_secret_version.gateway_sign_in_key[0].version_id"
        ),
        "SIGN_IN_KEY is the sign-in key secret's version that Terraform wrote"
    );
    assert_eq!(
        env.get("SIGN_IN_TTL_S").map(String::as_str),
        Some("28800"),
        "SIGN_IN_TTL_S is gateway_sign_in_ttl_s"
    );
    let ports: BTreeSet<u64> = container["portMappings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["containerPort"].as_u64().unwrap())
        .collect();
    let port_of = |listen: &str| listen.rsplit(':').next().unwrap().parse::<u64>().unwrap();
    assert_eq!(
        ports,
        BTreeSet::from([
            port_of(&env["GATEWAY_LISTEN"]),
            port_of(&env["GATEWAY_HEALTH_LISTEN"])
        ]),
        "the container maps exactly the ports the gateway listens on"
    );
    assert_eq!(env["SESSION_DOMAIN"], "sessions.example.com");
}

#[test]
fn the_console_calls_the_api_through_the_gateway_with_the_load_balancers_access_tokens() {
    let config = Module::load(&terraform_dir());
    let gateway = plan::Plan::new(&config, &gateway_mode());
    let (env, _) = container_variables(&gateway_container(&gateway)).unwrap();
    assert_eq!(
        env.get("API_URL").map(String::as_str),
        Some("aws_apigatewayv2_api.sessions.api_endpoint"),
        "the gateway forwards the console's calls to this API"
    );
    let audience = |plan: &plan::Plan| {
        let authorizer = only(plan, "aws_apigatewayv2_authorizer", "jwt");
        let audience = argument(
            plan,
            "aws_apigatewayv2_authorizer",
            "jwt",
            authorizer,
            &["jwt_configuration", "audience"],
        )
        .expect("jwt_configuration.audience");
        strings_of(&audience)
    };
    // The load balancer's client gets the access tokens the gateway passes on.
    assert_eq!(audience(&gateway), ["client", "gateway-client"]);
    let direct = plan::Plan::new(&config, &direct_mode());
    assert_eq!(audience(&direct), ["client"]);
}

/// A statement's actions, and its resources as written.
type Grant = (Vec<String>, Vec<String>);

/// The statements of a policy document of gateway.tf, by sid.
fn document_by_sid(config: &Module, document: &str) -> BTreeMap<String, Grant> {
    let documents = config.resources("data", "aws_iam_policy_document");
    let (_, block) = documents
        .iter()
        .find(|(n, _)| *n == document)
        .unwrap_or_else(|| panic!("data.aws_iam_policy_document.{document}"));
    block
        .body()
        .blocks()
        .map(|statement| {
            assert_eq!(
                statement.identifier(),
                "statement",
                "{document}: statements only, written out"
            );
            let body = statement.body();
            assert!(
                attr(body, "effect").is_none_or(|e| literal(e) == Some("Allow")),
                "{document}: Allow only"
            );
            assert!(
                attr(body, "not_actions").is_none() && attr(body, "not_resources").is_none(),
                "{document}: no not_actions or not_resources"
            );
            let sid = attr(body, "sid")
                .and_then(literal)
                .unwrap_or_else(|| panic!("{document}: every statement has a sid"));
            (
                sid.to_owned(),
                (
                    strings(attr(body, "actions").unwrap()).unwrap(),
                    written(attr(body, "resources").unwrap()),
                ),
            )
        })
        .collect()
}

#[test]
fn the_gateways_execution_role_reads_only_its_sign_in_key() {
    let config = Module::load(&terraform_dir());
    let plan = plan::Plan::new(&config, &gateway_mode());
    // The task starts with the execution role, whose one policy is gateway_execution.
    let task = only(&plan, "aws_ecs_task_definition", "gateway");
    assert_eq!(
        argument(
            &plan,
            "aws_ecs_task_definition",
            "gateway",
            task,
            &["execution_role_arn"]
        ),
        Some(hcl::Value::from("aws_iam_role.gateway_execution[0].arn"))
    );
    let policies: Vec<String> = config
        .resources("resource", "aws_iam_role_policy")
        .into_iter()
        .filter(|(_, p)| {
            attr(p.body(), "role").map(ToString::to_string)
                == Some("aws_iam_role.gateway_execution[0].id".to_owned())
        })
        .map(|(_, p)| attr(p.body(), "policy").unwrap().to_string())
        .collect();
    assert_eq!(
        policies,
        ["data.aws_iam_policy_document.gateway_execution[0].json"]
    );
    let secret = "aws_secretsmanager_secret.gateway_sign_in_key[0].arn";
    let statements = document_by_sid(&config, "gateway_execution");
    let reading: Vec<(&String, &Grant)> = statements
        .iter()
        .filter(|(_, (actions, resources))| {
            actions
                .iter()
                .any(|a| a.starts_with("secretsmanager:") || a.starts_with("kms:"))
                || resources.iter().any(|r| r.contains("secretsmanager"))
        })
        .collect();
    let [(_, (actions, resources))] = reading.as_slice() else {
        panic!("one statement of the execution role reads secrets: {reading:?}")
    };
    assert_eq!(actions, &["secretsmanager:GetSecretValue"]);
    assert_eq!(resources, &[secret], "exactly the sign-in key's secret");
    // Every other statement is ECR or the gateway's logs, and names no secret.
    for (sid, (actions, _)) in &statements {
        assert!(
            actions.iter().all(|a| a.starts_with("ecr:")
                || a.starts_with("logs:")
                || a == "secretsmanager:GetSecretValue"),
            "{sid}: {actions:?}"
        );
    }
    // The container gets that secret, and the task role (what the gateway's code
    // runs with) may not read it.
    let container = gateway_container(&plan);
    let (_, secrets) = container_variables(&container).unwrap();
    assert!(secrets["SIGN_IN_KEY"].starts_with(&format!("{secret}:")));
    for (sid, (actions, _)) in document_by_sid(&config, "gateway_task") {
        assert!(
            actions
                .iter()
                .all(|a| !a.starts_with("secretsmanager:") && !a.starts_with("kms:")),
            "gateway_task {sid}: {actions:?}"
        );
    }
}

#[test]
fn the_sign_in_key_is_random_and_never_in_the_terraform_state() {
    let config = Module::load(&terraform_dir());
    let plan = plan::Plan::new(&config, &gateway_mode());
    // The secret's one version is written from an ephemeral password, through a
    // write-only argument: neither the plan nor the state holds it.
    let version = only(
        &plan,
        "aws_secretsmanager_secret_version",
        "gateway_sign_in_key",
    );
    let get = |path: &[&str]| {
        argument(
            &plan,
            "aws_secretsmanager_secret_version",
            "gateway_sign_in_key",
            version,
            path,
        )
    };
    assert_eq!(
        get(&["secret_id"]),
        Some(hcl::Value::from(
            "aws_secretsmanager_secret.gateway_sign_in_key[0].id"
        ))
    );
    assert_eq!(
        get(&["secret_string_wo"]),
        Some(hcl::Value::from(
            "ephemeral.aws_secretsmanager_random_password.gateway_sign_in_key[0].random_password"
        ))
    );
    assert_eq!(get(&["secret_string"]), None);
    assert_eq!(get(&["secret_binary"]), None);
    assert_eq!(
        get(&["secret_string_wo_version"]),
        Some(plan.variable("gateway_sign_in_key_version").clone())
    );
    assert_eq!(
        instances(
            &plan,
            "aws_secretsmanager_secret_version",
            "gateway_sign_in_key"
        )
        .len(),
        1
    );
    // The password: long enough for the gateway (32 characters at least), from
    // Secrets Manager's generator.
    let ephemeral = config
        .blocks("ephemeral")
        .find(|b| {
            b.labels()[0].as_str() == "aws_secretsmanager_random_password"
                && b.labels()[1].as_str() == "gateway_sign_in_key"
        })
        .expect("ephemeral aws_secretsmanager_random_password.gateway_sign_in_key");
    assert_eq!(
        plan.ephemeral_instances("aws_secretsmanager_random_password", "gateway_sign_in_key")
            .map(<[_]>::len),
        Some(1)
    );
    let length = plan
        .eval(None, attr(ephemeral.body(), "password_length").unwrap())
        .unwrap()
        .as_u64()
        .unwrap();
    assert!(length >= 32, "password_length {length}");
    // Nowhere else is the gateway's key made or written: no random provider's resource
    // in gateway.tf (its result would be in the state), no other version of a secret.
    let made: Vec<(String, String)> = gateway_resources("resource")
        .into_iter()
        .filter(|(ty, _)| ty.starts_with("random_"))
        .collect();
    assert!(
        made.is_empty(),
        "gateway.tf: {made:?}: the state would keep their values"
    );
    assert_eq!(
        config
            .resources("resource", "aws_secretsmanager_secret_version")
            .len(),
        1
    );
}

/// Whether a variable's validations admit the given values: `false` when one that
/// this evaluator reads refuses them.
fn admitted(variable: &str, vars: &[(&'static str, hcl::Value)]) -> bool {
    let config = Module::load(&terraform_dir());
    plan::validations(&config, variable, vars)
        .into_iter()
        .all(|v| v != Some(false))
}

#[test]
fn direct_mode_requires_allowed_cidrs_and_gateway_mode_its_domain_sign_in_and_image() {
    let null = hcl::Value::Null;
    assert!(admitted("allowed_cidrs", &direct_mode()));
    assert!(!admitted(
        "allowed_cidrs",
        &with(direct_mode(), &[("allowed_cidrs", null.clone())])
    ));
    assert!(!admitted(
        "allowed_cidrs",
        &with(
            direct_mode(),
            &[("allowed_cidrs", hcl::Value::Array(vec![]))]
        )
    ));
    // Gateway mode needs no CIDR: only the gateway reaches the ports.
    assert!(admitted("allowed_cidrs", &gateway_mode()));

    for variable in [
        "domain_name",
        "hosted_zone_id",
        "oidc_authorization_endpoint",
        "oidc_token_endpoint",
        "oidc_user_info_endpoint",
        "oidc_client_id",
        "oidc_client_secret",
        "gateway_image",
    ] {
        assert!(admitted(variable, &gateway_mode()), "{variable}");
        assert!(
            !admitted(variable, &with(gateway_mode(), &[(variable, null.clone())])),
            "gateway mode without {variable}"
        );
        assert!(
            admitted(variable, &direct_mode()),
            "direct mode needs no {variable}"
        );
    }
    // The identity provider defaults to the API's.
    assert!(admitted("oidc_issuer", &gateway_mode()));
}

#[test]
fn the_gateway_variables_refuse_what_aws_would_refuse_at_apply() {
    let n = |v: u64| hcl::Value::from(v);
    // A load balancer spans two zones at least.
    assert!(admitted("availability_zone_count", &gateway_mode()));
    assert!(!admitted(
        "availability_zone_count",
        &with(gateway_mode(), &[("availability_zone_count", n(1))])
    ));
    assert!(admitted(
        "availability_zone_count",
        &with(direct_mode(), &[("availability_zone_count", n(1))])
    ));
    // ACM's first name of a certificate (its subject's common name): 64 characters.
    let long = format!("{}.example.com", "a".repeat(52));
    assert_eq!(long.len(), 64);
    assert!(admitted(
        "domain_name",
        &with(
            gateway_mode(),
            &[("domain_name", hcl::Value::from(long.clone()))]
        )
    ));
    assert!(!admitted(
        "domain_name",
        &with(
            gateway_mode(),
            &[("domain_name", hcl::Value::from(format!("a{long}")))]
        )
    ));
    // Fargate's task sizes.
    assert!(admitted("gateway_memory", &gateway_mode()));
    for (cpu, memory, ok) in [
        (256, 512, true),
        (256, 4096, false),
        (512, 1024, true),
        (512, 1536, false),
        (1024, 8192, true),
        (4096, 30720, true),
        (8192, 18432, false),
    ] {
        assert_eq!(
            admitted(
                "gateway_memory",
                &with(
                    gateway_mode(),
                    &[("gateway_cpu", n(cpu)), ("gateway_memory", n(memory))]
                )
            ),
            ok,
            "{cpu} CPU units with {memory} MiB"
        );
    }
    // Two tasks at least, and no maximum below the minimum.
    assert!(!admitted(
        "gateway_min_tasks",
        &with(gateway_mode(), &[("gateway_min_tasks", n(1))])
    ));
    assert!(!admitted(
        "gateway_max_tasks",
        &with(
            gateway_mode(),
            &[("gateway_min_tasks", n(4)), ("gateway_max_tasks", n(3))]
        )
    ));
    // The load balancer and its target group are named var.name: ELB refuses a name
    // that starts with internal-.
    assert!(!admitted(
        "name",
        &[("name", hcl::Value::from("internal-sessions"))]
    ));
}

#[test]
fn the_sign_in_settings_admit_only_whole_numbers_in_their_ranges() {
    let n = |v: f64| hcl::Value::from(v);
    for (ttl, ok) in [
        (28800.0, true),
        (300.0, true),
        (604800.0, true),
        (299.0, false),
        (604801.0, false),
        (3600.5, false),
    ] {
        assert_eq!(
            admitted(
                "gateway_sign_in_ttl_s",
                &with(gateway_mode(), &[("gateway_sign_in_ttl_s", n(ttl))])
            ),
            ok,
            "gateway_sign_in_ttl_s = {ttl}"
        );
    }
    assert!(admitted("gateway_sign_in_ttl_s", &gateway_mode()));
    for (version, ok) in [(1.0, true), (7.0, true), (0.0, false), (1.5, false)] {
        assert_eq!(
            admitted(
                "gateway_sign_in_key_version",
                &with(
                    gateway_mode(),
                    &[("gateway_sign_in_key_version", n(version))]
                )
            ),
            ok,
            "gateway_sign_in_key_version = {version}"
        );
    }
}

// ---------------------------------------------------------------------------------
// 8. The release workflow and the gateway's image, linted offline.

fn workflows() -> Vec<PathBuf> {
    let dir = repo_root().join(".github/workflows");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "yml" || e == "yaml"))
        .collect();
    files.sort();
    files
}

#[test]
fn the_workflows_pass_actionlint_and_their_scripts_shellcheck() {
    let files = workflows();
    assert!(
        files.iter().any(|f| f.ends_with("release.yml")),
        ".github/workflows holds the release workflow: {files:?}"
    );
    let found = actionlint(&files);
    assert!(found.is_empty(), "actionlint:\n{}", found.join("\n"));
    let mut problems = Vec::new();
    let mut checked = 0;
    for file in &files {
        for (line, script) in run_scripts(&std::fs::read_to_string(file).unwrap()) {
            checked += 1;
            problems.extend(
                shellcheck(&script)
                    .into_iter()
                    .map(|p| format!("{} (script at line {line}): {p}", file.display())),
            );
        }
    }
    assert!(checked >= 5, "only {checked} run: scripts found");
    assert!(problems.is_empty(), "shellcheck:\n{}", problems.join("\n"));
}

#[test]
fn the_release_workflow_builds_the_arm64_gateway_image_and_the_lambda_packages() {
    let text = std::fs::read_to_string(repo_root().join(".github/workflows/release.yml")).unwrap();
    for expected in [
        "release:\n    types: [published]",
        "workflow_dispatch:",
        "id-token: write",
        "contents: write",
        "file: gateway/Dockerfile",
        "platforms: linux/arm64",
        "-gateway:${{ env.TAG }}",
        "make package",
        "gh release upload",
    ] {
        assert!(text.contains(expected), "release.yml: no {expected:?}");
    }
    // Every action pinned to a commit, so a moved tag cannot change what runs with the
    // release's AWS role.
    for file in workflows() {
        for line in std::fs::read_to_string(&file).unwrap().lines() {
            let Some(action) = line.trim().trim_start_matches("- ").strip_prefix("uses:") else {
                continue;
            };
            let reference = action.trim().split('#').next().unwrap().trim();
            let pinned = reference.rsplit_once('@').is_some_and(|(_, sha)| {
                sha.len() == 40 && sha.bytes().all(|b| b.is_ascii_hexdigit())
            });
            assert!(
                pinned,
                "{}: {reference} is not pinned to a commit",
                file.display()
            );
        }
    }
}

#[test]
fn the_gateway_dockerfile_passes_hadolint() {
    let dockerfile = repo_root().join("gateway/Dockerfile");
    let found = hadolint(&dockerfile);
    assert!(found.is_empty(), "hadolint:\n{}", found.join("\n"));
    let text = std::fs::read_to_string(&dockerfile).unwrap();
    assert!(text.contains("cargo build --release --locked -p gateway"));
    assert!(text.contains("EXPOSE 8080 8081"));
    // The binary the image runs is the gateway crate's.
    let manifest = std::fs::read_to_string(repo_root().join("gateway/Cargo.toml")).unwrap();
    assert!(manifest.contains("name = \"gateway\""));

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("Dockerfile");
    std::fs::write(
        &bad,
        "FROM rust:latest\nRUN cd /src && cargo build\nUSER root\n",
    )
    .unwrap();
    let found = hadolint(&bad).join("\n");
    for rule in ["DL3007", "DL3003", "DL3002"] {
        assert!(found.contains(rule), "{rule} not in:\n{found}");
    }
}
