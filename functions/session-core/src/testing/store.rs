use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use chrono::{DateTime, Utc};

use crate::error::{Error, InvalidInput, Result};
use crate::ports::{
    ActiveSessions, Change, PageCursor, SessionPage, SessionStore, TaskObservation, User,
};
use crate::session::{Event, Reason, Session, SessionId, Status, Timestamp};

/// The sessions and users tables in memory: mirrors `session_aws::dynamodb::DynamoStore`,
/// whose conditional writes it evaluates on the stored items, so a write that
/// DynamoDB refuses is refused here with the same answer.
///
/// The sparse `active` index holds exactly the sessions that are not terminal: every
/// write of the DynamoDB store that ends a session removes `active_user_id`, and the
/// only item written terminal (`fail` of a session never opened) is written without it.
#[derive(Debug, Default)]
pub struct MemoryStore {
    sessions: Mutex<BTreeMap<SessionId, Session>>,
    users: Mutex<BTreeMap<String, User>>,
    /// Every GetItem (`user`, `session`), in order.
    reads: Mutex<Vec<ItemRead>>,
    /// Every `discard_unstarted`, in order, with whether it discarded.
    discards: Mutex<Vec<(SessionId, bool)>>,
    on_open: Mutex<Option<OpenHook>>,
}

/// One GetItem of the store, as [`MemoryStore::reads`] lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ItemRead {
    User(String),
    Session(SessionId),
}

/// The hook [`MemoryStore::on_open`] keeps.
struct OpenHook(Box<dyn FnOnce() + Send>);

