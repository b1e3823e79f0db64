//! Tenant isolation in IAM, checked offline against the Terraform (issue 11): each
//! user's task role can mount only that user's access point, whatever else its
//! identity policy or the file-system policy let slip; Launch can create only such
//! roles; the api and Launch can update only the users-item attributes they maintain;
//! the session gateway can read only the few attributes of a session it routes by.
//!
//! The policies are read from `terraform/` (the `aws_iam_policy_document` data blocks
//! and the functions' `statements`), evaluated with hcl-rs for a test account, and
//! judged by iam-simulate (an offline implementation of AWS's documented evaluation
//! logic: explicit deny over allow, identity policy within the permissions boundary,
//! same-account resource policies, condition operators, policy variables), run by
//! `tests/harness/iam_simulate.mjs`. Every rule is also evaluated against a
//! deliberately loosened copy of the policy, which must give the opposite answer: a
//! check that could not fail would prove nothing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use hcl::eval::{Context, Evaluate};
use hcl::{Block, Body, Expression};
use serde_json::{json, Value};
use session_core::template::user_key;
use session_tests::repo_root;
use syn::visit::Visit;

const ACCOUNT: &str = "111122223333";
const REGION: &str = "eu-west-1";

// ---------------------------------------------------------------------------------
// The Terraform, evaluated for the test account.

/// Every `.tf` file of the root module.
fn bodies() -> Vec<Body> {
    let dir = repo_root().join("terraform");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "tf"))
        .collect();
    files.sort();
    files
        .iter()
        .map(|f| {
            hcl::parse(&std::fs::read_to_string(f).unwrap())
                .unwrap_or_else(|e| panic!("{}: {e}", f.display()))
        })
        .collect()
}

fn blocks<'a>(bodies: &'a [Body], kind: &'a str) -> impl Iterator<Item = &'a Block> + 'a {
    bodies
        .iter()
        .flat_map(|b| b.blocks())
        .filter(move |b| b.identifier() == kind)
}

fn attr<'a>(body: &'a Body, key: &str) -> Option<&'a Expression> {
    body.attributes().find(|a| a.key() == key).map(|a| a.expr())
}

/// What a resource's `arn` is in the test account: any consistent value will do, as
/// every policy and every request below reads it from the same place.
fn arn_of(ty: &str, name: &str) -> String {
    let name_dashed = name.replace('_', "-");
    match ty {
        "aws_iam_role" => format!("arn:aws:iam::{ACCOUNT}:role/sessions-{name_dashed}"),
        "aws_iam_policy" => {
            format!("arn:aws:iam::{ACCOUNT}:policy/sessions/sessions-{name_dashed}")
        }
        "aws_efs_file_system" => {
            format!("arn:aws:elasticfilesystem:{REGION}:{ACCOUNT}:file-system/fs-0123456789abcdef0")
        }
        "aws_dynamodb_table" => {
            format!("arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/sessions-{name_dashed}")
        }
        "aws_ecs_cluster" => format!("arn:aws:ecs:{REGION}:{ACCOUNT}:cluster/sessions"),
        other => format!("arn:aws:{other}:{REGION}:{ACCOUNT}:{name_dashed}"),
    }
}

/// The evaluation context of the root module: variables at their defaults, the account
/// and region data sources, an `arn`/`id`/`name` for every resource, and every local
/// that evaluates with those (locals that need functions or other modules are left out;
/// a policy naming one fails to evaluate, loudly).
fn context(bodies: &[Body]) -> Context<'static> {
    let mut ctx = Context::new();
    let empty = Context::new();
    let vars: hcl::Map<String, hcl::Value> = blocks(bodies, "variable")
        .filter_map(|b| {
            let default = attr(b.body(), "default")?.evaluate(&empty).ok()?;
            Some((b.labels()[0].as_str().to_owned(), default))
        })
        .collect();
    ctx.declare_var("var", hcl::Value::Object(vars));
    let data = json!({
        "aws_caller_identity": {"current": {"account_id": ACCOUNT}},
        "aws_partition": {"current": {"partition": "aws"}},
        "aws_region": {"current": {"region": REGION, "name": REGION}},
    });
    ctx.declare_var("data", hcl::to_value(&data).unwrap());
    let mut resources: BTreeMap<String, serde_json::Map<String, Value>> = BTreeMap::new();
    for block in blocks(bodies, "resource") {
        let (ty, name) = (block.labels()[0].as_str(), block.labels()[1].as_str());
        resources.entry(ty.to_owned()).or_default().insert(
            name.to_owned(),
            json!({"arn": arn_of(ty, name), "id": format!("{ty}-{name}"), "name": format!("sessions-{name}")}),
        );
    }
    for (ty, by_name) in resources {
        ctx.declare_var(ty, hcl::to_value(&by_name).unwrap());
    }
    let pending: Vec<(String, Expression)> = blocks(bodies, "locals")
        .flat_map(|b| b.body().attributes())
        .map(|a| (a.key().to_owned(), a.expr().clone()))
        .collect();
    let mut locals = hcl::Map::new();
    loop {
        ctx.declare_var("local", hcl::Value::Object(locals.clone()));
        let before = locals.len();
        for (name, expr) in &pending {
            if !locals.contains_key(name) {
                if let Ok(value) = expr.evaluate(&ctx) {
                    locals.insert(name.clone(), value);
                }
            }
        }
        if locals.len() == before {
            return ctx;
        }
    }
}

