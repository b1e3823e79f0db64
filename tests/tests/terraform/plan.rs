//! The root module evaluated offline for chosen variable values, as far as the tests
//! of what a deployment mode creates need it (no provider, so no real plan): each
//! variable's value (given, or its default), every local that evaluates, the instances
//! of every resource (and ephemeral resource) whose `count` or `for_each` evaluates,
//! and any argument of one instance, with `count.index` or `each.key`/`each.value` set.
//!
//! What only apply knows (an ID, an ARN) is a placeholder naming where it comes from,
//! `aws_subnet.private[0].id`, so that the tests can see which resource an argument
//! points at. Terraform's functions are implemented as far as the configuration uses
//! them to compute what the tests read; a local that needs another (`regex`,
//! `cidrsubnet`) is left out, and so is whatever depends on it.

use std::collections::BTreeMap;
use std::path::Path;

use hcl::eval::{Context, Evaluate, FuncArgs, FuncDef, ParamType};
use hcl::{Block, Expression, Map, Value};

use super::hcl_reader::{attr, Module};

/// The account, region and zones the placeholders of the data sources give.
pub const ACCOUNT: &str = "111122223333";
pub const REGION: &str = "eu-west-1";
const ZONES: [&str; 3] = ["eu-west-1a", "eu-west-1b", "eu-west-1c"];

/// Attributes every resource placeholder exports (an argument naming another is an
/// evaluation error, and what depends on it is left out).
const ATTRIBUTES: &[&str] = &[
    "id",
    "arn",
    "name",
    "arn_suffix",
    "dns_name",
    "zone_id",
    "fqdn",
    "json",
    "certificate_arn",
    "invoke_arn",
    "function_name",
    "execution_arn",
    "api_endpoint",
    "result",
    "service_namespace",
    "resource_id",
    "scalable_dimension",
    "prefix_list_id",
    "repository_url",
    "url",
    "version_id",
    "random_password",
];

