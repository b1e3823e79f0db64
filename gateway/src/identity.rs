//! Who is calling: the load balancer's signed `x-amzn-oidc-data` token, verified as
//! AWS documents it for an Application Load Balancer that signs users in with OIDC.
//!
//! The token looks like a JWT but is not a standard one: its three base64url segments
//! may carry `=` padding, and the ALB signs the header and payload *as sent*, padding
//! included. So the signature is checked over the received `header.payload` bytes
//! (stripping the padding first, as JWT libraries would need, breaks every real
//! token), and the segments are decoded with padding allowed. The header carries
//! `alg` (ES256), `kid`, `signer` (the load balancer's ARN), `iss`, `client` and
//! `exp`; the public key of `kid` is at `{keys_url}/{kid}` as a PEM.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Deserialize;
use tokio::sync::OnceCell;

/// The request header the ALB puts the signed user claims in.
pub const OIDC_DATA_HEADER: &str = "x-amzn-oidc-data";

/// Clock skew allowed on `exp`.
const LEEWAY_S: u64 = 5;

/// Longer tokens are refused before any decoding.
const MAX_TOKEN_LEN: usize = 16 * 1024;

/// base64url that takes segments with or without `=` padding.
const SEGMENT: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// The verified caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// The token's `sub`: the same claim the API identifies users by
    /// ([`session_core::config::IDENTITY_CLAIM`]).
    pub user_id: String,
}

/// Why a token was refused. Every variant answers the same 401; the variant is for
/// logs and tests only and never holds any part of the token.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Rejected {
    #[error("no identity token")]
    Missing,
    #[error("the token is not three base64url segments of JSON")]
    Malformed,
    #[error("the token is not ES256")]
    Algorithm,
    #[error("the token was signed by another load balancer")]
    Signer,
    #[error("the token's key id is not valid")]
    KeyId,
    #[error("the token's key is unknown")]
    UnknownKey,
    #[error("the token's signature does not verify")]
    Signature,
    #[error("the token has expired")]
    Expired,
    #[error("the token names no subject")]
    NoSubject,
}

impl Rejected {
    /// A short name of the reason, for the request's log line.
    pub fn as_str(self) -> &'static str {
        match self {
            Rejected::Missing => "no identity token",
            Rejected::Malformed => "malformed token",
            Rejected::Algorithm => "token algorithm",
            Rejected::Signer => "token signer",
            Rejected::KeyId => "token key id",
            Rejected::UnknownKey => "token key unknown",
            Rejected::Signature => "token signature",
            Rejected::Expired => "token expired",
            Rejected::NoSubject => "token subject",
        }
    }
}

#[derive(Deserialize)]
struct Header {
    alg: String,
    kid: String,
    signer: String,
    #[serde(default)]
    exp: Option<u64>,
}

#[derive(Deserialize)]
struct Claims {
    #[serde(default)]
    sub: Option<String>,
    exp: u64,
}

/// Verifies tokens signed by one load balancer.
pub struct Verifier {
    alb_arn: String,
    keys: PublicKeys,
}

impl Verifier {
    pub fn new(alb_arn: impl Into<String>, keys: PublicKeys) -> Self {
        Self {
            alb_arn: alb_arn.into(),
            keys,
        }
    }

