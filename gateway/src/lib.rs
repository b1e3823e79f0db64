//! The session gateway. Behind the Application Load Balancer, which signs users in
//! with OIDC on the login host and adds its signed `x-amzn-oidc-data` token there, it
//! signs users in on each session host (`signin.rs`) and authorizes every request
//! for the session named by its host (`{service}--{session_id}.{domain}`, see
//! `session_core::hosts`) and proxies it to the service's port on the session task's
//! private address, streaming both ways and upgrading WebSockets.
//!
//! hyper and hyper-util are the proxy engine: their HTTP/1 server (keep-alive, header
//! size and read-time limits, upgrades) and pooled client; the gateway adds only what
//! a gateway must decide: who calls, which session, whether to forward, and what to
//! strip on the way.

pub mod body;
pub mod config;
pub mod console;
pub mod console_api;
pub mod framing;
pub mod headers;
pub mod identity;
pub mod proxy;
pub mod server;
pub mod sessions;
pub mod signin;
#[cfg(feature = "testing")]
pub mod testing;

pub use config::Config;
pub use identity::{Identity, PublicKeys, Verifier};
pub use server::{serve, Gateway};
pub use sessions::{DynamoSessions, MemorySessions, SessionLookup, SessionRoute};