fn eval(expr: &Expression, ctx: &Context) -> Value {
    let value = expr
        .evaluate(ctx)
        .unwrap_or_else(|e| panic!("cannot evaluate {expr}: {e}"));
    serde_json::to_value(value).unwrap()
}

/// The IAM policies of the Terraform, rendered as JSON documents on demand (a policy
/// that cannot be evaluated fails its test, not the others).
struct Policies {
    bodies: Vec<Body>,
    ctx: Context<'static>,
}

impl Policies {
    fn load() -> Self {
        let bodies = bodies();
        let ctx = context(&bodies);
        Self { bodies, ctx }
    }

    fn block(&self, kind: &str, labels: &[&str]) -> &Block {
        self.bodies
            .iter()
            .flat_map(|b| b.blocks())
            .find(|b| {
                b.identifier() == kind
                    && b.labels().len() == labels.len()
                    && b.labels()
                        .iter()
                        .zip(labels)
                        .all(|(l, want)| l.as_str() == *want)
            })
            .unwrap_or_else(|| panic!("no {kind} {labels:?} in terraform/"))
    }

    /// `data "aws_iam_policy_document" "<name>"`.
    fn document(&self, name: &str) -> Value {
        render_document(
            self.block("data", &["aws_iam_policy_document", name])
                .body(),
            &self.ctx,
        )
    }

    /// The `statements` of `module "<name>"` (a function's role). A statement that
    /// needs what this context lacks (a local built with functions) is left out, which
    /// can only take rights away: it must grant neither DynamoDB nor IAM actions, the
    /// ones these tests judge.
    fn function(&self, name: &str) -> Value {
        let statements = attr(self.block("module", &[name]).body(), "statements")
            .unwrap_or_else(|| panic!("module.{name} has no statements"));
        let Expression::Array(items) = statements else {
            panic!("module.{name}: statements is not a list");
        };
        let mut evaluated = Vec::new();
        for item in items {
            match item.evaluate(&self.ctx) {
                Ok(value) => evaluated.push(serde_json::to_value(value).unwrap()),
                Err(err) => {
                    let Expression::Object(object) = item else {
                        panic!("module.{name}: a statement is not an object: {item}")
                    };
                    let actions = object
                        .iter()
                        .find(|(k, _)| matches!(k, hcl::ObjectKey::Identifier(i) if i.as_str() == "actions"))
                        .map(|(_, v)| eval(v, &self.ctx))
                        .unwrap_or_default();
                    let judged = actions.as_array().into_iter().flatten().any(|a| {
                        a.as_str()
                            .is_some_and(|a| a.starts_with("dynamodb:") || a.starts_with("iam:"))
                    });
                    assert!(!judged, "module.{name}: cannot evaluate {item}: {err}");
                }
            }
        }
        render_statements(&Value::Array(evaluated))
    }
}

/// An `aws_iam_policy_document`'s `statement` blocks as the JSON the provider renders.
fn render_document(body: &Body, ctx: &Context) -> Value {
    let statements: Vec<Value> = body
        .blocks()
        .filter(|b| b.identifier() == "statement")
        .map(|s| {
            let s = s.body();
            let mut out = serde_json::Map::new();
            if let Some(sid) = attr(s, "sid") {
                out.insert("Sid".into(), eval(sid, ctx));
            }
            let effect = attr(s, "effect").map_or(json!("Allow"), |e| eval(e, ctx));
            out.insert("Effect".into(), effect);
            for (key, name) in [
                ("actions", "Action"),
                ("not_actions", "NotAction"),
                ("resources", "Resource"),
            ] {
                if let Some(e) = attr(s, key) {
                    out.insert(name.into(), eval(e, ctx));
                }
            }
            let mut principals = serde_json::Map::new();
            for p in s.blocks().filter(|b| b.identifier() == "principals") {
                let ty = eval(attr(p.body(), "type").unwrap(), ctx);
                let ids = eval(attr(p.body(), "identifiers").unwrap(), ctx);
                principals.insert(ty.as_str().unwrap().to_owned(), ids);
            }
            if !principals.is_empty() {
                out.insert("Principal".into(), Value::Object(principals));
            }
            let conditions: Vec<Value> = s
                .blocks()
                .filter(|b| b.identifier() == "condition")
                .map(|c| {
                    let get = |k: &str| eval(attr(c.body(), k).unwrap(), ctx);
                    json!({"test": get("test"), "variable": get("variable"), "values": get("values")})
                })
                .collect();
            if !conditions.is_empty() {
                out.insert("Condition".into(), condition_block(&conditions));
            }
            Value::Object(out)
        })
        .collect();
    json!({"Version": "2012-10-17", "Statement": statements})
}