    /// Verifies a token at the current time.
    pub async fn verify(&self, token: &str) -> Result<Identity, Rejected> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        self.verify_at(token, now).await
    }

    /// Verifies a token at `now` (seconds since the epoch).
    pub async fn verify_at(&self, token: &str, now: u64) -> Result<Identity, Rejected> {
        let token = token.trim();
        if token.is_empty() {
            return Err(Rejected::Missing);
        }
        if token.len() > MAX_TOKEN_LEN {
            return Err(Rejected::Malformed);
        }
        let mut segments = token.split('.');
        let (Some(header_b64), Some(payload_b64), Some(signature_b64), None) = (
            segments.next(),
            segments.next(),
            segments.next(),
            segments.next(),
        ) else {
            return Err(Rejected::Malformed);
        };
        let header: Header = decode_segment(header_b64)?;
        if header.alg != "ES256" {
            return Err(Rejected::Algorithm);
        }
        if header.signer != self.alb_arn {
            return Err(Rejected::Signer);
        }
        if !valid_kid(&header.kid) {
            return Err(Rejected::KeyId);
        }
        if header.exp.is_some_and(|exp| expired(exp, now)) {
            return Err(Rejected::Expired);
        }
        let key = self
            .keys
            .get(&header.kid)
            .await
            .ok_or(Rejected::UnknownKey)?;
        let signature = unpadded(signature_b64).ok_or(Rejected::Malformed)?;
        let signing_input = &token[..header_b64.len() + 1 + payload_b64.len()];
        let valid = jsonwebtoken::crypto::verify(
            signature,
            signing_input.as_bytes(),
            &key,
            Algorithm::ES256,
        )
        .unwrap_or(false);
        if !valid {
            return Err(Rejected::Signature);
        }
        let claims: Claims = decode_segment(payload_b64)?;
        if expired(claims.exp, now) {
            return Err(Rejected::Expired);
        }
        match claims.sub {
            Some(sub) if !sub.is_empty() => Ok(Identity { user_id: sub }),
            _ => Err(Rejected::NoSubject),
        }
    }
}

fn expired(exp: u64, now: u64) -> bool {
    exp.saturating_add(LEEWAY_S) < now
}

fn decode_segment<T: serde::de::DeserializeOwned>(segment: &str) -> Result<T, Rejected> {
    let bytes = SEGMENT.decode(segment).map_err(|_| Rejected::Malformed)?;
    serde_json::from_slice(&bytes).map_err(|_| Rejected::Malformed)
}

/// A segment without its padding, which must be at most two `=` at the end.
fn unpadded(segment: &str) -> Option<&str> {
    let trimmed = segment.trim_end_matches('=');
    (segment.len() - trimmed.len() <= 2 && !trimmed.is_empty()).then_some(trimmed)
}

