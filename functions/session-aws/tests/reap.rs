//! The reaper over the DynamoDB, ECS and Step Functions adapters, with the SDKs'
//! answers mocked: one throttled call must not stop a run.

use std::collections::HashMap;

use aws_sdk_dynamodb::operation::batch_get_item::BatchGetItemOutput;
use aws_sdk_dynamodb::operation::scan::ScanOutput;
use aws_sdk_dynamodb::operation::update_item::UpdateItemOutput;
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_ecs::operation::list_tasks::ListTasksOutput;
use aws_sdk_sfn::operation::describe_execution::DescribeExecutionOutput;
use aws_sdk_sfn::operation::send_task_success::{SendTaskSuccessError, SendTaskSuccessOutput};
use aws_sdk_sfn::types::error::TaskTimedOut;
use aws_sdk_sfn::types::ExecutionStatus;
use aws_smithy_mocks::{mock, mock_client, RuleMode};
use aws_smithy_runtime_api::http::Response;
use aws_smithy_types::body::SdkBody;

use session_aws::dynamodb::DynamoStore;
use session_aws::ecs::EcsCompute;
use session_aws::sfn::SfnWorkflow;
use session_core::config::{ReaperSettings, Tables};
use session_core::session::{Reason, Session, SessionId, Status};
use session_core::steps::reap::Reaper;
use session_core::testing::{minute, session_entered, FixedClock};

fn settings(transition_deadline_s: &str) -> ReaperSettings {
    let env = HashMap::from([(
        "TRANSITION_DEADLINE_S".to_owned(),
        transition_deadline_s.to_owned(),
    )]);
    ReaperSettings::from_source(&env).unwrap()
}

/// A session of user `u` created at minute 0 with execution `arn:exec:{name}`.
fn active(name: &str, status: Status, entered: i64) -> Session {
    let mut s = session_entered(status, entered);
    s.session_id = SessionId::parse(&format!("sess-{name}")).unwrap();
    s.execution_arn = Some(format!("arn:exec:{name}"));
    s
}

fn item(session: &Session) -> HashMap<String, AttributeValue> {
    serde_dynamo::to_item(session).unwrap()
}

fn described(
    arn: &'static str,
) -> impl Fn(&aws_sdk_sfn::operation::describe_execution::DescribeExecutionInput) -> bool {
    move |r| r.execution_arn() == Some(arn)
}

