//! In-memory twins of every port, for tests that check the domain rules in
//! milliseconds: each twin keeps the semantics of its AWS adapter in `crate::aws` (the
//! same successes, refusals and answers), so the emulator tests need only prove the
//! wire. Compiled for this crate's tests and with the `testing` feature; free of SDK
//! and Lambda types.

mod clock;
mod compute;
mod services;
mod store;
mod workflow;
mod world;

pub use clock::{FixedClock, ManualClock};
pub use compute::{MemoryCompute, MemoryTask};
pub use services::{MemoryEventBus, MemoryNetwork, MemoryRegistry, MemoryStorage, MemoryTaskRoles};
pub use store::{ItemRead, MemoryStore};
pub use workflow::{Completion, MemoryWorkflow, TokenOutcome};
pub use world::SessionWorld;

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use chrono::{DateTime, Duration, Utc};

use crate::config::{Access, Capacity, LaunchSettings, TaskRoleSettings};
use crate::ports::User;
use crate::session::{Session, SessionId, Status, UserId, Version};
use crate::template::SessionTemplate;

/// A user who may start sessions, with nothing else stored yet.
pub fn authorized_user(user_id: &str) -> User {
    User {
        user_id: user_id.to_owned(),
        authorized: true,
        ..User::default()
    }
}

/// A session of `user_id` as stored in `status`, created at a fixed time (2026-01-01
/// 10:00 UTC, [`minute`] 600).
pub fn session_in(session_id: &str, user_id: &str, status: Status) -> Session {
    let mut session = Session::new(
        SessionId::parse(session_id).expect("a valid session id"),
        UserId::parse(user_id).expect("a valid user id"),
        Version::default(),
        minute(10 * 60),
    );
    session.status = status;
    session
}

/// The instant `minutes` after the start of 2026 (UTC), where [`FixedClock::default`]
/// stands: the time line of [`session_entered`].
pub fn minute(minutes: i64) -> DateTime<Utc> {
    FixedClock::default().0 + Duration::minutes(minutes)
}

/// Session `sess-1` of user `u`, admitted at [`minute`] 0, that entered `status` at
/// minute `entered`: what the reaper judges by age.
pub fn session_entered(status: Status, entered: i64) -> Session {
    let mut session = session_in("sess-1", "u", status);
    session.created_at = minute(0).into();
    session.status_changed_at = Some(minute(entered).into());
    session
}

/// Access to the sessions through the gateway at `sessions.example.com`, over HTTPS.
pub fn gateway_access() -> Access {
    Access::Gateway {
        domain: "sessions.example.com".into(),
        scheme: "https".into(),
    }
}

/// Launch settings of a deployment in eu-west-1 with `template`.
pub fn launch_settings(template: SessionTemplate) -> LaunchSettings {
    LaunchSettings {
        subnets: vec!["subnet-1".into()],
        security_groups: vec!["sg-1".into()],
        assign_public_ip: false,
        capacity: Capacity::Fargate,
        execution_role_arn: "arn:aws:iam::000000000000:role/sessions-execution".into(),
        task_roles: TaskRoleSettings {
            path: "/sessions/users/".into(),
            boundary_arn: "arn:aws:iam::000000000000:policy/sessions-boundary".into(),
            policy_arn: "arn:aws:iam::000000000000:policy/sessions-task".into(),
            name_prefix: "sessions".into(),
            account: "000000000000".into(),
        },
        efs_file_system_id: "fs-1".into(),
        registry: "000000000000.dkr.ecr.eu-west-1.amazonaws.com".into(),
        task_family_prefix: "sessions".into(),
        task_log_group: "/sessions/tasks".into(),
        region: "eu-west-1".into(),
        template,
    }
}

/// The output of a future that completes without waiting, as every call of these
/// twins does: lets a synchronous hook (see [`MemoryCompute::on_run_task`]) run a
/// step in the middle of another.
///
/// # Panics
/// If the future waits.
pub fn ready<F: Future>(future: F) -> F::Output {
    match pin!(future).poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("the future waits: it does not run on the in-memory twins alone"),
    }
}
