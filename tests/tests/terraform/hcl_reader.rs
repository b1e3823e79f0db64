//! The HCL reader: the `.tf` files of a Terraform module, parsed with `hcl` and read
//! without evaluating them. It finds blocks by kind and type, `locals`, the calls of
//! the function module with their environment and IAM statements (read through
//! `local.*`, `merge(..)`, `concat(..)` and conditionals), the literal statements of
//! `aws_iam_policy_document` blocks, and the route keys of the API's routes.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use hcl::{Block, Body, Expression, ObjectKey};
use session_tests::repo_root;

/// Every `.tf` file under `dir`, recursively, sorted.
pub(crate) fn tf_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut dirs = vec![dir.to_owned()];
    while let Some(d) = dirs.pop() {
        for entry in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display())) {
            let path = entry.unwrap().path();
            if path.is_dir() {
                if !path
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with('.'))
                {
                    dirs.push(path);
                }
            } else if path.extension().is_some_and(|e| e == "tf") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

pub(crate) fn terraform_dir() -> PathBuf {
    repo_root().join("terraform")
}

/// A Terraform module: the bodies of its `.tf` files.
pub(crate) struct Module {
    pub(crate) dir: PathBuf,
    pub(crate) bodies: Vec<Body>,
}

impl Module {
    pub(crate) fn load(dir: &Path) -> Self {
        let mut bodies = Vec::new();
        for file in std::fs::read_dir(dir).unwrap().flatten().map(|e| e.path()) {
            if file.extension().is_some_and(|e| e == "tf") {
                let text = std::fs::read_to_string(&file).unwrap();
                bodies
                    .push(hcl::parse(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display())));
            }
        }
        Self {
            dir: dir.to_owned(),
            bodies,
        }
    }

    pub(crate) fn parse(text: &str) -> Self {
        Self {
            dir: PathBuf::from("<inline>"),
            bodies: vec![hcl::parse(text).expect("test configuration parses")],
        }
    }

    pub(crate) fn blocks<'a>(&'a self, kind: &'a str) -> impl Iterator<Item = &'a Block> + 'a {
        self.bodies
            .iter()
            .flat_map(|b| b.blocks())
            .filter(move |b| b.identifier() == kind)
    }

    /// The `resource`/`data` blocks of a type, by name.
    pub(crate) fn resources<'a>(&'a self, kind: &'a str, ty: &'a str) -> Vec<(&'a str, &'a Block)> {
        self.blocks(kind)
            .filter(|b| b.labels().first().is_some_and(|l| l.as_str() == ty))
            .map(|b| (b.labels()[1].as_str(), b))
            .collect()
    }

    pub(crate) fn locals(&self) -> BTreeMap<String, Expression> {
        self.blocks("locals")
            .flat_map(|b| b.body().attributes())
            .map(|a| (a.key().to_owned(), a.expr().clone()))
            .collect()
    }

    /// The calls of the function module: `module "<name>" { source = "./modules/function" }`.
    pub(crate) fn function_calls(&self) -> Vec<FunctionCall> {
        self.blocks("module")
            .filter(|b| {
                attr(b.body(), "source").is_some_and(|s| literal(s) == Some(FUNCTION_MODULE))
            })
            .map(|b| FunctionCall {
                label: b.labels()[0].as_str().to_owned(),
                body: b.body().clone(),
                locals: self.locals(),
            })
            .collect()
    }
}

pub(crate) const FUNCTION_MODULE: &str = "./modules/function";

pub(crate) fn attr<'a>(body: &'a Body, key: &str) -> Option<&'a Expression> {
    body.attributes().find(|a| a.key() == key).map(|a| a.expr())
}

/// The string a literal expression holds.
pub(crate) fn literal(expr: &Expression) -> Option<&str> {
    match expr {
        Expression::String(s) => Some(s),
        _ => None,
    }
}

pub(crate) fn object_key(key: &ObjectKey) -> String {
    match key {
        ObjectKey::Identifier(id) => id.as_str().to_owned(),
        ObjectKey::Expression(e) => literal(e).map_or_else(|| e.to_string(), str::to_owned),
        other => format!("{other:?}"),
    }
}