impl std::fmt::Debug for OpenHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OpenHook")
    }
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// Stores (or replaces) a user item.
    pub fn seed_user(&self, user: User) {
        self.users
            .lock()
            .unwrap()
            .insert(user.user_id.clone(), user);
    }

    /// Stores (or replaces) a session item as it is, taking no slot.
    pub fn seed_session(&self, session: Session) {
        self.sessions
            .lock()
            .unwrap()
            .insert(session.session_id.clone(), session);
    }

    /// The stored user item.
    pub fn stored_user(&self, user_id: &str) -> Option<User> {
        self.users.lock().unwrap().get(user_id).cloned()
    }

    /// The stored session item.
    pub fn stored_session(&self, id: &SessionId) -> Option<Session> {
        self.sessions.lock().unwrap().get(id).cloned()
    }

    /// The sessions holding one of the user's slots (empty for an unknown user).
    pub fn slots(&self, user_id: &str) -> BTreeSet<String> {
        self.stored_user(user_id)
            .map(|u| u.active_sessions)
            .unwrap_or_default()
    }

    /// Changes a stored session behind the steps' backs, as a concurrent writer would.
    /// Returns whether the session exists.
    pub fn edit(&self, id: &SessionId, change: impl FnOnce(&mut Session)) -> bool {
        match self.sessions.lock().unwrap().get_mut(id) {
            Some(session) => {
                change(session);
                true
            }
            None => false,
        }
    }

    /// Every read of one item (`user`, `session`), in order.
    pub fn reads(&self) -> Vec<ItemRead> {
        self.reads.lock().unwrap().clone()
    }

    /// Every `discard_unstarted`, in order: (session id, whether it discarded).
    pub fn discards(&self) -> Vec<(SessionId, bool)> {
        self.discards.lock().unwrap().clone()
    }

    /// Runs `hook` once, when the next `open` is called and before its transaction is
    /// evaluated: a concurrent writer (another attempt's admission) that gets its
    /// write in first.
    pub fn on_open(&self, hook: impl FnOnce() + Send + 'static) {
        *self.on_open.lock().unwrap() = Some(OpenHook(Box::new(hook)));
    }

    /// The user item updated in place when it exists (`attribute_exists(user_id)`).
    fn with_user<T>(&self, user_id: &str, update: impl FnOnce(&mut User) -> T) -> Option<T> {
        self.users.lock().unwrap().get_mut(user_id).map(update)
    }

    /// One conditional UpdateItem of a session: `None` when the item is missing or the
    /// condition does not hold, else the item as it is after `update` (ALL_NEW).
    fn update_session(
        &self,
        id: &SessionId,
        condition: impl FnOnce(&Session) -> bool,
        update: impl FnOnce(&mut Session),
    ) -> Option<Session> {
        let mut sessions = self.sessions.lock().unwrap();
        let session = sessions.get_mut(id).filter(|s| condition(s))?;
        update(session);
        Some(session.clone())
    }

    fn apply_now(&self, id: &SessionId, change: Change) -> Option<Session> {
        let event = match &change {
            Change::Launched { .. } => Event::TaskLaunched,
            Change::Running { .. } => Event::TaskRunning,
            Change::StopRequested { .. } => Event::StopRequested,
            Change::Stopped { .. } => Event::Stopped,
            Change::Failed { .. } => Event::Failed,
        };
        let allowed = Status::predecessors(event, event.target());
        let changed_at = change.at();
        self.update_session(
            id,
            |s| allowed.contains(&s.status),
            |s| {
                s.status_changed_at = Some(Timestamp::from(changed_at));
                match change {
                    Change::Launched {
                        task_arn,
                        awaits_health,
                        ..
                    } => {
                        s.task_arn = Some(task_arn);
                        if awaits_health {
                            s.awaits_health = true;
                        }
                    }
                    Change::Running {
                        public_ip,
                        private_ip,
                        urls,
                        service_ports,
                        at,
                    } => {
                        s.started_at = Some(Timestamp::from(at));
                        s.ip_token = None;
                        if public_ip.is_some() {
                            s.public_ip = public_ip;
                        }
                        if private_ip.is_some() {
                            s.private_ip = private_ip;
                        }
                        s.service_ports = service_ports;
                        // Each URL is its own attribute: earlier ones stay.
                        s.urls.0.extend(urls.0);
                    }
                    Change::StopRequested { reason, .. } => {
                        s.stop_reason.get_or_insert(reason);
                    }
                    Change::Stopped { reason, at } => {
                        s.stop_reason.get_or_insert(reason);
                        ended(s, at);
                    }
                    Change::Failed { reason, cause, at } => {
                        s.stop_reason = Some(reason);
                        s.failure_cause = Some(cause);
                        ended(s, at);
                    }
                }
                s.status = event.target();
            },
        )
    }

    /// DynamoDB's BatchGetItem/GetItem answer for a user whose slot was refused.
    fn session_limit_error(&self, user_id: &str, max: u32) -> Error {
        match self.stored_user(user_id) {
            None => Error::NotAuthorized,
            Some(user) => Error::SessionLimitReached {
                max,
                active: user.active_sessions.into_iter().collect(),
            },
        }
    }
}

/// What ending a session removes besides its status (the active index entry is the
/// status itself here).
fn ended(session: &mut Session, at: DateTime<Utc>) {
    session.stopped_at = Some(Timestamp::from(at));
    session.ip_token = None;
    session.stop_token = None;
}

impl SessionStore for MemoryStore {
    async fn user(&self, user_id: &str) -> Result<Option<User>> {
        self.reads
            .lock()
            .unwrap()
            .push(ItemRead::User(user_id.to_owned()));
        Ok(self.stored_user(user_id))
    }

    async fn users(&self, user_ids: &BTreeSet<String>) -> Result<BTreeMap<String, User>> {
        let users = self.users.lock().unwrap();
        Ok(user_ids
            .iter()
            .filter_map(|id| Some((id.clone(), users.get(id)?.clone())))
            .collect())
    }