/// A function module call's `statements` (evaluated) as a policy document.
fn render_statements(statements: &Value) -> Value {
    let statements: Vec<Value> = statements
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let mut out = json!({
                "Sid": s["sid"], "Effect": "Allow", "Action": s["actions"], "Resource": s["resources"],
            });
            if let Some(conditions) = s["conditions"].as_array().filter(|c| !c.is_empty()) {
                out["Condition"] = condition_block(conditions);
            }
            out
        })
        .collect();
    json!({"Version": "2012-10-17", "Statement": statements})
}

/// `[{test, variable, values}]` as IAM's `{test: {variable: values}}`.
fn condition_block(conditions: &[Value]) -> Value {
    let mut block = serde_json::Map::new();
    for c in conditions {
        let test = block
            .entry(c["test"].as_str().unwrap())
            .or_insert_with(|| json!({}));
        test[c["variable"].as_str().unwrap()] = c["values"].clone();
    }
    Value::Object(block)
}

// ---------------------------------------------------------------------------------
// Requests, and iam-simulate's answers.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Answer {
    Allowed,
    ExplicitlyDenied,
    ImplicitlyDenied,
}

use Answer::*;

/// One request and the policies that decide it.
#[derive(Clone)]
struct Request {
    principal: String,
    action: String,
    resource: String,
    context: serde_json::Map<String, Value>,
    identity: Vec<Value>,
    boundary: Option<Value>,
    resource_policy: Option<Value>,
}

impl Request {
    fn new(principal: &str, action: &str, resource: &str) -> Self {
        let mut context = serde_json::Map::new();
        context.insert("aws:PrincipalArn".into(), json!(principal));
        context.insert("aws:PrincipalAccount".into(), json!(ACCOUNT));
        context.insert("aws:SecureTransport".into(), json!("true"));
        Self {
            principal: principal.into(),
            action: action.into(),
            resource: resource.into(),
            context,
            identity: Vec::new(),
            boundary: None,
            resource_policy: None,
        }
    }

    fn with(mut self, key: &str, value: Value) -> Self {
        self.context.insert(key.into(), value);
        self
    }

    fn identity(mut self, policy: Value) -> Self {
        self.identity.push(policy);
        self
    }

    fn boundary(mut self, policy: Value) -> Self {
        self.boundary = Some(policy);
        self
    }

    fn resource_policy(mut self, policy: Value) -> Self {
        self.resource_policy = Some(policy);
        self
    }

    fn simulation(&self) -> Value {
        let mut simulation = json!({
            "identityPolicies": self.identity.iter().enumerate()
                .map(|(i, p)| json!({"name": format!("identity-{i}"), "policy": p}))
                .collect::<Vec<_>>(),
            "request": {
                "action": self.action,
                "principal": self.principal,
                "resource": {"accountId": ACCOUNT, "resource": self.resource},
                "contextVariables": self.context,
            },
        });
        if let Some(boundary) = &self.boundary {
            simulation["permissionBoundaryPolicies"] =
                json!([{"name": "boundary", "policy": boundary}]);
        }
        if let Some(policy) = &self.resource_policy {
            simulation["resourcePolicy"] = policy.clone();
        }
        simulation
    }
}

fn tools_dir() -> PathBuf {
    std::env::var_os("SESSION_TOOLS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cache/session-provisioner")
        })
}

/// iam-simulate's answer to each request, in order.
fn simulate(requests: &[Request]) -> Vec<Answer> {
    let module = tools_dir().join("npm/node_modules/@cloud-copilot/iam-simulate/dist/esm/index.js");
    assert!(
        module.exists(),
        "iam-simulate missing at {} (run `make tools`, which installs tools/npm)",
        module.display()
    );
    let input: Vec<Value> = requests.iter().map(Request::simulation).collect();
    let mut child = Command::new("node")
        .arg(repo_root().join("tests/harness/iam_simulate.mjs"))
        .arg(&module)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run node");
    serde_json::to_writer(child.stdin.take().unwrap(), &input).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "iam_simulate.mjs failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answers: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    answers
        .iter()
        .zip(requests)
        .map(|(a, r)| match a["result"].as_str() {
            Some("Allowed") => Allowed,
            Some("ExplicitlyDenied") => ExplicitlyDenied,
            Some("ImplicitlyDenied") => ImplicitlyDenied,
            _ => panic!(
                "iam-simulate refused {} on {}: {}",
                r.action, r.resource, a["errors"]
            ),
        })
        .collect()
}

/// What a case is, its request, and whether an answer is the one expected.
type Case = (String, Request, fn(Answer) -> bool);

/// Evaluates each case and reports every mismatch at once.
fn expect(cases: Vec<Case>) {
    let requests: Vec<Request> = cases.iter().map(|(_, r, _)| r.clone()).collect();
    let answers = simulate(&requests);
    let wrong: Vec<String> = cases
        .iter()
        .zip(answers)
        .filter(|((_, _, ok), answer)| !ok(*answer))
        .map(|((what, _, _), answer)| format!("{what}: {answer:?}"))
        .collect();
    assert!(
        wrong.is_empty(),
        "unexpected answers:\n{}",
        wrong.join("\n")
    );
}

fn allowed(a: Answer) -> bool {
    a == Allowed
}

fn denied(a: Answer) -> bool {
    a != Allowed
}

fn explicitly_denied(a: Answer) -> bool {
    a == ExplicitlyDenied
}

