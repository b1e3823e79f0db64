//! The session lifecycle, end to end: the real state machine definition executed by
//! moto, running the real function binaries against AWS APIs over the wire.

use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_sfn::types::ExecutionStatus;
use serde_json::json;
use session_core::session::{Reason, Status};
use session_tests::{Stack, StackOptions};

#[tokio::test(flavor = "multi_thread")]
async fn happy_path_ends_in_await_stop_running_with_urls_from_the_task_public_ip() {
    let stack = Stack::start().await;
    stack.put_user("alice", true, None).await;

    let (id, execution) = stack
        .start_session(json!({"user_id": "alice", "version": "1.0.0"}))
        .await;
    assert!(
        execution.ends_with(&format!(":{id}")),
        "the execution is named by the session id"
    );
    let (task_arn, public_ip) = stack.bring_task_up(&id).await;
    stack.wait_for_state(&execution, "AwaitStop").await;

    let session = stack
        .session_where(&id, "running", |s| s.status == Status::Running)
        .await;
    assert_eq!(session.public_ip.as_deref(), Some(public_ip.as_str()));
    assert_eq!(session.task_arn.as_deref(), Some(task_arn.as_str()));
    assert_eq!(
        session.urls.get("api"),
        Some(format!("http://{public_ip}:8000").as_str())
    );
    assert_eq!(
        session.urls.get("frontend"),
        Some(format!("http://{public_ip}:3000").as_str())
    );
    assert_eq!(
        session.urls.get("suv_ui"),
        Some(format!("http://{public_ip}:3030").as_str())
    );
    assert!(session.started_at.is_some());
    assert_eq!(
        stack.execution_status(&execution).await,
        ExecutionStatus::Running
    );

    // The task definition: the four containers and ports, versioned images, and the
    // user's access point over an encrypted EFS mount.
    let task = stack.task(&task_arn).await;
    let definition = stack
        .ecs
        .describe_task_definition()
        .task_definition(task.task_definition_arn().unwrap())
        .send()
        .await
        .unwrap()
        .task_definition
        .unwrap();
    let containers: Vec<(String, String, Option<i32>)> = definition
        .container_definitions()
        .iter()
        .map(|c| {
            let port = c.port_mappings().first().and_then(|p| p.container_port());
            (
                c.name().unwrap().to_owned(),
                c.image().unwrap().to_owned(),
                port,
            )
        })
        .collect();
    let registry = &stack.info.registry;
    assert_eq!(
        containers,
        vec![
            (
                "api".into(),
                format!("{registry}/api_service:1.0.0"),
                Some(8000)
            ),
            (
                "frontend".into(),
                format!("{registry}/frontend:1.0.0"),
                Some(3000)
            ),
            (
                "suv_ui".into(),
                format!("{registry}/suv_ui:1.0.0"),
                Some(3030)
            ),
            (
                "postgres".into(),
                "public.ecr.aws/docker/library/postgres:16".into(),
                None
            ),
        ]
    );
    let volume = definition.volumes().first().expect("a volume");
    let efs = volume.efs_volume_configuration().expect("an EFS volume");
    assert_eq!(efs.file_system_id(), stack.info.file_system_id);
    assert_eq!(
        efs.transit_encryption().map(|t| t.as_str()),
        Some("ENABLED")
    );
    let access_point = efs
        .authorization_config()
        .and_then(|a| a.access_point_id())
        .expect("an access point")
        .to_owned();
    let user = stack.user_item("alice").await;
    assert_eq!(user["efs_access_point_id"].as_s().unwrap(), &access_point);
    let described = stack
        .efs
        .describe_access_points()
        .access_point_id(&access_point)
        .send()
        .await
        .unwrap();
    let ap = &described.access_points()[0];
    assert!(
        ap.root_directory()
            .and_then(|r| r.creation_info())
            .is_some(),
        "CreationInfo makes the mount work"
    );
    assert!(ap.posix_user().is_some());

    // The task runs with the user's own role: made by Launch under the users' path,
    // bounded, tagged with this access point, with the shared policy attached.
    let role_arn = definition.task_role_arn().expect("a task role").to_owned();
    assert_eq!(user["task_role_arn"].as_s().unwrap(), &role_arn);
    let env = &stack.info.function_env;
    let iam = aws_sdk_iam::Client::new(&stack.sdk);
    let role_name = role_arn.rsplit('/').next().unwrap();
    let role = iam
        .get_role()
        .role_name(role_name)
        .send()
        .await
        .unwrap()
        .role
        .unwrap();
    assert_eq!(role.path(), env["TASK_ROLE_PATH"]);
    assert_eq!(
        role.permissions_boundary()
            .and_then(|b| b.permissions_boundary_arn()),
        Some(env["TASK_ROLE_BOUNDARY_ARN"].as_str())
    );
    let tags: Vec<(&str, &str)> = role.tags().iter().map(|t| (t.key(), t.value())).collect();
    assert!(
        tags.contains(&("access_point_id", access_point.as_str())),
        "{tags:?}"
    );
    assert!(
        !role_name.contains("alice"),
        "the role name is the hashed user key"
    );
    let attached = iam
        .list_attached_role_policies()
        .role_name(role_name)
        .send()
        .await
        .unwrap();
    let attached: Vec<&str> = attached
        .attached_policies()
        .iter()
        .filter_map(|p| p.policy_arn())
        .collect();
    assert_eq!(attached, [env["TASK_ROLE_POLICY_ARN"].as_str()]);

    // The next session of the same user and version (one at a time: the template
    // mounts the user's data) reuses the access point and the task definition revision.
    stack.complete_await_stop(&id, "user").await;
    assert_eq!(
        stack.execution_ended(&execution).await,
        ExecutionStatus::Succeeded
    );
    let (second, second_execution) = stack
        .start_session(json!({"user_id": "alice", "version": "1.0.0"}))
        .await;
    let (second_task, _) = stack.bring_task_up(&second).await;
    stack.wait_for_state(&second_execution, "AwaitStop").await;
    let second_definition = stack
        .task(&second_task)
        .await
        .task_definition_arn()
        .unwrap()
        .to_owned();
    assert_eq!(second_definition, task.task_definition_arn().unwrap());
    let points = stack
        .efs
        .describe_access_points()
        .file_system_id(&stack.info.file_system_id)
        .send()
        .await
        .unwrap();
    assert_eq!(points.access_points().len(), 1, "one access point per user");
}

