//! Authorize (`steps::authorize`): admission into one of the user's slots, or a refusal
//! before anything is launched.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use serde_json::json;

use session_core::config::AdmissionSettings;
use session_core::ports::User;
use session_core::session::{SessionId, Status};
use session_core::steps::authorize::{
    authorize, Admitted, AuthorizeInput, StartRequest, BACKSTOP_MARGIN_S,
};
use session_core::template::SessionTemplate;
use session_core::testing::{authorized_user, session_in, FixedClock, MemoryRegistry, MemoryStore};
use session_core::Error;

const USER: &str = "u-1";
const SESSION: &str = "sess-1";
const EXECUTION: &str = "arn:aws:states:eu-west-1:000000000000:execution:sessions:sess-1";

fn id() -> SessionId {
    SessionId::parse(SESSION).unwrap()
}

fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-01-01T10:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

fn settings(template: SessionTemplate) -> AdmissionSettings {
    AdmissionSettings {
        max_sessions: 1,
        check_images: false,
        template,
        max_lifetime_s: 8 * 3600,
    }
}

/// The default template without the user's data volume: it allows several sessions.
fn without_user_data() -> SessionTemplate {
    let mut template = SessionTemplate::default();
    for container in &mut template.containers {
        container.user_data_path = None;
    }
    template
}

fn request(user_id: serde_json::Value, version: Option<&str>) -> AuthorizeInput {
    AuthorizeInput {
        session_id: SESSION.into(),
        execution_arn: Some(EXECUTION.into()),
        request: StartRequest {
            user_id: Some(user_id),
            version: version.map(|v| json!(v)),
        },
    }
}

fn store_with(user: User) -> MemoryStore {
    let store = MemoryStore::new();
    store.seed_user(user);
    store
}

async fn admit_with(
    input: AuthorizeInput,
    settings: &AdmissionSettings,
    store: &MemoryStore,
    registry: &MemoryRegistry,
) -> Result<Admitted, Error> {
    authorize(input, settings, store, registry, &FixedClock(now())).await
}

/// Authorize with the default template, no image checks and an empty registry.
async fn admit(input: AuthorizeInput, store: &MemoryStore) -> Result<Admitted, Error> {
    admit_with(
        input,
        &settings(SessionTemplate::default()),
        store,
        &MemoryRegistry::new(),
    )
    .await
}

#[tokio::test]
async fn an_authorized_user_is_admitted_into_a_slot_with_the_version_asked_or_latest_and_the_backstop_after_their_max_lifetime_or_the_deployments(
) {
    struct Case {
        label: &'static str,
        max_lifetime_s: Option<u64>,
        version: Option<&'static str>,
        admitted_version: &'static str,
        await_stop_timeout_s: u64,
    }
    let cases = [
        Case {
            label: "their own max lifetime, a version asked",
            max_lifetime_s: Some(3600),
            version: Some("1.2.3"),
            admitted_version: "1.2.3",
            await_stop_timeout_s: 3600 + BACKSTOP_MARGIN_S,
        },
        Case {
            label: "no max lifetime of their own, no version asked",
            max_lifetime_s: None,
            version: None,
            admitted_version: "latest",
            await_stop_timeout_s: 8 * 3600 + BACKSTOP_MARGIN_S,
        },
    ];
    for case in cases {
        let label = case.label;
        let mut user = authorized_user(USER);
        user.max_lifetime_s = case.max_lifetime_s;
        let store = store_with(user);
        let admitted = admit(request(json!(USER), case.version), &store)
            .await
            .unwrap();

        assert_eq!(admitted.session.session_id, id(), "{label}");
        assert_eq!(
            admitted.session.version.as_str(),
            case.admitted_version,
            "{label}"
        );
        assert_eq!(
            admitted.await_stop_timeout_s, case.await_stop_timeout_s,
            "{label}"
        );
        let session = store.stored_session(&id()).unwrap();
        assert_eq!(session.status, Status::Starting, "{label}");
        assert_eq!(session.created_at, now().into(), "{label}");
        assert_eq!(session.execution_arn.as_deref(), Some(EXECUTION), "{label}");
        assert_eq!(store.slots(USER), [SESSION.to_owned()].into(), "{label}");
    }
}

#[tokio::test]
async fn a_user_at_their_session_limit_is_refused_naming_the_active_sessions_and_nothing_is_stored()
{
    struct Case {
        label: &'static str,
        max_sessions: Option<u32>,
        active: &'static [&'static str],
        max: u32,
    }
    let cases = [
        Case {
            label: "at the deployment's one session",
            max_sessions: None,
            active: &["sess-0"],
            max: 1,
        },
        Case {
            label: "max_sessions zero, no session running",
            max_sessions: Some(0),
            active: &[],
            max: 0,
        },
    ];
    for case in cases {
        let label = case.label;
        let slots: BTreeSet<String> = case.active.iter().map(|s| (*s).to_owned()).collect();
        let mut user = authorized_user(USER);
        user.max_sessions = case.max_sessions;
        user.active_sessions = slots.clone();
        let store = store_with(user);
        let err = admit(request(json!(USER), None), &store).await.unwrap_err();
        assert!(
            matches!(&err, Error::SessionLimitReached { max, active }
                if *max == case.max && active == case.active),
            "{label}: {err}"
        );
        assert!(store.stored_session(&id()).is_none(), "{label}");
        assert_eq!(store.slots(USER), slots, "{label}");
    }
}

