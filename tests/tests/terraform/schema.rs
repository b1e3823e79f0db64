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

/// `>= 6.37.0, < 7.0.0` admits `6.66.0`.
pub(crate) fn admits(constraint: &str, version: &str) -> bool {
    let parse = |v: &str| -> Vec<u64> {
        v.trim()
            .split('.')
            .map(|n| n.parse().unwrap_or(0))
            .collect()
    };
    let version = parse(version);
    constraint.split(',').all(|part| {
        let part = part.trim();
        let (op, bound) = ["~>", ">=", "<=", "!=", ">", "<", "="]
            .iter()
            .find_map(|op| part.strip_prefix(op).map(|rest| (*op, parse(rest))))
            .unwrap_or(("=", parse(part)));
        match op {
            ">=" => version >= bound,
            "<=" => version <= bound,
            ">" => version > bound,
            "<" => version < bound,
            "!=" => version != bound,
            "~>" => {
                let prefix = &bound[..bound.len() - 1];
                version >= bound && version[..prefix.len()] == *prefix
            }
            _ => version == bound,
        }
    })
}

// ---------------------------------------------------------------------------------
// Self-tests: the checks above find what they are meant to, on small modules.

#[cfg(test)]
mod self_tests {
    use super::*;
    use crate::schemas;

    #[test]
    fn a_version_constraint_admits_what_it_says() {
        assert!(admits(">= 6.37.0, < 7.0.0", "6.66.0"));
        assert!(!admits(">= 6.37.0, < 7.0.0", "6.36.1"));
        assert!(!admits(">= 6.37.0, < 7.0.0", "7.0.0"));
        assert!(admits("~> 6.37", "6.66.0") && !admits("~> 6.37.0", "6.66.0"));
        assert!(admits("6.66.0", "6.66.0") && !admits("!= 6.66.0", "6.66.0"));
    }

    #[test]
    fn the_provider_schema_reads_as_terraform_spells_it() {
        let schemas = schemas();
        let aws = schemas.provider("aws").expect("the aws provider's schema");
        assert_eq!(aws.source, "hashicorp/aws");
        assert!(aws.version.starts_with("6."), "{}", aws.version);
        assert!(aws.resources.len() > 1500 && aws.data_sources.len() > 500);

        let table = &aws.resources["aws_dynamodb_table"];
        assert_eq!(table.body.arguments.get("name"), Some(&true));
        assert_eq!(table.body.arguments.get("hash_key"), Some(&false));
        let index = &table.body.blocks["global_secondary_index"];
        assert!(!index.required && !index.max_one);
        assert_eq!(index.body.arguments.get("projection_type"), Some(&true));
        let key_schema = &index.body.blocks["key_schema"];
        assert_eq!(
            key_schema.body.arguments,
            BTreeMap::from([("attribute_name".into(), true), ("key_type".into(), true)])
        );
        assert!(table.body.blocks["point_in_time_recovery"].max_one);
        assert!(table.attributes.contains("arn") && table.attributes.contains("stream_arn"));

        // Renamed in the bindings: the Terraform names are the registry's.
        let instance = &aws.resources["aws_instance"];
        assert!(instance.body.arguments.contains_key("get_password_data"));
        assert!(!instance.body.arguments.contains_key("fetch_password_data"));

        // Attributes written as blocks keep their fields.
        let route = &aws.resources["aws_route_table"].body.objects["route"];
        assert!(
            route.arguments.contains_key("cidr_block")
                && route.arguments.contains_key("gateway_id")
        );

        let statement = &aws.data_sources["aws_iam_policy_document"].body.blocks["statement"];
        assert_eq!(
            statement.body.blocks["condition"].body.arguments,
            BTreeMap::from([
                ("test".into(), true),
                ("values".into(), true),
                ("variable".into(), true)
            ])
        );
        assert!(aws.provider.blocks.contains_key("default_tags"));
        assert_eq!(aws.provider.arguments.get("region"), Some(&false));

        let random = schemas
            .provider("random")
            .expect("the random provider's schema");
        assert_eq!(
            random.resources["random_password"]
                .body
                .arguments
                .get("length"),
            Some(&true)
        );
        assert!(random.resources["random_password"]
            .attributes
            .contains("result"));
    }

    fn schema_findings(text: &str) -> Vec<String> {
        findings(&Module::parse(text), &BTreeMap::new(), &schemas())
    }

