//! The gateway's process: configuration from the environment, the sessions table, and
//! the listeners until SIGTERM.

use std::time::Duration;

use gateway::config::{Config, ProcessEnv};
use gateway::{DynamoSessions, PublicKeys};
use tokio::signal::unix::{signal, SignalKind};

/// ECS kills a task 30 s after SIGTERM; requests in flight get 20 of them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(20);

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let config = match Config::from_source(&ProcessEnv) {
        Ok(config) => config,
        Err(e) => {
            tracing::error!(error = %e, "invalid configuration");
            std::process::exit(2);
        }
    };
    let aws = aws_config::load_from_env().await;
    let lookup = DynamoSessions::new(
        aws_sdk_dynamodb::Client::new(&aws),
        config.sessions_table.clone(),
    );
    let keys = PublicKeys::new(config.alb_public_keys_url.clone());
    let gateway = gateway::serve(config, lookup, keys).await?;
    tracing::info!(
        proxy = %gateway.proxy_addr(),
        health = %gateway.health_addr(),
        "gateway listening"
    );
    let mut terminate = signal(SignalKind::terminate())?;
    tokio::select! {
        _ = terminate.recv() => {},
        _ = tokio::signal::ctrl_c() => {},
    }
    tracing::info!("shutting down");
    if !gateway.shutdown(SHUTDOWN_GRACE).await {
        tracing::warn!("connections still open at the end of the grace period");
    }
    Ok(())
}