#[tokio::test]
async fn a_retry_of_the_same_session_is_admitted_without_a_second_slot() {
    let store = store_with(authorized_user(USER));
    let first = admit(request(json!(USER), None), &store).await.unwrap();
    let retry = admit(request(json!(USER), None), &store).await.unwrap();
    assert_eq!(retry, first);
    assert_eq!(store.slots(USER), [SESSION.to_owned()].into());
}

#[tokio::test]
async fn a_session_id_already_used_by_another_user_is_refused() {
    let store = store_with(authorized_user(USER));
    store.seed_session(session_in(SESSION, "u-2", Status::Running));
    let err = admit_with(
        request(json!(USER), None),
        &settings(without_user_data()),
        &store,
        &MemoryRegistry::new(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&err, Error::InvalidInput(e) if e.field == "session_id"),
        "{err}"
    );
    assert!(store.slots(USER).is_empty());
    assert_eq!(store.stored_session(&id()).unwrap().user_id, "u-2");
}

#[tokio::test]
async fn an_unknown_or_unauthorized_user_is_not_authorized() {
    let unauthorized = User {
        user_id: USER.into(),
        authorized: false,
        ..User::default()
    };
    let cases = [
        ("unknown user", MemoryStore::new()),
        ("unauthorized user", store_with(unauthorized)),
    ];
    for (label, store) in cases {
        let err = admit(request(json!(USER), None), &store).await.unwrap_err();
        assert!(matches!(err, Error::NotAuthorized), "{label}: {err}");
        assert!(store.stored_session(&id()).is_none(), "{label}");
        assert!(store.slots(USER).is_empty(), "{label}");
    }
}

#[tokio::test]
async fn a_version_with_a_missing_image_is_refused_before_a_slot_is_taken() {
    let store = store_with(authorized_user(USER));
    let settings = AdmissionSettings {
        check_images: true,
        ..settings(SessionTemplate::default())
    };
    let registry = MemoryRegistry::new();
    registry.push_all(["api_service", "frontend"], "1.2.3");
    let err = admit_with(
        request(json!(USER), Some("1.2.3")),
        &settings,
        &store,
        &registry,
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&err, Error::ImageNotFound { image } if image == "suv_ui:1.2.3"),
        "{err}"
    );
    assert!(store.slots(USER).is_empty());

    registry.push("suv_ui", "sha256:3", &["1.2.3"]);
    admit_with(
        request(json!(USER), Some("1.2.3")),
        &settings,
        &store,
        &registry,
    )
    .await
    .unwrap();
    assert_eq!(store.slots(USER), [SESSION.to_owned()].into());
}

#[tokio::test]
async fn without_image_checks_a_version_nobody_pushed_is_admitted() {
    let store = store_with(authorized_user(USER));
    admit(request(json!(USER), Some("never-pushed")), &store)
        .await
        .unwrap();
    assert_eq!(
        store.stored_session(&id()).unwrap().version.as_str(),
        "never-pushed"
    );
}

#[tokio::test]
async fn a_template_that_mounts_user_data_caps_every_user_at_one_session() {
    let mut user = authorized_user(USER);
    user.max_sessions = Some(3);
    user.active_sessions = ["sess-0".to_owned()].into();

    let store = store_with(user.clone());
    let err = admit(request(json!(USER), None), &store).await.unwrap_err();
    assert!(
        matches!(err, Error::SessionLimitReached { max: 1, .. }),
        "{err}"
    );

    let store = store_with(user);
    admit_with(
        request(json!(USER), None),
        &settings(without_user_data()),
        &store,
        &MemoryRegistry::new(),
    )
    .await
    .unwrap();
    assert_eq!(store.slots(USER).len(), 2, "their own max_sessions applies");
}

#[tokio::test]
async fn malformed_ids_and_versions_are_refused_with_their_own_error() {
    let store = store_with(authorized_user(USER));
    let cases = [
        (
            "a version that is a path",
            request(json!(USER), Some("../x")),
            "InvalidVersion",
        ),
        (
            "a user id that is a number",
            request(json!(42), None),
            "InvalidInput",
        ),
        ("an empty user id", request(json!(""), None), "InvalidInput"),
        (
            "a session id with an underscore",
            AuthorizeInput {
                session_id: "sess_1".into(),
                ..request(json!(USER), None)
            },
            "InvalidInput",
        ),
    ];
    for (label, input, expected) in cases {
        let err = admit(input, &store).await.unwrap_err();
        assert_eq!(err.error_type(), expected, "{label}");
    }
    assert!(store.slots(USER).is_empty());
}