/// One instance of a resource: the scope its arguments evaluate in (`count` with its
/// index, `each` with its key and value, or nothing).
#[derive(Clone, Debug)]
pub struct Instance {
    scope: Option<(&'static str, Value)>,
}

pub struct Plan {
    variables: Map<String, Value>,
    locals: Map<String, Value>,
    /// (type, name) -> the block, its instances, what its name reads as.
    resources: BTreeMap<(String, String), (Block, Vec<Instance>, Value)>,
    /// The same of the `ephemeral` blocks, read as `ephemeral.<type>.<name>`.
    ephemeral: BTreeMap<(String, String), (Block, Vec<Instance>, Value)>,
    modules: BTreeMap<String, Block>,
    data: Map<String, Value>,
    root: String,
}

fn placeholder(address: &str) -> Value {
    let mut object = Map::new();
    for attribute in ATTRIBUTES {
        object.insert(
            (*attribute).to_owned(),
            Value::String(format!("{address}.{attribute}")),
        );
    }
    Value::Object(object)
}

/// The instances of a resource, and what its name reads as (`aws_subnet.private`).
fn instances_of(block: &Block, address: &str, ctx: &Context) -> Option<(Vec<Instance>, Value)> {
    let body = block.body();
    if let Some(count) = attr(body, "count") {
        let n = count.evaluate(ctx).ok()?.as_u64()?;
        let instances = (0..n)
            .map(|i| {
                let mut scope = Map::new();
                scope.insert("index".to_owned(), Value::from(i));
                Instance {
                    scope: Some(("count", Value::Object(scope))),
                }
            })
            .collect();
        let value = (0..n)
            .map(|i| placeholder(&format!("{address}[{i}]")))
            .collect();
        return Some((instances, Value::Array(value)));
    }
    if let Some(for_each) = attr(body, "for_each") {
        let entries: Vec<(String, Value)> = match for_each.evaluate(ctx).ok()? {
            Value::Object(map) => map.into_iter().collect(),
            Value::Array(items) => items
                .into_iter()
                .map(|v| Some((v.as_str()?.to_owned(), v)))
                .collect::<Option<_>>()?,
            _ => return None,
        };
        let mut value = Map::new();
        let instances = entries
            .into_iter()
            .map(|(key, each_value)| {
                value.insert(key.clone(), placeholder(&format!("{address}[\"{key}\"]")));
                let mut scope = Map::new();
                scope.insert("key".to_owned(), Value::String(key.clone()));
                scope.insert("value".to_owned(), each_value);
                Instance {
                    scope: Some(("each", Value::Object(scope))),
                }
            })
            .collect();
        return Some((instances, Value::Object(value)));
    }
    Some((vec![Instance { scope: None }], placeholder(address)))
}

impl Plan {
    /// The module with `given` variable values (the rest at their defaults).
    pub fn new(module: &Module, given: &[(&str, Value)]) -> Self {
        let mut plan = Plan {
            variables: variable_values(module, given),
            locals: Map::new(),
            resources: BTreeMap::new(),
            ephemeral: BTreeMap::new(),
            modules: module
                .blocks("module")
                .map(|b| (b.labels()[0].as_str().to_owned(), b.clone()))
                .collect(),
            data: Map::new(),
            root: module.dir.display().to_string(),
        };
        let pending_locals: Vec<(String, Expression)> = module.locals().into_iter().collect();
        let resources: Vec<&Block> = module.blocks("resource").collect();
        let ephemeral: Vec<&Block> = module.blocks("ephemeral").collect();
        let data: Vec<&Block> = module.blocks("data").collect();
        let mut data_done = BTreeMap::new();
        loop {
            let before =
                plan.locals.len() + plan.resources.len() + plan.ephemeral.len() + data_done.len();
            for (name, expr) in &pending_locals {
                if !plan.locals.contains_key(name) {
                    if let Ok(value) = expr.evaluate(&plan.context()) {
                        plan.locals.insert(name.clone(), value);
                    }
                }
            }
            for block in &data {
                let (ty, name) = (block.labels()[0].as_str(), block.labels()[1].as_str());
                if data_done.contains_key(&(ty, name)) {
                    continue;
                }
                let Some((_, value)) =
                    instances_of(block, &format!("data.{ty}.{name}"), &plan.context())
                else {
                    continue;
                };
                let value = match ty {
                    "aws_caller_identity" => hcl::value!({ account_id = (ACCOUNT) }),
                    "aws_partition" => hcl::value!({ partition = "aws" }),
                    "aws_region" => hcl::value!({ region = (REGION), name = (REGION) }),
                    "aws_availability_zones" => {
                        hcl::value!({
                            names = (ZONES.iter().map(|z| Value::from(*z)).collect::<Vec<_>>())
                        })
                    }
                    _ => value,
                };
                data_done.insert((ty, name), ());
                let by_name = plan
                    .data
                    .entry(ty.to_owned())
                    .or_insert_with(|| Value::Object(Map::new()));
                if let Value::Object(map) = by_name {
                    map.insert(name.to_owned(), value);
                }
            }
            for (blocks, prefix) in [(&resources, ""), (&ephemeral, "ephemeral.")] {
                for block in blocks {
                    let key = (
                        block.labels()[0].as_str().to_owned(),
                        block.labels()[1].as_str().to_owned(),
                    );
                    let known = if prefix.is_empty() {
                        &plan.resources
                    } else {
                        &plan.ephemeral
                    };
                    if known.contains_key(&key) {
                        continue;
                    }
                    if let Some((instances, value)) = instances_of(
                        block,
                        &format!("{prefix}{}.{}", key.0, key.1),
                        &plan.context(),
                    ) {
                        let found = ((*block).clone(), instances, value);
                        if prefix.is_empty() {
                            plan.resources.insert(key, found);
                        } else {
                            plan.ephemeral.insert(key, found);
                        }
                    }
                }
            }
            let after =
                plan.locals.len() + plan.resources.len() + plan.ephemeral.len() + data_done.len();
            if after == before {
                return plan;
            }
        }
    }

