//! The lifecycle steps over the ports: one per function, plus `start` (the api's:
//! admission through `authorize`, then the execution) and `request_stop` (shared by
//! the api, the reaper and task-events).

pub mod authorize;
pub mod launch;
pub mod reap;
pub mod record;
pub mod request_stop;
pub mod start;
pub mod stop;
pub mod task_events;
pub mod wait_for_ip;
