//! The Terraform schema of a provider, read offline from the `.jsii` assembly of its
//! prebuilt CDK Terrain bindings (the npm packages `@cdktn/provider-aws`,
//! `@cdktn/provider-random`, pinned in tools/npm): every resource and data source, its
//! arguments and nested blocks (required or optional, one or many), and the attributes
//! it exports.
//!
//! How the bindings spell Terraform's schema:
//! - each resource or data source is a class whose base is `cdktn.TerraformResource` or
//!   `cdktn.TerraformDataSource`, documented as `Represents a {@link <registry url>
//!   aws_vpc}.`; its initializer's `config` parameter is a struct of the arguments;
//! - each property of a config struct documents its Terraform name in a link to the
//!   registry, `{@link https://registry.terraform.io/.../vpc#cidr_block Vpc#cidr_block}`.
//!   That name is the one to use: the camelCase property is not always its mirror
//!   (`self` is `selfAttribute`, `get_password_data` is `fetchPasswordData`,
//!   `address_line_1` is `addressLine1`);
//! - a nested block is a property documented `<name> block.` whose type is a struct (at
//!   most one block) or a list of structs (any number); an argument of an object type
//!   is a struct too, but not documented as a block. Terraform lets some of those be
//!   written as blocks too (an SDKv2 provider's "attributes as blocks", such as
//!   `aws_route_table`'s `route`), and the bindings cannot tell which: the schema keeps
//!   their fields, so that a block of that name is checked against them;
//! - a property that is not optional is required (for a block: at least one);
//! - the attributes a resource exports are the class's own getters, less the
//!   `<argument>Input` getters the bindings add beside each argument.
//!
//! Reading a 150 MB assembly takes seconds in a debug build, so the schema is kept,
//! once read, as JSON in a cache directory, under the package's name and version and a
//! hash of this file (a change to the reading invalidates it).

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::{Hash, Hasher};
use std::path::Path;

use serde::{Deserialize, Serialize};

/// The arguments and nested blocks a block accepts.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct BlockSchema {
    /// Argument name -> whether it is required.
    pub arguments: BTreeMap<String, bool>,
    /// The fields of the arguments of an object type, or a list of objects.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub objects: BTreeMap<String, BlockSchema>,
    pub blocks: BTreeMap<String, NestedBlock>,
    /// The bindings give this block's contents only as a JSON string (the schema is too
    /// deep for them): anything written in it goes unchecked.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub open: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct NestedBlock {
    /// At least one must be written.
    pub required: bool,
    /// At most one may be written.
    pub max_one: bool,
    pub body: BlockSchema,
}

/// A resource or data source type.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TypeSchema {
    pub body: BlockSchema,
    /// What `<type>.<name>.<attribute>` may read: the arguments, the blocks and the
    /// computed attributes.
    pub attributes: BTreeSet<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ProviderSchema {
    /// The provider's local name, the prefix of its types: `aws`.
    pub name: String,
    /// Its registry source: `hashicorp/aws`.
    pub source: String,
    /// The provider version the bindings were generated from: `6.66.0`.
    pub version: String,
    /// The `provider "<name>"` block.
    pub provider: BlockSchema,
    pub resources: BTreeMap<String, TypeSchema>,
    pub data_sources: BTreeMap<String, TypeSchema>,
    /// `ephemeral` blocks' types (`aws_secretsmanager_random_password`): the bindings
    /// spell them as data sources, on `cdktn.TerraformEphemeralResource`.
    pub ephemeral_resources: BTreeMap<String, TypeSchema>,
}