    async fn open(&self, session: &Session, max_sessions: u32) -> Result<()> {
        let hook = self.on_open.lock().unwrap().take();
        if let Some(OpenHook(hook)) = hook {
            hook();
        }
        // One transaction: both conditions are evaluated, and nothing is written
        // unless both hold.
        let existing = self.stored_session(&session.session_id);
        let slot_free = self.stored_user(&session.user_id).is_some_and(|u| {
            // `attribute_not_exists(active_sessions)`: DynamoDB stores no empty set,
            // so a user with no slot taken is admitted whatever `max_sessions` is.
            u.active_sessions.is_empty()
                || u.active_sessions.len() < max_sessions as usize
                || u.active_sessions.contains(session.session_id.as_str())
        });
        match existing {
            None if slot_free => {
                self.seed_session(session.clone());
                self.with_user(&session.user_id, |u| {
                    u.active_sessions.insert(session.session_id.to_string())
                });
                Ok(())
            }
            // A retry of this very step when the session is the same user's.
            Some(existing) if existing.user_id == session.user_id => Ok(()),
            Some(_) => {
                Err(InvalidInput::new("session_id", "is already used by another session").into())
            }
            None => Err(self.session_limit_error(&session.user_id, max_sessions)),
        }
    }

    async fn session(&self, id: &SessionId) -> Result<Option<Session>> {
        self.reads
            .lock()
            .unwrap()
            .push(ItemRead::Session(id.clone()));
        Ok(self.stored_session(id))
    }

    async fn apply(&self, id: &SessionId, change: Change) -> Result<Option<Session>> {
        Ok(self.apply_now(id, change))
    }

    async fn fail(
        &self,
        session: &Session,
        reason: Reason,
        cause: &str,
        at: DateTime<Utc>,
    ) -> Result<Option<Session>> {
        let change = Change::Failed {
            reason,
            cause: cause.to_owned(),
            at,
        };
        if let Some(updated) = self.apply_now(&session.session_id, change) {
            return Ok(Some(updated));
        }
        let mut sessions = self.sessions.lock().unwrap();
        if sessions.contains_key(&session.session_id) {
            return Ok(None);
        }
        let mut failed = session.clone();
        failed.status = Status::Failed;
        failed.stop_reason = Some(reason);
        failed.failure_cause = Some(cause.to_owned());
        failed.stopped_at = Some(Timestamp::from(at));
        failed.status_changed_at = Some(Timestamp::from(at));
        sessions.insert(failed.session_id.clone(), failed.clone());
        Ok(Some(failed))
    }

    async fn store_ip_token(&self, id: &SessionId, token: &str) -> Result<Option<Session>> {
        Ok(self.update_session(id, |_| true, |s| s.ip_token = Some(token.to_owned())))
    }

    async fn store_stop_token(&self, id: &SessionId, token: &str) -> Result<Option<Session>> {
        Ok(self.update_session(id, |_| true, |s| s.stop_token = Some(token.to_owned())))
    }

    async fn store_tasks_stopped_token(
        &self,
        id: &SessionId,
        token: &str,
    ) -> Result<Option<Session>> {
        Ok(self.update_session(
            id,
            |_| true,
            |s| s.tasks_stopped_token = Some(token.to_owned()),
        ))
    }

    async fn observe_task(
        &self,
        id: &SessionId,
        observation: &TaskObservation,
    ) -> Result<Option<Session>> {
        let o = observation;
        Ok(self.update_session(
            id,
            |s| {
                s.task_version.is_none_or(|v| v < o.version)
                    && s.task_arn.as_ref().is_none_or(|arn| *arn == o.task_arn)
            },
            |s| {
                s.task_status = Some(o.last_status.clone());
                s.task_version = Some(o.version);
                s.task_arn.get_or_insert_with(|| o.task_arn.clone());
                for (stored, seen) in [
                    (&mut s.eni_id, &o.eni_id),
                    (&mut s.private_ip, &o.private_ip),
                    (&mut s.task_health, &o.health_status),
                    (&mut s.stop_code, &o.stop_code),
                    (&mut s.stopped_reason, &o.stopped_reason),
                ] {
                    if seen.is_some() {
                        stored.clone_from(seen);
                    }
                }
                if o.image_pull_s.is_some() {
                    s.image_pull_s = o.image_pull_s;
                }
            },
        ))
    }