/// At minute 60: A runs and is active, B runs idle (its stop goes through), E runs
/// idle but its AwaitStop token is closed, C has been provisioning and D starting
/// for ten minutes. C's DescribeExecution is throttled.
#[tokio::test]
async fn one_throttled_describe_execution_leaves_the_other_sessions_reaped_and_only_doubtful_ones_are_described(
) {
    let mut a = active("a", Status::Running, 1);
    a.started_at = Some(minute(1).into());
    a.last_activity_at = Some(minute(59).into());
    a.stop_token = Some("tok-a".into());
    let mut b = active("b", Status::Running, 1);
    b.started_at = Some(minute(1).into());
    b.stop_token = Some("tok-b".into());
    let mut e = b.clone();
    e.session_id = SessionId::parse("sess-e").unwrap();
    e.execution_arn = Some("arn:exec:e".into());
    e.stop_token = Some("tok-e".into());
    let c = active("c", Status::Provisioning, 50);
    let d = active("d", Status::Starting, 50);
    let sessions = [a, b.clone(), c, d, e.clone()];

    let scan = mock!(aws_sdk_dynamodb::Client::scan).then_output(move || {
        ScanOutput::builder()
            .set_items(Some(sessions.iter().map(item).collect()))
            .scanned_count(5)
            .build()
    });
    let user = mock!(aws_sdk_dynamodb::Client::batch_get_item)
        .match_requests(|r| {
            r.request_items()
                .and_then(|items| items.get("users"))
                .is_some_and(|k| k.keys().len() == 1)
        })
        .then_output(|| {
            BatchGetItemOutput::builder()
                .responses(
                    "users",
                    vec![HashMap::from([
                        ("user_id".to_owned(), AttributeValue::S("u".into())),
                        ("authorized".to_owned(), AttributeValue::Bool(true)),
                    ])],
                )
                .build()
        });
    let stopping = move |mut s: Session| {
        s.status = Status::Stopping;
        s.stop_reason = Some(Reason::Idle);
        UpdateItemOutput::builder()
            .set_attributes(Some(item(&s)))
            .build()
    };
    let stop_b = mock!(aws_sdk_dynamodb::Client::update_item)
        .match_requests(|r| {
            r.key().and_then(|k| k.get("session_id")) == Some(&AttributeValue::S("sess-b".into()))
        })
        .then_output(move || stopping(b.clone()));
    let stop_e = mock!(aws_sdk_dynamodb::Client::update_item)
        .match_requests(|r| {
            r.key().and_then(|k| k.get("session_id")) == Some(&AttributeValue::S("sess-e".into()))
        })
        .then_output(move || stopping(e.clone()));
    let list =
        mock!(aws_sdk_ecs::Client::list_tasks).then_output(|| ListTasksOutput::builder().build());
    let resume_b = mock!(aws_sdk_sfn::Client::send_task_success)
        .match_requests(|r| r.task_token() == Some("tok-b"))
        .then_output(|| SendTaskSuccessOutput::builder().build());
    let resume_e = mock!(aws_sdk_sfn::Client::send_task_success)
        .match_requests(|r| r.task_token() == Some("tok-e"))
        .then_error(|| SendTaskSuccessError::TaskTimedOut(TaskTimedOut::builder().build()));
    let running = |arn: &str| {
        DescribeExecutionOutput::builder()
            .execution_arn(arn)
            .state_machine_arn("arn:sm")
            .status(ExecutionStatus::Running)
            .start_date(aws_smithy_types::DateTime::from_secs(0))
            .build()
            .unwrap()
    };
    let throttled = mock!(aws_sdk_sfn::Client::describe_execution)
        .match_requests(described("arn:exec:c"))
        .then_http_response(|| {
            Response::new(
                400.try_into().unwrap(),
                SdkBody::from(r#"{"__type":"ThrottlingException","message":"Rate exceeded"}"#),
            )
        });
    let describe_d = mock!(aws_sdk_sfn::Client::describe_execution)
        .match_requests(described("arn:exec:d"))
        .then_output(move || running("arn:exec:d"));
    let describe_e = mock!(aws_sdk_sfn::Client::describe_execution)
        .match_requests(described("arn:exec:e"))
        .then_output(move || running("arn:exec:e"));
    let describe_others =
        mock!(aws_sdk_sfn::Client::describe_execution).then_output(move || running("?"));

    let settings = settings("1200");
    let store = DynamoStore::new(
        mock_client!(
            aws_sdk_dynamodb,
            RuleMode::MatchAny,
            [&scan, &user, &stop_b, &stop_e]
        ),
        Tables {
            sessions: "sessions".into(),
            users: "users".into(),
            retention_days: 30,
        },
    );
    let compute = EcsCompute::new(mock_client!(aws_sdk_ecs, [&list]), "c".into(), None);
    let workflow = SfnWorkflow::new(mock_client!(
        aws_sdk_sfn,
        RuleMode::MatchAny,
        [
            &resume_b,
            &resume_e,
            &throttled,
            &describe_d,
            &describe_e,
            &describe_others
        ]
    ));
    let reaper = Reaper {
        settings: &settings,
        store: &store,
        compute: &compute,
        workflow: &workflow,
        clock: &FixedClock(minute(60)),
    };

    let report = reaper.run().await.unwrap();
    assert_eq!(report.idle, vec!["sess-b".to_owned(), "sess-e".to_owned()]);
    assert!(report.lost.is_empty(), "{report:?}");
    assert_eq!(report.errors, 1, "C's lookup failed, and only it");
    assert_eq!(report.judged, 4, "{report:?}");
    assert_eq!(
        user.num_calls(),
        1,
        "one read for the one user of five sessions"
    );
    assert!(throttled.num_calls() >= 1);
    assert_eq!(
        describe_d.num_calls(),
        1,
        "D has been starting for ten minutes"
    );
    assert_eq!(describe_e.num_calls(), 1, "E's stop found its token closed");
    assert_eq!(
        describe_others.num_calls(),
        0,
        "A and B say nothing that calls for a look at their executions"
    );
    assert_eq!((resume_b.num_calls(), resume_e.num_calls()), (1, 1));
}