/// The keys of an object-valued expression, reading through `local.*` references and
/// `merge(...)`: enough for environments built from the configuration groups.
fn object_keys(
    expr: &Expression,
    locals: &BTreeMap<String, Expression>,
) -> Result<BTreeSet<String>, String> {
    match expr {
        Expression::Object(object) => Ok(object.keys().map(object_key).collect()),
        Expression::Traversal(t) => {
            let local = match (&t.expr, t.operators.as_slice()) {
                (Expression::Variable(v), [hcl::TraversalOperator::GetAttr(name)])
                    if v.as_str() == "local" =>
                {
                    name.as_str()
                }
                _ => {
                    return Err(format!(
                        "cannot read the keys of {expr} without evaluating it"
                    ))
                }
            };
            let value = locals
                .get(local)
                .ok_or_else(|| format!("local.{local} is not defined"))?;
            object_keys(value, locals)
        }
        Expression::FuncCall(call) if call.name.name.as_str() == "merge" => {
            let mut keys = BTreeSet::new();
            for arg in &call.args {
                keys.extend(object_keys(arg, locals)?);
            }
            Ok(keys)
        }
        other => Err(format!(
            "cannot read the keys of {other} without evaluating it"
        )),
    }
}

/// One IAM statement as written in a policy: actions, resources (as written) and
/// conditions (variable -> values as written).
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Statement {
    pub(crate) sid: Option<String>,
    pub(crate) actions: BTreeSet<String>,
    pub(crate) resources: Vec<String>,
    pub(crate) conditions: BTreeMap<String, Vec<String>>,
}

pub(crate) fn strings(expr: &Expression) -> Result<Vec<String>, String> {
    match expr {
        Expression::Array(items) => items
            .iter()
            .map(|i| {
                literal(i)
                    .map(str::to_owned)
                    .ok_or_else(|| format!("{i} is not a literal"))
            })
            .collect(),
        other => Err(format!("{other} is not a list of literals")),
    }
}

/// The written form of each element of a list (or of the one expression otherwise).
pub(crate) fn written(expr: &Expression) -> Vec<String> {
    match expr {
        Expression::Array(items) => items
            .iter()
            .map(|i| literal(i).map_or_else(|| i.to_string(), str::to_owned))
            .collect(),
        other => vec![other.to_string()],
    }
}

/// The statements of a function module call's `statements`: a list of objects, read
/// through `concat(..)`, `local.*` references and both branches of a conditional (a
/// statement some deployment mode grants).
fn call_statements(
    expr: &Expression,
    locals: &BTreeMap<String, Expression>,
) -> Result<Vec<Statement>, String> {
    let items = match expr {
        Expression::Array(items) => items,
        Expression::FuncCall(call) if call.name.name.as_str() == "concat" => {
            let mut all = Vec::new();
            for arg in &call.args {
                all.extend(call_statements(arg, locals)?);
            }
            return Ok(all);
        }
        Expression::Conditional(c) => {
            let mut both = call_statements(&c.true_expr, locals)?;
            both.extend(call_statements(&c.false_expr, locals)?);
            return Ok(both);
        }
        Expression::Traversal(t) => match (&t.expr, t.operators.as_slice()) {
            (Expression::Variable(v), [hcl::TraversalOperator::GetAttr(name)])
                if v.as_str() == "local" =>
            {
                let value = locals
                    .get(name.as_str())
                    .ok_or_else(|| format!("local.{name} is not defined"))?;
                return call_statements(value, locals);
            }
            _ => return Err(format!("statements must be a list of objects, not {expr}")),
        },
        _ => return Err(format!("statements must be a list of objects, not {expr}")),
    };
    items
        .iter()
        .map(|item| {
            let Expression::Object(object) = item else {
                return Err(format!("a statement must be an object, not {item}"));
            };
            let field = |name: &str| {
                object
                    .iter()
                    .find(|(k, _)| object_key(k) == name)
                    .map(|(_, v)| v)
            };
            let mut statement = Statement {
                sid: field("sid").and_then(literal).map(str::to_owned),
                actions: strings(field("actions").ok_or("a statement without actions")?)?
                    .into_iter()
                    .collect(),
                resources: field("resources").map(written).unwrap_or_default(),
                ..Default::default()
            };
            if let Some(Expression::Array(conditions)) = field("conditions") {
                for condition in conditions {
                    let Expression::Object(c) = condition else {
                        return Err(format!("a condition must be an object, not {condition}"));
                    };
                    let get = |name: &str| {
                        c.iter()
                            .find(|(k, _)| object_key(k) == name)
                            .map(|(_, v)| v)
                    };
                    let variable = get("variable")
                        .and_then(literal)
                        .ok_or("a condition without variable")?;
                    let values = get("values").map(written).unwrap_or_default();
                    statement.conditions.insert(variable.to_owned(), values);
                }
            }
            Ok(statement)
        })
        .collect()
}