    #[test]
    fn an_unknown_argument_or_block_is_found() {
        let aws = format!(
            "hashicorp/aws {}",
            schemas().provider("aws").unwrap().version
        );
        let found = schema_findings(
            r#"
    resource "aws_dynamodb_table" "t" {
      name         = "t"
      billing_mode = "PAY_PER_REQUEST"
      hash_kye     = "id"
      ttl          = { enabled = true }

      global_secondary_idx {
        name = "by-user"
      }

      global_secondary_index {
        name            = "by-user"
        projection_type = "ALL"
        key_schema {
          attribute_name = "user_id"
          key_type       = "HASH"
          sort           = true
        }
        hash_key {}
      }

      lifecycle {
        prevent_destroy = true
        prevent_update  = true
      }
    }

    resource "aws_dynamo_table" "typo" {}
    data "aws_iam_policy_documents" "typo" {}

    provider "aws" {
      regoin = "eu-west-1"
    }
    "#,
        );
        assert_eq!(
            found,
            vec![
                format!("aws_dynamo_table.typo: aws_dynamo_table is not a resource type of {aws}"),
                "aws_dynamodb_table.t.global_secondary_index.key_schema: unknown argument sort".to_owned(),
                "aws_dynamodb_table.t.global_secondary_index: hash_key is an argument, not a block".to_owned(),
                "aws_dynamodb_table.t.lifecycle: unknown lifecycle setting prevent_update".to_owned(),
                "aws_dynamodb_table.t: ttl is a block, not an argument".to_owned(),
                "aws_dynamodb_table.t: unknown argument hash_kye".to_owned(),
                "aws_dynamodb_table.t: unknown block global_secondary_idx".to_owned(),
                format!("data.aws_iam_policy_documents.typo: aws_iam_policy_documents is not a data source type of {aws}"),
                "provider.aws: unknown argument regoin".to_owned(),
            ]
        );
    }

    #[test]
    fn a_module_call_is_checked_against_the_module() {
        let root = Module::parse(
            r#"
    module "f" {
      source      = "./modules/function"
      crate       = "api"
      memory_mb   = 256
    }

    module "g" {
      source = "./modules/gone"
    }

    output "arn" {
      value = module.f.function_arn
    }
    "#,
        );
        let function = Module::parse(
            r#"
    variable "crate" {
      type = string
    }
    variable "name_prefix" {
      type = string
    }
    variable "memory_size" {
      type    = number
      default = 256
    }
    output "arn" {
      value = "arn"
    }
    "#,
        );
        let children = BTreeMap::from([("./modules/function".to_owned(), function)]);
        assert_eq!(
            findings(&root, &children, &schemas()),
            vec![
                "module.f: missing required variable name_prefix",
                "module.f: the module has no variable memory_mb",
                "module.g: no module at ./modules/gone",
                "output.arn: module.f has no output function_arn",
            ]
        );
    }

    #[test]
    fn a_missing_required_argument_or_block_is_found() {
        let found = schema_findings(
            r#"
    resource "aws_dynamodb_table" "t" {
      billing_mode = "PAY_PER_REQUEST"

      global_secondary_index {
        name = "by-user"
      }

      point_in_time_recovery {
        enabled = true
      }
      point_in_time_recovery {
        enabled = false
      }
    }

    resource "aws_lb_listener" "l" {
      load_balancer_arn = "arn"
    }

    data "aws_iam_policy_document" "d" {
      statement {
        actions = ["s3:GetObject"]
        condition {
          test     = "Bool"
          variable = "aws:SecureTransport"
        }
      }
      dynamic "statement" {
        for_each = []
        content {
          condition {
            test = "Bool"
          }
        }
      }
    }
    "#,
        );
        assert_eq!(
            found,
            vec![
                "aws_dynamodb_table.t.global_secondary_index: missing required argument projection_type",
                "aws_dynamodb_table.t: block point_in_time_recovery may be written at most once, not 2 times",
                "aws_dynamodb_table.t: missing required argument name",
                "aws_lb_listener.l: missing required block default_action",
                "data.aws_iam_policy_document.d.statement.condition: missing required argument values",
                "data.aws_iam_policy_document.d.statement.condition: missing required argument variable",
            ]
        );
    }

