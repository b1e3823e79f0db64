//! Typed configuration, read from the environment once at start-up. Each group lists
//! the variables it reads in `VARS`, so Terraform and the tests can be checked against
//! exactly what the code reads.

use std::collections::HashMap;

use crate::template::{SessionTemplate, MAX_SESSIONS_ON_USER_DATA};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("environment variable {0} is required but not set")]
    Missing(&'static str),
    #[error("environment variable {name} is invalid: {message}")]
    Invalid { name: &'static str, message: String },
}

/// Where configuration values come from: the process environment in Lambda, a map in
/// tests.
pub trait Source {
    fn get(&self, name: &str) -> Option<String>;

    fn required(&self, name: &'static str) -> Result<String, ConfigError> {
        self.get(name)
            .filter(|v| !v.trim().is_empty())
            .ok_or(ConfigError::Missing(name))
    }

    fn parsed<T: std::str::FromStr>(&self, name: &'static str, default: T) -> Result<T, ConfigError>
    where
        T::Err: std::fmt::Display,
    {
        match self.get(name).filter(|v| !v.trim().is_empty()) {
            None => Ok(default),
            Some(raw) => raw
                .trim()
                .parse()
                .map_err(|e: T::Err| ConfigError::Invalid {
                    name,
                    message: e.to_string(),
                }),
        }
    }

    fn list(&self, name: &'static str) -> Result<Vec<String>, ConfigError> {
        let items: Vec<String> = self
            .required(name)?
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        if items.is_empty() {
            return Err(ConfigError::Invalid {
                name,
                message: "needs at least one value".into(),
            });
        }
        Ok(items)
    }
}

/// The process environment.
pub struct ProcessEnv;

impl Source for ProcessEnv {
    fn get(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

impl Source for HashMap<String, String> {
    fn get(&self, name: &str) -> Option<String> {
        HashMap::get(self, name).cloned()
    }
}

/// The DynamoDB tables.
#[derive(Clone, Debug)]
pub struct Tables {
    pub sessions: String,
    pub users: String,
    /// How long a finished session is kept before DynamoDB's TTL deletes it.
    pub retention_days: u32,
}

impl Tables {
    pub const VARS: &'static [&'static str] =
        &["SESSIONS_TABLE", "USERS_TABLE", "SESSION_RETENTION_DAYS"];

    pub fn from_source(env: &impl Source) -> Result<Self, ConfigError> {
        Ok(Self {
            sessions: env.required("SESSIONS_TABLE")?,
            users: env.required("USERS_TABLE")?,
            retention_days: env.parsed("SESSION_RETENTION_DAYS", 30)?,
        })
    }
}

/// The ECS cluster the session tasks run in.
#[derive(Clone, Debug)]
pub struct Cluster {
    pub cluster: String,
}

impl Cluster {
    pub const VARS: &'static [&'static str] = &["CLUSTER"];

    pub fn from_source(env: &impl Source) -> Result<Self, ConfigError> {
        Ok(Self {
            cluster: env.required("CLUSTER")?,
        })
    }
}

/// Which capacity the tasks run on. Fargate Spot has no automatic fallback to on-demand.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Capacity {
    Fargate,
    FargateSpot,
}

impl std::str::FromStr for Capacity {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "FARGATE" => Ok(Capacity::Fargate),
            "FARGATE_SPOT" => Ok(Capacity::FargateSpot),
            other => Err(format!("expected FARGATE or FARGATE_SPOT, got {other:?}")),
        }
    }
}

/// Everything Launch needs to register a task definition and run a task.
#[derive(Clone, Debug)]
pub struct LaunchSettings {
    pub subnets: Vec<String>,
    pub security_groups: Vec<String>,
    pub assign_public_ip: bool,
    pub capacity: Capacity,
    pub execution_role_arn: String,
    /// Where each user's task role lives, and what bounds it (see [`TaskRoleSettings`]).
    pub task_roles: TaskRoleSettings,
    pub efs_file_system_id: String,
    pub registry: String,
    pub task_family_prefix: String,
    pub task_log_group: String,
    pub region: String,
    pub template: SessionTemplate,
}