/// The literal statements of an `aws_iam_policy_document` data block: its `statement`
/// blocks and the `content` of `dynamic "statement"` blocks whose actions are literal.
pub(crate) fn document_statements(block: &Block) -> Vec<Statement> {
    let mut found = Vec::new();
    let mut push = |body: &Body| {
        let Some(actions) = attr(body, "actions").and_then(|a| strings(a).ok()) else {
            return;
        };
        let mut statement = Statement {
            sid: attr(body, "sid").and_then(literal).map(str::to_owned),
            actions: actions.into_iter().collect(),
            resources: attr(body, "resources").map(written).unwrap_or_default(),
            ..Default::default()
        };
        for condition in body.blocks().filter(|b| b.identifier() == "condition") {
            if let Some(variable) = attr(condition.body(), "variable").and_then(literal) {
                let values = attr(condition.body(), "values")
                    .map(written)
                    .unwrap_or_default();
                statement.conditions.insert(variable.to_owned(), values);
            }
        }
        found.push(statement);
    };
    for b in block.body().blocks() {
        match b.identifier() {
            "statement" => push(b.body()),
            "dynamic"
                if b.labels()
                    .first()
                    .is_some_and(|l| l.as_str() == "statement") =>
            {
                if let Some(content) = b.body().blocks().find(|c| c.identifier() == "content") {
                    push(content.body());
                }
            }
            _ => {}
        }
    }
    found
}

/// One call of the function module.
pub(crate) struct FunctionCall {
    pub(crate) label: String,
    body: Body,
    /// The calling module's locals, which the call's arguments may name.
    locals: BTreeMap<String, Expression>,
}

impl FunctionCall {
    pub(crate) fn crate_name(&self) -> Option<&str> {
        attr(&self.body, "crate").and_then(literal)
    }

    pub(crate) fn environment(
        &self,
        locals: &BTreeMap<String, Expression>,
    ) -> Result<BTreeSet<String>, String> {
        object_keys(
            attr(&self.body, "environment").ok_or("no environment")?,
            locals,
        )
    }

    pub(crate) fn statements(&self) -> Result<Vec<Statement>, String> {
        call_statements(
            attr(&self.body, "statements").ok_or("no statements")?,
            &self.locals,
        )
    }

    pub(crate) fn granted(&self) -> Result<BTreeSet<String>, String> {
        Ok(self
            .statements()?
            .into_iter()
            .flat_map(|s| s.actions)
            .collect())
    }
}