    async fn discard_unstarted(&self, id: &SessionId) -> Result<bool> {
        let mut sessions = self.sessions.lock().unwrap();
        let unstarted = sessions
            .get(id)
            .is_some_and(|s| s.status == Status::Starting && s.task_arn.is_none());
        if unstarted {
            sessions.remove(id);
        }
        drop(sessions);
        self.discards.lock().unwrap().push((id.clone(), unstarted));
        Ok(unstarted)
    }

    async fn release_slot(&self, user_id: &str, id: &SessionId) -> Result<()> {
        self.with_user(user_id, |u| u.active_sessions.remove(id.as_str()));
        Ok(())
    }

    async fn set_access_point(&self, user_id: &str, access_point_id: &str) -> Result<String> {
        self.with_user(user_id, |u| {
            u.efs_access_point_id
                .get_or_insert_with(|| access_point_id.to_owned())
                .clone()
        })
        .ok_or(Error::NotAuthorized)
    }

    async fn set_task_role(&self, user_id: &str, role_arn: &str) -> Result<String> {
        self.with_user(user_id, |u| {
            u.task_role_arn
                .get_or_insert_with(|| role_arn.to_owned())
                .clone()
        })
        .ok_or(Error::NotAuthorized)
    }

    async fn cache_task_definition(
        &self,
        user_id: &str,
        key: &str,
        arn: &str,
        evict: &[String],
    ) -> Result<()> {
        self.with_user(user_id, |u| {
            for old in evict.iter().filter(|k| k.as_str() != key) {
                u.task_definitions.remove(old);
            }
            u.task_definitions.insert(key.to_owned(), arn.to_owned());
        })
        .ok_or(Error::NotAuthorized)
    }

    async fn active_sessions(&self) -> Result<ActiveSessions> {
        let sessions: Vec<Session> = self
            .sessions
            .lock()
            .unwrap()
            .values()
            .filter(|s| !s.status.is_terminal())
            .cloned()
            .collect();
        Ok(ActiveSessions {
            items_read: sessions.len() as u64,
            sessions,
        })
    }

    async fn sessions_of_user(
        &self,
        user_id: &str,
        limit: u32,
        after: Option<&PageCursor>,
    ) -> Result<SessionPage> {
        let limit = limit.max(1) as usize;
        let position = |s: &Session| (s.created_at.to_string(), s.session_id.clone());
        let mut mine: Vec<Session> = self
            .sessions
            .lock()
            .unwrap()
            .values()
            .filter(|s| s.user_id.as_str() == user_id)
            .filter(|s| {
                after.is_none_or(|c| position(s) < (c.created_at.clone(), c.session_id.clone()))
            })
            .cloned()
            .collect();
        mine.sort_by_key(|s| std::cmp::Reverse(position(s)));
        mine.truncate(limit);
        // DynamoDB answers a last key whenever the page is full, even when nothing follows.
        let next = (mine.len() == limit)
            .then(|| mine.last())
            .flatten()
            .map(|last| PageCursor {
                created_at: last.created_at.to_string(),
                session_id: last.session_id.clone(),
            });
        Ok(SessionPage {
            sessions: mine,
            next,
        })
    }

    async fn touch(
        &self,
        id: &SessionId,
        user_id: &str,
        at: DateTime<Utc>,
        min_interval: chrono::Duration,
    ) -> Result<bool> {
        // Timestamps compare as the strings DynamoDB stores.
        let threshold = Timestamp::from(at - min_interval);
        Ok(self
            .update_session(
                id,
                |s| {
                    s.status == Status::Running
                        && s.user_id.as_str() == user_id
                        && s.last_activity_at.as_ref().is_none_or(|t| *t < threshold)
                },
                |s| s.last_activity_at = Some(Timestamp::from(at)),
            )
            .is_some())
    }
}