    /// The evaluation context: variables, locals, data sources, resources and module
    /// outputs known so far, and the functions.
    fn context(&self) -> Context<'static> {
        let mut ctx = Context::new();
        ctx.declare_var("var", Value::Object(self.variables.clone()));
        ctx.declare_var("local", Value::Object(self.locals.clone()));
        ctx.declare_var("data", Value::Object(self.data.clone()));
        ctx.declare_var("path", hcl::value!({ module = (self.root.clone()) }));
        let mut modules = Map::new();
        for name in self.modules.keys() {
            modules.insert(name.clone(), placeholder(&format!("module.{name}")));
        }
        ctx.declare_var("module", Value::Object(modules));
        let mut types: BTreeMap<&str, Map<String, Value>> = BTreeMap::new();
        for ((ty, name), (_, _, value)) in &self.resources {
            types
                .entry(ty.as_str())
                .or_default()
                .insert(name.clone(), value.clone());
        }
        for (ty, by_name) in types {
            ctx.declare_var(ty.to_owned(), Value::Object(by_name));
        }
        let mut ephemeral: Map<String, Value> = Map::new();
        for ((ty, name), (_, _, value)) in &self.ephemeral {
            if let Value::Object(by_name) = ephemeral
                .entry(ty.clone())
                .or_insert_with(|| Value::Object(Map::new()))
            {
                by_name.insert(name.clone(), value.clone());
            }
        }
        ctx.declare_var("ephemeral", Value::Object(ephemeral));
        declare_functions(&mut ctx);
        ctx
    }

    pub fn variable(&self, name: &str) -> &Value {
        &self.variables[name]
    }

    pub fn local(&self, name: &str) -> Option<&Value> {
        self.locals.get(name)
    }

    /// The instances of `resource.<ty>.<name>`; `None` when its count or for_each
    /// could not be evaluated (or there is no such resource).
    pub fn instances(&self, ty: &str, name: &str) -> Option<&[Instance]> {
        self.resources
            .get(&(ty.to_owned(), name.to_owned()))
            .map(|(_, i, _)| i.as_slice())
    }

    /// The instances of `ephemeral.<ty>.<name>`, as `instances` gives a resource's.
    pub fn ephemeral_instances(&self, ty: &str, name: &str) -> Option<&[Instance]> {
        self.ephemeral
            .get(&(ty.to_owned(), name.to_owned()))
            .map(|(_, i, _)| i.as_slice())
    }

    /// Every resource with its instances, by type and name.
    pub fn resources(&self) -> impl Iterator<Item = (&str, &str, &Block, &[Instance])> {
        self.resources
            .iter()
            .map(|((ty, name), (block, i, _))| (ty.as_str(), name.as_str(), block, i.as_slice()))
    }

    /// An expression evaluated in an instance's scope.
    pub fn eval(&self, instance: Option<&Instance>, expr: &Expression) -> Result<Value, String> {
        let mut ctx = self.context();
        if let Some((name, value)) = instance.and_then(|i| i.scope.clone()) {
            ctx.declare_var(name, value);
        }
        expr.evaluate(&ctx).map_err(|e| format!("{expr}: {e}"))
    }

    /// An argument of a resource instance: `path` names the nested blocks (the first of
    /// each name) and ends with the argument. `Ok(None)` when it is not written.
    pub fn argument(
        &self,
        ty: &str,
        name: &str,
        instance: &Instance,
        path: &[&str],
    ) -> Result<Option<Value>, String> {
        let (block, _, _) = self
            .resources
            .get(&(ty.to_owned(), name.to_owned()))
            .ok_or_else(|| format!("no instances of {ty}.{name}"))?;
        let mut body = block.body();
        let (last, blocks) = path.split_last().expect("a path to an argument");
        for nested in blocks {
            match body.blocks().find(|b| b.identifier() == *nested) {
                Some(b) => body = b.body(),
                None => return Ok(None),
            }
        }
        attr(body, last)
            .map(|e| self.eval(Some(instance), e))
            .transpose()
    }

