use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use session_core::config::Secret;
use session_core::ports::PageCursor;
use session_core::session::timestamp;

use crate::error::ApiError;

/// Far more than a token of this API takes (about 220 characters); anything longer is
/// refused before it is decoded.
const MAX_PAGE_TOKEN_LEN: usize = 512;

/// Whose listing a page token belongs to: the caller who was given it and the user
/// whose sessions it pages through.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Listing<'a> {
    pub(crate) caller: &'a str,
    pub(crate) user: &'a str,
}

/// The length of a page token's MAC (HMAC-SHA256).
const PAGE_MAC_LEN: usize = 32;

/// The MAC of a token's JSON for one listing. User ids hold no control characters,
/// so the NUL separators make the data unambiguous.
fn page_mac(key: &Secret, listing: Listing<'_>, json: &[u8]) -> Hmac<Sha256> {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key.bytes())
        .expect("HMAC takes keys of any length");
    for part in [
        listing.caller.as_bytes(),
        b"\0",
        listing.user.as_bytes(),
        b"\0",
        json,
    ] {
        mac.update(part);
    }
    mac
}

/// A page token: base64url of the HMAC-SHA256 of the cursor for the listing it was
/// given in, then the cursor as JSON. DynamoDB refuses a start key that is not a key
/// of the index (a 500 here), so only tokens this API gave, to this caller for this
/// listing, are accepted.
pub(crate) fn encode_cursor(key: &Secret, listing: Listing<'_>, cursor: &PageCursor) -> String {
    let json = serde_json::to_vec(cursor).unwrap_or_default();
    let mut token = page_mac(key, listing, &json)
        .finalize()
        .into_bytes()
        .to_vec();
    token.extend(json);
    URL_SAFE_NO_PAD.encode(token)
}

pub(crate) fn decode_cursor(
    key: &Secret,
    listing: Listing<'_>,
    token: &str,
) -> Result<PageCursor, ApiError> {
    let invalid = || {
        ApiError::bad_request(
            "invalid_parameter",
            "next_token is not a token this API gave",
        )
    };
    if token.len() > MAX_PAGE_TOKEN_LEN {
        return Err(invalid());
    }
    let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| invalid())?;
    if bytes.len() < PAGE_MAC_LEN {
        return Err(invalid());
    }
    let (mac, json) = bytes.split_at(PAGE_MAC_LEN);
    page_mac(key, listing, json)
        .verify_slice(mac)
        .map_err(|_| invalid())?;
    // Even a token that carries a valid MAC is checked, so a leaked key cannot send
    // DynamoDB a start key in a form the index never holds. `SessionId` checks itself.
    let cursor: PageCursor = serde_json::from_slice(json).map_err(|_| invalid())?;
    if !is_table_timestamp(&cursor.created_at) {
        return Err(invalid());
    }
    Ok(cursor)
}

/// Whether `raw` is a timestamp exactly as the tables hold them ([`timestamp`]).
fn is_table_timestamp(raw: &str) -> bool {
    raw.len() <= 32
        && chrono::DateTime::parse_from_rfc3339(raw)
            .is_ok_and(|at| timestamp(at.with_timezone(&chrono::Utc)) == raw)
}

#[cfg(test)]
pub(crate) mod tests {
    use lambda_http::http::StatusCode;

    use session_core::session::SessionId;

    use super::*;
    use crate::fake;