/// A list of literal strings, reading through `local.*` references and `toset(..)`.
fn literal_list(
    expr: &Expression,
    locals: &BTreeMap<String, Expression>,
) -> Result<Vec<String>, String> {
    match expr {
        Expression::Array(_) => strings(expr),
        Expression::Traversal(t) => match (&t.expr, t.operators.as_slice()) {
            (Expression::Variable(v), [hcl::TraversalOperator::GetAttr(name)])
                if v.as_str() == "local" =>
            {
                let value = locals
                    .get(name.as_str())
                    .ok_or_else(|| format!("local.{name} is not defined"))?;
                literal_list(value, locals)
            }
            _ => Err(format!("cannot read {expr} without evaluating it")),
        },
        Expression::FuncCall(call)
            if call.name.name.as_str() == "toset" && call.args.len() == 1 =>
        {
            let mut items = literal_list(&call.args[0], locals)?;
            let mut seen = BTreeSet::new();
            items.retain(|i| seen.insert(i.clone()));
            Ok(items)
        }
        other => Err(format!("cannot read {other} without evaluating it")),
    }
}

/// The route keys of a configuration's `aws_apigatewayv2_route` resources, one per
/// route it deploys: a literal `route_key`, or `each.value` (`each.key`) of a
/// `for_each` over a list of literals.
pub(crate) fn route_keys(config: &Module) -> Result<Vec<String>, String> {
    let locals = config.locals();
    let mut keys = Vec::new();
    for (name, route) in config.resources("resource", "aws_apigatewayv2_route") {
        let body = route.body();
        if attr(body, "count").is_some() {
            return Err(format!(
                "aws_apigatewayv2_route.{name}: use for_each, not count"
            ));
        }
        let key = attr(body, "route_key")
            .ok_or_else(|| format!("aws_apigatewayv2_route.{name} has no route_key"))?;
        match attr(body, "for_each") {
            None => keys.push(
                literal(key)
                    .ok_or_else(|| {
                        format!("aws_apigatewayv2_route.{name}: route_key {key} is not a literal")
                    })?
                    .to_owned(),
            ),
            Some(each) => {
                let written = key.to_string();
                if written != "each.value" && written != "each.key" {
                    return Err(format!(
                        "aws_apigatewayv2_route.{name}: route_key must be each.value or each.key, not {written}"
                    ));
                }
                keys.extend(
                    literal_list(each, &locals)
                        .map_err(|e| format!("aws_apigatewayv2_route.{name}: {e}"))?,
                );
            }
        }
    }
    Ok(keys)
}

#[test]
fn the_environment_checker_reads_through_locals_and_merge() {
    let config = Module::parse(
        r#"
        locals {
          a = { X = "1", Y = var.y }
          b = merge(local.a, { Z = "3" })
        }
        module "f" {
          source      = "./modules/function"
          crate       = "f"
          environment = merge(local.b, { W = "4" })
          statements  = []
        }
        "#,
    );
    let call = &config.function_calls()[0];
    let keys = call.environment(&config.locals()).unwrap();
    assert_eq!(
        keys,
        ["W", "X", "Y", "Z"].iter().map(|s| s.to_string()).collect()
    );
    let unreadable = Module::parse(
        "module \"f\" {\n source = \"./modules/function\"\n environment = var.env\n}\n",
    );
    assert!(unreadable.function_calls()[0]
        .environment(&BTreeMap::new())
        .is_err());
}

#[test]
fn the_route_reader_reads_literals_and_for_each_over_locals() {
    let config = Module::parse(
        r#"
        locals {
          keys = ["GET /a", "POST /a/{id}", "GET /a"]
        }
        resource "aws_apigatewayv2_route" "many" {
          for_each  = toset(local.keys)
          route_key = each.value
        }
        resource "aws_apigatewayv2_route" "one" {
          route_key = "DELETE /b"
        }
        "#,
    );
    let mut keys = route_keys(&config).unwrap();
    keys.sort();
    assert_eq!(keys, vec!["DELETE /b", "GET /a", "POST /a/{id}"]);
    for unreadable in [
        "resource \"aws_apigatewayv2_route\" \"r\" {\n  route_key = var.key\n}\n",
        "resource \"aws_apigatewayv2_route\" \"r\" {\n  for_each = var.keys\n  route_key = each.value\n}\n",
        "resource \"aws_apigatewayv2_route\" \"r\" {\n  count = 2\n  route_key = \"GET /a\"\n}\n",
    ] {
        assert!(route_keys(&Module::parse(unreadable)).is_err(), "{unreadable}");
    }
}