impl ProviderSchema {
    /// The schema of the npm package installed in `package_dir`, from `cache_dir` when
    /// it was read before.
    pub fn load(package_dir: &Path, cache_dir: &Path) -> Result<Self, String> {
        let read = |path: &Path| {
            std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))
        };
        let package: serde_json::Value =
            serde_json::from_str(&read(&package_dir.join("package.json"))?)
                .map_err(|e| format!("{}/package.json: {e}", package_dir.display()))?;
        let (Some(name), Some(version)) = (package["name"].as_str(), package["version"].as_str())
        else {
            return Err(format!(
                "{}/package.json names no package and version",
                package_dir.display()
            ));
        };
        let mut hasher = DefaultHasher::new();
        include_str!("provider_schema.rs").hash(&mut hasher);
        let package = name.replace(['@', '/'], "_");
        let file = format!("{package}-{version}-{:016x}.json", hasher.finish());
        let cached = cache_dir.join(&file);
        if let Ok(text) = std::fs::read_to_string(&cached) {
            if let Ok(schema) = serde_json::from_str(&text) {
                return Ok(schema);
            }
        }
        let jsii = package_dir.join(".jsii");
        let schema =
            Self::from_jsii(&read(&jsii)?).map_err(|e| format!("{}: {e}", jsii.display()))?;
        // Written aside and renamed, so that tests reading it meanwhile never see half.
        std::fs::create_dir_all(cache_dir).map_err(|e| format!("{}: {e}", cache_dir.display()))?;
        let partial = cached.with_extension(format!("{}.partial", std::process::id()));
        std::fs::write(&partial, serde_json::to_string(&schema).unwrap())
            .and_then(|()| std::fs::rename(&partial, &cached))
            .map_err(|e| format!("{}: {e}", cached.display()))?;
        // What earlier versions of the package or of this reading left.
        for stale in std::fs::read_dir(cache_dir).into_iter().flatten().flatten() {
            let stale_name = stale.file_name().to_string_lossy().into_owned();
            if stale_name.starts_with(&format!("{package}-"))
                && stale_name != file
                && stale_name.ends_with(".json")
            {
                let _ = std::fs::remove_file(stale.path());
            }
        }
        Ok(schema)
    }

    /// The schema a `.jsii` assembly describes.
    pub fn from_jsii(text: &str) -> Result<Self, String> {
        let assembly: Assembly = serde_json::from_str(text).map_err(|e| e.to_string())?;
        let mut schema = ProviderSchema::default();
        for (fqn, ty) in &assembly.types {
            let Some(base) = ty.base.as_deref() else {
                continue;
            };
            let kind = match base {
                "cdktn.TerraformResource" => Kind::Resource,
                "cdktn.TerraformDataSource" => Kind::DataSource,
                "cdktn.TerraformEphemeralResource" => Kind::Ephemeral,
                "cdktn.TerraformProvider" => Kind::Provider,
                _ => continue,
            };
            let (url, name) = represented(&ty.docs.summary)
                .ok_or_else(|| format!("{fqn}: no `Represents a {{@link ...}}` in its docs"))?;
            let config = ty
                .initializer
                .as_ref()
                .and_then(|i| i.parameters.iter().find(|p| p.name == "config"))
                .and_then(|p| p.ty.fqn.as_deref())
                .ok_or_else(|| format!("{fqn}: no config parameter"))?;
            let body = assembly.block(config)?;
            match kind {
                Kind::Provider => {
                    // https://registry.terraform.io/providers/hashicorp/aws/6.66.0/docs
                    let path = url
                        .strip_prefix("https://registry.terraform.io/providers/")
                        .and_then(|p| p.strip_suffix("/docs"))
                        .ok_or_else(|| format!("{fqn}: unexpected registry link {url}"))?;
                    let (source, version) = path
                        .rsplit_once('/')
                        .ok_or_else(|| format!("{fqn}: no version in {url}"))?;
                    schema.name = name.to_owned();
                    schema.source = source.to_owned();
                    schema.version = version.to_owned();
                    schema.provider = body;
                }
                Kind::Resource | Kind::DataSource | Kind::Ephemeral => {
                    let attributes = assembly.attributes(ty, config)?;
                    let types = match kind {
                        Kind::Resource => &mut schema.resources,
                        Kind::Ephemeral => &mut schema.ephemeral_resources,
                        _ => &mut schema.data_sources,
                    };
                    types.insert(name.to_owned(), TypeSchema { body, attributes });
                }
            }
        }
        if schema.name.is_empty() {
            return Err(format!("{}: no provider class", assembly.name));
        }
        Ok(schema)
    }
}

enum Kind {
    Resource,
    DataSource,
    Ephemeral,
    Provider,
}

/// `Represents a {@link <url> <name>}.` -> (url, name).
fn represented(summary: &str) -> Option<(&str, &str)> {
    let link = summary
        .strip_prefix("Represents a {@link ")?
        .strip_suffix("}.")?;
    link.split_once(' ')
}

/// The Terraform name a property's docs link to: `...#cidr_block Vpc#cidr_block}`.
fn terraform_name(docs: &Docs) -> Option<&str> {
    const LINK: &str = "Docs at Terraform Registry: {@link ";
    [&docs.summary, &docs.remarks].into_iter().find_map(|text| {
        let url = text[text.find(LINK)? + LINK.len()..].split(' ').next()?;
        let (_, name) = url.rsplit_once('#')?;
        let is_name = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        is_name.then_some(name)
    })
}

