//! AWS's API rate limits on the local stack: token buckets of AWS's documented sizes
//! and refill rates in front of the product's calls, answering as each service does
//! when it throttles (`RATE_LIMITS` and `patch_rate_limits` in
//! `tests/harness/moto_server.py`, where each figure cites its page). Off until a test,
//! or `LOCAL_RATE_LIMITS` for `make local`, switches them on. The harness's own calls
//! are never throttled ([`crate::HARNESS_APP`]).

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use serde::Deserialize;
use serde_json::json;

use crate::Stack;

/// What the rate limits did since they were last set, per bucket (`ecs.RunTask`,
/// `fargate.TaskLaunch`, `ecs.RegisterTaskDefinition`, `ecs.ClusterResourceRead`,
/// `dynamodb.ItemWrite`, ...).
#[derive(Clone, Debug, Default, Deserialize)]
pub struct RateLimitCounts {
    /// The factor every bucket size and refill rate was multiplied by.
    pub scale: f64,
    pub buckets: BTreeMap<String, BucketCounts>,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct BucketCounts {
    /// The bucket's size (the burst) and refill rate a second, scaled.
    pub burst: f64,
    pub refill: f64,
    /// Tokens taken: calls, or tasks launched (`fargate.TaskLaunch`), or item writes
    /// (`dynamodb.ItemWrite`).
    pub allowed: u64,
    /// Calls answered with the service's throttling error.
    pub throttled: u64,
}

impl RateLimitCounts {
    pub fn allowed(&self, bucket: &str) -> u64 {
        self.buckets.get(bucket).map_or(0, |b| b.allowed)
    }

    pub fn throttled(&self, bucket: &str) -> u64 {
        self.buckets.get(bucket).map_or(0, |b| b.throttled)
    }

    pub fn total_throttled(&self) -> u64 {
        self.buckets.values().map(|b| b.throttled).sum()
    }
}

/// The buckets that saw calls, one a line.
impl fmt::Display for RateLimitCounts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{:<32} {:>8} {:>8} {:>8} {:>9}",
            format!("bucket (scale {})", self.scale),
            "burst",
            "refill/s",
            "allowed",
            "throttled"
        )?;
        for (name, b) in &self.buckets {
            if b.allowed + b.throttled > 0 {
                writeln!(
                    f,
                    "{name:<32} {:>8} {:>8} {:>8} {:>9}",
                    b.burst, b.refill, b.allowed, b.throttled
                )?;
            }
        }
        Ok(())
    }
}

impl Stack {
    /// Puts AWS's API rate limits in front of the product's calls, every bucket size
    /// and refill rate multiplied by `scale` (1.0: AWS's documented defaults); `None`
    /// takes them away. A new setting starts afresh: buckets full, counts zero. Set
    /// beside the faults already set.
    pub fn set_rate_limits(&self, scale: Option<f64>) {
        let mut faults = self.read_faults();
        if !faults.is_object() {
            faults = json!({});
        }
        match scale {
            Some(scale) => faults["rate_limits"] = json!({ "scale": scale }),
            None => {
                faults.as_object_mut().map(|f| f.remove("rate_limits"));
            }
        }
        self.set_faults(faults);
    }

    /// What the rate limits let through and refused since they were last set (empty
    /// before any limited call).
    pub fn rate_limit_counts(&self) -> RateLimitCounts {
        std::fs::read(self.rate_limit_counts_path())
            .ok()
            .and_then(|raw| serde_json::from_slice(&raw).ok())
            .unwrap_or_default()
    }

    /// The file the emulator keeps [`Stack::rate_limit_counts`] in, as JSON.
    pub fn rate_limit_counts_path(&self) -> PathBuf {
        self.dir.path().join("faults.json.rate-limits.json")
    }
}
