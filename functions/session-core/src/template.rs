//! The session template: which containers a session runs. Configuration, not code; the
//! default is the seed's four containers.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config::Access;
use crate::hosts::{service_label, session_host};
use crate::session::{SessionId, Urls, Version};

/// Sessions of one user at a time while the template mounts the user's data: their
/// data has one directory, and one server may write it.
pub const MAX_SESSIONS_ON_USER_DATA: u32 = 1;

/// Name of the task volume that holds the user's persistent data.
pub const USER_DATA_VOLUME: &str = "user-data";

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionTemplate {
    /// Task CPU units (1024 = 1 vCPU).
    pub cpu: u32,
    /// Task memory in MiB.
    pub memory: u32,
    pub containers: Vec<ContainerTemplate>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContainerTemplate {
    pub name: String,
    /// ECR repository of a versioned image: `{registry}/{repository}:{version}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository: Option<String>,
    /// A fixed image, not versioned with the session (e.g. PostgreSQL).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// The key of this container's URL (`urls.{key}`, stored as `{key}_url`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url_key: Option<String>,
    #[serde(default = "yes")]
    pub essential: bool,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub environment: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check: Option<HealthCheck>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<u32>,
    /// Hard memory limit in MiB.
    pub memory: u32,
    /// Mounts the user's EFS access point at this path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_data_path: Option<String>,
    /// Seconds between SIGTERM and SIGKILL when the task stops (max 120 on Fargate).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_timeout_s: Option<u32>,
    /// Containers that must be healthy before this one starts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on_healthy: Vec<String>,
}

fn yes() -> bool {
    true
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthCheck {
    /// As in ECS: `["CMD-SHELL", "..."]` or `["CMD", ...]`.
    pub command: Vec<String>,
    #[serde(default = "default_interval")]
    pub interval_s: u32,
    #[serde(default = "default_timeout")]
    pub timeout_s: u32,
    #[serde(default = "default_retries")]
    pub retries: u32,
    #[serde(default)]
    pub start_period_s: u32,
}

fn default_interval() -> u32 {
    10
}
fn default_timeout() -> u32 {
    5
}
fn default_retries() -> u32 {
    5
}

impl Default for SessionTemplate {
    /// The seed's session: api :8000, frontend :3000, suv_ui :3030, and PostgreSQL with
    /// its data in a subdirectory of the user's EFS access point (initdb refuses a
    /// non-empty mount root). PostgreSQL listens on localhost only: the containers of
    /// a Fargate task share it, so it needs no password and no open port.
    fn default() -> Self {
        let app = |name: &str, repository: &str, port: u16, memory: u32| ContainerTemplate {
            name: name.into(),
            repository: Some(repository.into()),
            image: None,
            port: Some(port),
            url_key: Some(name.into()),
            essential: true,
            environment: BTreeMap::new(),
            command: vec![],
            // Any HTTP answer counts: the URL is shown once the service answers, whatever
            // its `/` says. The image needs curl (or a template with its own check).
            health_check: Some(HealthCheck {
                command: vec![
                    "CMD-SHELL".into(),
                    format!("curl -s -o /dev/null --max-time 4 http://127.0.0.1:{port}/ || exit 1"),
                ],
                interval_s: 10,
                timeout_s: 5,
                retries: 3,
                start_period_s: 60,
            }),
            cpu: None,
            memory,
            user_data_path: None,
            stop_timeout_s: None,
            depends_on_healthy: vec![],
        };
        let mut api = app("api", "api_service", 8000, 640);
        api.environment.insert(
            "DATABASE_URL".into(),
            "postgresql://postgres@localhost:5432/postgres".into(),
        );
        api.depends_on_healthy.push("postgres".into());
        let postgres = ContainerTemplate {
            name: "postgres".into(),
            repository: None,
            image: Some("public.ecr.aws/docker/library/postgres:16".into()),
            port: None,
            url_key: None,
            essential: true,
            environment: BTreeMap::from([
                ("PGDATA".into(), "/var/lib/postgresql/data/pgdata".into()),
                ("POSTGRES_HOST_AUTH_METHOD".into(), "trust".into()),
            ]),
            command: vec![
                "postgres".into(),
                "-c".into(),
                "listen_addresses=localhost".into(),
            ],
            health_check: Some(HealthCheck {
                command: vec![
                    "CMD-SHELL".into(),
                    "pg_isready -h localhost -U postgres".into(),
                ],
                interval_s: 5,
                timeout_s: 5,
                retries: 10,
                start_period_s: 10,
            }),
            cpu: None,
            memory: 640,
            user_data_path: Some("/var/lib/postgresql/data".into()),
            // Let PostgreSQL finish a clean shutdown so no data is lost on stop.
            stop_timeout_s: Some(120),
            depends_on_healthy: vec![],
        };
        Self {
            cpu: 1024,
            memory: 2048,
            containers: vec![
                api,
                app("frontend", "frontend", 3000, 384),
                app("suv_ui", "suv_ui", 3030, 384),
                postgres,
            ],
        }
    }
}

impl SessionTemplate {
    pub fn from_json(json: &str) -> Result<Self, String> {
        let template: Self = serde_json::from_str(json).map_err(|e| e.to_string())?;
        template.validate()?;
        Ok(template)
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.containers.is_empty() {
            return Err("the template needs at least one container".into());
        }
        let mut names = BTreeSet::new();
        let mut url_keys = BTreeSet::new();
        for c in &self.containers {
            if c.name.is_empty()
                || !c
                    .name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            {
                return Err(format!(
                    "container name {:?} must be [A-Za-z0-9_-]+",
                    c.name
                ));
            }
            if !names.insert(c.name.as_str()) {
                return Err(format!("container name {:?} is used twice", c.name));
            }
            if c.repository.is_some() == c.image.is_some() {
                return Err(format!(
                    "container {:?} needs exactly one of repository or image",
                    c.name
                ));
            }
            if let Some(key) = &c.url_key {
                if c.port.is_none() {
                    return Err(format!("container {:?} has a url_key but no port", c.name));
                }
                // Each key is a DNS label of its session's host (`suv_ui` is `suv-ui--…`):
                // lowercase, no leading, trailing or doubled separator, one host per key.
                let label = service_label(key);
                let valid = !key.is_empty()
                    && key.len() <= 20
                    && key
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
                    && !label.starts_with('-')
                    && !label.ends_with('-')
                    && !label.contains("--");
                if !valid {
                    return Err(format!(
                        "url_key {key:?} must be 1 to 20 characters of a-z, 0-9 and single '_' inside (it names the service's host)"
                    ));
                }
                if !url_keys.insert(label) {
                    return Err(format!(
                        "url_key {key:?} is used twice (or names the same host as another)"
                    ));
                }
            }
            if c.stop_timeout_s.is_some_and(|s| s > 120) {
                return Err(format!(
                    "container {:?}: stop_timeout_s is at most 120",
                    c.name
                ));
            }
        }
        for c in &self.containers {
            for dep in &c.depends_on_healthy {
                let target = self.containers.iter().find(|d| &d.name == dep);
                if target.is_none_or(|d| d.health_check.is_none()) {
                    return Err(format!(
                        "container {:?} depends on {dep:?}, which is not a container with a health check",
                        c.name
                    ));
                }
            }
        }
        let total: u32 = self.containers.iter().map(|c| c.memory).sum();
        if total > self.memory {
            return Err(format!(
                "container memory adds up to {total} MiB, more than the task's {} MiB",
                self.memory
            ));
        }
        Ok(())
    }

    /// Whether a container keeps data on the user's storage. Then a user has at most
    /// [`MAX_SESSIONS_ON_USER_DATA`] session at a time: two would run two servers (two
    /// PostgreSQL) on one data directory.
    pub fn mounts_user_data(&self) -> bool {
        self.containers.iter().any(|c| c.user_data_path.is_some())
    }

    /// Sessions a user may have at once under this template, given what their user item
    /// or the deployment asks for.
    pub fn session_limit(&self, asked: u32) -> u32 {
        if self.mounts_user_data() {
            asked.min(MAX_SESSIONS_ON_USER_DATA)
        } else {
            asked
        }
    }

    /// The ECR repositories whose images carry the session's version.
    pub fn repositories(&self) -> impl Iterator<Item = &str> {
        self.containers
            .iter()
            .filter_map(|c| c.repository.as_deref())
    }

    /// The session's URLs: by host name through the session gateway, or on the task's
    /// public IP (direct access). `None` in direct access without a public IP.
    pub fn urls(
        &self,
        access: &Access,
        session_id: &SessionId,
        public_ip: Option<&str>,
    ) -> Option<Urls> {
        let urls = self.service_ports().into_iter().map(|(key, port)| {
            let url = match access {
                Access::Gateway { domain, scheme } => {
                    format!("{scheme}://{}", session_host(&key, session_id, domain))
                }
                Access::Direct => format!("http://{}:{port}", public_ip?),
            };
            Some((key, url))
        });
        urls.collect::<Option<_>>().map(Urls)
    }

    /// Each URL's key and the container port it reaches: what the gateway forwards
    /// `{key}--{session_id}` to.
    pub fn service_ports(&self) -> BTreeMap<String, u16> {
        self.containers
            .iter()
            .filter_map(|c| Some((c.url_key.clone()?, c.port?)))
            .collect()
    }

    /// Whether ECS reports the task's health: some essential container has a health
    /// check. Then a session is `running` only once the task is HEALTHY.
    pub fn awaits_health(&self) -> bool {
        self.containers
            .iter()
            .any(|c| c.essential && c.health_check.is_some())
    }

    pub fn task_definition(&self, target: &TaskTarget<'_>) -> TaskDefinitionSpec {
        let containers = self
            .containers
            .iter()
            .map(|c| ContainerSpec {
                name: c.name.clone(),
                image: match (&c.repository, &c.image) {
                    (Some(repository), _) => {
                        format!("{}/{repository}:{}", target.registry, target.version)
                    }
                    (None, Some(image)) => image.clone(),
                    (None, None) => unreachable!("validated: exactly one of repository or image"),
                },
                port: c.port,
                essential: c.essential,
                environment: c.environment.clone(),
                command: c.command.clone(),
                health_check: c.health_check.clone(),
                cpu: c.cpu,
                memory: c.memory,
                user_data_path: c.user_data_path.clone(),
                stop_timeout_s: c.stop_timeout_s,
                depends_on_healthy: c.depends_on_healthy.clone(),
            })
            .collect();
        TaskDefinitionSpec {
            family: format!("{}-{}", target.family_prefix, user_key(target.user_id)),
            cpu: self.cpu,
            memory: self.memory,
            execution_role_arn: target.execution_role_arn.to_owned(),
            task_role_arn: target.task_role_arn.to_owned(),
            log_group: target.log_group.to_owned(),
            region: target.region.to_owned(),
            efs_file_system_id: target.efs_file_system_id.to_owned(),
            efs_access_point_id: target.efs_access_point_id.to_owned(),
            containers,
        }
    }
}

/// What a task definition is built for: one user, one version, one deployment.
#[derive(Clone, Debug)]
pub struct TaskTarget<'a> {
    pub user_id: &'a str,
    pub version: &'a Version,
    pub registry: &'a str,
    pub family_prefix: &'a str,
    pub execution_role_arn: &'a str,
    pub task_role_arn: &'a str,
    pub log_group: &'a str,
    pub region: &'a str,
    pub efs_file_system_id: &'a str,
    pub efs_access_point_id: &'a str,
}

/// A Fargate task definition, independent of the ECS SDK types.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TaskDefinitionSpec {
    pub family: String,
    pub cpu: u32,
    pub memory: u32,
    pub execution_role_arn: String,
    pub task_role_arn: String,
    pub log_group: String,
    pub region: String,
    pub efs_file_system_id: String,
    pub efs_access_point_id: String,
    pub containers: Vec<ContainerSpec>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ContainerSpec {
    pub name: String,
    pub image: String,
    pub port: Option<u16>,
    pub essential: bool,
    pub environment: BTreeMap<String, String>,
    pub command: Vec<String>,
    pub health_check: Option<HealthCheck>,
    pub cpu: Option<u32>,
    pub memory: u32,
    pub user_data_path: Option<String>,
    pub stop_timeout_s: Option<u32>,
    pub depends_on_healthy: Vec<String>,
}

impl TaskDefinitionSpec {
    /// Identifies this exact definition: a registered revision is reused only while
    /// nothing in it (images, template, roles, access point) has changed.
    pub fn fingerprint(&self) -> String {
        let json = serde_json::to_vec(self).expect("a task definition spec serializes");
        hex_prefix(&Sha256::digest(json), 16)
    }
}

/// A short, stable, non-reversible key for a user: safe in ECS family names, EFS paths
/// and client tokens, and free of the personal data a user id may hold (an email).
pub fn user_key(user_id: &str) -> String {
    hex_prefix(&Sha256::digest(user_id.as_bytes()), 24)
}

fn hex_prefix(bytes: &[u8], len: usize) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()[..len].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target<'a>(version: &'a Version) -> TaskTarget<'a> {
        TaskTarget {
            user_id: "user-1",
            version,
            registry: "123456789012.dkr.ecr.eu-west-1.amazonaws.com",
            family_prefix: "sessions",
            execution_role_arn: "arn:aws:iam::123456789012:role/exec",
            task_role_arn: "arn:aws:iam::123456789012:role/task",
            log_group: "/ecs/sessions",
            region: "eu-west-1",
            efs_file_system_id: "fs-1",
            efs_access_point_id: "fsap-1",
        }
    }

    #[test]
    fn the_default_template_is_the_seeds_four_containers() {
        let t = SessionTemplate::default();
        t.validate().unwrap();
        let ports: Vec<_> = t
            .containers
            .iter()
            .map(|c| (c.name.as_str(), c.port))
            .collect();
        assert_eq!(
            ports,
            vec![
                ("api", Some(8000)),
                ("frontend", Some(3000)),
                ("suv_ui", Some(3030)),
                ("postgres", None)
            ]
        );
        assert_eq!(
            t.repositories().collect::<Vec<_>>(),
            vec!["api_service", "frontend", "suv_ui"]
        );
    }

    #[test]
    fn versioned_images_resolve_to_registry_repository_and_version() {
        let v = Version::parse("1.0.0").unwrap();
        let spec = SessionTemplate::default().task_definition(&target(&v));
        let images: Vec<_> = spec.containers.iter().map(|c| c.image.as_str()).collect();
        assert_eq!(
            images[0],
            "123456789012.dkr.ecr.eu-west-1.amazonaws.com/api_service:1.0.0"
        );
        assert_eq!(
            images[2],
            "123456789012.dkr.ecr.eu-west-1.amazonaws.com/suv_ui:1.0.0"
        );
        assert_eq!(images[3], "public.ecr.aws/docker/library/postgres:16");
    }

    #[test]
    fn postgres_keeps_its_data_in_a_subdirectory_of_the_user_mount() {
        let t = SessionTemplate::default();
        let pg = t.containers.iter().find(|c| c.name == "postgres").unwrap();
        let mount = pg.user_data_path.as_deref().unwrap();
        let pgdata = &pg.environment["PGDATA"];
        assert!(pgdata.starts_with(&format!("{mount}/")) && pgdata.len() > mount.len() + 1);
    }

    #[test]
    fn direct_urls_are_the_public_ip_and_each_url_port() {
        let id = SessionId::parse("sess-1").unwrap();
        let urls = SessionTemplate::default()
            .urls(&Access::Direct, &id, Some("54.1.2.3"))
            .unwrap();
        assert_eq!(urls.get("api"), Some("http://54.1.2.3:8000"));
        assert_eq!(urls.get("frontend"), Some("http://54.1.2.3:3000"));
        assert_eq!(urls.get("suv_ui"), Some("http://54.1.2.3:3030"));
        assert_eq!(urls.0.len(), 3);
        assert_eq!(
            SessionTemplate::default().urls(&Access::Direct, &id, None),
            None
        );
    }

    #[test]
    fn gateway_urls_are_one_https_host_per_service_without_a_port() {
        let id = SessionId::parse("sess-1").unwrap();
        let access = Access::Gateway {
            domain: "sessions.example.com".into(),
            scheme: "https".into(),
        };
        let urls = SessionTemplate::default().urls(&access, &id, None).unwrap();
        assert_eq!(
            urls.get("api"),
            Some("https://api--sess-1.sessions.example.com")
        );
        assert_eq!(
            urls.get("frontend"),
            Some("https://frontend--sess-1.sessions.example.com")
        );
        assert_eq!(
            urls.get("suv_ui"),
            Some("https://suv-ui--sess-1.sessions.example.com")
        );
        let ports = SessionTemplate::default().service_ports();
        assert_eq!(ports.get("suv_ui"), Some(&3030));
        assert_eq!(ports.len(), 3);
    }

    #[test]
    fn the_default_template_awaits_the_health_of_every_service() {
        let t = SessionTemplate::default();
        assert!(t.awaits_health());
        for c in t.containers.iter().filter(|c| c.port.is_some()) {
            assert!(c.health_check.is_some(), "{} has no health check", c.name);
        }
    }

    #[test]
    fn the_fingerprint_changes_with_the_version_but_not_between_identical_specs() {
        let (v1, v2) = (
            Version::parse("1.0.0").unwrap(),
            Version::parse("1.0.1").unwrap(),
        );
        let t = SessionTemplate::default();
        let a = t.task_definition(&target(&v1)).fingerprint();
        assert_eq!(a, t.task_definition(&target(&v1)).fingerprint());
        assert_ne!(a, t.task_definition(&target(&v2)).fingerprint());
    }

    #[test]
    fn user_keys_hide_the_user_id_and_fit_family_names() {
        let key = user_key("alice@example.com");
        assert_eq!(key.len(), 24);
        assert!(key.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(key, user_key("bob@example.com"));
    }

    #[test]
    fn invalid_templates_are_refused_with_the_reason() {
        let mut t = SessionTemplate::default();
        t.containers[1].name = "api".into();
        assert!(t.validate().unwrap_err().contains("used twice"));

        let mut t = SessionTemplate::default();
        t.containers[0].image = Some("x".into());
        assert!(t
            .validate()
            .unwrap_err()
            .contains("exactly one of repository or image"));

        let t = SessionTemplate {
            memory: 1024,
            ..Default::default()
        };
        assert!(t.validate().unwrap_err().contains("more than the task's"));

        assert!(
            SessionTemplate::from_json(r#"{"cpu":1,"memory":1,"containers":[],"x":1}"#).is_err()
        );
    }

    #[test]
    fn url_keys_that_would_not_name_one_host_each_are_refused() {
        for key in [
            "",
            "Api",
            "_api",
            "api_",
            "a__b",
            "suv-ui",
            "a.b",
            "averyveryverylongservicekey",
        ] {
            let mut t = SessionTemplate::default();
            t.containers[0].url_key = Some(key.into());
            assert!(
                t.validate()
                    .unwrap_err()
                    .contains("names the service's host"),
                "{key:?}"
            );
        }
        let mut t = SessionTemplate::default();
        t.containers[0].url_key = Some("suv_ui".into());
        assert!(t.validate().unwrap_err().contains("used twice"));
    }

    #[test]
    fn a_template_round_trips_through_json() {
        let t = SessionTemplate::default();
        let json = serde_json::to_string(&t).unwrap();
        assert_eq!(SessionTemplate::from_json(&json).unwrap(), t);
    }
}