    /// An argument of a module call, evaluated.
    pub fn module_argument(&self, module: &str, argument: &str) -> Result<Value, String> {
        let block = self
            .modules
            .get(module)
            .ok_or_else(|| format!("no module {module}"))?;
        let expr = attr(block.body(), argument)
            .ok_or_else(|| format!("module.{module} sets no {argument}"))?;
        self.eval(None, expr)
    }
}

/// Each variable's value: given, or its default (`null` without one).
fn variable_values(module: &Module, given: &[(&str, Value)]) -> Map<String, Value> {
    let empty = Context::new();
    let mut variables = Map::new();
    for block in module.blocks("variable") {
        let name = block.labels()[0].as_str().to_owned();
        let default = attr(block.body(), "default")
            .and_then(|d| d.evaluate(&empty).ok())
            .unwrap_or(Value::Null);
        variables.insert(name, default);
    }
    for (name, value) in given {
        assert!(
            variables.contains_key(*name),
            "terraform/ declares no variable {name}"
        );
        variables.insert((*name).to_owned(), value.clone());
    }
    variables
}

/// Each `validation` condition of a variable, evaluated with these variable values:
/// `Some(true)` passes, `Some(false)` is refused, `None` needs what this evaluator
/// lacks (`can`, `regex`, ...).
pub fn validations(module: &Module, variable: &str, given: &[(&str, Value)]) -> Vec<Option<bool>> {
    let block = module
        .blocks("variable")
        .find(|b| b.labels()[0].as_str() == variable)
        .unwrap_or_else(|| panic!("terraform/ declares no variable {variable}"));
    let mut ctx = Context::new();
    ctx.declare_var("var", Value::Object(variable_values(module, given)));
    ctx.declare_var(
        "path",
        hcl::value!({ module = (module.dir.display().to_string()) }),
    );
    declare_functions(&mut ctx);
    block
        .body()
        .blocks()
        .filter(|b| b.identifier() == "validation")
        .filter_map(|b| attr(b.body(), "condition"))
        .map(|condition| match condition.evaluate(&ctx) {
            Ok(Value::Bool(ok)) => Some(ok),
            _ => None,
        })
        .collect()
}

// ---------------------------------------------------------------------------------
// Terraform's functions, as far as the configuration uses them.

fn declare_functions(ctx: &mut Context) {
    let variadic = |f| FuncDef::builder().variadic_param(ParamType::Any).build(f);
    let functions: &[(&str, hcl::eval::Func)] = &[
        ("tostring", tostring),
        ("tonumber", tonumber),
        ("join", join),
        ("coalesce", coalesce),
        ("length", length),
        ("jsondecode", jsondecode),
        ("jsonencode", jsonencode),
        ("file", file),
        ("distinct", distinct),
        ("toset", distinct),
        ("setproduct", setproduct),
        ("merge", merge),
        ("one", one),
        ("concat", concat),
        ("contains", contains),
        ("keys", keys),
        ("slice", slice),
        ("lookup", lookup),
        ("startswith", startswith),
        ("alltrue", alltrue),
        ("anytrue", anytrue),
        ("floor", floor),
    ];
    for (name, f) in functions {
        ctx.declare_func(*name, variadic(*f));
    }
}

fn arg(args: &FuncArgs, i: usize) -> Result<&Value, String> {
    args.get(i).ok_or_else(|| format!("argument {i} missing"))
}

fn list(value: &Value) -> Result<&Vec<Value>, String> {
    value
        .as_array()
        .ok_or_else(|| format!("{value:?} is not a list"))
}

fn tostring(args: FuncArgs) -> Result<Value, String> {
    Ok(match arg(&args, 0)? {
        Value::String(s) => Value::String(s.clone()),
        Value::Number(n) => Value::String(n.to_string()),
        Value::Bool(b) => Value::String(b.to_string()),
        Value::Null => Value::Null,
        other => return Err(format!("tostring of {other:?}")),
    })
}

fn tonumber(args: FuncArgs) -> Result<Value, String> {
    match arg(&args, 0)? {
        Value::Number(n) => Ok(Value::Number(*n)),
        Value::String(s) => s.parse::<f64>().map(Value::from).map_err(|e| e.to_string()),
        other => Err(format!("tonumber of {other:?}")),
    }
}