/// A policy document without the statements of these sids.
fn without(policy: &Value, sids: &[&str]) -> Value {
    let mut policy = policy.clone();
    policy["Statement"]
        .as_array_mut()
        .unwrap()
        .retain(|s| !sids.contains(&s["Sid"].as_str().unwrap_or_default()));
    policy
}

/// A policy document whose statements of this sid have no conditions.
fn unconditioned(policy: &Value, sid: &str) -> Value {
    let mut policy = policy.clone();
    for s in policy["Statement"].as_array_mut().unwrap() {
        if s["Sid"] == sid {
            s.as_object_mut().unwrap().remove("Condition");
        }
    }
    policy
}

// ---------------------------------------------------------------------------------
// The users' task roles.

const TASK_ROLE_PATH: &str = "/sessions/users/";

fn file_system() -> String {
    arn_of("aws_efs_file_system", "user_data")
}

fn access_point(id: &str) -> String {
    format!("arn:aws:elasticfilesystem:{REGION}:{ACCOUNT}:access-point/{id}")
}

/// A user's role, as Launch creates it (`TaskRoleSettings::role_name` under the path).
fn user_role(user_id: &str) -> String {
    format!(
        "arn:aws:iam::{ACCOUNT}:role{TASK_ROLE_PATH}sessions-{}",
        user_key(user_id)
    )
}

struct User {
    id: &'static str,
    access_point: &'static str,
}

const USERS: [User; 2] = [
    User {
        id: "auth0|alice@example.com",
        access_point: "fsap-0aaaaaaaaaaaaaaaa",
    },
    User {
        id: "bob Ünal",
        access_point: "fsap-0bbbbbbbbbbbbbbbb",
    },
];

const MOUNT_ACTIONS: [&str; 2] = [
    "elasticfilesystem:ClientMount",
    "elasticfilesystem:ClientWrite",
];

/// A request by `principal` (tagged with `tag`, when given) to mount through
/// `access_point` (or the file system root, when none).
fn mount(
    principal: &str,
    tag: Option<&str>,
    action: &str,
    access_point_id: Option<&str>,
) -> Request {
    let mut r = Request::new(principal, action, &file_system())
        .with("elasticfilesystem:AccessedViaMountTarget", json!("true"));
    if let Some(tag) = tag {
        r = r.with("aws:PrincipalTag/access_point_id", json!(tag));
    }
    if let Some(id) = access_point_id {
        r = r.with("elasticfilesystem:AccessPointArn", json!(access_point(id)));
    }
    r
}

/// Every user's role against every user's access point, both actions, with the given
/// policies: allowed exactly when the access point is the role's own (`cross` says what
/// the others must be).
fn every_role_and_access_point(
    shared: &Value,
    boundary: &Value,
    file_system_policy: &Value,
    cross: fn(Answer) -> bool,
) -> Vec<Case> {
    let mut cases = Vec::new();
    for user in &USERS {
        for other in &USERS {
            for action in MOUNT_ACTIONS {
                let request = mount(
                    &user_role(user.id),
                    Some(user.access_point),
                    action,
                    Some(other.access_point),
                )
                .identity(shared.clone())
                .boundary(boundary.clone())
                .resource_policy(file_system_policy.clone());
                let own = user.id == other.id;
                cases.push((
                    format!(
                        "{}'s role, {action} through {}'s access point",
                        user.id, other.id
                    ),
                    request,
                    if own {
                        allowed as fn(Answer) -> bool
                    } else {
                        cross
                    },
                ));
            }
        }
    }
    cases
}

#[test]
fn each_users_role_mounts_only_its_own_access_point() {
    let p = Policies::load();
    let (shared, boundary, fs) = (
        p.document("task_user_data"),
        p.document("task_boundary"),
        p.document("user_data"),
    );
    let mut cases = every_role_and_access_point(&shared, &boundary, &fs, explicitly_denied);
    for user in &USERS {
        let role = user_role(user.id);
        cases.push((
            format!("{}'s role, the file system root", user.id),
            mount(&role, Some(user.access_point), MOUNT_ACTIONS[0], None)
                .identity(shared.clone())
                .boundary(boundary.clone())
                .resource_policy(fs.clone()),
            denied,
        ));
        cases.push((
            format!(
                "{}'s role, root access through its own access point",
                user.id
            ),
            mount(
                &role,
                Some(user.access_point),
                "elasticfilesystem:ClientRootAccess",
                Some(user.access_point),
            )
            .identity(shared.clone())
            .boundary(boundary.clone())
            .resource_policy(fs.clone()),
            denied,
        ));
        cases.push((
            format!("{}'s role, its own access point without TLS", user.id),
            mount(
                &role,
                Some(user.access_point),
                MOUNT_ACTIONS[0],
                Some(user.access_point),
            )
            .with("aws:SecureTransport", json!("false"))
            .identity(shared.clone())
            .boundary(boundary.clone())
            .resource_policy(fs.clone()),
            explicitly_denied,
        ));
    }
    expect(cases);
}