impl LaunchSettings {
    pub const VARS: &'static [&'static str] = &[
        "SUBNETS",
        "SECURITY_GROUPS",
        "ASSIGN_PUBLIC_IP",
        "CAPACITY_PROVIDER",
        "EXECUTION_ROLE_ARN",
        "TASK_ROLE_PATH",
        "TASK_ROLE_BOUNDARY_ARN",
        "TASK_ROLE_POLICY_ARN",
        "EFS_FILE_SYSTEM_ID",
        "ECR_REGISTRY",
        "TASK_FAMILY_PREFIX",
        "TASK_LOG_GROUP",
        "SESSION_TEMPLATE",
    ];

    /// `region` comes from the SDK configuration (Lambda sets `AWS_REGION` itself).
    pub fn from_source(env: &impl Source, region: String) -> Result<Self, ConfigError> {
        let task_family_prefix = env.parsed("TASK_FAMILY_PREFIX", "sessions".to_owned())?;
        Ok(Self {
            subnets: env.list("SUBNETS")?,
            security_groups: env.list("SECURITY_GROUPS")?,
            assign_public_ip: env.parsed("ASSIGN_PUBLIC_IP", true)?,
            capacity: env.parsed("CAPACITY_PROVIDER", Capacity::Fargate)?,
            execution_role_arn: env.required("EXECUTION_ROLE_ARN")?,
            task_roles: task_roles_from(env, &task_family_prefix)?,
            efs_file_system_id: env.required("EFS_FILE_SYSTEM_ID")?,
            registry: env.required("ECR_REGISTRY")?,
            task_family_prefix,
            task_log_group: env.required("TASK_LOG_GROUP")?,
            region,
            template: template_from(env)?,
        })
    }
}

/// Each user's own task role: created by Launch under `path`, bounded by `boundary_arn`,
/// with the shared `policy_arn` attached. Its name is `{name_prefix}-{user key}`, the
/// name of the user's task definition family.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskRoleSettings {
    pub path: String,
    pub boundary_arn: String,
    pub policy_arn: String,
    pub name_prefix: String,
    /// The account the roles are in (that of the boundary): only its ECS tasks may
    /// assume them.
    pub account: String,
}

/// The task role settings of [`LaunchSettings`]; `name_prefix` is the task family
/// prefix, which names the roles too.
fn task_roles_from(env: &impl Source, name_prefix: &str) -> Result<TaskRoleSettings, ConfigError> {
    let path = env.required("TASK_ROLE_PATH")?;
    let path_ok = path.len() <= 512
        && path.starts_with('/')
        && path.ends_with('/')
        && path.len() > 1
        && path.bytes().all(|b| (0x21..=0x7e).contains(&b));
    if !path_ok {
        return Err(ConfigError::Invalid {
            name: "TASK_ROLE_PATH",
            message: format!(
                "must be an IAM path of its own, such as /sessions/users/ (got {path:?}): \
                 the file-system policy admits roles by it"
            ),
        });
    }
    let boundary_arn = env.required("TASK_ROLE_BOUNDARY_ARN")?;
    let account = policy_account(&boundary_arn).ok_or_else(|| ConfigError::Invalid {
        name: "TASK_ROLE_BOUNDARY_ARN",
        message: format!("must be an IAM policy ARN, got {boundary_arn:?}"),
    })?;
    let policy_arn = env.required("TASK_ROLE_POLICY_ARN")?;
    if policy_account(&policy_arn).is_none() {
        return Err(ConfigError::Invalid {
            name: "TASK_ROLE_POLICY_ARN",
            message: format!("must be an IAM policy ARN, got {policy_arn:?}"),
        });
    }
    if name_prefix.len() > TaskRoleSettings::MAX_NAME_PREFIX
        || !name_prefix
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+=,.@_-".contains(&b))
    {
        return Err(ConfigError::Invalid {
            name: "TASK_FAMILY_PREFIX",
            message: format!(
                "names each user's task role too, so it must be at most {} of \
                 [A-Za-z0-9+=,.@_-], got {name_prefix:?}",
                TaskRoleSettings::MAX_NAME_PREFIX
            ),
        });
    }
    Ok(TaskRoleSettings {
        path,
        boundary_arn,
        policy_arn,
        name_prefix: name_prefix.to_owned(),
        account,
    })
}

impl TaskRoleSettings {
    /// IAM role names are at most 64 characters; a user key is 24.
    const MAX_NAME_PREFIX: usize = 64 - 1 - 24;

