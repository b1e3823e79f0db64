//! The data of a test: users and sessions in the tables, the cluster's tasks and what
//! AWS would say of them (public IPs, "ECS Task State Change" events), and the events
//! on the project's bus.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use serde_json::{json, Value};
use session_core::session::{Session, SessionId};

use crate::Stack;

impl Stack {
    pub async fn put_user(&self, user_id: &str, authorized: bool, max_sessions: Option<u32>) {
        let mut request = self
            .ddb
            .put_item()
            .table_name(&self.info.users_table)
            .item("user_id", AttributeValue::S(user_id.into()))
            .item("authorized", AttributeValue::Bool(authorized))
            .item("email", AttributeValue::S(format!("{user_id}@example.com")));
        if let Some(max) = max_sessions {
            request = request.item("max_sessions", AttributeValue::N(max.to_string()));
        }
        request.send().await.expect("put user");
    }

    pub async fn user_item(&self, user_id: &str) -> HashMap<String, AttributeValue> {
        self.ddb
            .get_item()
            .table_name(&self.info.users_table)
            .key("user_id", AttributeValue::S(user_id.into()))
            .send()
            .await
            .expect("get user")
            .item
            .unwrap_or_default()
    }

    /// The session ids holding one of the user's slots.
    pub async fn active_slots(&self, user_id: &str) -> Vec<String> {
        match self.user_item(user_id).await.remove("active_sessions") {
            Some(AttributeValue::Ss(ids)) => ids,
            _ => vec![],
        }
    }

    pub async fn session(&self, id: &SessionId) -> Option<Session> {
        let item = self
            .ddb
            .get_item()
            .table_name(&self.info.sessions_table)
            .key("session_id", AttributeValue::S(id.to_string()))
            .consistent_read(true)
            .send()
            .await
            .expect("get session")
            .item?;
        Some(serde_dynamo::from_item(item).expect("a stored session parses"))
    }

    pub async fn session_where(
        &self,
        id: &SessionId,
        what: &str,
        pred: impl Fn(&Session) -> bool,
    ) -> Session {
        self.eventually(what, Duration::from_secs(60), || async {
            self.session(id).await.filter(|s| pred(s))
        })
        .await
    }

    /// Tasks of the cluster that are not stopped.
    pub async fn running_tasks(&self) -> Vec<aws_sdk_ecs::types::Task> {
        let arns = self
            .ecs
            .list_tasks()
            .cluster(&self.info.cluster)
            .desired_status(aws_sdk_ecs::types::DesiredStatus::Running)
            .send()
            .await
            .expect("list tasks")
            .task_arns
            .unwrap_or_default();
        if arns.is_empty() {
            return vec![];
        }
        let described = self
            .ecs
            .describe_tasks()
            .cluster(&self.info.cluster)
            .set_tasks(Some(arns))
            .send()
            .await
            .expect("describe tasks");
        described
            .tasks
            .unwrap_or_default()
            .into_iter()
            .filter(|t| t.last_status() != Some("STOPPED"))
            .collect()
    }

    pub async fn task(&self, task_arn: &str) -> aws_sdk_ecs::types::Task {
        let described = self
            .ecs
            .describe_tasks()
            .cluster(&self.info.cluster)
            .tasks(task_arn)
            .send()
            .await
            .expect("describe task");
        described
            .tasks
            .unwrap_or_default()
            .into_iter()
            .next()
            .expect("the task exists")
    }

    /// Gives the task's ENI a public IP, as Fargate does for public subnets (moto gives
    /// task ENIs none).
    pub async fn give_public_ip(&self, task_arn: &str) -> String {
        let task = self.task(task_arn).await;
        let eni = eni_of(&task).expect("the task has an ENI");
        let address = self
            .ec2
            .allocate_address()
            .send()
            .await
            .expect("allocate address");
        self.ec2
            .associate_address()
            .allocation_id(address.allocation_id().expect("allocation id"))
            .network_interface_id(&eni)
            .send()
            .await
            .expect("associate address");
        address.public_ip().expect("public ip").to_owned()
    }

