//! Where a session's services are and whose they are: the session look-up port, its
//! DynamoDB adapter, an in-memory twin, and the short cache in front of either.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::AttributeValue;
use session_core::session::SessionId;

/// What the gateway needs of a session item.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionRoute {
    pub user_id: String,
    pub status: String,
    pub private_ip: Ipv4Addr,
    /// The container port of each url_key.
    pub service_ports: BTreeMap<String, u16>,
}

impl SessionRoute {
    /// The only status whose services are reached.
    pub const RUNNING: &'static str = "running";
}

#[derive(Debug, thiserror::Error)]
#[error("session look-up failed: {0}")]
pub struct LookupError(pub String);

/// Looks sessions up by id.
pub trait SessionLookup: Send + Sync + 'static {
    /// The session's route; `None` if there is no such session or it has no address
    /// yet (both are refused alike).
    fn get(
        &self,
        id: &SessionId,
    ) -> impl Future<Output = Result<Option<SessionRoute>, LookupError>> + Send;
}

/// The attributes read, and all the gateway's IAM policy lets it read
/// (`dynamodb:Attributes`, with the key `session_id`).
pub const ATTRIBUTES: &[&str] = &["user_id", "status", "private_ip", "service_ports"];

/// The sessions table.
#[derive(Clone, Debug)]
pub struct DynamoSessions {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

impl DynamoSessions {
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }
}

impl SessionLookup for DynamoSessions {
    async fn get(&self, id: &SessionId) -> Result<Option<SessionRoute>, LookupError> {
        // A projection is what makes the request select specific attributes, as the
        // policy's `dynamodb:Select` condition requires; `status` is a reserved word.
        // Eventually consistent: a stop is seen within a second, well inside the 5 s
        // a stopped session may keep access, at half the cost.
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("session_id", AttributeValue::S(id.as_str().to_owned()))
            .projection_expression("user_id, #s, private_ip, service_ports")
            .expression_attribute_names("#s", "status")
            .consistent_read(false)
            .send()
            .await
            .map_err(|e| {
                LookupError(format!(
                    "GetItem: {}",
                    aws_sdk_dynamodb::error::DisplayErrorContext(e)
                ))
            })?;
        let Some(item) = output.item else {
            return Ok(None);
        };
        Ok(route_from_item(&item))
    }
}

/// The route in a session item; `None` if an attribute is missing or malformed (a
/// session still starting has no address).
fn route_from_item(item: &HashMap<String, AttributeValue>) -> Option<SessionRoute> {
    let string = |name: &str| item.get(name)?.as_s().ok().cloned();
    let private_ip = string("private_ip")?.parse().ok()?;
    let service_ports = item
        .get("service_ports")?
        .as_m()
        .ok()?
        .iter()
        .map(|(key, port)| Some((key.clone(), port.as_n().ok()?.parse().ok()?)))
        .collect::<Option<_>>()?;
    Some(SessionRoute {
        user_id: string("user_id")?,
        status: string("status")?,
        private_ip,
        service_ports,
    })
}

/// Sessions in memory: the twin of [`DynamoSessions`] for tests and the local stack.
#[derive(Clone, Default)]
pub struct MemorySessions {
    routes: Arc<Mutex<HashMap<SessionId, SessionRoute>>>,
    gets: Arc<AtomicUsize>,
}

impl MemorySessions {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn insert(&self, id: SessionId, route: SessionRoute) {
        self.lock().insert(id, route);
    }

    pub fn remove(&self, id: &SessionId) {
        self.lock().remove(id);
    }

    /// Changes a session's status, as the lifecycle functions do.
    pub fn set_status(&self, id: &SessionId, status: &str) {
        if let Some(route) = self.lock().get_mut(id) {
            route.status = status.to_owned();
        }
    }