    /// The user's role name: hashed, so that ids holding `|`, `@`, spaces or any
    /// letter (which IAM names refuse) and personal data never reach IAM.
    pub fn role_name(&self, user_id: &str) -> String {
        format!(
            "{}-{}",
            self.name_prefix,
            crate::template::user_key(user_id)
        )
    }
}

/// The account of an IAM policy ARN (`arn:<partition>:iam::<account>:policy/<name>`).
fn policy_account(arn: &str) -> Option<String> {
    let mut parts = arn.splitn(6, ':');
    let (arn_, _partition, service, region, account, resource) = (
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
    );
    let ok = arn_ == "arn"
        && service == "iam"
        && region.is_empty()
        && account.len() == 12
        && account.bytes().all(|b| b.is_ascii_digit())
        && resource.len() > "policy/".len()
        && resource.starts_with("policy/");
    ok.then(|| account.to_owned())
}

/// What Authorize checks before it admits a session.
#[derive(Clone, Debug)]
pub struct AdmissionSettings {
    /// Sessions a user may have at once unless their user item says otherwise.
    pub max_sessions: u32,
    /// Whether every versioned image of the template must exist in ECR.
    pub check_images: bool,
    pub template: SessionTemplate,
    /// The deployment's maximum lifetime (the reaper's `MAX_LIFETIME_S`), from which
    /// the state machine's AwaitStop backstop is set for each session.
    pub max_lifetime_s: u64,
}

impl AdmissionSettings {
    pub const VARS: &'static [&'static str] = &[
        "MAX_SESSIONS_PER_USER",
        "CHECK_IMAGES",
        "SESSION_TEMPLATE",
        "MAX_LIFETIME_S",
    ];

    pub fn from_source(env: &impl Source) -> Result<Self, ConfigError> {
        let max_sessions = env.parsed("MAX_SESSIONS_PER_USER", 1u32)?;
        if max_sessions == 0 {
            return Err(ConfigError::Invalid {
                name: "MAX_SESSIONS_PER_USER",
                message: "must be at least 1".into(),
            });
        }
        let template = template_from(env)?;
        if template.session_limit(max_sessions) < max_sessions {
            return Err(ConfigError::Invalid {
                name: "MAX_SESSIONS_PER_USER",
                message: format!(
                    "must be {MAX_SESSIONS_ON_USER_DATA} while the session template mounts the user's data: \
                     a second session of a user would run a second PostgreSQL on the same data"
                ),
            });
        }
        Ok(Self {
            max_sessions,
            check_images: env.parsed("CHECK_IMAGES", true)?,
            template,
            max_lifetime_s: env.parsed("MAX_LIFETIME_S", DEFAULT_MAX_LIFETIME_S)?,
        })
    }
}

/// A session's maximum lifetime, unless configured: eight hours.
pub const DEFAULT_MAX_LIFETIME_S: u64 = 8 * 60 * 60;

/// Seconds between two heartbeat writes of one session, unless configured.
pub const DEFAULT_HEARTBEAT_INTERVAL_S: u64 = 60;

/// The shortest idle timeout that cannot stop a user who heartbeats: a heartbeat is
/// written at most once per interval, so the recorded activity of an active user may
/// be a whole interval old, plus the time until their client's next beat.
pub fn min_idle_timeout_s(heartbeat_interval_s: u64) -> u64 {
    heartbeat_interval_s.saturating_mul(2)
}

/// Seconds without activity before a running session is stopped as idle, unless
/// configured: thirty minutes.
pub const DEFAULT_IDLE_TIMEOUT_S: u64 = 30 * 60;

/// The deployment's limits on a session, which a user's item may set for their own
/// (`idle_timeout_s`, `max_lifetime_s`; [`crate::limits`] applies them). The reaper
/// acts on them and the api shows when they will stop a session, so both read them
/// from the same variables, through [`session_limits_from`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionLimits {
    /// Seconds without activity before a running session is stopped as idle.
    pub idle_timeout_s: u64,
    /// Seconds from a session's admission before it is stopped for its max lifetime.
    pub max_lifetime_s: u64,
    /// A session's `last_activity_at` is written at most once per this many seconds:
    /// an idle timeout must leave room for it.
    pub heartbeat_interval_s: u64,
}

