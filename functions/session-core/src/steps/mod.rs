//! The lifecycle steps, one per function, over the ports.

pub mod authorize;
pub mod launch;
pub mod reap;
pub mod record;
pub mod request_stop;
pub mod start;
pub mod stop;
pub mod task_events;
pub mod wait_for_ip;