#[test]
fn the_file_system_policy_alone_and_the_shared_policy_alone_each_keep_users_apart() {
    let p = Policies::load();
    let (shared, boundary, fs) = (
        p.document("task_user_data"),
        p.document("task_boundary"),
        p.document("user_data"),
    );
    // What the shared task role had before: any access point of the account.
    let any_access_point = json!({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Action": MOUNT_ACTIONS, "Resource": file_system(),
        "Condition": {"StringLike": {"elasticfilesystem:AccessPointArn": access_point("*")}},
    }]});
    // Without a file-system policy the identity policy alone decides.
    let none = json!({"Version": "2012-10-17", "Statement": [{
        "Effect": "Deny", "Principal": {"AWS": "*"}, "Action": "s3:GetObject", "Resource": "*",
    }]});
    let mut cases = Vec::new();
    // The file-system policy holds against an identity policy that allows any access
    // point; the shared policy holds where no file-system policy grants anything.
    cases.extend(every_role_and_access_point(
        &any_access_point,
        &boundary,
        &fs,
        explicitly_denied,
    ));
    cases.extend(every_role_and_access_point(
        &shared, &boundary, &none, denied,
    ));
    // Loosened both ways, one user reaches the other's data: the checks above can fail.
    cases.extend(every_role_and_access_point(
        &any_access_point,
        &boundary,
        &none,
        allowed,
    ));
    expect(cases);
}

#[test]
fn a_role_outside_the_users_path_or_untagged_is_denied_by_the_file_system_policy() {
    let p = Policies::load();
    let fs = p.document("user_data");
    let user = &USERS[0];
    // An operator or workload role of the account whose own policy allows all of EFS,
    // even tagged with the user's access point.
    let admin = format!("arn:aws:iam::{ACCOUNT}:role/operations");
    let everything = json!({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Action": "elasticfilesystem:*", "Resource": "*",
    }]});
    let outside = |fs: &Value| {
        mount(
            &admin,
            Some(user.access_point),
            MOUNT_ACTIONS[0],
            Some(user.access_point),
        )
        .identity(everything.clone())
        .resource_policy(fs.clone())
    };
    let untagged = |fs: &Value| {
        mount(
            &user_role("someone"),
            None,
            MOUNT_ACTIONS[0],
            Some(user.access_point),
        )
        .identity(everything.clone())
        .resource_policy(fs.clone())
    };
    expect(vec![
        (
            "a role outside the path".into(),
            outside(&fs),
            explicitly_denied,
        ),
        (
            "an untagged role under the path".into(),
            untagged(&fs),
            explicitly_denied,
        ),
        (
            "a role outside the path, without the OnlyUserTaskRoles deny".into(),
            outside(&without(&fs, &["OnlyUserTaskRoles"])),
            allowed,
        ),
        (
            "an untagged role, without the OnlyTaggedRoles and OwnAccessPointOnly denies".into(),
            untagged(&without(&fs, &["OnlyTaggedRoles", "OwnAccessPointOnly"])),
            allowed,
        ),
    ]);
}

#[test]
fn the_boundary_keeps_a_users_role_out_of_everything_but_its_mount() {
    let p = Policies::load();
    let boundary = p.document("task_boundary");
    let role = user_role(USERS[0].id);
    // Whatever gets attached to a user's role, even everything.
    let everything = json!({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Action": "*", "Resource": "*",
    }]});
    let request = |action: &str, resource: &str| {
        Request::new(&role, action, resource)
            .with(
                "aws:PrincipalTag/access_point_id",
                json!(USERS[0].access_point),
            )
            .identity(everything.clone())
    };
    let create_role = || {
        request(
            "iam:CreateRole",
            &format!("arn:aws:iam::{ACCOUNT}:role/sessions/users/x"),
        )
    };
    let mut cases = Vec::new();
    for (action, resource) in [
        (
            "iam:CreateRole",
            format!("arn:aws:iam::{ACCOUNT}:role/escalated"),
        ),
        ("iam:AttachRolePolicy", role.clone()),
        ("iam:PassRole", role.clone()),
        (
            "sts:AssumeRole",
            format!("arn:aws:iam::{ACCOUNT}:role/operations"),
        ),
        ("dynamodb:GetItem", arn_of("aws_dynamodb_table", "users")),
        (
            "elasticfilesystem:DeleteAccessPoint",
            access_point(USERS[1].access_point),
        ),
    ] {
        cases.push((
            format!("{action} within the boundary"),
            request(action, &resource).boundary(boundary.clone()),
            denied as fn(Answer) -> bool,
        ));
    }
    cases.push((
        "iam:CreateRole without the boundary".into(),
        create_role(),
        allowed,
    ));
    expect(cases);
}

// ---------------------------------------------------------------------------------
// What Launch may do in IAM.

fn launch_role() -> String {
    format!("arn:aws:iam::{ACCOUNT}:role/sessions-launch")
}

fn create_role(policy: &Value, name: &str, boundary: Option<&str>, tags: &[&str]) -> Request {
    let mut r = Request::new(
        &launch_role(),
        "iam:CreateRole",
        &format!("arn:aws:iam::{ACCOUNT}:role{name}"),
    )
    .with("aws:TagKeys", json!(tags))
    .identity(policy.clone());
    if let Some(b) = boundary {
        r = r.with("iam:PermissionsBoundary", json!(b));
    }
    r
}