/// Reads the [`SessionLimits`] (`IDLE_TIMEOUT_S`, `MAX_LIFETIME_S`,
/// `HEARTBEAT_INTERVAL_S`) for the groups that hold them. An idle timeout shorter than
/// twice the heartbeat interval is refused.
pub fn session_limits_from(env: &impl Source) -> Result<SessionLimits, ConfigError> {
    let heartbeat_interval_s = env.parsed("HEARTBEAT_INTERVAL_S", DEFAULT_HEARTBEAT_INTERVAL_S)?;
    let idle_timeout_s = env.parsed("IDLE_TIMEOUT_S", DEFAULT_IDLE_TIMEOUT_S)?;
    if idle_timeout_s < min_idle_timeout_s(heartbeat_interval_s) {
        return Err(ConfigError::Invalid {
            name: "IDLE_TIMEOUT_S",
            message: format!(
                "must be at least twice HEARTBEAT_INTERVAL_S ({heartbeat_interval_s} s): \
                 heartbeats are written at most once per interval, so a shorter \
                 timeout stops users who are active"
            ),
        });
    }
    Ok(SessionLimits {
        idle_timeout_s,
        max_lifetime_s: env.parsed("MAX_LIFETIME_S", DEFAULT_MAX_LIFETIME_S)?,
        heartbeat_interval_s,
    })
}

/// The reaper's settings: the limits it stops sessions for, and when it judges a
/// task an orphan or a session stuck.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReaperSettings {
    pub limits: SessionLimits,
    /// A task younger than this is never called an orphan: its session may not have
    /// reached the (eventually consistent) active index yet.
    pub orphan_grace_s: u64,
    /// A session `starting`, `provisioning` or `stopping` for longer than this is stuck
    /// (its execution runs but can no longer progress) and is ended as lost.
    pub transition_deadline_s: u64,
}

impl ReaperSettings {
    pub const VARS: &'static [&'static str] = &[
        "IDLE_TIMEOUT_S",
        "MAX_LIFETIME_S",
        "ORPHAN_GRACE_S",
        "TRANSITION_DEADLINE_S",
        "HEARTBEAT_INTERVAL_S",
    ];

    /// Twice WaitForIp's `TimeoutSeconds` (600). The longest a healthy session spends
    /// in one of these statuses is Authorize and Launch with all their retries in
    /// `starting` (6 attempts each of at most 30 s and 60 s, plus 31 s of backoff each:
    /// 602 s; or, throttled, 41 attempts that each fail within the SDK's own retries,
    /// plus at most 591 s of backoff each: 1 + 2 + 4 + 8 + 16 × 36, about half that
    /// with the full jitter), or WaitForIp's 600 s and its retries in `provisioning`;
    /// 1200 s leaves room for either and for the reaper's schedule (only both steps
    /// throttled to their last attempt, each waiting its longest, would pass it).
    pub const DEFAULT_TRANSITION_DEADLINE_S: u64 = 2 * 600;

    pub fn from_source(env: &impl Source) -> Result<Self, ConfigError> {
        let transition_deadline_s =
            env.parsed("TRANSITION_DEADLINE_S", Self::DEFAULT_TRANSITION_DEADLINE_S)?;
        if transition_deadline_s == 0 {
            return Err(ConfigError::Invalid {
                name: "TRANSITION_DEADLINE_S",
                message: "must be at least 1: 0 would end every session that is starting".into(),
            });
        }
        Ok(Self {
            limits: session_limits_from(env)?,
            orphan_grace_s: env.parsed("ORPHAN_GRACE_S", 5 * 60)?,
            transition_deadline_s,
        })
    }
}

/// The project's EventBridge bus, where lifecycle events are published.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventSettings {
    pub bus: String,
}

impl EventSettings {
    pub const VARS: &'static [&'static str] = &["EVENT_BUS"];

    pub fn from_source(env: &impl Source) -> Result<Self, ConfigError> {
        Ok(Self {
            bus: env.required("EVENT_BUS")?,
        })
    }
}

/// How users reach their sessions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AccessMode {
    /// Tasks in private subnets, reached only through the session gateway (HTTPS,
    /// sign-in, owner only) at `https://{service}--{session_id}.{domain}`.
    Gateway,
    /// Tasks with a public IP, each service on its own port over plain HTTP: for small
    /// setups without a domain, with the task ports open only to `allowed_cidrs`.
    Direct,
}

