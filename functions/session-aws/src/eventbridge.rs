//! Lifecycle events on the project's EventBridge bus.

use aws_sdk_eventbridge::types::PutEventsRequestEntry;
use aws_sdk_eventbridge::Client;

use crate::from_sdk;
use session_core::error::{Error, Result};
use session_core::events::SOURCE;
use session_core::ports::EventBus;

#[derive(Clone, Debug)]
pub struct EventBridgeBus {
    client: Client,
    bus: String,
}

impl EventBridgeBus {
    pub fn new(client: Client, bus: String) -> Self {
        Self { client, bus }
    }

    pub fn connect(sdk: &aws_config::SdkConfig, bus: String) -> Self {
        Self::new(Client::new(sdk), bus)
    }
}

impl EventBus for EventBridgeBus {
    async fn publish(&self, detail_type: &str, detail: &serde_json::Value) -> Result<()> {
        let entry = PutEventsRequestEntry::builder()
            .event_bus_name(&self.bus)
            .source(SOURCE)
            .detail_type(detail_type)
            .detail(detail.to_string())
            .build();
        let out = self
            .client
            .put_events()
            .entries(entry)
            .send()
            .await
            .map_err(|e| from_sdk("PutEvents", e))?;
        // PutEvents answers 200 with per-entry failures; they are worth a retry.
        if out.failed_entry_count() > 0 {
            let reason = out
                .entries()
                .iter()
                .filter_map(|e| e.error_message())
                .collect::<Vec<_>>()
                .join("; ");
            return Err(Error::Transient {
                operation: "PutEvents",
                message: reason,
            });
        }
        Ok(())
    }
}