/// `^[A-Za-z0-9-]{1,128}$`: all an ALB key id holds, and safe in a URL path.
pub fn valid_kid(kid: &str) -> bool {
    (1..=128).contains(&kid.len()) && kid.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// The load balancer's public keys by key id, fetched from `{url}/{kid}` on first use
/// and kept. A key id whose fetch failed is tried again only after
/// [`PublicKeys::RETRY_AFTER`], concurrent requests for one key id share one fetch, and
/// keys never seen before are fetched at most [`PublicKeys::NEW_KEYS_PER_MINUTE`] a
/// minute: a stream of forged key ids cannot make the gateway hammer the key endpoint.
#[derive(Clone)]
pub struct PublicKeys {
    inner: Arc<KeysInner>,
}

struct KeysInner {
    base_url: String,
    agent: ureq::Agent,
    slots: Mutex<Slots>,
}

struct Slots {
    by_kid: HashMap<String, Slot>,
    /// Fetches of key ids not in `by_kid` allowed now; refilled over time.
    budget: f64,
    refilled_at: Instant,
}

#[derive(Clone)]
struct Slot {
    key: Arc<OnceCell<Option<DecodingKey>>>,
    created: Instant,
}

impl PublicKeys {
    /// Key ids kept at most; an ALB uses a handful.
    pub const CAPACITY: usize = 64;
    /// How soon a key id whose fetch failed may be fetched again.
    pub const RETRY_AFTER: Duration = Duration::from_secs(5);
    /// Fetches of key ids not seen before, at most, per minute (in bursts of as many).
    pub const NEW_KEYS_PER_MINUTE: f64 = 30.0;
    const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
    const MAX_KEY_BYTES: u64 = 16 * 1024;

    /// Keys served at `{base_url}/{kid}`.
    pub fn new(base_url: impl Into<String>) -> Self {
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(Self::FETCH_TIMEOUT))
            .http_status_as_error(true)
            .build()
            .into();
        Self {
            inner: Arc::new(KeysInner {
                base_url: base_url.into().trim_end_matches('/').to_owned(),
                agent,
                slots: Mutex::new(Slots {
                    by_kid: HashMap::new(),
                    budget: Self::NEW_KEYS_PER_MINUTE,
                    refilled_at: Instant::now(),
                }),
            }),
        }
    }

    /// The key of a (valid) key id, or `None` if it cannot be had now.
    pub async fn get(&self, kid: &str) -> Option<DecodingKey> {
        let slot = self.slot(kid)?;
        let inner = Arc::clone(&self.inner);
        let kid = kid.to_owned();
        slot.key
            .get_or_init(|| async move {
                let url = format!("{}/{kid}", inner.base_url);
                let fetched =
                    tokio::task::spawn_blocking(move || fetch_pem(&inner.agent, &url)).await;
                let key = fetched
                    .ok()
                    .flatten()
                    .and_then(|pem| DecodingKey::from_ec_pem(&pem).ok());
                if key.is_none() {
                    tracing::warn!(kid = %kid, "could not fetch the load balancer's public key");
                }
                key
            })
            .await
            .clone()
    }

    fn slot(&self, kid: &str) -> Option<Slot> {
        let mut slots = self.inner.slots.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if let Some(slot) = slots.by_kid.get(kid) {
            let failed = matches!(slot.key.get(), Some(None));
            if !failed || now.duration_since(slot.created) < Self::RETRY_AFTER {
                return Some(slot.clone());
            }
        }
        let elapsed = now.duration_since(slots.refilled_at).as_secs_f64();
        slots.budget = (slots.budget + elapsed * Self::NEW_KEYS_PER_MINUTE / 60.0)
            .min(Self::NEW_KEYS_PER_MINUTE);
        slots.refilled_at = now;
        if slots.budget < 1.0 {
            return None;
        }
        slots.budget -= 1.0;
        if slots.by_kid.len() >= Self::CAPACITY && !slots.by_kid.contains_key(kid) {
            slots.evict_one();
        }
        let slot = Slot {
            key: Arc::new(OnceCell::new()),
            created: now,
        };
        slots.by_kid.insert(kid.to_owned(), slot.clone());
        Some(slot)
    }
}

impl Slots {
    /// Drops a failed key id if there is one, else the oldest.
    fn evict_one(&mut self) {
        let victim = self
            .by_kid
            .iter()
            .min_by_key(|(_, slot)| (!matches!(slot.key.get(), Some(None)), slot.created))
            .map(|(kid, _)| kid.clone());
        if let Some(kid) = victim {
            self.by_kid.remove(&kid);
        }
    }
}

fn fetch_pem(agent: &ureq::Agent, url: &str) -> Option<Vec<u8>> {
    let mut response = agent.get(url).call().ok()?;
    response
        .body_mut()
        .with_config()
        .limit(PublicKeys::MAX_KEY_BYTES)
        .read_to_vec()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_ids_that_could_change_the_url_are_refused() {
        assert!(valid_kid("8b9a3a1c-1234-4d2e-9f00-abcdefabcdef"));
        for kid in ["", "../x", "a/b", "a?b", "a%2f", "a.b", &"a".repeat(129)] {
            assert!(!valid_kid(kid), "{kid:?}");
        }
    }

    #[test]
    fn padding_is_at_most_two_equals_signs() {
        assert_eq!(unpadded("abc=="), Some("abc"));
        assert_eq!(unpadded("abcd"), Some("abcd"));
        assert_eq!(unpadded("abc==="), None);
        assert_eq!(unpadded("=="), None);
    }

    #[test]
    fn expiry_allows_five_seconds_of_skew() {
        assert!(!expired(100, 105));
        assert!(expired(100, 106));
        assert!(!expired(u64::MAX, 0));
    }
}
