//! A Terraform module checked against its providers' schemas, as `terraform validate`
//! would with the providers installed: every resource and data source type exists;
//! every argument and block it sets is one the type has, nested blocks included; every
//! required argument and block is set; a block allowed once is written once. And every
//! reference names something declared: `var.x`, `local.x`, `module.x` (and an output
//! the called module has), `data.t.n`, `ephemeral.t.n`, `t.n`, and an attribute the
//! type exports; `count`, `each` and `self` only where they exist; an ephemeral value
//! only in a write-only argument (`*_wo`) of a resource, as Terraform requires.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use hcl::{Block, Body, Expression, TraversalOperator};
use session_tests::provider_schema::{BlockSchema, ProviderSchema, TypeSchema};

use super::hcl_reader::{attr, literal, Module};

/// The schemas of the providers terraform/ uses, their ephemeral resource types, and
/// Terraform's built-in `terraform_data`.
pub struct Schemas {
    providers: BTreeMap<String, ProviderSchema>,
    /// `ephemeral` blocks' types (`aws_secretsmanager_random_password`), of every
    /// provider: their names begin with their provider's.
    ephemeral: BTreeMap<String, TypeSchema>,
    terraform_data: TypeSchema,
}

/// The npm packages (tools/npm) whose `.jsii` holds each provider's schema.
const PROVIDER_PACKAGES: &[&str] = &["@cdktn/provider-aws", "@cdktn/provider-random"];

impl Schemas {
    pub fn load(tools: &Path) -> Self {
        let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("provider-schemas");
        let mut ephemeral = BTreeMap::new();
        let providers = PROVIDER_PACKAGES
            .iter()
            .map(|package| {
                let dir = tools.join("npm/node_modules").join(package);
                let schema = ProviderSchema::load(&dir, &cache).unwrap_or_else(|e| {
                    panic!("{package}: {e} (run `make tools`, which installs tools/npm)")
                });
                ephemeral.extend(schema.ephemeral_resources.clone());
                (schema.name.clone(), schema)
            })
            .collect();
        // https://developer.hashicorp.com/terraform/language/resources/terraform-data
        let terraform_data = TypeSchema {
            body: BlockSchema {
                arguments: [
                    ("input".to_owned(), false),
                    ("triggers_replace".to_owned(), false),
                ]
                .into_iter()
                .collect(),
                ..BlockSchema::default()
            },
            attributes: ["id", "input", "output", "triggers_replace"]
                .iter()
                .map(|s| s.to_string())
                .collect(),
        };
        Self {
            providers,
            ephemeral,
            terraform_data,
        }
    }

    pub fn provider(&self, name: &str) -> Option<&ProviderSchema> {
        self.providers.get(name)
    }

    /// An ephemeral resource type.
    pub fn ephemeral(&self, ty: &str) -> Option<&TypeSchema> {
        self.ephemeral.get(ty)
    }

    /// A type of a `resource`, `data` or `ephemeral` block (`kind`); `Err` names what
    /// is unknown.
    fn type_schema(&self, kind: &str, ty: &str) -> Result<&TypeSchema, String> {
        let data = kind == "data";
        if kind == "resource" && ty == "terraform_data" {
            return Ok(&self.terraform_data);
        }
        // A type's provider is the prefix of its name (`provider = aws.west` only picks
        // another configuration of the same provider).
        let prefix = ty.split('_').next().unwrap_or(ty);
        let provider = self
            .providers
            .get(prefix)
            .ok_or_else(|| format!("no schema of a provider {prefix:?} for {ty}"))?;
        if kind == "ephemeral" {
            return self.ephemeral.get(ty).ok_or_else(|| {
                format!(
                    "{ty} is not an ephemeral resource type of {} {}",
                    provider.source, provider.version
                )
            });
        }
        let (types, kind) = if data {
            (&provider.data_sources, "data source")
        } else {
            (&provider.resources, "resource")
        };
        types.get(ty).ok_or_else(|| {
            format!(
                "{ty} is not a {kind} type of {} {}",
                provider.source, provider.version
            )
        })
    }
}

