//! Launch: the user's storage, a task definition for (user, version), and the task.

use serde::{Deserialize, Serialize};

use crate::config::LaunchSettings;
use crate::error::{Error, Result};
use crate::ports::{Change, Compute, SessionStore, Storage, TaskLaunch, User};
use crate::session::Status;
use crate::steps::authorize::SessionRef;
use crate::template::TaskTarget;

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

    let spec = settings.template.task_definition(&TaskTarget {
        user_id: &session.user_id,
        version: &session.version,
        registry: &settings.registry,
        family_prefix: &settings.task_family_prefix,
        execution_role_arn: &settings.execution_role_arn,
        task_role_arn: &settings.task_role_arn,
        log_group: &settings.task_log_group,
        region: &settings.region,
        efs_file_system_id: &settings.efs_file_system_id,
        efs_access_point_id: &access_point_id,
    });
    // RegisterTaskDefinition is rate limited (about one call a second sustained), so a
    // revision is registered once per (user, version, template) and then reused.
    let cache_key = format!("{}:{}", session.version, spec.fingerprint());
    let task_definition_arn = match user.task_definitions.get(&cache_key) {
        Some(arn) => arn.clone(),
        None => {
            let arn = compute.register_task_definition(&spec).await?;
            store
                .cache_task_definition(&session.user_id, &cache_key, &arn)
                .await?;
            arn
        }
    };

    // A retried Launch must not start a second task for the same session.
    if let Some(task_arn) = current.task_arn {
        return Ok(LaunchOutput {
            task_arn,
            task_definition_arn,
        });
    }

    let task_arn = compute
        .run_task(&TaskLaunch {
            task_definition_arn: &task_definition_arn,
            session_id: id,
            user_id: &session.user_id,
        })
        .await?;
    tracing::info!(session_id = %id, task_arn, "task launched");

    if store
        .apply(
            id,
            Change::Launched {
                task_arn: task_arn.clone(),
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
