//! Launch: the user's storage, a task definition for (user, version), and the task.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::config::LaunchSettings;
use crate::error::{Error, Result};
use crate::ports::{Change, Clock, Compute, SessionStore, Storage, TaskLaunch, TaskRoles, User};
use crate::session::Status;
use crate::steps::authorize::SessionRef;
use crate::template::{TaskDefinitionSpec, TaskTarget};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LaunchOutput {
    pub task_arn: String,
    pub task_definition_arn: String,
}

pub async fn launch(
    session: SessionRef,
    settings: &LaunchSettings,
    store: &impl SessionStore,
    compute: &impl Compute,
    storage: &impl Storage,
    roles: &impl TaskRoles,
    clock: &impl Clock,
) -> Result<LaunchOutput> {
    let id = &session.session_id;
    let current = store
        .session(id)
        .await?
        .ok_or_else(|| Error::SessionNotFound(id.to_string()))?;
    if current.user_id != session.user_id {
        return Err(crate::error::InvalidInput::new(
            "user_id",
            "does not match the session's user",
        )
        .into());
    }
    if current.status == Status::Stopping {
        return Err(Error::StopRequested("before the task was launched".into()));
    }
    if current.status.is_terminal() {
        // Ended before its execution got here (e.g. the API recorded a failed start
        // whose execution began after all): no task may be started for it.
        return Err(Error::LaunchFailed(format!(
            "the session is already {}",
            current.status
        )));
    }
    let user = store
        .user(&session.user_id)
        .await?
        .ok_or(Error::NotAuthorized)?;
    let access_point_id = ensure_access_point(&user, store, storage).await?;
    // Before the task definition names it: IAM is eventually consistent, so a role made
    // in the same breath as RunTask may not be assumable yet (RunTask's answer is then
    // Transient, and the state machine retries).
    let task_role_arn = ensure_task_role(&user, &access_point_id, store, roles).await?;

    let spec = settings.template.task_definition(&TaskTarget {
        user_id: &session.user_id,
        version: &session.version,
        registry: &settings.registry,
        family_prefix: &settings.task_family_prefix,
        execution_role_arn: &settings.execution_role_arn,
        task_role_arn: &task_role_arn,
        log_group: &settings.task_log_group,
        region: &settings.region,
        efs_file_system_id: &settings.efs_file_system_id,
        efs_access_point_id: &access_point_id,
    });
    // RegisterTaskDefinition is rate limited (about one call a second sustained), so a
    // revision is registered once per (user, version, template) and then reused.
    let revision = Revision {
        user: &user,
        key: format!("{}:{}", session.version, spec.fingerprint()),
        spec: &spec,
    };
    let cached = revision.cached_arn();
    let task_definition_arn = match &cached {
        Some(arn) => arn.clone(),
        None => revision.register_revision(store, compute).await?,
    };

    // A retried Launch must not start a second task for the same session.
    if let Some(task_arn) = current.task_arn {
        return Ok(LaunchOutput {
            task_arn,
            task_definition_arn,
        });
    }

    let (task_definition_arn, task_arn) = revision
        .run_task_on(
            &session,
            task_definition_arn,
            cached.is_some(),
            store,
            compute,
        )
        .await?;
    tracing::info!(session_id = %id, task_arn, "task launched");

    if store
        .apply(
            id,
            Change::Launched {
                task_arn: task_arn.clone(),
                awaits_health: settings.template.awaits_health(),
                at: clock.now(),
            },
        )
        .await?
        .is_none()
    {
        // The session left `starting` while the task launched. A requested stop is
        // carried out by Stop, which finds the task by its startedBy; any other end
        // means the task must not outlive the session.
        let now = store.session(id).await?.map(|s| s.status);
        if now == Some(Status::Stopping) {
            return Err(Error::StopRequested("while the task was launching".into()));
        }
        compute
            .stop_task(&task_arn, "session ended during launch")
            .await?;
        return Err(Error::LaunchFailed(
            "the session ended while its task was launching".into(),
        ));
    }
    Ok(LaunchOutput {
        task_arn,
        task_definition_arn,
    })
}

/// How many task definition revisions a user's item keeps. Each is one (version,
/// template) the user launched; past this many, the oldest registered are dropped
/// (registering one again costs one RegisterTaskDefinition call), so the item cannot
/// grow towards DynamoDB's 400 KB with every version ever used.
pub const TASK_DEFINITION_CACHE_SIZE: usize = 16;

/// The task definition revision of one (user, version, template).
struct Revision<'a> {
    user: &'a User,
    key: String,
    spec: &'a TaskDefinitionSpec,
}

