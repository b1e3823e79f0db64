//! In-memory ports for the handler's unit tests: a store that serves users and
//! sessions and counts user reads, a registry of images by repository, and a workflow
//! and registry that must not be reached. A route that writes is out of their reach and
//! fails the test loudly.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};

use chrono::{DateTime, Utc};
use lambda_http::{Body, Request, Response};
use serde_json::{json, Value};
use session_core::config::{AdmissionSettings, ApiSettings, Secret};
use session_core::error::ErrorName;
use session_core::ports::{
    ActiveSessions, Change, Delivery, PageCursor, Registry, SessionPage, SessionStore, SystemClock,
    TaggedImage, TaskObservation, User, Workflow,
};
use session_core::session::{Reason, Session, SessionId, UserId, Version};
use session_core::Result;

use crate::Api;

pub const CURSOR_KEY: &str = "a test key of at least thirty-two bytes";

#[derive(Default)]
pub struct ReadOnlyStore {
    pub users: HashMap<String, User>,
    pub sessions: HashMap<SessionId, Session>,
    /// Every session listing answers this page.
    pub page: SessionPage,
    pub user_reads: AtomicUsize,
}

impl ReadOnlyStore {
    pub fn with_user(mut self, user_id: &str, admin: bool) -> Self {
        let user = User {
            user_id: user_id.into(),
            authorized: true,
            admin,
            ..User::default()
        };
        self.users.insert(user_id.into(), user);
        self
    }

    pub fn with_session(mut self, id: &str, owner: &str) -> Self {
        let id = SessionId::parse(id).expect("a session id");
        let session = Session::new(
            id.clone(),
            UserId::parse(owner).unwrap(),
            Version::default(),
            "2026-11-26T10:00:00.000Z".parse().unwrap(),
        );
        self.sessions.insert(id, session);
        self
    }
}

/// The api the handler's unit tests call, with no registry to ask.
pub type FakeApi = Api<ReadOnlyStore, Unreached, Unreached, SystemClock>;

pub fn api(store: ReadOnlyStore) -> FakeApi {
    api_with(store, Unreached, &[])
}

/// The api with `registry` and, beside the required settings, `env`.
pub fn api_with<R: Registry>(
    store: ReadOnlyStore,
    registry: R,
    env: &[(&str, &str)],
) -> Api<ReadOnlyStore, Unreached, R, SystemClock> {
    let env: HashMap<String, String> = [
        (
            "STATE_MACHINE_ARN",
            "arn:aws:states:us-east-1:123456789012:stateMachine:sessions",
        ),
        ("CURSOR_KEY", CURSOR_KEY),
    ]
    .iter()
    .chain(env)
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect();
    Api {
        settings: ApiSettings::from_source(&env).expect("api settings"),
        admission: AdmissionSettings::from_source(&env).expect("admission settings"),
        store,
        workflow: Unreached,
        registry,
        clock: SystemClock,
    }
}

pub fn cursor_key() -> Secret {
    Secret::new(CURSOR_KEY)
}

/// A request as API Gateway delivers it, from AWS's example event: `claims` are set
/// on the verified ones (`null` removes one), `body` replaces the example's.
pub fn request(
    method: &str,
    path: &str,
    query: &str,
    claims: Value,
    body: Option<Value>,
) -> Request {
    let mut event: Value = serde_json::from_str(include_str!(
        "../../../tests/fixtures/apigw-http-v2-request.json"
    ))
    .expect("the example event");
    event["rawPath"] = json!(path);
    event["rawQueryString"] = json!(query);
    event["requestContext"]["http"]["method"] = json!(method);
    event["requestContext"]["http"]["path"] = json!(path);
    event["body"] = json!(body.map(|b| b.to_string()));
    let verified = event["requestContext"]["authorizer"]["jwt"]["claims"]
        .as_object_mut()
        .expect("claims");
    for (name, value) in claims.as_object().expect("claims to set") {
        match value {
            Value::Null => verified.remove(name),
            value => verified.insert(name.clone(), value.clone()),
        };
    }
    crate::event::request_from_event(event).expect("a request")
}

/// The status and JSON body of an answer.
pub fn answer(response: Response<Body>) -> (u16, Value) {
    let status = response.status().as_u16();
    let body = match response.body() {
        Body::Text(text) => serde_json::from_str(text).expect("a JSON body"),
        other => panic!("a text body, not {other:?}"),
    };
    (status, body)
}

const WRITES: &str = "the handler's unit tests only read";

impl SessionStore for ReadOnlyStore {
    async fn user(&self, user_id: &str) -> Result<Option<User>> {
        self.user_reads.fetch_add(1, Ordering::SeqCst);
        Ok(self.users.get(user_id).cloned())
    }

