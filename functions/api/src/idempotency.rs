use lambda_http::http::StatusCode;
use sha2::{Digest, Sha256};

use session_core::session::{Session, SessionId, SESSION_ID_PREFIX};

use crate::error::ApiError;
use crate::http::parse_session_id;

const MAX_IDEMPOTENCY_KEY_LEN: usize = 128;

/// A start's session id when the client sent an `Idempotency-Key`: the same key of the
/// same user always names the same session, so a repeat can never make a second one.
pub fn idempotent_session_id(user_id: &str, key: &str) -> Result<SessionId, ApiError> {
    let valid = !key.is_empty()
        && key.len() <= MAX_IDEMPOTENCY_KEY_LEN
        && key.bytes().all(|b| b.is_ascii_graphic());
    if !valid {
        return Err(ApiError::bad_request(
            "invalid_idempotency_key",
            format!(
                "the Idempotency-Key header must be 1 to {MAX_IDEMPOTENCY_KEY_LEN} visible ASCII characters"
            ),
        ));
    }
    let digest = Sha256::new()
        .chain_update(user_id.as_bytes())
        .chain_update([0u8])
        .chain_update(key.as_bytes())
        .finalize();
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    parse_session_id(&format!("{SESSION_ID_PREFIX}{hex}"))
}

pub(crate) fn idempotency_key_reused(first: &Session) -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        "idempotency_key_reused",
        format!(
            "this Idempotency-Key started session {} with version {}",
            first.session_id, first.version
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_idempotency_key_names_one_session_per_user() {
        let a = idempotent_session_id("alice", "k-1").unwrap();
        assert_eq!(a, idempotent_session_id("alice", "k-1").unwrap());
        assert_ne!(a, idempotent_session_id("bob", "k-1").unwrap());
        assert_ne!(a, idempotent_session_id("alice", "k-2").unwrap());
        assert!(a.as_str().starts_with(SESSION_ID_PREFIX));
        for bad in ["", "with space", &"k".repeat(129), "é"] {
            assert_eq!(
                idempotent_session_id("alice", bad).unwrap_err().code,
                "invalid_idempotency_key"
            );
        }
    }
}