#[test]
fn launch_can_create_only_bounded_user_roles_under_the_users_path() {
    let p = Policies::load();
    let launch = p.function("launch");
    let boundary = arn_of("aws_iam_policy", "task_boundary");
    let shared = arn_of("aws_iam_policy", "task_user_data");
    let mine = format!("{TASK_ROLE_PATH}sessions-{}", user_key(USERS[0].id));
    let tags = ["user_key", "access_point_id"];
    let attach = |role: &str, policy: &str| {
        Request::new(
            &launch_role(),
            "iam:AttachRolePolicy",
            &format!("arn:aws:iam::{ACCOUNT}:role{role}"),
        )
        .with("iam:PolicyARN", json!(policy))
        .identity(launch.clone())
    };
    let pass = |role: &str, service: &str| {
        Request::new(&launch_role(), "iam:PassRole", role)
            .with("iam:PassedToService", json!(service))
            .identity(launch.clone())
    };
    let tag = |role: &str, keys: &[&str]| {
        Request::new(
            &launch_role(),
            "iam:TagRole",
            &format!("arn:aws:iam::{ACCOUNT}:role{role}"),
        )
        .with("aws:TagKeys", json!(keys))
        .identity(launch.clone())
    };
    let admin_policy = "arn:aws:iam::aws:policy/AdministratorAccess";
    let other_boundary = format!("arn:aws:iam::{ACCOUNT}:policy/wide-open");
    let execution = arn_of("aws_iam_role", "task_execution");
    expect(vec![
        (
            "a user role under the path, with the boundary".into(),
            create_role(&launch, &mine, Some(&boundary), &tags),
            allowed,
        ),
        (
            "a role outside the path".into(),
            create_role(&launch, "/sessions-admin", Some(&boundary), &tags),
            denied,
        ),
        (
            "a role under another path".into(),
            create_role(&launch, "/sessions/ops/x", Some(&boundary), &tags),
            denied,
        ),
        (
            "a user role without a boundary".into(),
            create_role(&launch, &mine, None, &tags),
            denied,
        ),
        (
            "a user role with another boundary".into(),
            create_role(&launch, &mine, Some(&other_boundary), &tags),
            denied,
        ),
        (
            "a user role with other tags".into(),
            tag(&mine, &["user_key", "admin"]),
            denied,
        ),
        (
            "the user role's own tags".into(),
            tag(&mine, &tags),
            allowed,
        ),
        (
            "attach the shared policy".into(),
            attach(&mine, &shared),
            allowed,
        ),
        (
            "attach AdministratorAccess".into(),
            attach(&mine, admin_policy),
            denied,
        ),
        (
            "attach the shared policy outside the path".into(),
            attach("/sessions-launch", &shared),
            denied,
        ),
        (
            "pass a user role to ECS tasks".into(),
            pass(
                &format!("arn:aws:iam::{ACCOUNT}:role{mine}"),
                "ecs-tasks.amazonaws.com",
            ),
            allowed,
        ),
        (
            "pass the execution role to ECS tasks".into(),
            pass(&execution, "ecs-tasks.amazonaws.com"),
            allowed,
        ),
        (
            "pass a user role to Lambda".into(),
            pass(
                &format!("arn:aws:iam::{ACCOUNT}:role{mine}"),
                "lambda.amazonaws.com",
            ),
            denied,
        ),
        (
            "pass Launch's own role".into(),
            pass(&launch_role(), "ecs-tasks.amazonaws.com"),
            denied,
        ),
        (
            "a user role without a boundary, once CreateUserTaskRoles is unconditioned".into(),
            create_role(
                &unconditioned(&launch, "CreateUserTaskRoles"),
                &mine,
                None,
                &tags,
            ),
            allowed,
        ),
    ]);
}

// ---------------------------------------------------------------------------------
// Updates of users items.

/// The users-item attributes each `SessionStore` method of `DynamoStore` names in its
/// requests: the key, the names in its update and condition expressions and its
/// expression attribute names, read from `functions/session-aws/src/dynamodb/` — the
/// port method's own body and the bodies of the store's methods it calls (`self.x(..)`,
/// transitively), where each table's requests are built. A request is built by one
/// chain of builder calls, or by several when a method adds to a builder it keeps in a
/// variable; a chain that names no table belongs to the one table its methods name.
fn users_item_attributes() -> BTreeMap<String, Vec<String>> {
    let dir = repo_root().join("functions/session-aws/src/dynamodb");
    let mut bodies: BTreeMap<String, syn::Block> = BTreeMap::new();
    let mut port_methods = Vec::new();
    for path in std::fs::read_dir(&dir).unwrap().flatten().map(|e| e.path()) {
        let file = syn::parse_file(&std::fs::read_to_string(&path).unwrap()).unwrap();
        for item in &file.items {
            let syn::Item::Impl(block) = item else {
                continue;
            };
            for item in &block.items {
                let syn::ImplItem::Fn(f) = item else { continue };
                let name = f.sig.ident.to_string();
                if block.trait_.is_some() {
                    port_methods.push(name.clone());
                }
                let before = bodies.insert(name.clone(), f.block.clone());
                assert!(before.is_none(), "two store methods are named {name}");
            }
        }
    }
    let mut methods = BTreeMap::new();
    for method in port_methods {
        let mut chains = Chains::default();
        let mut queue = vec![method.clone()];
        let mut seen = std::collections::BTreeSet::new();
        while let Some(name) = queue.pop() {
            if !seen.insert(name.clone()) {
                continue;
            }
            if let Some(body) = bodies.get(&name) {
                let mut found = Chains::default();
                found.visit_block(body);
                queue.extend(found.self_calls);
                chains.chains.extend(found.chains);
            }
        }
        let tables: Vec<&str> = chains
            .chains
            .iter()
            .filter_map(|c| c.table.as_deref())
            .collect();
        if !tables.contains(&"users") {
            continue;
        }
        let only_users = tables.iter().all(|t| *t == "users");
        let mut names: Vec<String> = chains
            .chains
            .into_iter()
            .filter(|c| c.table.as_deref() == Some("users") || (only_users && c.table.is_none()))
            .flat_map(|c| c.attributes)
            .chain(std::iter::once("user_id".to_owned()))
            .collect();
        names.sort();
        names.dedup();
        methods.insert(method, names);
    }
    methods
}