    /// How many look-ups reached this store.
    pub fn gets(&self) -> usize {
        self.gets.load(Ordering::SeqCst)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<SessionId, SessionRoute>> {
        self.routes.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl SessionLookup for MemorySessions {
    async fn get(&self, id: &SessionId) -> Result<Option<SessionRoute>, LookupError> {
        self.gets.fetch_add(1, Ordering::SeqCst);
        Ok(self.lock().get(id).cloned())
    }
}

/// A look-up with its answers, found or not, kept for `ttl`; errors are not kept.
///
/// One read refreshes an expired answer: the requests that find it expired while
/// that read runs get the expired answer if it is younger than `ttl` + [`Self::grace`]
/// (so at most that long after a session stops, never longer), and wait for the read
/// otherwise. Without this, every request for a busy session arriving during the
/// read did a read of its own (the benchmark saw 25-140 reads per second of one
/// session at 1 s TTL), and each of them waited on the table: the gateway's p99.
pub struct CachedLookup<L> {
    inner: L,
    ttl: Duration,
    entries: Mutex<HashMap<SessionId, (Instant, Option<SessionRoute>)>>,
    /// Who refreshes what: one lock per stripe of session ids, held for a read.
    refreshing: Vec<tokio::sync::Mutex<()>>,
}

impl<L: SessionLookup> CachedLookup<L> {
    /// Sessions kept at most; a full cache first drops what has expired, then anything.
    pub const CAPACITY: usize = 10_000;
    /// Stripes of refresh locks: reads of different sessions rarely wait on each other.
    const STRIPES: usize = 64;

    pub fn new(inner: L, ttl: Duration) -> Self {
        Self {
            inner,
            ttl,
            entries: Mutex::new(HashMap::new()),
            refreshing: (0..Self::STRIPES)
                .map(|_| tokio::sync::Mutex::new(()))
                .collect(),
        }
    }

    /// How long past its TTL an answer may still be served while a read refreshes it:
    /// the TTL itself, at most 1 s.
    pub fn grace(&self) -> Duration {
        self.ttl.min(Duration::from_secs(1))
    }

    pub async fn get(&self, id: &SessionId) -> Result<Option<SessionRoute>, LookupError> {
        if self.ttl.is_zero() {
            return self.inner.get(id).await;
        }
        let cached = self.lock().get(id).cloned();
        if let Some((at, route)) = &cached {
            if at.elapsed() < self.ttl {
                return Ok(route.clone());
            }
        }
        let stripe = &self.refreshing[stripe_of(id, self.refreshing.len())];
        let _refreshing = match stripe.try_lock() {
            Ok(guard) => guard,
            Err(_) => {
                if let Some((at, route)) = cached {
                    if at.elapsed() < self.ttl + self.grace() {
                        return Ok(route);
                    }
                }
                stripe.lock().await
            }
        };
        // The read this request waited for may have answered already.
        if let Some((at, route)) = self.lock().get(id) {
            if at.elapsed() < self.ttl {
                return Ok(route.clone());
            }
        }
        let route = self.inner.get(id).await?;
        let mut entries = self.lock();
        if entries.len() >= Self::CAPACITY && !entries.contains_key(id) {
            let keep = self.ttl + self.grace();
            entries.retain(|_, (at, _)| at.elapsed() < keep);
            if entries.len() >= Self::CAPACITY {
                if let Some(any) = entries.keys().next().cloned() {
                    entries.remove(&any);
                }
            }
        }
        entries.insert(id.clone(), (Instant::now(), route.clone()));
        Ok(route)
    }

    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<SessionId, (Instant, Option<SessionRoute>)>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn stripe_of(id: &SessionId, stripes: usize) -> usize {
    use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
    let hash = BuildHasherDefault::<DefaultHasher>::default().hash_one(id.as_str());
    (hash % stripes as u64) as usize
}

#[cfg(test)]
mod tests {
    use aws_smithy_mocks::{mock, mock_client};

    use super::*;

    fn id() -> SessionId {
        SessionId::parse("sess-0193abcd0193abcd0193abcd0193abcd").unwrap()
    }

    fn item(pairs: &[(&str, AttributeValue)]) -> HashMap<String, AttributeValue> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect()
    }

    fn running_item() -> HashMap<String, AttributeValue> {
        item(&[
            ("user_id", AttributeValue::S("user-1".into())),
            ("status", AttributeValue::S("running".into())),
            ("private_ip", AttributeValue::S("10.0.1.23".into())),
            (
                "service_ports",
                AttributeValue::M(HashMap::from([
                    ("api".to_owned(), AttributeValue::N("8000".into())),
                    ("suv_ui".to_owned(), AttributeValue::N("3030".into())),
                ])),
            ),
        ])
    }

    #[tokio::test]
    async fn the_table_is_read_with_only_the_attributes_the_policy_allows() {
        let get = mock!(aws_sdk_dynamodb::Client::get_item)
            .match_requests(|r| {
                r.table_name() == Some("sessions")
                    && r.key().and_then(|k| k.get("session_id"))
                        == Some(&AttributeValue::S(id().to_string()))
                    && r.projection_expression() == Some("user_id, #s, private_ip, service_ports")
                    && r.expression_attribute_names()
                        == Some(&HashMap::from([("#s".to_owned(), "status".to_owned())]))
                    && r.consistent_read() == Some(false)
                    && r.attributes_to_get().is_empty()
            })
            .then_output(|| {
                aws_sdk_dynamodb::operation::get_item::GetItemOutput::builder()
                    .set_item(Some(running_item()))
                    .build()
            });
        let sessions = DynamoSessions::new(mock_client!(aws_sdk_dynamodb, [&get]), "sessions");
        let route = sessions.get(&id()).await.unwrap().unwrap();
        assert_eq!(
            route,
            SessionRoute {
                user_id: "user-1".into(),
                status: "running".into(),
                private_ip: Ipv4Addr::new(10, 0, 1, 23),
                service_ports: BTreeMap::from([("api".into(), 8000), ("suv_ui".into(), 3030)]),
            }
        );
        assert_eq!(get.num_calls(), 1);
    }

    #[tokio::test]
    async fn a_missing_item_is_no_session() {
        let get = mock!(aws_sdk_dynamodb::Client::get_item).then_output(|| {
            aws_sdk_dynamodb::operation::get_item::GetItemOutput::builder().build()
        });
        let sessions = DynamoSessions::new(mock_client!(aws_sdk_dynamodb, [&get]), "sessions");
        assert_eq!(sessions.get(&id()).await.unwrap(), None);
    }

    #[test]
    fn an_item_without_an_address_or_with_bad_attributes_has_no_route() {
        assert!(route_from_item(&running_item()).is_some());
        for (name, value) in [
            ("private_ip", None),
            ("private_ip", Some(AttributeValue::S("fd00::1".into()))),
            ("private_ip", Some(AttributeValue::S("10.0.0.300".into()))),
            ("service_ports", None),
            (
                "service_ports",
                Some(AttributeValue::M(HashMap::from([(
                    "api".to_owned(),
                    AttributeValue::N("70000".into()),
                )]))),
            ),
            ("user_id", None),
            ("status", Some(AttributeValue::N("1".into()))),
        ] {
            let mut item = running_item();
            match value {
                Some(value) => item.insert(name.to_owned(), value),
                None => item.remove(name),
            };
            assert_eq!(route_from_item(&item), None, "{name}");
        }
    }

    fn route(status: &str) -> SessionRoute {
        SessionRoute {
            user_id: "user-1".into(),
            status: status.into(),
            private_ip: Ipv4Addr::LOCALHOST,
            service_ports: BTreeMap::from([("api".into(), 8000)]),
        }
    }

    #[tokio::test]
    async fn answers_found_or_not_are_cached_until_the_ttl_ends() {
        let memory = MemorySessions::new();
        let cache = CachedLookup::new(memory.clone(), Duration::from_millis(200));
        let other = SessionId::parse("sess-other").unwrap();
        assert_eq!(cache.get(&other).await.unwrap(), None);
        assert_eq!(cache.get(&other).await.unwrap(), None);
        assert_eq!(memory.gets(), 1);

        memory.insert(id(), route("running"));
        assert_eq!(cache.get(&id()).await.unwrap().unwrap().status, "running");
        memory.set_status(&id(), "stopped");
        assert_eq!(cache.get(&id()).await.unwrap().unwrap().status, "running");
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if cache.get(&id()).await.unwrap().unwrap().status == "stopped" {
                break;
            }
            assert!(Instant::now() < deadline, "the cached answer never expired");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// A look-up that takes a while, as a table read does, counting its reads.
    #[derive(Clone)]
    struct SlowLookup {
        memory: MemorySessions,
        delay: Duration,
    }

    impl SessionLookup for SlowLookup {
        async fn get(&self, id: &SessionId) -> Result<Option<SessionRoute>, LookupError> {
            tokio::time::sleep(self.delay).await;
            self.memory.get(id).await
        }
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn an_expired_answer_is_refreshed_by_one_read_however_many_ask() {
        let memory = MemorySessions::new();
        memory.insert(id(), route("running"));
        let ttl = Duration::from_millis(100);
        let cache = Arc::new(CachedLookup::new(
            SlowLookup {
                memory: memory.clone(),
                delay: Duration::from_millis(50),
            },
            ttl,
        ));
        cache.get(&id()).await.unwrap();
        assert_eq!(memory.gets(), 1);
        tokio::time::sleep(ttl).await;
        let askers: Vec<_> = (0..50)
            .map(|_| {
                let cache = cache.clone();
                tokio::spawn(async move { cache.get(&id()).await.unwrap().unwrap().status })
            })
            .collect();
        for asker in askers {
            assert_eq!(asker.await.unwrap(), "running");
        }
        assert_eq!(memory.gets(), 2, "50 requests after expiry, one read");
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_stopped_session_is_seen_within_the_ttl_and_its_grace() {
        let memory = MemorySessions::new();
        memory.insert(id(), route("running"));
        let ttl = Duration::from_millis(100);
        let cache = Arc::new(CachedLookup::new(
            SlowLookup {
                memory: memory.clone(),
                delay: Duration::from_millis(20),
            },
            ttl,
        ));
        cache.get(&id()).await.unwrap();
        memory.set_status(&id(), "stopped");
        let stopped = Instant::now();
        let bound = ttl + cache.grace() + Duration::from_millis(20);
        loop {
            let status = cache.get(&id()).await.unwrap().unwrap().status;
            if status == "stopped" {
                break;
            }
            assert!(
                stopped.elapsed() < bound + Duration::from_millis(500),
                "still {status} {:?} after the stop",
                stopped.elapsed()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    #[tokio::test]
    async fn a_zero_ttl_reads_through() {
        let memory = MemorySessions::new();
        let cache = CachedLookup::new(memory.clone(), Duration::ZERO);
        memory.insert(id(), route("running"));
        cache.get(&id()).await.unwrap();
        cache.get(&id()).await.unwrap();
        assert_eq!(memory.gets(), 2);
    }
}