fn join(args: FuncArgs) -> Result<Value, String> {
    let separator = arg(&args, 0)?.as_str().ok_or("separator")?;
    let parts: Vec<&str> = list(arg(&args, 1)?)?
        .iter()
        .map(|v| v.as_str().ok_or("join of a non-string"))
        .collect::<Result<_, _>>()?;
    Ok(Value::String(parts.join(separator)))
}

fn coalesce(args: FuncArgs) -> Result<Value, String> {
    args.iter()
        .find(|v| !v.is_null() && v.as_str() != Some(""))
        .cloned()
        .ok_or_else(|| "no non-null, non-empty argument".to_owned())
}

fn length(args: FuncArgs) -> Result<Value, String> {
    Ok(Value::from(match arg(&args, 0)? {
        Value::String(s) => s.chars().count(),
        Value::Array(a) => a.len(),
        Value::Object(o) => o.len(),
        other => return Err(format!("length of {other:?}")),
    }))
}

fn jsondecode(args: FuncArgs) -> Result<Value, String> {
    let text = arg(&args, 0)?
        .as_str()
        .ok_or("jsondecode of a non-string")?;
    let json: serde_json::Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
    hcl::to_value(json).map_err(|e| e.to_string())
}

fn jsonencode(args: FuncArgs) -> Result<Value, String> {
    serde_json::to_string(arg(&args, 0)?)
        .map(Value::String)
        .map_err(|e| e.to_string())
}

fn file(args: FuncArgs) -> Result<Value, String> {
    let path = arg(&args, 0)?.as_str().ok_or("file of a non-string")?;
    std::fs::read_to_string(Path::new(path))
        .map(Value::String)
        .map_err(|e| format!("{path}: {e}"))
}

fn distinct(args: FuncArgs) -> Result<Value, String> {
    let mut out: Vec<Value> = Vec::new();
    for v in list(arg(&args, 0)?)? {
        if !out.contains(v) {
            out.push(v.clone());
        }
    }
    Ok(Value::Array(out))
}

fn setproduct(args: FuncArgs) -> Result<Value, String> {
    let (a, b) = (list(arg(&args, 0)?)?, list(arg(&args, 1)?)?);
    Ok(Value::Array(
        a.iter()
            .flat_map(|x| {
                b.iter()
                    .map(move |y| Value::Array(vec![x.clone(), y.clone()]))
            })
            .collect(),
    ))
}

fn merge(args: FuncArgs) -> Result<Value, String> {
    let mut out = Map::new();
    for v in args.iter() {
        match v {
            Value::Object(o) => out.extend(o.clone()),
            Value::Null => {}
            other => return Err(format!("merge of {other:?}")),
        }
    }
    Ok(Value::Object(out))
}

fn one(args: FuncArgs) -> Result<Value, String> {
    match list(arg(&args, 0)?)?.as_slice() {
        [] => Ok(Value::Null),
        [v] => Ok(v.clone()),
        _ => Err("one of several".to_owned()),
    }
}

fn concat(args: FuncArgs) -> Result<Value, String> {
    let mut out = Vec::new();
    for v in args.iter() {
        out.extend(list(v)?.iter().cloned());
    }
    Ok(Value::Array(out))
}

fn contains(args: FuncArgs) -> Result<Value, String> {
    Ok(Value::Bool(list(arg(&args, 0)?)?.contains(arg(&args, 1)?)))
}

fn keys(args: FuncArgs) -> Result<Value, String> {
    let object = arg(&args, 0)?.as_object().ok_or("keys of a non-object")?;
    let mut keys: Vec<&String> = object.keys().collect();
    keys.sort();
    Ok(Value::Array(
        keys.into_iter().map(|k| Value::String(k.clone())).collect(),
    ))
}