/// One chain of builder calls: the table it names (`self.tables.<table>`), if any, and
/// the attribute names of its expressions.
#[derive(Default)]
struct Chain {
    table: Option<String>,
    attributes: Vec<String>,
}

#[derive(Default)]
struct Chains {
    chains: Vec<Chain>,
    /// The store's own methods called (`self.name(..)`).
    self_calls: Vec<String>,
}

const EXPRESSION_WORDS: &[&str] = &[
    "SET",
    "ADD",
    "DELETE",
    "REMOVE",
    "AND",
    "OR",
    "NOT",
    "attribute_exists",
    "attribute_not_exists",
    "size",
    "contains",
    "begins_with",
];

fn string_literal(e: &syn::Expr) -> Option<String> {
    match e {
        syn::Expr::Lit(syn::ExprLit {
            lit: syn::Lit::Str(s),
            ..
        }) => Some(s.value()),
        _ => None,
    }
}

impl Chain {
    fn add(&mut self, call: &syn::ExprMethodCall) {
        match call.method.to_string().as_str() {
            "table_name" => {
                let mut arg = call.args.first();
                while let Some(syn::Expr::Reference(r)) = arg {
                    arg = Some(&r.expr);
                }
                if let Some(syn::Expr::Field(f)) = arg {
                    if let syn::Member::Named(name) = &f.member {
                        self.table = Some(name.to_string());
                    }
                }
            }
            "update_expression" | "condition_expression" => {
                if let Some(text) = call.args.first().and_then(string_literal) {
                    self.attributes.extend(
                        text.split(|c: char| !(c.is_alphanumeric() || "_#:".contains(c)))
                            .filter(|w| {
                                !w.is_empty()
                                    && !w.starts_with([':', '#'])
                                    && !EXPRESSION_WORDS.contains(w)
                            })
                            .map(str::to_owned),
                    );
                }
            }
            "expression_attribute_names" => {
                if let Some(name) = call.args.iter().nth(1).and_then(string_literal) {
                    self.attributes.push(name);
                }
            }
            _ => {}
        }
    }
}

impl<'ast> Visit<'ast> for Chains {
    /// Called at the outermost call of a chain: walks down its receivers, and visits
    /// the arguments (which may hold chains of their own) but not the receivers again.
    fn visit_expr_method_call(&mut self, call: &'ast syn::ExprMethodCall) {
        let mut chain = Chain::default();
        let mut link = call;
        loop {
            chain.add(link);
            if matches!(link.receiver.as_ref(), syn::Expr::Path(p) if p.path.is_ident("self")) {
                self.self_calls.push(link.method.to_string());
            }
            for arg in &link.args {
                self.visit_expr(arg);
            }
            match link.receiver.as_ref() {
                syn::Expr::MethodCall(inner) => link = inner,
                other => {
                    self.visit_expr(other);
                    break;
                }
            }
        }
        self.chains.push(chain);
    }
}

fn update_item(function: &Value, principal: &str, table: &str, attributes: &[String]) -> Request {
    Request::new(
        principal,
        "dynamodb:UpdateItem",
        &arn_of("aws_dynamodb_table", table),
    )
    .with("dynamodb:Attributes", json!(attributes))
    .with("dynamodb:ReturnValues", json!("NONE"))
    .identity(function.clone())
}