/// Arguments every resource and data block may set besides its type's.
const META_ARGUMENTS: &[&str] = &["count", "for_each", "provider", "depends_on"];
/// Blocks every resource may hold besides its type's (data sources: only `lifecycle`).
const META_BLOCKS: &[&str] = &["lifecycle", "provisioner", "connection"];
const LIFECYCLE: &[&str] = &[
    "create_before_destroy",
    "prevent_destroy",
    "ignore_changes",
    "replace_triggered_by",
    "precondition",
    "postcondition",
];
/// What a `module` block may set besides the module's variables.
const MODULE_META: &[&str] = &[
    "source",
    "version",
    "providers",
    "count",
    "for_each",
    "depends_on",
];

/// What a module declares, for references to resolve against.
struct Declared<'a> {
    variables: BTreeSet<String>,
    locals: BTreeSet<String>,
    /// Module call -> the called module when its source is a directory here.
    modules: BTreeMap<String, Option<&'a Module>>,
    resources: BTreeMap<(String, String), &'a Block>,
    data: BTreeMap<(String, String), &'a Block>,
    ephemeral: BTreeMap<(String, String), &'a Block>,
}

/// Where a reference is: which of `count`, `each`, `self` exist there, and the names
/// `for` expressions and `dynamic` blocks bind.
#[derive(Clone, Default)]
struct Scope {
    count: bool,
    each: bool,
    this: bool,
    names: Vec<String>,
}

impl Scope {
    fn with(&self, names: impl IntoIterator<Item = String>) -> Scope {
        let mut scope = self.clone();
        scope.names.extend(names);
        scope
    }
}

struct Checker<'a> {
    schemas: &'a Schemas,
    declared: Declared<'a>,
    findings: BTreeSet<String>,
    /// How many references to `ephemeral.*` were read so far.
    ephemeral_references: usize,
    /// Whether the arguments read now are a resource's or a data source's, where only a
    /// write-only one may take an ephemeral value.
    in_stored_block: bool,
}

/// Everything in `module` the schemas or the module's own declarations do not allow,
/// one finding a line, sorted. `children` are the modules its `module` blocks call,
/// by source.
pub fn findings(
    module: &Module,
    children: &BTreeMap<String, Module>,
    schemas: &Schemas,
) -> Vec<String> {
    let labels = |kind: &str| -> BTreeSet<String> {
        module
            .blocks(kind)
            .filter_map(|b| b.labels().first().map(|l| l.as_str().to_owned()))
            .collect()
    };
    let declared = Declared {
        variables: labels("variable"),
        locals: module.locals().into_keys().collect(),
        modules: module
            .blocks("module")
            .filter_map(|b| {
                let source = attr(b.body(), "source")
                    .and_then(literal)
                    .unwrap_or_default();
                Some((
                    b.labels().first()?.as_str().to_owned(),
                    children.get(source),
                ))
            })
            .collect(),
        resources: typed(module, "resource"),
        data: typed(module, "data"),
        ephemeral: typed(module, "ephemeral"),
    };
    let mut checker = Checker {
        schemas,
        declared,
        findings: BTreeSet::new(),
        ephemeral_references: 0,
        in_stored_block: false,
    };
    for block in module.bodies.iter().flat_map(|b| b.blocks()) {
        checker.top_level(block, children);
    }
    checker.findings.into_iter().collect()
}

/// The `resource` or `data` blocks of a module, by type and name.
pub fn typed<'a>(module: &'a Module, kind: &'a str) -> BTreeMap<(String, String), &'a Block> {
    module
        .blocks(kind)
        .filter(|b| b.labels().len() == 2)
        .map(|b| {
            let l = b.labels();
            ((l[0].as_str().to_owned(), l[1].as_str().to_owned()), b)
        })
        .collect()
}

