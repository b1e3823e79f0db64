//! The in-memory store keeps the DynamoDB store's answers for the methods no step
//! test above reaches through a step: what its conditional writes accept and refuse.

use chrono::{DateTime, Duration, Utc};

use session_core::ports::{SessionStore, TaskObservation};
use session_core::session::{SessionId, Status, Timestamp};
use session_core::testing::{authorized_user, session_in, MemoryStore};
use session_core::Error;

fn id(raw: &str) -> SessionId {
    SessionId::parse(raw).unwrap()
}

fn observation(task_arn: &str, last_status: &str, version: i64) -> TaskObservation {
    TaskObservation {
        task_arn: task_arn.into(),
        last_status: last_status.into(),
        version,
        eni_id: None,
        private_ip: None,
        health_status: None,
        stop_code: None,
        stopped_reason: None,
        image_pull_s: None,
    }
}

#[tokio::test]
async fn a_task_observation_applies_only_when_newer_and_of_the_sessions_own_task() {
    let store = MemoryStore::new();
    store.seed_session(session_in("sess-1", "u", Status::Provisioning));
    let s = id("sess-1");

    let first = store
        .observe_task(&s, &observation("t1", "PENDING", 2))
        .await;
    assert_eq!(first.unwrap().unwrap().task_arn.as_deref(), Some("t1"));
    for refused in [
        observation("t1", "RUNNING", 2),
        observation("t1", "PROVISIONING", 1),
        observation("t2", "RUNNING", 9),
    ] {
        assert_eq!(store.observe_task(&s, &refused).await.unwrap(), None);
    }
    let newer = store
        .observe_task(&s, &observation("t1", "RUNNING", 3))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(newer.task_status.as_deref(), Some("RUNNING"));
    assert_eq!(
        store
            .observe_task(&id("sess-9"), &observation("t1", "RUNNING", 9))
            .await
            .unwrap(),
        None,
        "no item is created"
    );
}

#[tokio::test]
async fn only_a_starting_session_without_a_task_is_discarded() {
    let store = MemoryStore::new();
    store.seed_session(session_in("sess-1", "u", Status::Starting));
    let mut launched = session_in("sess-2", "u", Status::Starting);
    launched.task_arn = Some("t".into());
    store.seed_session(launched);
    store.seed_session(session_in("sess-3", "u", Status::Provisioning));

    assert!(store.discard_unstarted(&id("sess-1")).await.unwrap());
    assert!(store.stored_session(&id("sess-1")).is_none());
    for kept in ["sess-2", "sess-3", "sess-9"] {
        assert!(!store.discard_unstarted(&id(kept)).await.unwrap(), "{kept}");
    }
    assert!(store.stored_session(&id("sess-2")).is_some());
}

#[tokio::test]
async fn activity_is_written_on_the_owners_running_session_at_most_once_an_interval() {
    let store = MemoryStore::new();
    store.seed_session(session_in("sess-1", "u", Status::Running));
    store.seed_session(session_in("sess-2", "u", Status::Provisioning));
    let s = id("sess-1");
    let t0 = DateTime::parse_from_rfc3339("2026-01-01T10:00:00Z")
        .unwrap()
        .with_timezone(&Utc);
    let minute = Duration::seconds(60);

    assert!(store.touch(&s, "u", t0, minute).await.unwrap());
    assert!(!store
        .touch(&s, "u", t0 + Duration::seconds(59), minute)
        .await
        .unwrap());
    assert!(!store
        .touch(&s, "other", t0 + minute * 5, minute)
        .await
        .unwrap());
    assert!(!store.touch(&id("sess-2"), "u", t0, minute).await.unwrap());
    assert!(store.touch(&s, "u", t0 + minute * 2, minute).await.unwrap());
    assert_eq!(
        store.stored_session(&s).unwrap().last_activity_at,
        Some(Timestamp::from(t0 + minute * 2))
    );
}