#[test]
fn users_item_updates_of_the_api_and_launch_name_only_their_own_attributes() {
    let p = Policies::load();
    let written = users_item_attributes();
    // The store methods each function calls on the users table.
    let functions = [
        (
            "api",
            "TakeAndReleaseUserSlots",
            &["open", "release_slot"][..],
        ),
        (
            "launch",
            "RecordUserResources",
            &["set_access_point", "set_task_role", "cache_task_definition"][..],
        ),
    ];
    let mut cases = Vec::new();
    for (function, users_sid, methods) in functions {
        let policy = p.function(function);
        let principal = format!("arn:aws:iam::{ACCOUNT}:role/sessions-{function}");
        for method in methods {
            let attributes = written.get(*method).unwrap_or_else(|| {
                panic!("DynamoStore::{method} no longer writes users items: {written:?}")
            });
            cases.push((
                format!("{function}: {method} {attributes:?}"),
                update_item(&policy, &principal, "users", attributes),
                allowed as fn(Answer) -> bool,
            ));
            for forbidden in ["authorized", "admin", "max_sessions", "email"] {
                let mut more = attributes.clone();
                more.push(forbidden.into());
                cases.push((
                    format!("{function}: {method} also naming {forbidden}"),
                    update_item(&policy, &principal, "users", &more),
                    denied,
                ));
                cases.push((
                    format!("{function}: {method} naming {forbidden}, once {users_sid} is unconditioned"),
                    update_item(&unconditioned(&policy, users_sid), &principal, "users", &more),
                    allowed,
                ));
            }
            cases.push((
                format!("{function}: {method} returning the whole item"),
                update_item(&policy, &principal, "users", attributes)
                    .with("dynamodb:ReturnValues", json!("ALL_NEW")),
                denied,
            ));
        }
        cases.push((
            format!("{function}: a sessions item update"),
            update_item(
                &policy,
                &principal,
                "sessions",
                &["session_id".into(), "status".into()],
            )
            .with("dynamodb:ReturnValues", json!("ALL_NEW")),
            allowed,
        ));
    }
    expect(cases);
}

#[test]
fn the_attribute_reader_finds_the_names_of_each_users_write() {
    let written = users_item_attributes();
    let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert_eq!(
        written["release_slot"],
        names(&["active_sessions", "user_id"])
    );
    // The users update of the transaction, not the sessions put beside it.
    assert_eq!(written["open"], names(&["active_sessions", "user_id"]));
    assert_eq!(
        written["set_task_role"],
        names(&["task_role_arn", "user_id"])
    );
    assert_eq!(
        written["cache_task_definition"],
        names(&["task_definitions", "user_id"])
    );
    assert!(
        !written.contains_key("touch"),
        "touch writes sessions items: {written:?}"
    );
}

#[test]
fn policy_variables_reach_iam_unexpanded() {
    let p = Policies::load();
    let shared = p.document("task_user_data").to_string();
    assert!(
        shared.contains("access-point/${aws:PrincipalTag/access_point_id}"),
        "{shared}"
    );
    assert!(Path::new(&repo_root().join("tests/harness/iam_simulate.mjs")).exists());
}

// ---------------------------------------------------------------------------------
// The session gateway's task role.

/// A GetItem of the sessions (or another) table naming these attributes, as the
/// gateway's ProjectionExpression does; `select` is the request's dynamodb:Select.
fn get_item(policy: &Value, table: &str, attributes: &[&str], select: Option<&str>) -> Request {
    let mut request = Request::new(
        &format!("arn:aws:iam::{ACCOUNT}:role/sessions-gateway"),
        "dynamodb:GetItem",
        &arn_of("aws_dynamodb_table", table),
    )
    .with("dynamodb:Attributes", json!(attributes))
    .identity(policy.clone());
    if let Some(select) = select {
        request = request.with("dynamodb:Select", json!(select));
    }
    request
}

#[test]
fn the_gateway_reads_only_the_routing_attributes_of_a_session() {
    let p = Policies::load();
    let policy = p.document("gateway_task");
    // What gateway/src/sessions.rs projects, with the key.
    let route = [
        "session_id",
        "user_id",
        "status",
        "private_ip",
        "service_ports",
    ];
    let mut cases: Vec<Case> = vec![
        (
            "the gateway's look-up".into(),
            get_item(&policy, "sessions", &route[1..], None),
            allowed,
        ),
        (
            "the look-up naming the key".into(),
            get_item(&policy, "sessions", &route, Some("SPECIFIC_ATTRIBUTES")),
            allowed,
        ),
        (
            "the whole item".into(),
            get_item(&policy, "sessions", &route, Some("ALL_ATTRIBUTES")),
            denied,
        ),
        (
            "a user's item".into(),
            get_item(&policy, "users", &["user_id", "admin"], None),
            denied,
        ),
    ];
    for secret in [
        "task_token",
        "stop_token",
        "task_arn",
        "execution_arn",
        "failure_cause",
        "public_ip",
    ] {
        let mut more = route.to_vec();
        more.push(secret);
        cases.push((
            format!("the look-up also naming {secret}"),
            get_item(&policy, "sessions", &more, None),
            denied,
        ));
        cases.push((
            format!("the look-up naming {secret}, once unconditioned"),
            get_item(
                &unconditioned(&policy, "ReadSessionRoutes"),
                "sessions",
                &more,
                None,
            ),
            allowed,
        ));
    }
    for action in [
        "dynamodb:Query",
        "dynamodb:Scan",
        "dynamodb:BatchGetItem",
        "dynamodb:PutItem",
        "dynamodb:UpdateItem",
        "dynamodb:DeleteItem",
    ] {
        cases.push((
            action.into(),
            Request::new(
                &format!("arn:aws:iam::{ACCOUNT}:role/sessions-gateway"),
                action,
                &arn_of("aws_dynamodb_table", "sessions"),
            )
            .identity(policy.clone()),
            denied,
        ));
    }
    expect(cases);
}