    async fn users(&self, user_ids: &BTreeSet<String>) -> Result<BTreeMap<String, User>> {
        self.user_reads.fetch_add(user_ids.len(), Ordering::SeqCst);
        Ok(user_ids
            .iter()
            .filter_map(|id| Some((id.clone(), self.users.get(id)?.clone())))
            .collect())
    }

    async fn open(&self, _: &Session, _: u32) -> Result<()> {
        unreachable!("{WRITES}")
    }

    async fn session(&self, id: &SessionId) -> Result<Option<Session>> {
        Ok(self.sessions.get(id).cloned())
    }

    async fn apply(&self, _: &SessionId, _: Change) -> Result<Option<Session>> {
        unreachable!("{WRITES}")
    }

    async fn fail(
        &self,
        _: &Session,
        _: Reason,
        _: &str,
        _: DateTime<Utc>,
    ) -> Result<Option<Session>> {
        unreachable!("{WRITES}")
    }

    async fn store_ip_token(&self, _: &SessionId, _: &str) -> Result<Option<Session>> {
        unreachable!("{WRITES}")
    }

    async fn store_stop_token(&self, _: &SessionId, _: &str) -> Result<Option<Session>> {
        unreachable!("{WRITES}")
    }

    async fn store_tasks_stopped_token(&self, _: &SessionId, _: &str) -> Result<Option<Session>> {
        unreachable!("{WRITES}")
    }

    async fn observe_task(&self, _: &SessionId, _: &TaskObservation) -> Result<Option<Session>> {
        unreachable!("{WRITES}")
    }

    async fn discard_unstarted(&self, _: &SessionId) -> Result<bool> {
        unreachable!("{WRITES}")
    }

    async fn release_slot(&self, _: &str, _: &SessionId) -> Result<()> {
        unreachable!("{WRITES}")
    }

    async fn set_access_point(&self, _: &str, _: &str) -> Result<String> {
        unreachable!("{WRITES}")
    }

    async fn set_task_role(&self, _: &str, _: &str) -> Result<String> {
        unreachable!("{WRITES}")
    }

    async fn cache_task_definition(&self, _: &str, _: &str, _: &str, _: &[String]) -> Result<()> {
        unreachable!("{WRITES}")
    }

    async fn active_sessions(&self) -> Result<ActiveSessions> {
        unreachable!("the api never scans the active sessions")
    }

    async fn sessions_of_user(
        &self,
        _: &str,
        _: u32,
        _: Option<&PageCursor>,
    ) -> Result<SessionPage> {
        Ok(self.page.clone())
    }

    async fn touch(
        &self,
        _: &SessionId,
        _: &str,
        _: DateTime<Utc>,
        _: chrono::Duration,
    ) -> Result<bool> {
        unreachable!("{WRITES}")
    }
}

/// A workflow and registry the routes under test never reach.
pub struct Unreached;

impl Workflow for Unreached {
    async fn succeed(&self, _: &str, _: &Value) -> Result<Delivery> {
        unreachable!("{WRITES}")
    }

    async fn fail(&self, _: &str, _: ErrorName, _: &str) -> Result<Delivery> {
        unreachable!("{WRITES}")
    }

    async fn start(&self, _: &str, _: &str, _: &Value) -> Result<()> {
        unreachable!("{WRITES}")
    }

    async fn execution_running(&self, _: &str) -> Result<bool> {
        unreachable!("{WRITES}")
    }

    async fn stop_execution(&self, _: &str, _: &str) -> Result<()> {
        unreachable!("{WRITES}")
    }
}

impl Registry for Unreached {
    async fn image_exists(&self, _: &str, _: &str) -> Result<bool> {
        unreachable!("{WRITES}")
    }

    async fn tagged_images(&self, _: &str) -> Result<Vec<TaggedImage>> {
        unreachable!("this registry must not be asked")
    }
}

/// A registry's tagged images by repository; a repository it has no images of does not
/// exist.
#[derive(Default)]
pub struct Images(pub BTreeMap<String, Vec<TaggedImage>>);

impl Images {
    /// Adds an image of `repository` with `tags`, pushed at `pushed_at` (RFC 3339).
    pub fn with(mut self, repository: &str, digest: &str, tags: &[&str], pushed_at: &str) -> Self {
        let image = TaggedImage {
            digest: digest.into(),
            tags: tags.iter().map(|t| (*t).to_owned()).collect(),
            pushed_at: pushed_at.parse().expect("an RFC 3339 time"),
        };
        self.0.entry(repository.into()).or_default().push(image);
        self
    }
}

impl Registry for Images {
    async fn image_exists(&self, repository: &str, tag: &str) -> Result<bool> {
        Ok(self
            .0
            .get(repository)
            .is_some_and(|images| images.iter().any(|i| i.tags.iter().any(|t| t == tag))))
    }

    async fn tagged_images(&self, repository: &str) -> Result<Vec<TaggedImage>> {
        Ok(self.0.get(repository).cloned().unwrap_or_default())
    }
}