    #[test]
    fn a_dangling_reference_is_found() {
        let found = schema_findings(
            r#"
    variable "name" {
      type    = string
      default = "x"
    }

    locals {
      names = [for n in [var.name, var.nmae] : upper(n)]
      azs   = data.aws_availability_zones.here.names
    }

    data "aws_availability_zones" "available" {}

    resource "aws_vpc" "this" {
      cidr_block = "10.0.0.0/16"
      tags       = { Name = "${local.name}-${each.key}" }
    }

    resource "aws_subnet" "a" {
      count      = 2
      vpc_id     = aws_vpc.this.id
      cidr_block = cidrsubnet(aws_vpc.this.cidr, 4, count.index)
      tags       = { Zone = data.aws_availability_zones.available.names[count.index] }
      depends_on = [aws_internet_gateway.this]
    }

    resource "aws_route_table" "r" {
      vpc_id = aws_subnet.a[0].vpc_id

      dynamic "route" {
        for_each = local.azs
        content {
          cidr_block = route.value
          gateway_id = module.network.gateway_id
        }
      }
    }

    output "subnets" {
      value = aws_subnet.a[*].id
    }
    "#,
        );
        assert_eq!(
            found,
            vec![
                "aws_route_table.r: module.network is not declared",
                "aws_subnet.a: aws_internet_gateway.this is not declared",
                "aws_subnet.a: aws_vpc.this.cidr: aws_vpc has no attribute cidr",
                "aws_vpc.this: each where no for_each is set",
                "aws_vpc.this: local.name is not declared",
                "locals: data.aws_availability_zones.here is not declared",
                "locals: var.nmae is not declared",
            ]
        );
    }

    #[test]
    fn an_ephemeral_resource_is_checked_and_its_value_kept_out_of_the_state() {
        let schemas = schemas();
        // The bindings' ephemeral resource types, read as Terraform spells them.
        let password = schemas
            .ephemeral("aws_secretsmanager_random_password")
            .expect("the aws provider's ephemeral aws_secretsmanager_random_password");
        assert_eq!(password.body.arguments.get("password_length"), Some(&false));
        assert!(password.attributes.contains("random_password"));
        assert!(schemas
            .ephemeral("random_password")
            .is_some_and(|p| p.attributes.contains("result")));
        assert!(schemas.ephemeral("aws_secretsmanager_secret").is_none());
        let version =
            &schemas.provider("aws").unwrap().resources["aws_secretsmanager_secret_version"];
        for write_only in ["secret_string_wo", "secret_string_wo_version"] {
            assert_eq!(
                version.body.arguments.get(write_only),
                Some(&false),
                "{write_only}"
            );
        }

        let aws = format!("hashicorp/aws {}", schemas.provider("aws").unwrap().version);
        let found = schema_findings(
            r#"
    ephemeral "aws_secretsmanager_random_password" "p" {
      count           = 1
      password_length = 64
      lenght          = 3
    }

    ephemeral "aws_secretsmanager_random_pasword" "typo" {}

    resource "aws_secretsmanager_secret" "s" {}

    resource "aws_secretsmanager_secret_version" "good" {
      secret_id                = aws_secretsmanager_secret.s.id
      secret_string_wo         = ephemeral.aws_secretsmanager_random_password.p[0].random_password
      secret_string_wo_version = 1
    }

    resource "aws_secretsmanager_secret_version" "stored" {
      secret_id     = aws_secretsmanager_secret.s.id
      secret_string = ephemeral.aws_secretsmanager_random_password.p[0].random_password
    }

    resource "aws_secretsmanager_secret_version" "dangling" {
      secret_id        = aws_secretsmanager_secret.s.id
      secret_string_wo = ephemeral.aws_secretsmanager_random_password.q.random_password
    }

    resource "aws_secretsmanager_secret_version" "attribute" {
      secret_id        = aws_secretsmanager_secret.s.id
      secret_string_wo = ephemeral.aws_secretsmanager_random_password.p[0].result
    }
    "#,
        );
        assert_eq!(
            found,
            vec![
                "aws_secretsmanager_secret_version.attribute: ephemeral.aws_secretsmanager_random_password.p.result: aws_secretsmanager_random_password has no attribute result".to_owned(),
                "aws_secretsmanager_secret_version.dangling: ephemeral.aws_secretsmanager_random_password.q is not declared".to_owned(),
                "aws_secretsmanager_secret_version.stored: secret_string takes an ephemeral value but is not write-only".to_owned(),
                "ephemeral.aws_secretsmanager_random_password.p: unknown argument lenght".to_owned(),
                format!("ephemeral.aws_secretsmanager_random_pasword.typo: aws_secretsmanager_random_pasword is not an ephemeral resource type of {aws}"),
            ]
        );
    }
}
