//! The Rust call graph and the AWS actions it leads to, read from the code with `syn`:
//! the functions and methods of session-core and a function crate, every call in them,
//! the AWS adapters of `functions/session-aws/src/` (each `self.client.<operation>()`
//! as an IAM action), and, from a function's `main.rs`, the actions reached through
//! the steps' calls of the ports.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::{Path, PathBuf};

use session_tests::repo_root;
use syn::visit::Visit;

pub(crate) fn parse_rust(path: &Path) -> syn::File {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    syn::parse_file(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

pub(crate) fn is_cfg_test(attrs: &[syn::Attribute]) -> bool {
    attrs.iter().any(|a| {
        a.path().is_ident("cfg")
            && matches!(&a.meta, syn::Meta::List(l) if l.tokens.to_string().contains("test"))
    })
}

/// The crates under `functions/` that are Lambda functions (they have a `main.rs`).
pub(crate) fn function_crates(root: &Path) -> BTreeSet<String> {
    std::fs::read_dir(root.join("functions"))
        .unwrap()
        .flatten()
        .filter(|e| e.path().join("src/main.rs").exists())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

/// The name a method or function call ends with, and the name of its receiver (the
/// last identifier: `ctx.store.apply(..)` -> `store`).
fn receiver_name(expr: &syn::Expr) -> Option<String> {
    match expr {
        syn::Expr::Path(p) => p.path.segments.last().map(|s| s.ident.to_string()),
        syn::Expr::Field(f) => match &f.member {
            syn::Member::Named(id) => Some(id.to_string()),
            syn::Member::Unnamed(_) => None,
        },
        syn::Expr::Reference(r) => receiver_name(&r.expr),
        syn::Expr::Paren(p) => receiver_name(&p.expr),
        _ => None,
    }
}

/// Every call in a piece of code: `receiver.method(..)` with the receiver's name, and
/// `path::to::function(..)` with its path.
#[derive(Default)]
pub(crate) struct Calls {
    methods: Vec<(Option<String>, String)>,
    pub(crate) functions: Vec<Vec<String>>,
    /// String literals passed first to a method: `env.required("NAME")`.
    pub(crate) first_literals: Vec<(String, String)>,
}

impl<'ast> Visit<'ast> for Calls {
    fn visit_expr_method_call(&mut self, call: &'ast syn::ExprMethodCall) {
        let method = call.method.to_string();
        if let Some(syn::Expr::Lit(syn::ExprLit {
            lit: syn::Lit::Str(s),
            ..
        })) = call.args.first()
        {
            self.first_literals.push((method.clone(), s.value()));
        }
        self.methods.push((receiver_name(&call.receiver), method));
        syn::visit::visit_expr_method_call(self, call);
    }

    fn visit_expr_call(&mut self, call: &'ast syn::ExprCall) {
        if let syn::Expr::Path(p) = call.func.as_ref() {
            self.functions.push(
                p.path
                    .segments
                    .iter()
                    .map(|s| s.ident.to_string())
                    .collect(),
            );
        }
        syn::visit::visit_expr_call(self, call);
    }

    fn visit_item_mod(&mut self, module: &'ast syn::ItemMod) {
        if !is_cfg_test(&module.attrs) {
            syn::visit::visit_item_mod(self, module);
        }
    }
}

pub(crate) fn calls_in(visit: impl FnOnce(&mut Calls)) -> Calls {
    let mut calls = Calls::default();
    visit(&mut calls);
    calls
}

/// The functions and methods of a set of files, by name (several may share one).
#[derive(Clone, Default)]
pub(crate) struct Index {
    /// The crates whose items it holds, by the name paths give them (`session_core`).
    crates: BTreeSet<String>,
    /// Free functions and associated functions: reached by `name(..)`, `Type::name(..)`.
    functions: BTreeMap<String, Vec<syn::Block>>,
    /// Methods: reached by `value.name(..)` (and `Type::name(value, ..)`).
    methods: BTreeMap<String, Vec<syn::Block>>,
}

impl Index {
    /// Adds every `.rs` file under `src` but `main.rs` and what `skip` names, as crate
    /// `name`.
    fn add_crate(&mut self, name: &str, src: &Path, skip: &[&Path]) {
        self.crates.insert(name.to_owned());
        let mut files = Vec::new();
        rust_files(src, &mut files);
        for path in files {
            let skipped = skip.iter().any(|s| path.starts_with(s)) || path == src.join("main.rs");
            if !skipped {
                self.add_items(&parse_rust(&path).items);
            }
        }
    }

    fn add_items(&mut self, items: &[syn::Item]) {
        for item in items {
            match item {
                syn::Item::Fn(f) if !is_cfg_test(&f.attrs) => self.add(&f.sig, &f.block),
                syn::Item::Impl(i) if !is_cfg_test(&i.attrs) => {
                    for item in &i.items {
                        if let syn::ImplItem::Fn(f) = item {
                            self.add(&f.sig, &f.block);
                        }
                    }
                }
                syn::Item::Trait(t) => {
                    for item in &t.items {
                        if let syn::TraitItem::Fn(syn::TraitItemFn {
                            sig,
                            default: Some(block),
                            ..
                        }) = item
                        {
                            self.add(sig, block);
                        }
                    }
                }
                syn::Item::Mod(m) if !is_cfg_test(&m.attrs) => {
                    if let Some((_, items)) = &m.content {
                        self.add_items(items);
                    }
                }
                _ => {}
            }
        }
    }

    fn add(&mut self, sig: &syn::Signature, block: &syn::Block) {
        let kind = if sig.receiver().is_some() {
            &mut self.methods
        } else {
            &mut self.functions
        };
        kind.entry(sig.ident.to_string())
            .or_default()
            .push(block.clone());
    }
}

/// The ports, by the name the steps give them (`store: &impl SessionStore`). A step
/// calls a port through a variable or field of this name.
const PORTS: &[(&str, &str)] = &[
    ("store", "SessionStore"),
    ("compute", "Compute"),
    ("storage", "Storage"),
    ("registry", "Registry"),
    ("network", "Network"),
    ("workflow", "Workflow"),
    ("bus", "EventBus"),
    ("roles", "TaskRoles"),
];

/// IAM prefixes of the SDK crates the adapters use.
const SERVICES: &[(&str, &str)] = &[
    ("aws_sdk_dynamodb", "dynamodb"),
    ("aws_sdk_ecs", "ecs"),
    ("aws_sdk_ec2", "ec2"),
    ("aws_sdk_ecr", "ecr"),
    ("aws_sdk_efs", "elasticfilesystem"),
    ("aws_sdk_sfn", "states"),
    ("aws_sdk_eventbridge", "events"),
    ("aws_sdk_cloudwatch", "cloudwatch"),
    ("aws_sdk_sqs", "sqs"),
    ("aws_sdk_iam", "iam"),
];

/// Operations that IAM authorizes through other actions, and actions an operation
/// needs besides its own when the request sets a field: (operation, request field,
/// action). TransactWriteItems is authorized per item; tagging on create is also
/// authorized as TagResource (TagRole for IAM roles); a task's roles are passed when a task definition names
/// them and again on every RunTask.
const NOT_ACTIONS: &[&str] = &["dynamodb:TransactWriteItems", "dynamodb:TransactGetItems"];
const IMPLIED: &[(&str, &str, &str)] = &[
    ("dynamodb:TransactWriteItems", "put", "dynamodb:PutItem"),
    (
        "dynamodb:TransactWriteItems",
        "update",
        "dynamodb:UpdateItem",
    ),
    (
        "dynamodb:TransactWriteItems",
        "delete",
        "dynamodb:DeleteItem",
    ),
    (
        "dynamodb:TransactWriteItems",
        "condition_check",
        "dynamodb:ConditionCheckItem",
    ),
    ("dynamodb:TransactGetItems", "get", "dynamodb:GetItem"),
    ("ecs:RunTask", "tags", "ecs:TagResource"),
    ("ecs:RunTask", "task_definition", "iam:PassRole"),
    ("ecs:RegisterTaskDefinition", "tags", "ecs:TagResource"),
    (
        "ecs:RegisterTaskDefinition",
        "task_role_arn",
        "iam:PassRole",
    ),
    (
        "ecs:RegisterTaskDefinition",
        "execution_role_arn",
        "iam:PassRole",
    ),
    (
        "elasticfilesystem:CreateAccessPoint",
        "tags",
        "elasticfilesystem:TagResource",
    ),
    ("iam:CreateRole", "set_tags", "iam:TagRole"),
];

/// What the Lambda runtime needs whatever the code does, and the function module
/// grants every function: its logs, its traces, its dead-letter queue.
pub(crate) const RUNTIME_ACTIONS: &[&str] = &[
    "logs:CreateLogStream",
    "logs:PutLogEvents",
    "xray:PutTraceSegments",
    "xray:PutTelemetryRecords",
    "sqs:SendMessage",
];

fn pascal_case(snake: &str) -> String {
    snake
        .split('_')
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_uppercase().chain(c).collect::<String>())
                .unwrap_or_default()
        })
        .collect()
}