#[tokio::test(flavor = "multi_thread")]
async fn completing_await_stop_stops_the_task_and_ends_the_session_stopped() {
    let stack = Stack::start().await;
    stack.put_user("bob", true, None).await;
    let (id, execution) = stack.start_session(json!({"user_id": "bob"})).await;
    let (task_arn, _) = stack.bring_task_up(&id).await;
    stack.wait_for_state(&execution, "AwaitStop").await;
    let session = stack
        .session_where(&id, "the stop token", |s| s.stop_token.is_some())
        .await;
    assert_eq!(
        session.version.as_str(),
        "latest",
        "version defaults to latest"
    );

    stack.complete_await_stop(&id, "user").await;

    assert_eq!(
        stack.execution_ended(&execution).await,
        ExecutionStatus::Succeeded
    );
    let session = stack.session(&id).await.unwrap();
    assert_eq!(session.status, Status::Stopped);
    assert_eq!(session.stop_reason, Some(Reason::User));
    assert!(session.stopped_at.is_some());
    assert_eq!(stack.task(&task_arn).await.last_status(), Some("STOPPED"));
    assert!(
        stack.active_slots("bob").await.is_empty(),
        "the slot is free again"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_or_unauthorized_users_fail_not_authorized_and_no_task_runs() {
    let stack = Stack::start().await;
    stack.put_user("mallory", false, None).await;
    for user in ["nobody", "mallory"] {
        let (id, execution) = stack.start_session(json!({"user_id": user})).await;
        assert_eq!(
            stack.execution_ended(&execution).await,
            ExecutionStatus::Failed
        );
        let session = stack
            .session(&id)
            .await
            .expect("the refused session is recorded");
        assert_eq!(session.status, Status::Failed);
        assert_eq!(session.stop_reason, Some(Reason::NotAuthorized));
        assert!(!stack
            .states_entered(&execution)
            .await
            .contains(&"Launch".to_owned()));
    }
    let tasks = stack
        .ecs
        .list_tasks()
        .cluster(&stack.info.cluster)
        .send()
        .await
        .unwrap();
    assert!(tasks.task_arns().is_empty(), "no task was ever run");
}

#[tokio::test(flavor = "multi_thread")]
async fn racing_starts_at_a_limit_of_one_leave_exactly_one_task() {
    let stack = Stack::start().await;
    stack.put_user("carol", true, Some(1)).await;
    let input = json!({"user_id": "carol", "version": "latest"});
    let (a, b, c, d) = tokio::join!(
        stack.start_session(input.clone()),
        stack.start_session(input.clone()),
        stack.start_session(input.clone()),
        stack.start_session(input)
    );
    let started = [a, b, c, d];

    // Every session is either refused or admitted; exactly one is admitted.
    let sessions = stack
        .eventually("every start decided", Duration::from_secs(60), || async {
            let mut decided = Vec::new();
            for (id, _) in &started {
                let s = stack.session(id).await?;
                if s.status == Status::Starting {
                    return None;
                }
                decided.push(s);
            }
            Some(decided)
        })
        .await;
    let (refused, admitted): (Vec<_>, Vec<_>) = sessions
        .into_iter()
        .partition(|s| s.status == Status::Failed);
    assert_eq!(admitted.len(), 1, "exactly one admitted: {admitted:?}");
    let admitted = &admitted[0];
    for session in &refused {
        assert_eq!(session.stop_reason, Some(Reason::SessionLimit));
        let cause = session.failure_cause.as_deref().unwrap_or_default();
        assert!(
            cause.contains(admitted.session_id.as_str()),
            "the refusal names the active session: {cause}"
        );
        let (_, execution) = started
            .iter()
            .find(|(id, _)| *id == session.session_id)
            .unwrap();
        assert_eq!(
            stack.execution_ended(execution).await,
            ExecutionStatus::Failed
        );
    }
    stack
        .session_where(&admitted.session_id, "the admitted task", |s| {
            s.task_arn.is_some()
        })
        .await;
    assert_eq!(stack.running_tasks().await.len(), 1, "exactly one task");
    assert_eq!(
        stack.active_slots("carol").await,
        vec![admitted.session_id.to_string()]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_malformed_version_never_reaches_launch() {
    let stack = Stack::start().await;
    stack.put_user("dave", true, None).await;
    let (id, execution) = stack
        .start_session(json!({"user_id": "dave", "version": "1.0;rm -rf"}))
        .await;
    assert_eq!(
        stack.execution_ended(&execution).await,
        ExecutionStatus::Failed
    );
    assert!(!stack
        .states_entered(&execution)
        .await
        .contains(&"Launch".to_owned()));
    let session = stack.session(&id).await.unwrap();
    assert_eq!(session.stop_reason, Some(Reason::InvalidVersion));
    assert!(session.failure_cause.unwrap().contains("image tag"));
    assert!(stack.running_tasks().await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_well_formed_tag_missing_from_ecr_fails_image_not_found_without_a_task() {
    let stack = Stack::start().await;
    stack.put_user("erin", true, None).await;
    let (id, execution) = stack
        .start_session(json!({"user_id": "erin", "version": "9.9.9"}))
        .await;
    assert_eq!(
        stack.execution_ended(&execution).await,
        ExecutionStatus::Failed
    );
    let session = stack.session(&id).await.unwrap();
    assert_eq!(session.status, Status::Failed);
    assert_eq!(session.stop_reason, Some(Reason::ImageNotFound));
    assert!(session.failure_cause.unwrap().contains("api_service:9.9.9"));
    assert!(!stack
        .states_entered(&execution)
        .await
        .contains(&"Launch".to_owned()));
    assert!(stack.running_tasks().await.is_empty());
    assert!(stack.active_slots("erin").await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_capacity_failure_fails_the_session_and_frees_the_slot() {
    let stack = Stack::start().await;
    stack.put_user("frank", true, None).await;
    stack.set_run_task_failures(json!([{
        "arn": "arn:aws:ecs:us-east-1:123456789012:container-instance/none",
        "reason": "Capacity is unavailable at this time. Please try again later or in a different availability zone",
    }]));
    let (id, execution) = stack.start_session(json!({"user_id": "frank"})).await;
    assert_eq!(
        stack.execution_ended(&execution).await,
        ExecutionStatus::Failed
    );
    let session = stack.session(&id).await.unwrap();
    assert_eq!(session.status, Status::Failed);
    assert_eq!(session.stop_reason, Some(Reason::CapacityUnavailable));
    assert!(session
        .failure_cause
        .unwrap()
        .contains("Capacity is unavailable"));
    assert!(stack.running_tasks().await.is_empty());
    assert!(
        stack.active_slots("frank").await.is_empty(),
        "the slot is free again"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_task_that_stops_before_running_fails_the_session_and_leaves_nothing_running() {
    let stack = Stack::start_with(StackOptions {
        held_back: vec!["wait-for-ip"],
        ..Default::default()
    })
    .await;
    stack.put_user("grace", true, None).await;
    let (id, execution) = stack.start_session(json!({"user_id": "grace"})).await;
    let session = stack
        .session_where(&id, "a task", |s| s.task_arn.is_some())
        .await;
    // The task dies before it ever runs: WaitForIp must fail, and the compensation
    // path must leave nothing running.
    let task_arn = session.task_arn.unwrap();
    let stopped = stack.task_event(&task_arn, "STOPPED", 5).await;
    let mut stopped = stopped;
    stopped["detail"]["stopCode"] = json!("TaskFailedToStart");
    stopped["detail"]["stoppedReason"] =
        json!("CannotPullContainerError: pull image manifest has been retried 5 time(s)");
    stack.invoke("task-events", &stopped).await;
    stack.start_function("wait-for-ip");

    assert_eq!(
        stack.execution_ended(&execution).await,
        ExecutionStatus::Failed
    );
    let session = stack.session(&id).await.unwrap();
    assert_eq!(session.status, Status::Failed);
    assert_eq!(session.stop_reason, Some(Reason::TaskStopped));
    assert!(session.failure_cause.unwrap().contains("TaskFailedToStart"));
    assert!(stack.running_tasks().await.is_empty());
    assert!(stack.active_slots("grace").await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_task_deprovisioning_before_it_ran_fails_wait_for_ip_without_waiting_for_stopped() {
    let stack = Stack::start().await;
    stack.put_user("gus", true, None).await;
    let (id, execution) = stack.start_session(json!({"user_id": "gus"})).await;
    let session = stack
        .session_where(&id, "the WaitForIp token", |s| s.ip_token.is_some())
        .await;
    // Its STOPPED event is late (or lost): DEPROVISIONING already says it never runs.
    let task_arn = session.task_arn.unwrap();
    let mut deprovisioning = stack.task_event(&task_arn, "DEPROVISIONING", 4).await;
    deprovisioning["detail"]["stopCode"] = json!("TaskFailedToStart");
    deprovisioning["detail"]["stoppedReason"] = json!("ResourceInitializationError");
    assert_eq!(
        stack.invoke("task-events", &deprovisioning).await,
        json!({"outcome": "completed_wait_for_ip"})
    );
    assert_eq!(
        stack.execution_ended(&execution).await,
        ExecutionStatus::Failed
    );
    let session = stack.session(&id).await.unwrap();
    assert_eq!(session.stop_reason, Some(Reason::TaskStopped));
    assert!(stack.running_tasks().await.is_empty());
    assert!(stack.active_slots("gus").await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lost_run_task_answer_is_compensated_no_task_left_and_the_slot_free() {
    let stack = Stack::start().await;
    stack.put_user("heidi", true, None).await;
    // RunTask starts the task but its answer is an error: the task is recorded
    // nowhere, and only its startedBy ties it to the session.
    stack.set_run_task_error("AccessDeniedException", true);
    let (id, execution) = stack.start_session(json!({"user_id": "heidi"})).await;

    assert_eq!(
        stack.execution_ended(&execution).await,
        ExecutionStatus::Failed
    );
    let session = stack.session(&id).await.unwrap();
    assert_eq!(session.status, Status::Failed);
    assert_eq!(session.stop_reason, Some(Reason::Internal));
    assert!(session
        .failure_cause
        .unwrap()
        .contains("AccessDeniedException"));
    let started = stack
        .ecs
        .list_tasks()
        .cluster(&stack.info.cluster)
        .started_by(id.as_str())
        .send()
        .await
        .unwrap();
    assert_eq!(
        started.task_arns().len(),
        1,
        "the injected fault did start a task"
    );
    assert!(
        stack.running_tasks().await.is_empty(),
        "compensation stopped it"
    );
    assert!(stack.active_slots("heidi").await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn wait_for_ip_completes_when_the_running_event_arrives_before_its_token() {
    let stack = Stack::start_with(StackOptions {
        held_back: vec!["wait-for-ip"],
        ..Default::default()
    })
    .await;
    stack.put_user("ivan", true, None).await;
    let (id, execution) = stack.start_session(json!({"user_id": "ivan"})).await;
    let session = stack
        .session_where(&id, "a task", |s| s.task_arn.is_some())
        .await;
    let task_arn = session.task_arn.unwrap();
    let ip = stack.give_public_ip(&task_arn).await;

    let outcome = stack
        .invoke(
            "task-events",
            &stack.healthy_running_event(&task_arn, 3).await,
        )
        .await;
    assert_eq!(
        outcome,
        json!({"outcome": "recorded"}),
        "no token yet: the event is only recorded"
    );
    assert!(stack.session(&id).await.unwrap().ip_token.is_none());

    stack.start_function("wait-for-ip");
    stack.wait_for_state(&execution, "AwaitStop").await;
    let session = stack
        .session_where(&id, "running", |s| s.status == Status::Running)
        .await;
    assert_eq!(session.public_ip, Some(ip));
}

#[tokio::test(flavor = "multi_thread")]
async fn wait_for_ip_completes_when_the_running_event_arrives_after_its_token() {
    let stack = Stack::start().await;
    stack.put_user("judy", true, None).await;
    let (id, execution) = stack.start_session(json!({"user_id": "judy"})).await;
    let session = stack
        .session_where(&id, "the WaitForIp token", |s| s.ip_token.is_some())
        .await;
    let task_arn = session.task_arn.unwrap();
    let ip = stack.give_public_ip(&task_arn).await;
    assert_eq!(session.status, Status::Provisioning);

    let outcome = stack
        .invoke(
            "task-events",
            &stack.healthy_running_event(&task_arn, 3).await,
        )
        .await;
    assert_eq!(outcome, json!({"outcome": "completed_wait_for_ip"}));
    stack.wait_for_state(&execution, "AwaitStop").await;
    let session = stack
        .session_where(&id, "running", |s| s.status == Status::Running)
        .await;
    assert_eq!(session.public_ip, Some(ip));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_running_event_retried_after_its_first_delivery_died_past_the_write_completes_wait_for_ip(
) {
    let stack = Stack::start().await;
    stack.put_user("jo", true, None).await;
    let (id, execution) = stack.start_session(json!({"user_id": "jo"})).await;
    let session = stack
        .session_where(&id, "the WaitForIp token", |s| s.ip_token.is_some())
        .await;
    let task_arn = session.task_arn.unwrap();
    let ip = stack.give_public_ip(&task_arn).await;
    let eni = session_tests::eni_of(&stack.task(&task_arn).await).expect("the task's ENI");
    // The first delivery wrote the RUNNING state, then died before it completed
    // WaitForIp (its EC2 or SendTaskSuccess call throttled): EventBridge retries it.
    stack
        .ddb
        .update_item()
        .table_name(&stack.info.sessions_table)
        .key("session_id", AttributeValue::S(id.to_string()))
        .update_expression("SET task_status = :s, task_version = :v, eni_id = :e, task_health = :h")
        .expression_attribute_values(":s", AttributeValue::S("RUNNING".into()))
        .expression_attribute_values(":h", AttributeValue::S("HEALTHY".into()))
        .expression_attribute_values(":v", AttributeValue::N("3".into()))
        .expression_attribute_values(":e", AttributeValue::S(eni))
        .send()
        .await
        .expect("the first delivery's write");

    let retried = stack.healthy_running_event(&task_arn, 3).await;
    assert_eq!(
        stack.invoke("task-events", &retried).await,
        json!({"outcome": "completed_wait_for_ip"})
    );
    stack.wait_for_state(&execution, "AwaitStop").await;
    let session = stack
        .session_where(&id, "running", |s| s.status == Status::Running)
        .await;
    assert_eq!(session.public_ip, Some(ip));
    // A further repeat has nothing left to do.
    assert_eq!(
        stack.invoke("task-events", &retried).await,
        json!({"outcome": "stale"})
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn duplicate_and_older_task_events_change_nothing() {
    let stack = Stack::start().await;
    stack.put_user("kim", true, None).await;
    let (id, execution) = stack.start_session(json!({"user_id": "kim"})).await;
    let (task_arn, _) = stack.bring_task_up(&id).await;
    stack.wait_for_state(&execution, "AwaitStop").await;
    let before = stack
        .session_where(&id, "the stop token", |s| s.stop_token.is_some())
        .await;

    let running = stack.healthy_running_event(&task_arn, 3).await;
    let pending = stack.task_event(&task_arn, "PENDING", 2).await;
    for event in [&running, &pending, &running] {
        assert_eq!(
            stack.invoke("task-events", event).await,
            json!({"outcome": "stale"})
        );
    }
    assert_eq!(stack.session(&id).await.unwrap(), before);
    let history = stack.states_entered(&execution).await;
    assert_eq!(history.iter().filter(|s| *s == "RecordRunning").count(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_input_to_any_function_is_a_typed_error_not_a_crash() {
    let stack = Stack::start().await;
    let malformed = [
        json!(null),
        json!("text"),
        json!({}),
        json!({"session_id": 7}),
        json!({"session_id": "bad id!", "request": {}}),
        json!({"record": "exploded", "session_id": "sess-1"}),
    ];
    // The reaper takes no input (a schedule's event carries nothing it needs); the api
    // answers HTTP, and its bad input is tested in tests/tests/api.rs.
    for function in session_tests::FUNCTIONS
        .iter()
        .filter(|f| !["reaper", "api"].contains(f))
    {
        for payload in &malformed {
            let answer = stack.invoke(function, payload).await;
            let error_type = answer["errorType"].as_str().unwrap_or_default();
            assert!(
                ["InvalidInput", "InvalidVersion"].contains(&error_type),
                "{function} answered {answer} to {payload}"
            );
            assert!(!answer["errorMessage"]
                .as_str()
                .unwrap_or_default()
                .is_empty());
        }
    }
    // The functions survived all of it: a real session still runs end to end.
    stack.put_user("liam", true, None).await;
    let (id, execution) = stack.start_session(json!({"user_id": "liam"})).await;
    stack.bring_task_up(&id).await;
    stack.wait_for_state(&execution, "AwaitStop").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_running_task_that_exits_ends_the_session_stopped_with_its_stop_code() {
    let stack = Stack::start().await;
    stack.put_user("mia", true, None).await;
    let (id, execution) = stack.start_session(json!({"user_id": "mia"})).await;
    let (task_arn, _) = stack.bring_task_up(&id).await;
    stack.wait_for_state(&execution, "AwaitStop").await;
    stack
        .session_where(&id, "the stop token", |s| s.stop_token.is_some())
        .await;

    let exited = stack.task_event(&task_arn, "STOPPED", 6).await;
    assert_eq!(
        stack.invoke("task-events", &exited).await,
        json!({"outcome": "stop_requested"})
    );

    assert_eq!(
        stack.execution_ended(&execution).await,
        ExecutionStatus::Succeeded
    );
    let session = stack.session(&id).await.unwrap();
    assert_eq!(session.status, Status::Stopped);
    assert_eq!(session.stop_reason, Some(Reason::TaskStopped));
    assert_eq!(
        session.stop_code.as_deref(),
        Some("EssentialContainerExited")
    );
    assert_eq!(
        session.stopped_reason.as_deref(),
        Some("Essential container in task exited")
    );
    assert!(stack.active_slots("mia").await.is_empty());
}

/// AwaitStop's timeout, as the execution history records it when the state began.
async fn await_stop_timeout_s(stack: &Stack, execution: &str) -> Option<i64> {
    let history = stack
        .sfn
        .get_execution_history()
        .execution_arn(execution)
        .max_results(1000)
        .send()
        .await
        .expect("execution history");
    let events = history.events();
    let entered = events.iter().position(|e| {
        e.state_entered_event_details()
            .is_some_and(|d| d.name() == "AwaitStop")
    })?;
    events[entered..]
        .iter()
        .find_map(|e| e.task_scheduled_event_details())
        .and_then(|d| d.timeout_in_seconds())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_max_lifetime_backstop_follows_the_users_max_lifetime_not_a_fixed_day() {
    let stack = Stack::start().await;
    let margin = session_core::steps::authorize::BACKSTOP_MARGIN_S as i64;
    // Two days: longer than the 86,400 s AwaitStop used to wait at most.
    stack.put_user("lena", true, None).await;
    stack
        .set_user("lena", "max_lifetime_s", AttributeValue::N("172800".into()))
        .await;
    stack.put_user("milo", true, None).await;

    let (_, lena, _) = stack.running_session(json!({"user_id": "lena"})).await;
    assert_eq!(
        await_stop_timeout_s(&stack, &lena).await,
        Some(172_800 + margin)
    );
    // Without a setting of their own, the deployment's (MAX_LIFETIME_S, 8 h).
    let (_, milo, _) = stack.running_session(json!({"user_id": "milo"})).await;
    assert_eq!(
        await_stop_timeout_s(&stack, &milo).await,
        Some(8 * 60 * 60 + margin)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_running_task_is_not_running_until_its_health_checks_pass() {
    let stack = Stack::start().await;
    stack.put_user("kai", true, None).await;
    let (id, execution) = stack.start_session(json!({"user_id": "kai"})).await;
    let session = stack
        .session_where(&id, "the WaitForIp token", |s| s.ip_token.is_some())
        .await;
    assert!(
        session.awaits_health,
        "the default template has health checks"
    );
    let task_arn = session.task_arn.unwrap();
    stack.give_public_ip(&task_arn).await;

    let mut starting = stack.task_event(&task_arn, "RUNNING", 3).await;
    starting["detail"]["healthStatus"] = json!("UNKNOWN");
    let outcome = stack.invoke("task-events", &starting).await;
    assert_eq!(
        outcome,
        json!({"outcome": "recorded"}),
        "RUNNING alone is not reachable"
    );
    let session = stack.session(&id).await.unwrap();
    assert_eq!(session.status, Status::Provisioning);
    assert!(
        session.urls.0.is_empty(),
        "no URLs before the services answer"
    );

    let mut healthy = stack.task_event(&task_arn, "RUNNING", 4).await;
    healthy["detail"]["healthStatus"] = json!("HEALTHY");
    healthy["detail"]["startedAt"] = json!("2026-11-25T10:00:22.000Z");
    healthy["detail"]["updatedAt"] = json!("2026-11-25T10:00:31.500Z");
    let outcome = stack.invoke("task-events", &healthy).await;
    assert_eq!(outcome, json!({"outcome": "completed_wait_for_ip"}));
    stack.wait_for_state(&execution, "AwaitStop").await;
    let session = stack
        .session_where(&id, "running", |s| s.status == Status::Running)
        .await;
    assert_eq!(session.task_health.as_deref(), Some("HEALTHY"));
    assert!(session.urls.get("api").is_some());
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unhealthy_task_fails_its_session_clearly_and_leaves_no_task() {
    let stack = Stack::start().await;
    stack.put_user("lena", true, None).await;
    let (id, execution) = stack.start_session(json!({"user_id": "lena"})).await;
    let session = stack
        .session_where(&id, "the WaitForIp token", |s| s.ip_token.is_some())
        .await;
    let task_arn = session.task_arn.unwrap();
    stack.give_public_ip(&task_arn).await;

    let mut unhealthy = stack.task_event(&task_arn, "RUNNING", 3).await;
    unhealthy["detail"]["healthStatus"] = json!("UNHEALTHY");
    stack.invoke("task-events", &unhealthy).await;
    let session = stack
        .session_where(&id, "failed", |s| s.status == Status::Failed)
        .await;
    assert_eq!(session.stop_reason, Some(Reason::LaunchFailed));
    let cause = session.failure_cause.unwrap_or_default();
    assert!(cause.contains("health checks fail"), "{cause}");
    assert_eq!(
        stack.execution_ended(&execution).await,
        ExecutionStatus::Failed
    );
    assert!(
        stack.running_tasks().await.is_empty(),
        "Compensate stopped the task"
    );
    assert!(stack.active_slots("lena").await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn behind_the_gateway_a_session_runs_on_its_private_ip_without_asking_ec2() {
    let stack = Stack::start_with(StackOptions {
        env: vec![
            ("ACCESS_MODE", "gateway".into()),
            ("SESSION_DOMAIN", "sessions.example.com".into()),
        ],
        ..Default::default()
    })
    .await;
    // Any EC2 call of the functions would fail the session.
    stack.inject_fault(json!({
        "service": "ec2", "action": "DescribeNetworkInterfaces",
        "status": 403, "code": "UnauthorizedOperation", "message": "not in gateway mode",
    }));
    stack.put_user("mia", true, None).await;
    let (id, execution) = stack.start_session(json!({"user_id": "mia"})).await;
    let session = stack
        .session_where(&id, "a task", |s| s.task_arn.is_some())
        .await;
    let task_arn = session.task_arn.unwrap();
    let private_ip = session_tests::private_ip(&stack.task(&task_arn).await).unwrap();

    stack
        .invoke(
            "task-events",
            &stack.healthy_running_event(&task_arn, 3).await,
        )
        .await;
    stack.wait_for_state(&execution, "AwaitStop").await;
    let session = stack
        .session_where(&id, "running", |s| s.status == Status::Running)
        .await;
    assert_eq!(session.public_ip, None);
    assert_eq!(session.private_ip, Some(private_ip.to_string()));
    assert_eq!(
        session.urls.get("suv_ui"),
        Some(format!("https://suv-ui--{id}.sessions.example.com").as_str())
    );
    assert_eq!(session.service_ports.get("api"), Some(&8000));
    let fault = &stack.injected_faults()[0];
    assert_eq!(fault["seen"].as_u64().unwrap_or(0), 0, "{fault}");
}