#[tokio::test]
async fn a_users_sessions_come_newest_first_in_pages_that_end_on_a_short_one() {
    let store = MemoryStore::new();
    for (i, created) in ["10:00", "10:01", "10:02"].iter().enumerate() {
        let mut session = session_in(&format!("sess-{i}"), "u", Status::Stopped);
        session.created_at = format!("2026-01-01T{created}:00.000Z").parse().unwrap();
        store.seed_session(session);
    }
    store.seed_session(session_in("sess-other", "v", Status::Running));

    let first = store.sessions_of_user("u", 2, None).await.unwrap();
    let ids: Vec<&str> = first
        .sessions
        .iter()
        .map(|s| s.session_id.as_str())
        .collect();
    assert_eq!(ids, ["sess-2", "sess-1"]);
    let second = store
        .sessions_of_user("u", 2, first.next.as_ref())
        .await
        .unwrap();
    let ids: Vec<&str> = second
        .sessions
        .iter()
        .map(|s| s.session_id.as_str())
        .collect();
    assert_eq!(ids, ["sess-0"]);
    assert_eq!(second.next, None);

    // A full last page still carries a cursor, as DynamoDB's LastEvaluatedKey does.
    let all = store.sessions_of_user("u", 3, None).await.unwrap();
    let after = store
        .sessions_of_user("u", 3, all.next.as_ref())
        .await
        .unwrap();
    assert!(all.next.is_some() && after.sessions.is_empty() && after.next.is_none());
}

#[tokio::test]
async fn the_first_access_point_and_role_stored_are_kept() {
    let store = MemoryStore::new();
    store.seed_user(authorized_user("u"));
    assert_eq!(
        store.set_access_point("u", "fsap-1").await.unwrap(),
        "fsap-1"
    );
    assert_eq!(
        store.set_access_point("u", "fsap-2").await.unwrap(),
        "fsap-1"
    );
    assert_eq!(store.set_task_role("u", "role-1").await.unwrap(), "role-1");
    assert_eq!(store.set_task_role("u", "role-2").await.unwrap(), "role-1");
    for err in [
        store
            .set_access_point("nobody", "fsap-1")
            .await
            .unwrap_err(),
        store.set_task_role("nobody", "role-1").await.unwrap_err(),
        store
            .cache_task_definition("nobody", "k", "arn", &[])
            .await
            .unwrap_err(),
    ] {
        assert!(matches!(err, Error::NotAuthorized), "{err}");
    }
}

#[tokio::test]
async fn caching_a_revision_drops_the_evicted_entries_but_never_its_own_key() {
    let store = MemoryStore::new();
    let mut user = authorized_user("u");
    user.task_definitions = [("a", "arn:1"), ("b", "arn:2"), ("c", "arn:3")]
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .into();
    store.seed_user(user);
    store
        .cache_task_definition("u", "c", "arn:4", &["a".into(), "c".into()])
        .await
        .unwrap();
    let cached = store.stored_user("u").unwrap().task_definitions;
    assert_eq!(
        cached.into_iter().collect::<Vec<_>>(),
        [("b".into(), "arn:2".into()), ("c".into(), "arn:4".into())]
    );
}

#[tokio::test]
async fn a_slot_is_taken_once_per_session_and_released_idempotently() {
    let store = MemoryStore::new();
    store.seed_user(authorized_user("u"));
    let session = session_in("sess-1", "u", Status::Starting);
    store.open(&session, 1).await.unwrap();
    store.open(&session, 1).await.unwrap();
    assert_eq!(store.slots("u"), ["sess-1".to_owned()].into());
    assert_eq!(
        store.active_sessions().await.unwrap().sessions,
        std::slice::from_ref(&session)
    );

    store.release_slot("u", &session.session_id).await.unwrap();
    store.release_slot("u", &session.session_id).await.unwrap();
    store
        .release_slot("nobody", &session.session_id)
        .await
        .unwrap();
    assert!(store.slots("u").is_empty());
    assert!(store.stored_user("nobody").is_none(), "no user is created");
}

#[tokio::test]
async fn a_failure_of_an_unknown_session_creates_it_failed_and_outside_the_active_index() {
    let store = MemoryStore::new();
    let blank = session_in("sess-1", "u", Status::Starting);
    let failed = store
        .fail(
            &blank,
            session_core::session::Reason::NotAuthorized,
            "no",
            Utc::now(),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(failed.status, Status::Failed);
    assert!(store.active_sessions().await.unwrap().sessions.is_empty());
    assert_eq!(
        store
            .fail(
                &blank,
                session_core::session::Reason::Internal,
                "again",
                Utc::now()
            )
            .await
            .unwrap(),
        None,
        "an ended session is not failed again"
    );
}