/// One AWS adapter method: the IAM actions its own requests need, and the methods of
/// the same adapter it calls.
#[derive(Default, Debug)]
struct AdapterMethod {
    actions: BTreeSet<String>,
    calls: BTreeSet<String>,
}

/// The AWS adapters (`functions/session-aws/src/`): for each port they implement,
/// the adapter type, and every method's actions.
#[derive(Default)]
pub(crate) struct Adapters {
    /// Port trait -> adapter type.
    implementations: BTreeMap<String, String>,
    /// (adapter type, method) -> what the method does.
    methods: BTreeMap<(String, String), AdapterMethod>,
}

impl Adapters {
    pub(crate) fn load(dir: &Path) -> Self {
        let mut adapters = Self::default();
        let mut files = Vec::new();
        rust_files(dir, &mut files);
        files.sort();
        for file in files {
            adapters.add_file(&file.display().to_string(), &parse_rust(&file));
        }
        adapters
    }

    fn add_file(&mut self, name: &str, file: &syn::File) {
        let sdks: BTreeSet<String> = file
            .items
            .iter()
            .filter_map(|i| match i {
                syn::Item::Use(u) => match &u.tree {
                    syn::UseTree::Path(p) if p.ident.to_string().starts_with("aws_sdk_") => {
                        Some(p.ident.to_string())
                    }
                    _ => None,
                },
                _ => None,
            })
            .collect();
        let service = match sdks.len() {
            0 => return,
            1 => {
                let sdk = sdks.first().unwrap();
                SERVICES
                    .iter()
                    .find(|(c, _)| c == sdk)
                    .unwrap_or_else(|| panic!("{name}: add the IAM prefix of {sdk} to SERVICES"))
                    .1
            }
            _ => panic!("{name}: one adapter file per AWS service, found {sdks:?}"),
        };
        for item in &file.items {
            let syn::Item::Impl(block) = item else {
                continue;
            };
            if is_cfg_test(&block.attrs) {
                continue;
            }
            let syn::Type::Path(ty) = block.self_ty.as_ref() else {
                continue;
            };
            let ty = ty.path.segments.last().unwrap().ident.to_string();
            if let Some((_, port, _)) = &block.trait_ {
                let port = port.segments.last().unwrap().ident.to_string();
                self.implementations.insert(port, ty.clone());
            }
            for item in &block.items {
                let syn::ImplItem::Fn(f) = item else { continue };
                let calls = calls_in(|c| c.visit_block(&f.block));
                let mut method = AdapterMethod::default();
                let fields: BTreeSet<&str> =
                    calls.methods.iter().map(|(_, m)| m.as_str()).collect();
                for (receiver, name) in &calls.methods {
                    match receiver.as_deref() {
                        Some("client") => {
                            let operation = format!("{service}:{}", pascal_case(name));
                            for (op, field, action) in IMPLIED {
                                if *op == operation && fields.contains(field) {
                                    method.actions.insert((*action).to_owned());
                                }
                            }
                            if !NOT_ACTIONS.contains(&operation.as_str()) {
                                method.actions.insert(operation);
                            }
                        }
                        Some("self") => {
                            method.calls.insert(name.clone());
                        }
                        _ => {}
                    }
                }
                for path in &calls.functions {
                    if let [first, name] = path.as_slice() {
                        if first == "Self" {
                            method.calls.insert(name.clone());
                        }
                    }
                }
                self.methods
                    .insert((ty.clone(), f.sig.ident.to_string()), method);
            }
        }
    }

