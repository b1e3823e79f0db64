//! One file per route's handler, each an `impl` block of [`Api`]; here what they share.

use std::collections::BTreeMap;

use serde_json::Value;

use session_core::limits::UserLimits;
use session_core::ports::{Clock, Registry, SessionStore, Workflow};
use session_core::session::{Session, Status, UserId};

use crate::error::ApiError;
use crate::http::parse_session_id;
use crate::identity::Caller;
use crate::view::SessionView;
use crate::Api;

mod heartbeat;
mod list;
mod read;
mod start;
mod stop;
mod versions;

pub use list::{DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE};

impl<S: SessionStore, W: Workflow, R: Registry, K: Clock> Api<S, W, R, K> {
    /// The limits the owners of running sessions among `sessions` are held to. Each
    /// owner's item is read once per answer (a listing is one owner's), and only when
    /// one of their sessions runs: only a running session shows when it would stop.
    async fn limits_of(
        &self,
        sessions: &[Session],
    ) -> Result<BTreeMap<UserId, UserLimits>, ApiError> {
        let mut limits = BTreeMap::new();
        for session in sessions.iter().filter(|s| s.status == Status::Running) {
            if !limits.contains_key(&session.user_id) {
                let owner = self.store.user(&session.user_id).await?;
                limits.insert(
                    session.user_id.clone(),
                    self.settings.limits.of_user(owner.as_ref()),
                );
            }
        }
        Ok(limits)
    }

    /// The views of `sessions`, each running one with when the reaper would stop it.
    async fn views(&self, sessions: &[Session]) -> Result<Vec<Value>, ApiError> {
        let limits = self.limits_of(sessions).await?;
        Ok(sessions
            .iter()
            .map(|s| SessionView::of(s, limits.get(&s.user_id)).json())
            .collect())
    }

    async fn view(&self, session: &Session) -> Result<Value, ApiError> {
        let mut views = self.views(std::slice::from_ref(session)).await?;
        Ok(views.pop().unwrap_or(Value::Null))
    }

    /// A session the caller may see; anyone else's is indistinguishable from none.
    async fn visible(&self, caller: &Caller, raw_id: &str) -> Result<Session, ApiError> {
        let id = parse_session_id(raw_id)?;
        self.store
            .session(&id)
            .await?
            .filter(|s| caller.may_access(&s.user_id))
            .ok_or_else(|| ApiError::session_not_found(id.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use session_core::session::SessionId;

    use super::*;
    use crate::fake;
    use crate::tests::alice;

    /// Alice with her own 10-minute idle timeout, a session of hers running since
    /// 10:01 and one starting; `page` lists both, the running one first.
    fn alice_running_and_starting() -> fake::ReadOnlyStore {
        let mut store = fake::ReadOnlyStore::default()
            .with_user("alice", false)
            .with_session("sess-running", "alice")
            .with_session("sess-starting", "alice");
        store.users.get_mut("alice").unwrap().idle_timeout_s = Some(600);
        let running = store
            .sessions
            .get_mut(&SessionId::parse("sess-running").unwrap())
            .unwrap();
        running.status = Status::Running;
        running.started_at = Some("2026-11-26T10:01:00.000Z".parse().unwrap());
        store.page.sessions = store.sessions.values().cloned().collect();
        store
            .page
            .sessions
            .sort_by(|a, b| a.session_id.cmp(&b.session_id));
        store
    }

    fn user_reads(api: &fake::FakeApi) -> usize {
        api.store
            .user_reads
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    #[tokio::test]
    async fn a_listing_reads_the_owners_item_once_and_shows_the_stop_times_of_running_sessions() {
        let mut store = alice_running_and_starting();
        let mut another = store.page.sessions[0].clone();
        another.session_id = SessionId::parse("sess-running-too").unwrap();
        another.last_activity_at = Some("2026-11-26T10:30:00.000Z".parse().unwrap());
        store.page.sessions.insert(1, another);
        let api = fake::api(store);
        let list = fake::request("GET", "/sessions", "", alice(json!({})), None);
        let (status, body) = fake::answer(api.handle(list).await);
        assert_eq!(status, 200, "{body}");
        let stops: Vec<(&str, &Value, &Value)> = body["sessions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                (
                    s["status"].as_str().unwrap(),
                    &s["idle_stop_at"],
                    &s["ends_at"],
                )
            })
            .collect();
        assert_eq!(
            stops,
            [
                (
                    "running",
                    &json!("2026-11-26T10:11:00.000Z"),
                    &json!("2026-11-26T18:00:00.000Z")
                ),
                (
                    "running",
                    &json!("2026-11-26T10:40:00.000Z"),
                    &json!("2026-11-26T18:00:00.000Z")
                ),
                ("starting", &Value::Null, &Value::Null),
            ]
        );
        assert_eq!(user_reads(&api), 1);
    }

    #[tokio::test]
    async fn reading_a_session_reads_its_owners_item_only_while_it_runs() {
        let api = fake::api(alice_running_and_starting());
        let get = |id: &str| {
            fake::request(
                "GET",
                &format!("/sessions/{id}"),
                "",
                alice(json!({})),
                None,
            )
        };
        let (status, starting) = fake::answer(api.handle(get("sess-starting")).await);
        assert_eq!((status, &starting["idle_stop_at"]), (200, &Value::Null));
        assert_eq!(user_reads(&api), 0);
        let (status, running) = fake::answer(api.handle(get("sess-running")).await);
        assert_eq!(
            (status, &running["idle_stop_at"]),
            (200, &json!("2026-11-26T10:11:00.000Z"))
        );
        assert_eq!(user_reads(&api), 1);
    }
}