impl std::str::FromStr for AccessMode {
    type Err = String;

    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        match raw {
            "gateway" => Ok(AccessMode::Gateway),
            "direct" => Ok(AccessMode::Direct),
            other => Err(format!("must be \"gateway\" or \"direct\", got {other:?}")),
        }
    }
}

/// Where a running session's URLs point, and so which address of its task matters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Access {
    Gateway {
        /// The sessions' domain (`SESSION_DOMAIN`), e.g. `sessions.example.com`; the
        /// local stack's carries its port.
        domain: String,
        /// `https` behind the load balancer; the local stack serves plain `http`.
        scheme: String,
    },
    Direct,
}

impl Access {
    pub const VARS: &'static [&'static str] =
        &["ACCESS_MODE", "SESSION_DOMAIN", "SESSION_URL_SCHEME"];

    pub fn from_source(env: &impl Source) -> Result<Self, ConfigError> {
        match env.parsed("ACCESS_MODE", AccessMode::Gateway)? {
            AccessMode::Direct => Ok(Access::Direct),
            AccessMode::Gateway => {
                let domain = env.required("SESSION_DOMAIN")?.trim().to_ascii_lowercase();
                let valid = domain.split(':').next().is_some_and(|host| {
                    host.split('.').all(|label| {
                        !label.is_empty()
                            && label.len() <= 63
                            && label
                                .bytes()
                                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                    })
                });
                if !valid {
                    return Err(ConfigError::Invalid {
                        name: "SESSION_DOMAIN",
                        message: format!(
                            "must be a DNS name such as sessions.example.com, got {domain:?}"
                        ),
                    });
                }
                let scheme = env.parsed("SESSION_URL_SCHEME", "https".to_owned())?;
                if scheme != "https" && scheme != "http" {
                    return Err(ConfigError::Invalid {
                        name: "SESSION_URL_SCHEME",
                        message: format!("must be https or http, got {scheme:?}"),
                    });
                }
                Ok(Access::Gateway { domain, scheme })
            }
        }
    }

    pub fn mode(&self) -> AccessMode {
        match self {
            Access::Gateway { .. } => AccessMode::Gateway,
            Access::Direct => AccessMode::Direct,
        }
    }
}

/// A secret from the environment: never shown by `Debug`, so it cannot reach a log.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl Secret {
    pub fn new(bytes: impl Into<Vec<u8>>) -> Self {
        Self(bytes.into())
    }

    pub fn bytes(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// The only claim the API reads the caller from. Cognito's `sub` never changes and is
/// never reassigned; claims such as `email` or `username` may be changed by the user or
/// reused, which would hand one user's sessions and data to another.
pub const IDENTITY_CLAIM: &str = "sub";

/// The public API's settings: where starts go, whose claims identify the caller, and
/// the limits it shows sessions are held to (and writes heartbeats by).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiSettings {
    pub state_machine_arn: String,
    /// The JWT claim that holds the caller's user id: always [`IDENTITY_CLAIM`].
    pub identity_claim: String,
    /// The OAuth scope a caller needs, besides `admin` on their user item, to act for
    /// other users.
    pub admin_scope: String,
    /// The reaper's limits: the api writes heartbeats by their interval and shows when
    /// a running session would be stopped (`idle_stop_at`, `ends_at`).
    pub limits: SessionLimits,
    /// Signs the `next_token` of listings, so a token is accepted only from the user
    /// it was given to and exactly as it was given.
    pub cursor_key: Secret,
}