    /// The actions of a port method and of everything it calls on its own adapter;
    /// `None` when the port's adapter has no such method (not a port call).
    fn actions(&self, port: &str, method: &str) -> Result<Option<BTreeSet<String>>, String> {
        let ty = self
            .implementations
            .get(port)
            .ok_or_else(|| format!("no AWS adapter implements {port}"))?;
        if !self.methods.contains_key(&(ty.clone(), method.to_owned())) {
            return Ok(None);
        }
        let mut actions = BTreeSet::new();
        let mut seen = BTreeSet::new();
        let mut queue = VecDeque::from([method.to_owned()]);
        while let Some(m) = queue.pop_front() {
            if !seen.insert(m.clone()) {
                continue;
            }
            if let Some(found) = self.methods.get(&(ty.clone(), m)) {
                actions.extend(found.actions.iter().cloned());
                queue.extend(found.calls.iter().cloned());
            }
        }
        Ok(Some(actions))
    }
}

/// The `.rs` files under `dir`, in its subdirectories too (an adapter may be a module
/// of several files, as `dynamodb/` is).
fn rust_files(dir: &Path, found: &mut Vec<PathBuf>) {
    for path in std::fs::read_dir(dir).unwrap().flatten().map(|e| e.path()) {
        if path.is_dir() {
            rust_files(&path, found);
        } else if path.extension().is_some_and(|e| e == "rs") {
            found.push(path);
        }
    }
}