    const ALICE: Listing<'static> = Listing {
        caller: "alice",
        user: "alice",
    };

    pub(crate) fn cursor() -> PageCursor {
        PageCursor {
            created_at: "2026-11-26T00:00:00.000Z".into(),
            session_id: SessionId::parse("sess-1").unwrap(),
        }
    }

    /// A token over any JSON, with a valid MAC: what a holder of the key could make.
    fn signed(listing: Listing<'_>, json: &str) -> String {
        let mut token = page_mac(&fake::cursor_key(), listing, json.as_bytes())
            .finalize()
            .into_bytes()
            .to_vec();
        token.extend(json.as_bytes());
        URL_SAFE_NO_PAD.encode(token)
    }

    /// A token over any JSON with a made-up MAC.
    fn forged(json: &str) -> String {
        let mut token = vec![0u8; PAGE_MAC_LEN];
        token.extend(json.as_bytes());
        URL_SAFE_NO_PAD.encode(token)
    }

    fn refused(listing: Listing<'_>, token: &str) -> bool {
        decode_cursor(&fake::cursor_key(), listing, token)
            .is_err_and(|e| e.status == StatusCode::BAD_REQUEST && e.code == "invalid_parameter")
    }

    #[test]
    fn a_page_token_of_this_api_round_trips() {
        let key = fake::cursor_key();
        let token = encode_cursor(&key, ALICE, &cursor());
        assert!(token.len() <= MAX_PAGE_TOKEN_LEN);
        assert_eq!(decode_cursor(&key, ALICE, &token).unwrap(), cursor());
        assert_eq!(
            decode_cursor(
                &key,
                ALICE,
                &signed(ALICE, &serde_json::to_string(&cursor()).unwrap())
            )
            .unwrap(),
            cursor()
        );
    }

    #[test]
    fn a_page_token_with_a_flipped_byte_is_a_400() {
        let token = encode_cursor(&fake::cursor_key(), ALICE, &cursor());
        for at in 0..token.len() {
            let mut bytes = token.clone().into_bytes();
            bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
            let flipped = String::from_utf8(bytes).unwrap();
            assert!(refused(ALICE, &flipped), "byte {at}: {flipped}");
        }
    }

    #[test]
    fn a_page_token_of_another_user_or_listing_or_key_is_a_400() {
        let token = encode_cursor(&fake::cursor_key(), ALICE, &cursor());
        let bob = Listing {
            caller: "bob",
            user: "bob",
        };
        let bob_for_alice = Listing {
            caller: "bob",
            user: "alice",
        };
        let alice_for_bob = Listing {
            caller: "alice",
            user: "bob",
        };
        for other in [bob, bob_for_alice, alice_for_bob] {
            assert!(refused(other, &token), "{other:?}");
        }
        let other_key = Secret::new("another key of at least thirty-two bytes");
        assert!(decode_cursor(&other_key, ALICE, &token).is_err());
    }

    #[test]
    fn a_page_token_whose_json_holds_no_key_of_the_index_is_a_400_even_when_signed() {
        let long = "a".repeat(4096);
        let payloads = [
            r#"{"created_at":"2026-11-26T00:00:00.000Z","session_id":""}"#.to_owned(),
            format!(r#"{{"created_at":"2026-11-26T00:00:00.000Z","session_id":"{long}"}}"#),
            r#"{"created_at":"2026-11-26T00:00:00.000Z","session_id":"a b"}"#.to_owned(),
            r#"{"created_at":"","session_id":"sess-1"}"#.to_owned(),
            format!(r#"{{"created_at":"{long}","session_id":"sess-1"}}"#),
            r#"{"created_at":"2026-11-26","session_id":"sess-1"}"#.to_owned(),
            r#"{"created_at":"2026-11-26T00:00:00+01:00","session_id":"sess-1"}"#.to_owned(),
            r#"{"session_id":"sess-1"}"#.to_owned(),
            "not json".to_owned(),
        ];
        for json in &payloads {
            assert!(refused(ALICE, &forged(json)), "forged {json}");
            assert!(refused(ALICE, &signed(ALICE, json)), "signed {json}");
        }
    }

    #[test]
    fn a_page_token_that_is_not_base64_is_a_400() {
        let token = encode_cursor(&fake::cursor_key(), ALICE, &cursor());
        for bad in [
            "",
            ".",
            "%%%",
            "not base64!",
            &token[..token.len() - 1],
            &format!("{token}="),
            &format!("{token}.x"),
            &token[..PAGE_MAC_LEN],
        ] {
            assert!(refused(ALICE, bad), "{bad}");
        }
    }
}