impl ApiSettings {
    pub const VARS: &'static [&'static str] = &[
        "STATE_MACHINE_ARN",
        "IDENTITY_CLAIM",
        "ADMIN_SCOPE",
        "IDLE_TIMEOUT_S",
        "MAX_LIFETIME_S",
        "HEARTBEAT_INTERVAL_S",
        "CURSOR_KEY",
    ];

    /// HMAC-SHA256 keys shorter than its 32-byte output weaken it.
    pub const MIN_CURSOR_KEY_BYTES: usize = 32;

    pub fn from_source(env: &impl Source) -> Result<Self, ConfigError> {
        let state_machine_arn = env.required("STATE_MACHINE_ARN")?;
        if !state_machine_arn.contains(":stateMachine:") {
            return Err(ConfigError::Invalid {
                name: "STATE_MACHINE_ARN",
                message: "must be a state machine ARN (arn:aws:states:...:stateMachine:name)"
                    .into(),
            });
        }
        let identity_claim = env.parsed("IDENTITY_CLAIM", IDENTITY_CLAIM.to_owned())?;
        if identity_claim != IDENTITY_CLAIM {
            return Err(ConfigError::Invalid {
                name: "IDENTITY_CLAIM",
                message: format!(
                    "must be {IDENTITY_CLAIM:?}, got {identity_claim:?}: other claims can be \
                     changed by their user or reused, and would hand one user's sessions to another"
                ),
            });
        }
        let cursor_key = env.required("CURSOR_KEY")?;
        if cursor_key.len() < Self::MIN_CURSOR_KEY_BYTES {
            return Err(ConfigError::Invalid {
                name: "CURSOR_KEY",
                message: format!(
                    "must be at least {} bytes, got {}",
                    Self::MIN_CURSOR_KEY_BYTES,
                    cursor_key.len()
                ),
            });
        }
        Ok(Self {
            state_machine_arn,
            identity_claim,
            admin_scope: env.parsed("ADMIN_SCOPE", "sessions/admin".to_owned())?,
            limits: session_limits_from(env)?,
            cursor_key: Secret::new(cursor_key),
        })
    }

    /// The ARN the execution named `name` gets: known before it starts, so a session
    /// can point at its execution from the moment it is admitted.
    pub fn execution_arn(&self, name: &str) -> String {
        format!(
            "{}:{name}",
            self.state_machine_arn
                .replacen(":stateMachine:", ":execution:", 1)
        )
    }
}