    /// An "ECS Task State Change" event for the task, shaped like AWS's documented
    /// example, as EventBridge delivers it to a Lambda target.
    pub async fn task_event(&self, task_arn: &str, last_status: &str, version: i64) -> Value {
        let task = self.task(task_arn).await;
        let attachments: Vec<Value> = task
            .attachments()
            .iter()
            .map(|a| {
                json!({
                    "id": a.id(),
                    "type": "eni",
                    "status": "ATTACHED",
                    "details": a.details().iter().map(|d| json!({"name": d.name(), "value": d.value()})).collect::<Vec<_>>(),
                })
            })
            .collect();
        let mut detail = json!({
            "attachments": attachments,
            "availabilityZone": "us-east-1a",
            "clusterArn": task.cluster_arn(),
            "containers": [],
            "createdAt": "2026-11-25T10:00:00.000Z",
            "launchType": "FARGATE",
            "cpu": "1024",
            "memory": "2048",
            "desiredStatus": if last_status == "STOPPED" { "STOPPED" } else { "RUNNING" },
            "group": format!("family:{}", task.group().unwrap_or_default()),
            "lastStatus": last_status,
            "overrides": {"containerOverrides": []},
            "connectivity": "CONNECTED",
            "startedBy": task.started_by(),
            "taskArn": task_arn,
            "taskDefinitionArn": task.task_definition_arn(),
            "updatedAt": "2026-11-25T10:00:30.000Z",
            "version": version,
            "platformVersion": "1.4.0",
            "pullStartedAt": "2026-11-25T10:00:05.000Z",
            "pullStoppedAt": "2026-11-25T10:00:21.000Z",
        });
        if last_status == "STOPPED" {
            detail["stopCode"] = json!("EssentialContainerExited");
            detail["stoppedReason"] = json!("Essential container in task exited");
        }
        json!({
            "version": "0",
            "id": format!("{task_arn}-{version}"),
            "detail-type": "ECS Task State Change",
            "source": "aws.ecs",
            "account": "123456789012",
            "time": "2026-11-25T10:00:30Z",
            "region": self.info.region,
            "resources": [task_arn],
            "detail": detail,
        })
    }

    /// The RUNNING event of a task whose health checks had passed by the time ECS
    /// reported it (with the template's checks, a session runs only once HEALTHY).
    pub async fn healthy_running_event(&self, task_arn: &str, version: i64) -> Value {
        let mut event = self.task_event(task_arn, "RUNNING", version).await;
        event["detail"]["healthStatus"] = json!("HEALTHY");
        event
    }

    /// What a running Fargate task looks like to us: the ENI gets its public IP and
    /// the RUNNING event reaches task-events. Returns (task ARN, public IP).
    pub async fn bring_task_up(&self, id: &SessionId) -> (String, String) {
        let session = self
            .session_where(id, "the session's task", |s| s.task_arn.is_some())
            .await;
        let task_arn = session.task_arn.expect("task arn");
        let ip = self.give_public_ip(&task_arn).await;
        let event = self.healthy_running_event(&task_arn, 3).await;
        self.invoke("task-events", &event).await;
        (task_arn, ip)
    }

    /// Lifecycle events published on the project's bus so far (read through the
    /// queue subscribed to it), as EventBridge events.
    pub async fn bus_events(&self) -> Vec<Value> {
        let mut events = Vec::new();
        loop {
            let received = self
                .sqs
                .receive_message()
                .queue_url(&self.info.events_queue_url)
                .max_number_of_messages(10)
                .send()
                .await
                .expect("receive events");
            let messages = received.messages.unwrap_or_default();
            if messages.is_empty() {
                return events;
            }
            for message in messages {
                events.push(
                    serde_json::from_str(message.body().unwrap_or("null"))
                        .expect("an event is JSON"),
                );
                if let Some(handle) = message.receipt_handle() {
                    self.sqs
                        .delete_message()
                        .queue_url(&self.info.events_queue_url)
                        .receipt_handle(handle)
                        .send()
                        .await
                        .expect("delete event");
                }
            }
        }
    }

    /// Sets attributes of a user item (per-user overrides).
    pub async fn set_user(&self, user_id: &str, attribute: &str, value: AttributeValue) {
        self.ddb
            .update_item()
            .table_name(&self.info.users_table)
            .key("user_id", AttributeValue::S(user_id.into()))
            .update_expression("SET #a = :v")
            .expression_attribute_names("#a", attribute)
            .expression_attribute_values(":v", value)
            .send()
            .await
            .expect("update user");
    }
}

/// The task's private IPv4 address, from its network attachment.
pub fn private_ip(task: &aws_sdk_ecs::types::Task) -> Option<std::net::IpAddr> {
    task.attachments()
        .iter()
        .flat_map(|a| a.details())
        .find(|d| d.name() == Some("privateIPv4Address"))
        .and_then(|d| d.value()?.parse().ok())
}

pub fn eni_of(task: &aws_sdk_ecs::types::Task) -> Option<String> {
    task.attachments()
        .iter()
        .flat_map(|a| a.details())
        .find(|d| d.name() == Some("networkInterfaceId"))
        .and_then(|d| d.value().map(str::to_owned))
}