/// Whether a path call may lead into the indexed crates: `launch(..)`,
/// `crate::x::y(..)`, `session_core::input(..)`, `api::run(..)` (when indexed),
/// `Status::on(..)`; not `lambda_runtime::run(..)`.
fn followed<'a>(path: &'a [String], crates: &BTreeSet<String>) -> Option<&'a str> {
    let first = path.first()?;
    let into_core = path.len() == 1
        || ["crate", "self", "super", "Self"].contains(&first.as_str())
        || crates.contains(first)
        || first.starts_with(char::is_uppercase);
    into_core.then(|| path.last().unwrap().as_str())
}

/// The AWS actions a function's `main.rs` leads to: the port calls of every step and
/// helper it reaches, through the adapters.
pub(crate) fn actions_called(
    main: &syn::File,
    core: &Index,
    adapters: &Adapters,
) -> Result<BTreeSet<String>, String> {
    let ports: BTreeMap<&str, &str> = PORTS.iter().copied().collect();
    let mut actions = BTreeSet::new();
    let mut visited = BTreeSet::new();
    let mut queue = VecDeque::from([calls_in(|c| c.visit_file(main))]);
    while let Some(calls) = queue.pop_front() {
        let mut next = Vec::new();
        for (receiver, method) in &calls.methods {
            let port_call = match receiver.as_deref().and_then(|r| ports.get(r)) {
                Some(port) => adapters.actions(port, method)?,
                None => None,
            };
            match port_call {
                Some(called) => actions.extend(called),
                None => next.extend(core.methods.get(method).map(|b| (format!(".{method}"), b))),
            }
        }
        for path in &calls.functions {
            let Some(name) = followed(path, &core.crates) else {
                continue;
            };
            next.extend(core.functions.get(name).map(|b| (name.to_owned(), b)));
            if path.len() > 1 {
                next.extend(core.methods.get(name).map(|b| (format!(".{name}"), b)));
            }
        }
        for (key, bodies) in next {
            if visited.insert(key) {
                for body in bodies {
                    queue.push_back(calls_in(|c| c.visit_block(body)));
                }
            }
        }
    }
    Ok(actions)
}

/// session-core: the steps, the domain, the helpers.
pub(crate) fn core_index(root: &Path) -> Index {
    let mut index = Index::default();
    index.add_crate(
        "session_core",
        &root.join("functions/session-core/src"),
        &[],
    );
    index
}

/// What a function's `main.rs` may reach: session-core (`core`) and the function
/// crate's own modules (the api's handler lives in its `lib.rs`).
pub(crate) fn function_index(core: &Index, root: &Path, name: &str) -> Index {
    let mut index = core.clone();
    let src = root.join("functions").join(name).join("src");
    index.add_crate(&name.replace('-', "_"), &src, &[]);
    index
}

