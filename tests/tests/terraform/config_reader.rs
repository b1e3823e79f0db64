//! The configuration reader: the configuration groups of
//! `functions/session-core/src/config.rs` (each group's `VARS`, and the variables each
//! reader function reads), what a function's `main.rs` reads through them, and the
//! README's table of the configuration.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::Path;

use syn::visit::Visit;

use super::calls::{calls_in, is_cfg_test, parse_rust};

/// The configuration groups of `config.rs`: each type's `VARS`, and the variables each
/// reader function reads (`env.required("X")`, ... and the readers it calls).
pub(crate) struct Config {
    pub(crate) vars: BTreeMap<String, BTreeSet<String>>,
    pub(crate) reads: BTreeMap<String, BTreeSet<String>>,
}

const READ_METHODS: &[&str] = &["required", "parsed", "list", "get"];

impl Config {
    pub(crate) fn load(root: &Path) -> Self {
        Self::from_file(&parse_rust(
            &root.join("functions/session-core/src/config.rs"),
        ))
    }

    fn from_file(file: &syn::File) -> Self {
        let mut vars = BTreeMap::new();
        // Reader -> (variables it names, readers it calls).
        let mut direct: BTreeMap<String, (BTreeSet<String>, BTreeSet<String>)> = BTreeMap::new();
        let mut reader = |name: String, block: &syn::Block| {
            let calls = calls_in(|c| c.visit_block(block));
            let named = calls
                .first_literals
                .iter()
                .filter(|(m, _)| READ_METHODS.contains(&m.as_str()))
                .map(|(_, v)| v.clone())
                .collect();
            let called = calls
                .functions
                .iter()
                .filter_map(|p| p.last().cloned())
                .collect();
            direct.insert(name, (named, called));
        };
        for item in &file.items {
            match item {
                syn::Item::Fn(f) if !is_cfg_test(&f.attrs) => {
                    reader(f.sig.ident.to_string(), &f.block)
                }
                syn::Item::Impl(i) if i.trait_.is_none() && !is_cfg_test(&i.attrs) => {
                    let syn::Type::Path(ty) = i.self_ty.as_ref() else {
                        continue;
                    };
                    let ty = ty.path.segments.last().unwrap().ident.to_string();
                    for item in &i.items {
                        match item {
                            syn::ImplItem::Const(c) if c.ident == "VARS" => {
                                let mut names = BTreeSet::new();
                                collect_str_literals(&c.expr, &mut names);
                                vars.insert(ty.clone(), names);
                            }
                            syn::ImplItem::Fn(f) => {
                                reader(format!("{ty}::{}", f.sig.ident), &f.block)
                            }
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
        let mut reads = BTreeMap::new();
        for name in direct.keys() {
            let mut all = BTreeSet::new();
            let mut seen = BTreeSet::new();
            let mut queue = VecDeque::from([name.clone()]);
            while let Some(n) = queue.pop_front() {
                if !seen.insert(n.clone()) {
                    continue;
                }
                if let Some((named, called)) = direct.get(&n) {
                    all.extend(named.iter().cloned());
                    queue.extend(called.iter().cloned());
                }
            }
            reads.insert(name.clone(), all);
        }
        Self { vars, reads }
    }

    /// The variables a function's `main.rs` reads: the `VARS` of every `X::from_source`
    /// it calls and what every other reader of config.rs it calls reads.
    pub(crate) fn read_by(&self, main: &syn::File) -> BTreeSet<String> {
        let calls = calls_in(|c| c.visit_file(main));
        let mut read = BTreeSet::new();
        for path in &calls.functions {
            let name = match path.as_slice() {
                [.., ty, f] if f == "from_source" && self.vars.contains_key(ty) => {
                    read.extend(self.vars[ty].iter().cloned());
                    continue;
                }
                [.., ty, f] => format!("{ty}::{f}"),
                [f] => f.clone(),
                [] => continue,
            };
            if let Some(vars) = self.reads.get(&name) {
                read.extend(vars.iter().cloned());
            }
        }
        read
    }
}

pub(crate) fn collect_str_literals(expr: &syn::Expr, out: &mut BTreeSet<String>) {
    struct Literals<'a>(&'a mut BTreeSet<String>);
    impl<'ast> Visit<'ast> for Literals<'_> {
        fn visit_lit_str(&mut self, s: &'ast syn::LitStr) {
            self.0.insert(s.value());
        }
    }
    Literals(out).visit_expr(expr);
}

/// The README's configuration table: for each row, the variables of its first column
/// and the functions of its second (`all`: every function).
pub(crate) fn readme_configuration(
    readme: &str,
    functions: &BTreeSet<String>,
) -> Vec<(Vec<String>, BTreeSet<String>)> {
    let section = readme
        .split("\n### Configuration\n")
        .nth(1)
        .expect("the README has a Configuration section");
    let section = section.split("\n#").next().unwrap_or_default();
    let backticked = |cell: &str| -> Vec<String> {
        cell.split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_owned)
            .collect()
    };
    section
        .lines()
        .filter(|line| line.starts_with("| `"))
        .map(|line| {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            let readers = match cells[2] {
                "all" => functions.clone(),
                list => list.split(',').map(|f| f.trim().to_owned()).collect(),
            };
            (backticked(cells[1]), readers)
        })
        .collect()
}

#[test]
fn the_readme_table_reader_takes_each_row_and_all() {
    let functions: BTreeSet<String> = ["api", "reaper", "stop"].map(String::from).into();
    let readme = "intro\n### Configuration\n\n| variable | read by | meaning |\n|---|---|---|\n\
                  | `A`, `B` | api, stop | two (`NOT_A_VAR` here) |\n| `C` | all | three |\n\n\
                  ### Next\n| `D` | api | not this table |\n";
    let rows = readme_configuration(readme, &functions);
    assert_eq!(
        rows,
        vec![
            (
                vec!["A".into(), "B".into()],
                ["api", "stop"].map(String::from).into()
            ),
            (vec!["C".into()], functions.clone()),
        ]
    );
}

#[test]
fn the_config_reader_finds_vars_and_reads() {
    let file: syn::File = syn::parse_quote! {
        impl Good {
            pub const VARS: &'static [&'static str] = &["A", "B"];
            pub fn from_source(env: &impl Source) -> Result<Self, ConfigError> {
                Ok(Self { a: env.required("A")?, b: env.parsed("B", 1)?, t: template_from(env)? })
            }
        }
        pub fn template_from(env: &impl Source) -> Option<String> { env.get("T") }
    };
    let config = Config::from_file(&file);
    let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
    assert_eq!(config.vars["Good"], names(&["A", "B"]));
    // B and T are read but VARS misses T: the group check would fail.
    assert_eq!(config.reads["Good::from_source"], names(&["A", "B", "T"]));
    let main: syn::File = syn::parse_quote! {
        fn main() { let g = Good::from_source(&ProcessEnv); let t = template_from(&ProcessEnv); }
    };
    assert_eq!(config.read_by(&main), names(&["A", "B", "T"]));
}