/// `streamArn` -> `stream_arn`: for exported attributes, which have no docs.
fn snake_case(camel: &str) -> String {
    let mut snake = String::with_capacity(camel.len() + 4);
    for c in camel.chars() {
        if c.is_ascii_uppercase() {
            snake.push('_');
            snake.push(c.to_ascii_lowercase());
        } else {
            snake.push(c);
        }
    }
    snake
}

// The parts of a jsii assembly the schema is read from.

#[derive(Deserialize)]
struct Assembly {
    name: String,
    types: HashMap<String, JsiiType>,
}

#[derive(Deserialize)]
struct JsiiType {
    #[serde(default)]
    base: Option<String>,
    #[serde(default)]
    docs: Docs,
    #[serde(default)]
    initializer: Option<Initializer>,
    #[serde(default)]
    properties: Vec<Property>,
}

#[derive(Default, Deserialize)]
struct Docs {
    #[serde(default)]
    summary: String,
    #[serde(default)]
    remarks: String,
}

#[derive(Deserialize)]
struct Initializer {
    #[serde(default)]
    parameters: Vec<Parameter>,
}

#[derive(Deserialize)]
struct Parameter {
    name: String,
    #[serde(rename = "type")]
    ty: TypeRef,
}

#[derive(Deserialize)]
struct Property {
    name: String,
    #[serde(default)]
    optional: bool,
    #[serde(default, rename = "static")]
    is_static: bool,
    #[serde(default)]
    docs: Docs,
    #[serde(rename = "type")]
    ty: TypeRef,
}

/// One of `{"primitive": ..}`, `{"fqn": ..}`, `{"collection": ..}`, `{"union": ..}`.
#[derive(Default, Deserialize)]
struct TypeRef {
    #[serde(default)]
    fqn: Option<String>,
    #[serde(default)]
    collection: Option<Box<Collection>>,
    #[serde(default)]
    union: Option<Union>,
}

#[derive(Deserialize)]
struct Collection {
    kind: String,
    elementtype: TypeRef,
}

#[derive(Deserialize)]
struct Union {
    types: Vec<TypeRef>,
}

impl Assembly {
    fn get(&self, fqn: &str) -> Result<&JsiiType, String> {
        self.types
            .get(fqn)
            .ok_or_else(|| format!("{fqn} is not a type of {}", self.name))
    }