fn slice(args: FuncArgs) -> Result<Value, String> {
    let items = list(arg(&args, 0)?)?;
    let index = |i| {
        arg(&args, i)?
            .as_u64()
            .map(|n| n as usize)
            .ok_or_else(|| "slice index".to_owned())
    };
    let (start, end) = (index(1)?, index(2)?);
    items
        .get(start..end)
        .map(|s| Value::Array(s.to_vec()))
        .ok_or_else(|| format!("slice {start}..{end} of {}", items.len()))
}

fn lookup(args: FuncArgs) -> Result<Value, String> {
    let object = arg(&args, 0)?.as_object().ok_or("lookup in a non-object")?;
    let key = arg(&args, 1)?
        .as_str()
        .ok_or("lookup of a non-string key")?;
    match object.get(key) {
        Some(v) => Ok(v.clone()),
        None => args
            .get(2)
            .cloned()
            .ok_or_else(|| format!("no {key} and no default")),
    }
}

fn startswith(args: FuncArgs) -> Result<Value, String> {
    let s = arg(&args, 0)?
        .as_str()
        .ok_or("startswith of a non-string")?;
    let prefix = arg(&args, 1)?.as_str().ok_or("startswith a non-string")?;
    Ok(Value::Bool(s.starts_with(prefix)))
}

fn alltrue(args: FuncArgs) -> Result<Value, String> {
    Ok(Value::Bool(
        list(arg(&args, 0)?)?
            .iter()
            .all(|v| v.as_bool() == Some(true)),
    ))
}

fn anytrue(args: FuncArgs) -> Result<Value, String> {
    Ok(Value::Bool(
        list(arg(&args, 0)?)?
            .iter()
            .any(|v| v.as_bool() == Some(true)),
    ))
}

fn floor(args: FuncArgs) -> Result<Value, String> {
    let n = arg(&args, 0)?.as_f64().ok_or("floor of a non-number")?;
    Ok(if n.fract() == 0.0 {
        Value::from(n as i64)
    } else {
        Value::from(n.floor())
    })
}

// ---------------------------------------------------------------------------------
// Self-tests: the checks above find what they are meant to, on small modules.

#[cfg(test)]
mod self_tests {
    use super::*;
    use crate::strings_of;

    #[test]
    fn the_plan_evaluator_reads_counts_for_each_and_scopes() {
        let config = Module::parse(
            r#"
            variable "on" {
              type    = bool
              default = false
            }
            variable "ports" {
              type    = list(number)
              default = [80, 443]
            }
            locals {
              ids = aws_subnet.a[*].id
            }
            resource "aws_subnet" "a" {
              count      = var.on ? 2 : 0
              cidr_block = "10.0.${count.index}.0/24"
            }
            resource "aws_vpc_security_group_ingress_rule" "r" {
              for_each  = { for p in var.ports : tostring(p) => p }
              from_port = each.value
              description = "port ${each.key}"
            }
            "#,
        );
        let off = Plan::new(&config, &[]);
        assert!(off.instances("aws_subnet", "a").unwrap().is_empty());
        assert_eq!(off.local("ids"), Some(&hcl::Value::Array(vec![])));
        let on = Plan::new(&config, &[("on", hcl::Value::Bool(true))]);
        let subnets = on.instances("aws_subnet", "a").unwrap();
        assert_eq!(subnets.len(), 2);
        assert_eq!(
            on.argument("aws_subnet", "a", &subnets[1], &["cidr_block"])
                .unwrap(),
            Some(hcl::Value::from("10.0.1.0/24"))
        );
        assert_eq!(
            strings_of(on.local("ids").unwrap()),
            ["aws_subnet.a[0].id", "aws_subnet.a[1].id"]
        );
        let rules = on
            .instances("aws_vpc_security_group_ingress_rule", "r")
            .unwrap();
        let described: Vec<_> = rules
            .iter()
            .map(|r| {
                on.argument(
                    "aws_vpc_security_group_ingress_rule",
                    "r",
                    r,
                    &["description"],
                )
                .unwrap()
                .unwrap()
            })
            .collect();
        assert_eq!(
            described,
            [hcl::Value::from("port 80"), hcl::Value::from("port 443")]
        );
    }
}