#[test]
fn the_action_finder_follows_steps_into_adapters() {
    let adapters = {
        let mut a = Adapters::default();
        let file: syn::File = syn::parse_quote! {
            use aws_sdk_dynamodb::Client;
            impl SessionStore for DynamoStore {
                async fn open(&self) -> Result<()> {
                    self.client.transact_write_items().transact_items(TransactWriteItem::builder().put(p).build()).send().await;
                    self.session().await
                }
                async fn session(&self) -> Result<()> { self.client.get_item().send().await }
                async fn apply(&self) -> Result<()> { self.client.update_item().send().await }
            }
        };
        a.add_file("dynamodb.rs", &file);
        let file: syn::File = syn::parse_quote! {
            use aws_sdk_ecs::Client;
            impl Compute for EcsCompute {
                async fn run_task(&self) -> Result<String> {
                    self.client.run_task().task_definition(d).tags(t).send().await
                }
                async fn stop_task(&self) -> Result<()> { self.client.stop_task().send().await }
            }
        };
        a.add_file("ecs.rs", &file);
        a
    };
    let mut core = Index::default();
    let steps: syn::File = syn::parse_quote! {
        pub async fn launch(store: &impl SessionStore, compute: &impl Compute) -> Result<()> {
            store.open().await?;
            helper(store).await
        }
        async fn helper(store: &impl SessionStore) -> Result<()> { store.apply().await }
        impl Unrelated { fn run(&self) { self.compute.stop_task(); } }
    };
    core.add_items(&steps.items);
    let main: syn::File = syn::parse_quote! {
        use session_core::steps::launch::launch;
        async fn main() { lambda_runtime::run(service_fn(|e| launch(&store, &compute))).await }
    };
    let actions = actions_called(&main, &core, &adapters).unwrap();
    let expected: BTreeSet<String> = [
        "dynamodb:PutItem",
        "dynamodb:GetItem",
        "dynamodb:UpdateItem",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    // Not RunTask (never called) and not StopTask (only from an unrelated `run`, which
    // `lambda_runtime::run` must not lead to).
    assert_eq!(actions, expected);

    let run: syn::File = syn::parse_quote! {
        async fn main() { let r = Unrelated; r.run(); compute.run_task().await; }
    };
    let actions = actions_called(&run, &core, &adapters).unwrap();
    assert!(actions.contains("ecs:StopTask") && actions.contains("ecs:RunTask"));
    assert!(
        actions.contains("ecs:TagResource") && actions.contains("iam:PassRole"),
        "{actions:?}"
    );
    let unknown: syn::File = syn::parse_quote! { fn main() { storage.create_access_point(); } };
    assert!(
        actions_called(&unknown, &core, &adapters).is_err(),
        "a port without an adapter is an error"
    );
}

#[test]
fn the_action_finder_follows_a_handler_in_the_function_crate() {
    let adapters = {
        let mut a = Adapters::default();
        let file: syn::File = syn::parse_quote! {
            use aws_sdk_dynamodb::Client;
            impl SessionStore for DynamoStore {
                async fn sessions_of_user(&self) -> Result<()> { self.client.query().send().await }
            }
        };
        a.add_file("dynamodb.rs", &file);
        let file: syn::File = syn::parse_quote! {
            use aws_sdk_sfn::Client;
            impl Workflow for SfnWorkflow {
                async fn start(&self) -> Result<()> { self.client.start_execution().send().await }
            }
        };
        a.add_file("sfn.rs", &file);
        a
    };
    let core = Index::default();
    let mut function = core.clone();
    function.crates.insert("api".to_owned());
    let lib: syn::File = syn::parse_quote! {
        impl<S: SessionStore, W: Workflow> Api<S, W> {
            pub async fn handle(&self, req: Request) -> Response {
                match route { Route::Start => self.start(req).await, Route::List => self.list().await }
            }
            async fn start(&self, req: Request) -> Response { self.workflow.start().await }
            async fn list(&self) -> Response { self.store.sessions_of_user().await }
        }
        pub async fn serve(store: &impl SessionStore) { store.sessions_of_user().await }
    };
    function.add_items(&lib.items);
    let main: syn::File = syn::parse_quote! {
        async fn main() {
            let api = &api::Api { store, workflow };
            lambda_http::run(service_fn(move |req| async move { Ok(api.handle(req).await) })).await
        }
    };
    let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
    assert_eq!(
        actions_called(&main, &function, &adapters).unwrap(),
        names(&["states:StartExecution", "dynamodb:Query"])
    );
    // Without the crate's own modules the handler, and so every call, is out of sight.
    assert_eq!(
        actions_called(&main, &core, &adapters).unwrap(),
        BTreeSet::new()
    );
    // A path into the function's crate is followed; one into another crate is not.
    let serve: syn::File = syn::parse_quote! { async fn main() { api::serve(&store).await } };
    assert_eq!(
        actions_called(&serve, &function, &adapters).unwrap(),
        names(&["dynamodb:Query"])
    );
    let other: syn::File = syn::parse_quote! { async fn main() { other::serve(&store).await } };
    assert_eq!(
        actions_called(&other, &function, &adapters).unwrap(),
        BTreeSet::new()
    );
}

#[test]
fn every_port_an_adapter_implements_has_a_receiver_name() {
    let root = repo_root();
    let ports: BTreeSet<String> = parse_rust(&root.join("functions/session-core/src/ports.rs"))
        .items
        .iter()
        .filter_map(|i| match i {
            syn::Item::Trait(t) => Some(t.ident.to_string()),
            _ => None,
        })
        .collect();
    let adapters = Adapters::load(&root.join("functions/session-aws/src"));
    let named: BTreeSet<&str> = PORTS.iter().map(|(_, port)| *port).collect();
    for port in adapters
        .implementations
        .keys()
        .filter(|p| ports.contains(*p))
    {
        assert!(
            named.contains(port.as_str()),
            "add the name the steps give the {port} port to PORTS"
        );
    }
}