    /// The struct a block property holds, and whether it holds just one: a struct, a
    /// list of structs, or either of those or a token (`IResolvable`).
    fn block_struct<'a>(&self, ty: &'a TypeRef) -> Option<(&'a str, bool)> {
        let own = |fqn: &str| fqn.starts_with(&format!("{}.", self.name));
        if let Some(fqn) = ty.fqn.as_deref().filter(|f| own(f)) {
            return Some((fqn, true));
        }
        if let Some(list) = ty.collection.as_deref().filter(|c| c.kind == "array") {
            return list
                .elementtype
                .fqn
                .as_deref()
                .filter(|f| own(f))
                .map(|f| (f, false));
        }
        ty.union
            .as_ref()
            .and_then(|u| u.types.iter().find_map(|t| self.block_struct(t)))
    }

    fn block(&self, fqn: &str) -> Result<BlockSchema, String> {
        self.block_within(fqn, &mut Vec::new())
    }

    /// `within`: the structs this one is nested in. A struct nested in itself (WAFv2's
    /// rule statements) is left open where it recurs.
    fn block_within<'a>(
        &'a self,
        fqn: &'a str,
        within: &mut Vec<&'a str>,
    ) -> Result<BlockSchema, String> {
        if within.contains(&fqn) {
            return Ok(BlockSchema {
                open: true,
                ..BlockSchema::default()
            });
        }
        within.push(fqn);
        let mut block = BlockSchema::default();
        for property in &self.get(fqn)?.properties {
            let name = terraform_name(&property.docs)
                .ok_or_else(|| format!("{fqn}.{}: no Terraform name in its docs", property.name))?
                .to_owned();
            if !property.docs.summary.ends_with(" block.") {
                if let Some((fields, _)) = self.block_struct(&property.ty) {
                    block
                        .objects
                        .insert(name.clone(), self.block_within(fields, within)?);
                }
                block.arguments.insert(name, !property.optional);
                continue;
            }
            let nested = match self.block_struct(&property.ty) {
                Some((nested, max_one)) => NestedBlock {
                    required: !property.optional,
                    max_one,
                    body: self.block_within(nested, within)?,
                },
                None => NestedBlock {
                    required: !property.optional,
                    max_one: false,
                    body: BlockSchema {
                        open: true,
                        ..BlockSchema::default()
                    },
                },
            };
            block.blocks.insert(name, nested);
        }
        within.pop();
        Ok(block)
    }

    /// The attributes a resource class exports, by their Terraform names.
    fn attributes(&self, class: &JsiiType, config: &str) -> Result<BTreeSet<String>, String> {
        let names: HashMap<&str, &str> = self
            .get(config)?
            .properties
            .iter()
            .filter_map(|p| Some((p.name.as_str(), terraform_name(&p.docs)?)))
            .collect();
        let getters: BTreeSet<&str> = class
            .properties
            .iter()
            .filter(|p| !p.is_static)
            .map(|p| p.name.as_str())
            .collect();
        Ok(getters
            .iter()
            .filter(|g| !g.strip_suffix("Input").is_some_and(|a| getters.contains(a)))
            .map(|g| {
                names
                    .get(g)
                    .map_or_else(|| snake_case(g), |n| (*n).to_owned())
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A miniature assembly in the shape of the real ones: a resource with a single and a
    /// repeated block, a renamed argument, a computed attribute; a data source; the
    /// provider.
    fn assembly() -> String {
        let link = |page: &str, name: &str| {
            format!("Docs at Terraform Registry: {{@link https://registry.terraform.io/providers/hashicorp/aws/6.66.0/docs/{page}#{name} X#{name}}}.")
        };
        let arg = |camel: &str, page: &str, name: &str, optional: bool| {
            serde_json::json!({
                "name": camel, "optional": optional,
                "docs": {"summary": link(page, name)}, "type": {"primitive": "string"}
            })
        };
        let block = |camel: &str, page: &str, name: &str, ty: serde_json::Value, optional: bool| {
            serde_json::json!({
                "name": camel, "optional": optional,
                "docs": {"summary": format!("{name} block."), "remarks": link(page, name)},
                "type": ty
            })
        };
        let class = |base: &str, link: &str, config: &str, getters: &[&str]| {
            serde_json::json!({
                "base": base,
                "docs": {"summary": format!("Represents a {{@link {link}}}.")},
                "initializer": {"parameters": [
                    {"name": "scope", "type": {"fqn": "constructs.Construct"}},
                    {"name": "config", "type": {"fqn": config}}
                ]},
                "properties": std::iter::once(serde_json::json!({
                    "name": "tfResourceType", "static": true, "type": {"primitive": "string"}
                })).chain(getters.iter().map(|g| serde_json::json!({
                    "name": g, "type": {"primitive": "string"}
                }))).collect::<Vec<_>>()
            })
        };
        let p = "@cdktn/provider-aws";
        let list_of = |fqn: &str| {
            serde_json::json!({"union": {"types": [
                {"fqn": "cdktn.IResolvable"},
                {"collection": {"kind": "array", "elementtype": {"fqn": fqn}}}
            ]}})
        };
        serde_json::json!({
            "name": p,
            "types": {
                format!("{p}.table.Table"): class(
                    "cdktn.TerraformResource",
                    "https://registry.terraform.io/providers/hashicorp/aws/6.66.0/docs/resources/table aws_table",
                    &format!("{p}.table.TableConfig"),
                    &["arn", "name", "nameInput", "selfAttribute", "index", "streamArn"],
                ),
                format!("{p}.table.TableConfig"): {"properties": [
                    arg("name", "resources/table", "name", false),
                    arg("selfAttribute", "resources/table", "self", true),
                    block("index", "resources/table", "index", list_of(&format!("{p}.table.TableIndex")), true),
                    block("ttl", "resources/table", "ttl", serde_json::json!({"fqn": format!("{p}.table.TableTtl")}), false),
                    {
                        "name": "route", "optional": true,
                        "docs": {"summary": link("resources/table", "route")},
                        "type": list_of(&format!("{p}.table.TableRoute"))
                    },
                ]},
                format!("{p}.table.TableRoute"): {"properties": [
                    arg("cidrBlock", "resources/table", "cidr_block", true),
                ]},
                format!("{p}.table.TableIndex"): {"properties": [
                    arg("name", "resources/table", "name", false),
                    block("keySchema", "resources/table", "key_schema", list_of(&format!("{p}.table.TableIndexKeySchema")), true),
                ]},
                format!("{p}.table.TableIndexKeySchema"): {"properties": [
                    arg("attributeName", "resources/table", "attribute_name", false),
                ]},
                format!("{p}.table.TableTtl"): {"properties": [
                    arg("enabled", "resources/table", "enabled", true),
                ]},
                format!("{p}.dataAwsTable.DataAwsTable"): class(
                    "cdktn.TerraformDataSource",
                    "https://registry.terraform.io/providers/hashicorp/aws/6.66.0/docs/data-sources/table aws_table",
                    &format!("{p}.dataAwsTable.DataAwsTableConfig"),
                    &["arn"],
                ),
                format!("{p}.dataAwsTable.DataAwsTableConfig"): {"properties": [
                    arg("name", "data-sources/table", "name", false),
                ]},
                format!("{p}.ephemeralAwsSecret.EphemeralAwsSecret"): class(
                    "cdktn.TerraformEphemeralResource",
                    "https://registry.terraform.io/providers/hashicorp/aws/6.66.0/docs/ephemeral-resources/secret aws_secret",
                    &format!("{p}.ephemeralAwsSecret.EphemeralAwsSecretConfig"),
                    &["value"],
                ),
                format!("{p}.ephemeralAwsSecret.EphemeralAwsSecretConfig"): {"properties": [
                    arg("length", "ephemeral-resources/secret", "length", true),
                ]},
                format!("{p}.provider.AwsProvider"): class(
                    "cdktn.TerraformProvider",
                    "https://registry.terraform.io/providers/hashicorp/aws/6.66.0/docs aws",
                    &format!("{p}.provider.AwsProviderConfig"),
                    &[],
                ),
                format!("{p}.provider.AwsProviderConfig"): {"properties": [
                    arg("region", "", "region", true),
                ]},
                format!("{p}.table.TableIndexOutputReference"): {"base": "cdktn.ComplexObject"},
            }
        })
        .to_string()
    }

    #[test]
    fn the_jsii_maps_to_terraform_names_blocks_and_attributes() {
        let schema = ProviderSchema::from_jsii(&assembly()).unwrap();
        assert_eq!(
            (
                schema.name.as_str(),
                schema.source.as_str(),
                schema.version.as_str()
            ),
            ("aws", "hashicorp/aws", "6.66.0")
        );
        assert_eq!(
            schema.provider.arguments,
            BTreeMap::from([("region".into(), false)])
        );

        let table = &schema.resources["aws_table"];
        assert_eq!(
            table.body.arguments,
            BTreeMap::from([
                ("name".into(), true),
                ("route".into(), false),
                ("self".into(), false)
            ]),
            "the Terraform name comes from the docs link, not from the camelCase"
        );
        assert_eq!(
            table.body.objects["route"].arguments,
            BTreeMap::from([("cidr_block".into(), false)]),
            "a list of objects keeps its fields, for when it is written as blocks"
        );
        assert_eq!(table.body.objects.len(), 1);
        let index = &table.body.blocks["index"];
        assert!(!index.required && !index.max_one);
        assert_eq!(
            index.body.arguments,
            BTreeMap::from([("name".into(), true)])
        );
        let key_schema = &index.body.blocks["key_schema"];
        assert!(!key_schema.max_one);
        assert_eq!(
            key_schema.body.arguments,
            BTreeMap::from([("attribute_name".into(), true)])
        );
        let ttl = &table.body.blocks["ttl"];
        assert!(
            ttl.required && ttl.max_one,
            "a struct, not a list: one block"
        );
        assert_eq!(
            table.attributes,
            ["arn", "index", "name", "self", "stream_arn"]
                .iter()
                .map(|s| s.to_string())
                .collect(),
            "getters by their Terraform names, without the nameInput beside name"
        );

        let data = &schema.data_sources["aws_table"];
        assert_eq!(data.body.arguments, BTreeMap::from([("name".into(), true)]));
        assert!(schema.data_sources.len() == 1 && schema.resources.len() == 1);

        let ephemeral = &schema.ephemeral_resources["aws_secret"];
        assert_eq!(
            ephemeral.body.arguments,
            BTreeMap::from([("length".into(), false)]),
            "an ephemeral resource is read as a data source is, and kept apart"
        );
        assert!(ephemeral.attributes.contains("value"));
        assert_eq!(schema.ephemeral_resources.len(), 1);
    }

    #[test]
    fn a_property_without_its_terraform_name_is_an_error() {
        let text = assembly().replace("#attribute_name X#attribute_name", "");
        let error = ProviderSchema::from_jsii(&text).unwrap_err();
        assert!(
            error.contains("TableIndexKeySchema.attributeName"),
            "{error}"
        );
    }

    #[test]
    fn exported_attributes_are_snake_case() {
        assert_eq!(snake_case("streamArn"), "stream_arn");
        assert_eq!(snake_case("ipv6CidrBlock"), "ipv6_cidr_block");
        assert_eq!(snake_case("arn"), "arn");
    }
}