impl Revision<'_> {
    fn cached_arn(&self) -> Option<String> {
        self.user.task_definitions.get(&self.key).cloned()
    }

    /// Registers a revision and caches it in place of any earlier one for this key.
    async fn register_revision(
        &self,
        store: &impl SessionStore,
        compute: &impl Compute,
    ) -> Result<String> {
        let arn = compute.register_task_definition(self.spec).await?;
        let evict = cache_evictions(&self.user.task_definitions, &self.key);
        store
            .cache_task_definition(&self.user.user_id, &self.key, &arn, &evict)
            .await?;
        Ok(arn)
    }

    /// Runs the session's task on `arn`. A cached revision may have been deregistered
    /// since (a clean-up job, an operator): ECS then refuses it for good, so a fresh
    /// one replaces it in the cache and the task runs on that. Returns the revision the
    /// task runs on, and the task.
    async fn run_task_on(
        &self,
        session: &SessionRef,
        arn: String,
        cached: bool,
        store: &impl SessionStore,
        compute: &impl Compute,
    ) -> Result<(String, String)> {
        let launch = |arn| TaskLaunch {
            task_definition_arn: arn,
            session_id: &session.session_id,
            user_id: &session.user_id,
        };
        match compute.run_task(&launch(&arn)).await {
            Ok(task_arn) => Ok((arn, task_arn)),
            Err(Error::TaskDefinitionInactive(why)) if cached => {
                tracing::warn!(
                    session_id = %session.session_id,
                    task_definition_arn = arn,
                    why,
                    "the cached task definition is inactive: registering a fresh one"
                );
                let fresh = self.register_revision(store, compute).await?;
                let task_arn = compute.run_task(&launch(&fresh)).await?;
                Ok((fresh, task_arn))
            }
            Err(err) => Err(err),
        }
    }
}

/// The cache entries to drop when `key` is (re)cached, so that at most
/// [`TASK_DEFINITION_CACHE_SIZE`] remain: the most recently registered are kept (one
/// family per user, so a higher revision number is a later registration).
fn cache_evictions(cached: &BTreeMap<String, String>, key: &str) -> Vec<String> {
    let revision = |arn: &str| {
        arn.rsplit_once(':')
            .and_then(|(_, r)| r.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let mut others: Vec<(&String, u64)> = cached
        .iter()
        .filter(|(k, _)| k.as_str() != key)
        .map(|(k, arn)| (k, revision(arn)))
        .collect();
    others.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
    others
        .into_iter()
        .skip(TASK_DEFINITION_CACHE_SIZE.saturating_sub(1))
        .map(|(k, _)| k.clone())
        .collect()
}

/// The user's task role: stored on their item once made, so later launches skip IAM.
async fn ensure_task_role(
    user: &User,
    access_point_id: &str,
    store: &impl SessionStore,
    roles: &impl TaskRoles,
) -> Result<String> {
    if let Some(arn) = &user.task_role_arn {
        return Ok(arn.clone());
    }
    let arn = roles
        .ensure_task_role(&user.user_id, access_point_id)
        .await?;
    store.set_task_role(&user.user_id, &arn).await
}

async fn ensure_access_point(
    user: &User,
    store: &impl SessionStore,
    storage: &impl Storage,
) -> Result<String> {
    if let Some(id) = &user.efs_access_point_id {
        return Ok(id.clone());
    }
    let created = storage.create_access_point(&user.user_id).await?;
    // Two first launches of one user may race; the access point's client token makes
    // both create calls return the same access point, and the store keeps the first.
    store.set_access_point(&user.user_id, &created).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::Version;
    use crate::template::SessionTemplate;

    fn arn(revision: u64) -> String {
        format!("arn:aws:ecs:eu-west-1:1:task-definition/sessions-u:{revision}")
    }

    fn cache(revisions: impl IntoIterator<Item = u64>) -> BTreeMap<String, String> {
        revisions
            .into_iter()
            .map(|r| (format!("v{r}:fp"), arn(r)))
            .collect()
    }

    #[test]
    fn a_cache_below_its_bound_drops_nothing() {
        let cached = cache(1..TASK_DEFINITION_CACHE_SIZE as u64);
        assert!(cache_evictions(&cached, "new:fp").is_empty());
        assert!(cache_evictions(&BTreeMap::new(), "new:fp").is_empty());
    }

    #[test]
    fn a_full_cache_drops_its_oldest_registrations_to_make_room() {
        // Inserted out of order: revision numbers, not keys, say which is older.
        let cached = cache((1..=20).rev());
        let mut dropped = cache_evictions(&cached, "new:fp");
        dropped.sort();
        let mut oldest: Vec<String> = (1..=5).map(|r| format!("v{r}:fp")).collect();
        oldest.sort();
        assert_eq!(dropped, oldest);
        assert_eq!(cached.len() - dropped.len() + 1, TASK_DEFINITION_CACHE_SIZE);
    }

    #[test]
    fn replacing_an_entry_never_drops_the_entry_being_replaced() {
        let cached = cache(1..=TASK_DEFINITION_CACHE_SIZE as u64);
        let dropped = cache_evictions(&cached, "v1:fp");
        assert!(!dropped.contains(&"v1:fp".to_owned()), "{dropped:?}");
        assert!(dropped.is_empty(), "{dropped:?}");
    }

    fn spec(version: &Version) -> TaskDefinitionSpec {
        SessionTemplate::default().task_definition(&TaskTarget {
            user_id: "u",
            version,
            registry: "1.dkr.ecr.eu-west-1.amazonaws.com",
            family_prefix: "sessions",
            execution_role_arn: "arn:aws:iam::1:role/execution",
            task_role_arn: "arn:aws:iam::1:role/task",
            log_group: "/sessions/tasks",
            region: "eu-west-1",
            efs_file_system_id: "fs-1",
            efs_access_point_id: "fsap-1",
        })
    }

    #[test]
    fn each_users_role_gives_their_task_definition_its_own_cache_key() {
        let version = Version::default();
        let mine = spec(&version);
        let mut theirs = mine.clone();
        theirs.task_role_arn = "arn:aws:iam::1:role/sessions/users/other".into();
        assert_ne!(mine.fingerprint(), theirs.fingerprint());
    }
}