impl Checker<'_> {
    fn report(&mut self, at: &str, message: impl std::fmt::Display) {
        self.findings.insert(format!("{at}: {message}"));
    }

    fn top_level(&mut self, block: &Block, children: &BTreeMap<String, Module>) {
        let labels: Vec<&str> = block.labels().iter().map(|l| l.as_str()).collect();
        let global = Scope::default();
        match (block.identifier(), labels.as_slice()) {
            ("resource" | "data" | "ephemeral", [ty, name]) => self.resource(block, ty, name),
            ("module", [name]) => {
                let at = format!("module.{name}");
                // A module from a registry cannot be read offline; a local one can.
                let source = attr(block.body(), "source").and_then(literal);
                match (source, source.and_then(|s| children.get(s))) {
                    (_, Some(child)) => self.module_call(block.body(), child, &at),
                    (Some(s), None) if s.starts_with("./") || s.starts_with("../") => {
                        self.report(&at, format_args!("no module at {s}"))
                    }
                    _ => {}
                }
                let scope = Scope {
                    count: attr(block.body(), "count").is_some(),
                    each: attr(block.body(), "for_each").is_some(),
                    ..Scope::default()
                };
                self.body_references(block.body(), &scope, &at);
            }
            ("provider", [name]) => {
                let at = format!("provider.{name}");
                match self.schemas.provider(name) {
                    Some(provider) => {
                        let mut schema = provider.provider.clone();
                        schema.arguments.insert("alias".into(), false);
                        self.body(&schema, block.body(), &at, None);
                    }
                    None => self.report(&at, "no schema of this provider"),
                }
                self.body_references(block.body(), &global, &at);
            }
            ("variable", [name]) => {
                // `type` is a type expression, not references.
                let at = format!("variable.{name}");
                for a in block.body().attributes().filter(|a| a.key() != "type") {
                    self.references(a.expr(), &global, &at);
                }
                for b in block.body().blocks() {
                    self.body_references(b.body(), &global, &at);
                }
            }
            ("output", [name]) => {
                self.body_references(block.body(), &global, &format!("output.{name}"))
            }
            ("locals", []) => self.body_references(block.body(), &global, "locals"),
            ("terraform" | "check" | "moved" | "import" | "removed", _) => {}
            (kind, labels) => self.report(
                kind,
                format_args!("unexpected top-level block {kind} {labels:?}"),
            ),
        }
    }

    fn resource(&mut self, block: &Block, ty: &str, name: &str) {
        let kind = block.identifier();
        let at = match kind {
            "resource" => format!("{ty}.{name}"),
            _ => format!("{kind}.{ty}.{name}"),
        };
        match self.schemas.type_schema(kind, ty) {
            Ok(schema) => {
                // Data sources and ephemeral resources: only `lifecycle`.
                let meta = if kind == "resource" {
                    META_BLOCKS
                } else {
                    &META_BLOCKS[..1]
                };
                self.body(&schema.body, block.body(), &at, Some(meta));
            }
            Err(e) => self.report(&at, e),
        }
        let body = block.body();
        let scope = Scope {
            count: attr(body, "count").is_some(),
            each: attr(body, "for_each").is_some(),
            this: true,
            names: Vec::new(),
        };
        self.in_stored_block = kind != "ephemeral";
        self.body_references(body, &scope, &at);
        self.in_stored_block = false;
    }

    /// A block's body against its schema; `meta`: the meta-blocks a resource or data
    /// block may hold (and then its meta-arguments too), `None` for a nested block.
    fn body(&mut self, schema: &BlockSchema, body: &Body, at: &str, meta: Option<&[&str]>) {
        if schema.open {
            return;
        }
        for attribute in body.attributes() {
            let key = attribute.key();
            if (meta.is_some() && META_ARGUMENTS.contains(&key))
                || schema.arguments.contains_key(key)
            {
                continue;
            }
            if schema.blocks.contains_key(key) {
                self.report(at, format_args!("{key} is a block, not an argument"));
            } else {
                self.report(at, format_args!("unknown argument {key}"));
            }
        }
        let mut written: BTreeMap<&str, usize> = BTreeMap::new();
        for block in body.blocks() {
            let (name, content) = match block.identifier() {
                "dynamic" => {
                    let Some(label) = block.labels().first() else {
                        self.report(at, "a dynamic block without a label");
                        continue;
                    };
                    let content = block.body().blocks().find(|b| b.identifier() == "content");
                    if content.is_none() {
                        self.report(
                            at,
                            format_args!("dynamic {:?} has no content", label.as_str()),
                        );
                    }
                    (label.as_str(), content.map(Block::body))
                }
                ident if meta.is_some_and(|m| m.contains(&ident)) => {
                    if ident == "lifecycle" {
                        self.lifecycle(block.body(), at);
                    }
                    continue;
                }
                ident => {
                    *written.entry(ident).or_default() += 1;
                    (ident, Some(block.body()))
                }
            };
            let nested_at = format!("{at}.{name}");
            if let Some(nested) = schema.blocks.get(name) {
                if let Some(content) = content {
                    self.body(&nested.body, content, &nested_at, None);
                }
            } else if let Some(fields) = schema.objects.get(name) {
                if let Some(content) = content {
                    self.body(fields, content, &nested_at, None);
                }
            } else if schema.arguments.contains_key(name) {
                self.report(at, format_args!("{name} is an argument, not a block"));
            } else {
                self.report(at, format_args!("unknown block {name}"));
            }
        }
        for (name, required) in &schema.arguments {
            if *required && attr(body, name).is_none() {
                self.report(at, format_args!("missing required argument {name}"));
            }
        }
        for (name, nested) in &schema.blocks {
            let dynamic = body.blocks().any(|b| {
                b.identifier() == "dynamic"
                    && b.labels().first().is_some_and(|l| l.as_str() == name)
            });
            let count = written.get(name.as_str()).copied().unwrap_or(0);
            if nested.required && count == 0 && !dynamic {
                self.report(at, format_args!("missing required block {name}"));
            }
            if nested.max_one && count > 1 {
                self.report(
                    at,
                    format_args!("block {name} may be written at most once, not {count} times"),
                );
            }
        }
    }

    fn lifecycle(&mut self, body: &Body, at: &str) {
        let at = format!("{at}.lifecycle");
        let keys = body
            .attributes()
            .map(|a| a.key())
            .chain(body.blocks().map(|b| b.identifier()));
        let unknown: Vec<&str> = keys.filter(|k| !LIFECYCLE.contains(k)).collect();
        for key in unknown {
            self.report(&at, format_args!("unknown lifecycle setting {key}"));
        }
    }

    /// A `module` block's arguments against the called module's variables.
    fn module_call(&mut self, body: &Body, child: &Module, at: &str) {
        let variables: BTreeMap<&str, bool> = child
            .blocks("variable")
            .filter_map(|v| {
                let name = v.labels().first()?.as_str();
                Some((name, attr(v.body(), "default").is_none()))
            })
            .collect();
        for attribute in body.attributes() {
            let key = attribute.key();
            if !MODULE_META.contains(&key) && !variables.contains_key(key) {
                self.report(at, format_args!("the module has no variable {key}"));
            }
        }
        for (name, required) in variables {
            if required && attr(body, name).is_none() {
                self.report(at, format_args!("missing required variable {name}"));
            }
        }
    }

    fn body_references(&mut self, body: &Body, scope: &Scope, at: &str) {
        for attribute in body.attributes() {
            // ignore_changes names the block's own arguments, not things declared.
            if attribute.key() != "ignore_changes" {
                let before = self.ephemeral_references;
                self.references(attribute.expr(), scope, at);
                // Terraform keeps a resource's arguments in its plan and state: an
                // ephemeral value may go only where it keeps nothing.
                let key = attribute.key();
                if self.in_stored_block
                    && self.ephemeral_references > before
                    && !key.ends_with("_wo")
                {
                    self.report(
                        at,
                        format_args!("{key} takes an ephemeral value but is not write-only"),
                    );
                }
            }
        }
        for block in body.blocks() {
            if block.identifier() == "dynamic" {
                // Its for_each is read outside; its content with the iterator bound.
                let iterator = attr(block.body(), "iterator")
                    .map(|e| e.to_string())
                    .or_else(|| block.labels().first().map(|l| l.as_str().to_owned()))
                    .unwrap_or_default();
                let inner = scope.with([iterator]);
                for a in block.body().attributes() {
                    let scope = if a.key() == "for_each" { scope } else { &inner };
                    self.references(a.expr(), scope, at);
                }
                for b in block.body().blocks() {
                    self.body_references(b.body(), &inner, at);
                }
            } else {
                self.body_references(block.body(), scope, at);
            }
        }
    }

    fn references(&mut self, expr: &Expression, scope: &Scope, at: &str) {
        match expr {
            Expression::Variable(v) => self.reference(v.as_str(), &[], scope, at),
            Expression::Traversal(t) => {
                for op in &t.operators {
                    if let TraversalOperator::Index(index) = op {
                        self.references(index, scope, at);
                    }
                }
                match &t.expr {
                    Expression::Variable(v) => self.reference(v.as_str(), &t.operators, scope, at),
                    other => self.references(other, scope, at),
                }
            }
            Expression::Array(items) => {
                for item in items {
                    self.references(item, scope, at);
                }
            }
            Expression::Object(object) => {
                for (key, value) in object {
                    if let hcl::ObjectKey::Expression(key) = key {
                        // A bare word as a key is a name, not a reference.
                        if !matches!(key, Expression::Variable(_)) {
                            self.references(key, scope, at);
                        }
                    }
                    self.references(value, scope, at);
                }
            }
            Expression::TemplateExpr(t) => {
                let template = hcl::Template::from_expr(t).unwrap_or_else(|e| panic!("{t}: {e}"));
                self.template_references(&template, scope, at);
            }
            Expression::FuncCall(call) => {
                for arg in &call.args {
                    self.references(arg, scope, at);
                }
            }
            Expression::Parenthesis(inner) => self.references(inner, scope, at),
            Expression::Conditional(c) => {
                for e in [&c.cond_expr, &c.true_expr, &c.false_expr] {
                    self.references(e, scope, at);
                }
            }
            Expression::Operation(op) => match op.as_ref() {
                hcl::Operation::Unary(u) => self.references(&u.expr, scope, at),
                hcl::Operation::Binary(b) => {
                    self.references(&b.lhs_expr, scope, at);
                    self.references(&b.rhs_expr, scope, at);
                }
            },
            Expression::ForExpr(f) => {
                self.references(&f.collection_expr, scope, at);
                let inner = scope.with(
                    f.key_var
                        .iter()
                        .chain([&f.value_var])
                        .map(|v| v.as_str().to_owned()),
                );
                for e in f.key_expr.iter().chain([&f.value_expr]).chain(&f.cond_expr) {
                    self.references(e, &inner, at);
                }
            }
            _ => {}
        }
    }

    fn template_references(&mut self, template: &hcl::Template, scope: &Scope, at: &str) {
        use hcl::template::{Directive, Element};
        for element in template.elements() {
            match element {
                Element::Literal(_) => {}
                Element::Interpolation(i) => self.references(&i.expr, scope, at),
                Element::Directive(d) => match d.as_ref() {
                    Directive::If(d) => {
                        self.references(&d.cond_expr, scope, at);
                        self.template_references(&d.true_template, scope, at);
                        if let Some(f) = &d.false_template {
                            self.template_references(f, scope, at);
                        }
                    }
                    Directive::For(d) => {
                        self.references(&d.collection_expr, scope, at);
                        let inner = scope.with(
                            d.key_var
                                .iter()
                                .chain([&d.value_var])
                                .map(|v| v.as_str().to_owned()),
                        );
                        self.template_references(&d.template, &inner, at);
                    }
                },
            }
        }
    }

    /// One reference: a root name and what follows it.
    fn reference(&mut self, root: &str, ops: &[TraversalOperator], scope: &Scope, at: &str) {
        // The names after the root, up to the first index or splat, and the attribute
        // read after them (`aws_subnet.public[*].id`: [public], then id).
        let mut names = ops.iter().map_while(|op| match op {
            TraversalOperator::GetAttr(name) => Some(name.as_str()),
            _ => None,
        });
        let first = names.next();
        let attribute_after = |n: usize| {
            ops.iter().skip(n).find_map(|op| match op {
                TraversalOperator::GetAttr(name) => Some(name.as_str()),
                _ => None,
            })
        };
        if scope.names.iter().any(|n| n == root) {
            return;
        }
        match (root, first) {
            ("var", Some(name)) => {
                if !self.declared.variables.contains(name) {
                    self.report(at, format_args!("var.{name} is not declared"));
                }
            }
            ("local", Some(name)) => {
                if !self.declared.locals.contains(name) {
                    self.report(at, format_args!("local.{name} is not declared"));
                }
            }
            ("module", Some(name)) => match self.declared.modules.get(name) {
                None => self.report(at, format_args!("module.{name} is not declared")),
                Some(Some(child)) => {
                    if let Some(output) = attribute_after(1) {
                        let outputs: BTreeSet<&str> = child
                            .blocks("output")
                            .filter_map(|o| o.labels().first().map(|l| l.as_str()))
                            .collect();
                        if !outputs.contains(output) {
                            self.report(at, format_args!("module.{name} has no output {output}"));
                        }
                    }
                }
                Some(None) => {}
            },
            ("data" | "ephemeral", Some(ty)) => {
                if root == "ephemeral" {
                    self.ephemeral_references += 1;
                }
                let Some(name) = names.next() else {
                    self.report(at, format_args!("{root}.{ty} names nothing"));
                    return;
                };
                let declared = if root == "data" {
                    &self.declared.data
                } else {
                    &self.declared.ephemeral
                };
                if !declared.contains_key(&(ty.to_owned(), name.to_owned())) {
                    self.report(at, format_args!("{root}.{ty}.{name} is not declared"));
                } else if let Some(attribute) = attribute_after(2) {
                    self.attribute(root, ty, name, attribute, at);
                }
            }
            ("path", Some("module" | "root" | "cwd"))
            | ("terraform", Some("workspace" | "applying")) => {}
            ("count", Some("index")) if scope.count => {}
            ("count", _) => self.report(at, "count.index where no count is set"),
            ("each", Some("key" | "value")) if scope.each => {}
            ("each", _) => self.report(at, "each where no for_each is set"),
            ("self", _) if scope.this => {}
            ("self", _) => self.report(at, "self outside a resource"),
            // `provider = aws.west`: a provider configuration.
            (provider, Some(_)) if self.schemas.provider(provider).is_some() => {}
            (ty, Some(name))
                if ![
                    "var",
                    "local",
                    "module",
                    "data",
                    "ephemeral",
                    "path",
                    "terraform",
                ]
                .contains(&ty) =>
            {
                if !self
                    .declared
                    .resources
                    .contains_key(&(ty.to_owned(), name.to_owned()))
                {
                    self.report(at, format_args!("{ty}.{name} is not declared"));
                } else if let Some(attribute) = attribute_after(1) {
                    self.attribute("resource", ty, name, attribute, at);
                }
            }
            (root, _) => self.report(at, format_args!("{root} names nothing")),
        }
    }

    /// An attribute read of a `resource`, `data` or `ephemeral` block (`kind`).
    fn attribute(&mut self, kind: &str, ty: &str, name: &str, attribute: &str, at: &str) {
        if let Ok(schema) = self.schemas.type_schema(kind, ty) {
            if !schema.attributes.contains(attribute) {
                let prefix = if kind == "resource" {
                    String::new()
                } else {
                    format!("{kind}.")
                };
                self.report(
                    at,
                    format_args!(
                        "{prefix}{ty}.{name}.{attribute}: {ty} has no attribute {attribute}"
                    ),
                );
            }
        }
    }
}