/// The session template: `SESSION_TEMPLATE` as JSON, or the default four containers.
pub fn template_from(env: &impl Source) -> Result<SessionTemplate, ConfigError> {
    match env.get("SESSION_TEMPLATE").filter(|v| !v.trim().is_empty()) {
        None => Ok(SessionTemplate::default()),
        Some(json) => SessionTemplate::from_json(&json).map_err(|message| ConfigError::Invalid {
            name: "SESSION_TEMPLATE",
            message,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn a_missing_variable_is_named_in_the_error() {
        let err = Tables::from_source(&env(&[("USERS_TABLE", "users")])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "environment variable SESSIONS_TABLE is required but not set"
        );
    }

    #[test]
    fn an_unparseable_variable_is_named_in_the_error() {
        let err =
            AdmissionSettings::from_source(&env(&[("MAX_SESSIONS_PER_USER", "many")])).unwrap_err();
        assert!(err
            .to_string()
            .starts_with("environment variable MAX_SESSIONS_PER_USER is invalid"));
        let err =
            AdmissionSettings::from_source(&env(&[("MAX_SESSIONS_PER_USER", "0")])).unwrap_err();
        assert!(err.to_string().contains("at least 1"));
    }

    #[test]
    fn admission_defaults_to_one_session_and_checked_images() {
        let settings = AdmissionSettings::from_source(&env(&[])).unwrap();
        assert_eq!(settings.max_sessions, 1);
        assert!(settings.check_images);
        assert_eq!(settings.template, SessionTemplate::default());
    }

    #[test]
    fn more_than_one_session_per_user_is_refused_while_the_template_mounts_user_data() {
        let err = AdmissionSettings::from_source(&env(&[("MAX_SESSIONS_PER_USER", "2")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("MAX_SESSIONS_PER_USER"), "{err}");
        assert!(err.contains("second PostgreSQL"), "{err}");

        // A template whose containers keep nothing on the user's storage may allow more.
        let mut template = SessionTemplate::default();
        for container in &mut template.containers {
            container.user_data_path = None;
        }
        let json = serde_json::to_string(&template).unwrap();
        let settings = AdmissionSettings::from_source(&env(&[
            ("MAX_SESSIONS_PER_USER", "2"),
            ("SESSION_TEMPLATE", json.as_str()),
        ]))
        .unwrap();
        assert_eq!(settings.max_sessions, 2);
        assert_eq!(settings.template.session_limit(5), 5);
        assert_eq!(SessionTemplate::default().session_limit(5), 1);
    }

    const STATE_MACHINE_ARN: &str = "arn:aws:states:eu-west-1:123456789012:stateMachine:sessions";
    const CURSOR_KEY: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn execution_arns_are_derived_from_the_state_machine_arn() {
        let settings = ApiSettings::from_source(&env(&[
            ("STATE_MACHINE_ARN", STATE_MACHINE_ARN),
            ("CURSOR_KEY", CURSOR_KEY),
        ]))
        .unwrap();
        assert_eq!(
            settings.execution_arn("sess-1"),
            "arn:aws:states:eu-west-1:123456789012:execution:sessions:sess-1"
        );
        assert_eq!(settings.identity_claim, "sub");
        assert!(ApiSettings::from_source(&env(&[
            ("STATE_MACHINE_ARN", "sessions"),
            ("CURSOR_KEY", CURSOR_KEY)
        ]))
        .is_err());
    }

    #[test]
    fn the_identity_claim_can_only_be_sub() {
        for claim in ["email", "username", "cognito:username"] {
            let err = ApiSettings::from_source(&env(&[
                ("STATE_MACHINE_ARN", STATE_MACHINE_ARN),
                ("CURSOR_KEY", CURSOR_KEY),
                ("IDENTITY_CLAIM", claim),
            ]))
            .unwrap_err();
            assert!(
                err.to_string()
                    .starts_with("environment variable IDENTITY_CLAIM is invalid"),
                "{err}"
            );
        }
        let sub = ApiSettings::from_source(&env(&[
            ("STATE_MACHINE_ARN", STATE_MACHINE_ARN),
            ("CURSOR_KEY", CURSOR_KEY),
            ("IDENTITY_CLAIM", "sub"),
        ]))
        .unwrap();
        assert_eq!(sub.identity_claim, "sub");
    }

    #[test]
    fn a_cursor_key_is_required_and_at_least_32_bytes() {
        let missing = ApiSettings::from_source(&env(&[("STATE_MACHINE_ARN", STATE_MACHINE_ARN)]))
            .unwrap_err();
        assert_eq!(
            missing.to_string(),
            "environment variable CURSOR_KEY is required but not set"
        );
        let short = ApiSettings::from_source(&env(&[
            ("STATE_MACHINE_ARN", STATE_MACHINE_ARN),
            ("CURSOR_KEY", &CURSOR_KEY[..31]),
        ]))
        .unwrap_err();
        assert!(
            short
                .to_string()
                .starts_with("environment variable CURSOR_KEY is invalid"),
            "{short}"
        );
        let settings = ApiSettings::from_source(&env(&[
            ("STATE_MACHINE_ARN", STATE_MACHINE_ARN),
            ("CURSOR_KEY", CURSOR_KEY),
        ]))
        .unwrap();
        assert_eq!(settings.cursor_key.bytes(), CURSOR_KEY.as_bytes());
        assert!(!format!("{settings:?}").contains(CURSOR_KEY));
    }

    #[test]
    fn an_idle_timeout_shorter_than_twice_the_heartbeat_interval_is_refused() {
        let err = ReaperSettings::from_source(&env(&[
            ("IDLE_TIMEOUT_S", "100"),
            ("HEARTBEAT_INTERVAL_S", "60"),
        ]))
        .unwrap_err();
        assert!(err.to_string().contains("IDLE_TIMEOUT_S"), "{err}");
        let settings = ReaperSettings::from_source(&env(&[
            ("IDLE_TIMEOUT_S", "120"),
            ("HEARTBEAT_INTERVAL_S", "60"),
        ]))
        .unwrap();
        assert_eq!(settings.limits.heartbeat_interval_s, 60);
        assert!(ReaperSettings::from_source(&env(&[])).is_ok());
    }

    #[test]
    fn the_api_reads_the_limits_the_reaper_reads_and_refuses_what_it_refuses() {
        let api = |pairs: &[(&str, &str)]| {
            let mut all = env(&[
                ("STATE_MACHINE_ARN", STATE_MACHINE_ARN),
                ("CURSOR_KEY", CURSOR_KEY),
            ]);
            all.extend(env(pairs));
            ApiSettings::from_source(&all)
        };
        for pairs in [
            &[][..],
            &[
                ("IDLE_TIMEOUT_S", "600"),
                ("MAX_LIFETIME_S", "7200"),
                ("HEARTBEAT_INTERVAL_S", "30"),
            ][..],
        ] {
            assert_eq!(
                api(pairs).unwrap().limits,
                ReaperSettings::from_source(&env(pairs)).unwrap().limits,
                "{pairs:?}"
            );
        }
        let short = [("IDLE_TIMEOUT_S", "100"), ("HEARTBEAT_INTERVAL_S", "60")];
        let err = api(&short).unwrap_err();
        assert!(err.to_string().contains("IDLE_TIMEOUT_S"), "{err}");
    }

    #[test]
    fn the_transition_deadline_outlasts_wait_for_ip_and_is_never_zero() {
        let asl: serde_json::Value =
            serde_json::from_str(include_str!("../../../statemachine/lifecycle.asl.json")).unwrap();
        let wait_for_ip = asl["States"]["WaitForIp"]["TimeoutSeconds"]
            .as_u64()
            .unwrap();
        let settings = ReaperSettings::from_source(&env(&[])).unwrap();
        assert!(settings.transition_deadline_s >= 2 * wait_for_ip);
        let set = ReaperSettings::from_source(&env(&[("TRANSITION_DEADLINE_S", "2")])).unwrap();
        assert_eq!(set.transition_deadline_s, 2);
        let err = ReaperSettings::from_source(&env(&[("TRANSITION_DEADLINE_S", "0")])).unwrap_err();
        assert!(err
            .to_string()
            .starts_with("environment variable TRANSITION_DEADLINE_S is invalid"));
    }

    fn launch_env(extra: &[(&'static str, &'static str)]) -> HashMap<String, String> {
        let mut e = env(&[
            ("SUBNETS", "subnet-1"),
            ("SECURITY_GROUPS", "sg-1"),
            ("EXECUTION_ROLE_ARN", "arn:aws:iam::123456789012:role/exec"),
            ("TASK_ROLE_PATH", "/sessions/users/"),
            (
                "TASK_ROLE_BOUNDARY_ARN",
                "arn:aws:iam::123456789012:policy/sessions/task-boundary",
            ),
            (
                "TASK_ROLE_POLICY_ARN",
                "arn:aws:iam::123456789012:policy/sessions/task-user-data",
            ),
            ("EFS_FILE_SYSTEM_ID", "fs-1"),
            (
                "ECR_REGISTRY",
                "123456789012.dkr.ecr.eu-west-1.amazonaws.com",
            ),
            ("TASK_LOG_GROUP", "/ecs/sessions"),
        ]);
        e.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        e
    }

    #[test]
    fn task_roles_get_a_path_a_boundary_and_a_hashed_name() {
        let settings = LaunchSettings::from_source(&launch_env(&[]), "eu-west-1".into()).unwrap();
        let roles = &settings.task_roles;
        assert_eq!(roles.path, "/sessions/users/");
        assert_eq!(roles.account, "123456789012");
        let name = roles.role_name("auth0|ab c@é");
        assert_eq!(
            name,
            format!("sessions-{}", crate::template::user_key("auth0|ab c@é"))
        );
        assert!(name.len() <= 64);
        assert!(name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+=,.@_-".contains(&b)));
    }

    #[test]
    fn task_role_settings_that_iam_or_the_file_system_policy_refuse_are_named() {
        for (name, value) in [
            ("TASK_ROLE_PATH", "/"),
            ("TASK_ROLE_PATH", "sessions/users"),
            ("TASK_ROLE_PATH", "/sessions users/"),
            ("TASK_ROLE_BOUNDARY_ARN", "arn:aws:iam::123456789012:role/x"),
            ("TASK_ROLE_BOUNDARY_ARN", "task-boundary"),
            ("TASK_ROLE_POLICY_ARN", "arn:aws:s3:::bucket"),
            (
                "TASK_FAMILY_PREFIX",
                "a-prefix-far-too-long-for-an-iam-role-name",
            ),
        ] {
            let err =
                LaunchSettings::from_source(&launch_env(&[(name, value)]), "r".into()).unwrap_err();
            assert!(
                err.to_string()
                    .starts_with(&format!("environment variable {name} is invalid")),
                "{name}={value}: {err}"
            );
        }
    }

    #[test]
    fn lists_are_split_on_commas_and_trimmed() {
        let e = env(&[("SUBNETS", " subnet-1, subnet-2 ,")]);
        assert_eq!(e.list("SUBNETS").unwrap(), vec!["subnet-1", "subnet-2"]);
        assert!(env(&[("SUBNETS", " , ")]).list("SUBNETS").is_err());
    }
}
