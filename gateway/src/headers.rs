//! What the gateway changes in the heads it forwards, and which request targets it
//! refuses to forward at all.

use std::net::IpAddr;

use hyper::header::{HeaderName, HeaderValue, CONNECTION, COOKIE, UPGRADE};
use hyper::HeaderMap;

use crate::signin::is_sign_in_cookie;

/// Hop-by-hop headers (RFC 9110 §7.6.1): they describe one connection, never the next.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// The ALB's sign-in session cookies, `AWSELBAuthSessionCookie-0`, `-1`, …
const ALB_COOKIE_PREFIX: &[u8] = b"awselbauthsessioncookie";

/// The headers the ALB puts the user's tokens in: `x-amzn-oidc-data`,
/// `x-amzn-oidc-accesstoken`, `x-amzn-oidc-identity`.
const OIDC_HEADER_PREFIX: &str = "x-amzn-oidc-";

/// Whether a request asks to switch protocols (a WebSocket, most often).
pub fn is_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(UPGRADE) && connection_tokens(headers).any(|t| t == "upgrade")
}

/// Removes the hop-by-hop headers, those the Connection header names, and every
/// `Proxy-*` header. For an upgrade, `Connection: upgrade` and `Upgrade` stay: they are
/// what the next hop must see.
pub fn remove_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) {
    let upgrade = keep_upgrade
        .then(|| headers.get(UPGRADE).cloned())
        .flatten();
    let named: Vec<String> = connection_tokens(headers)
        .filter(|name| !kept_whatever_connection_says(name))
        .collect();
    for name in named {
        headers.remove(name.as_str());
    }
    for name in HOP_BY_HOP {
        headers.remove(*name);
    }
    let proxy: Vec<HeaderName> = headers
        .keys()
        .filter(|name| name.as_str().starts_with("proxy-"))
        .cloned()
        .collect();
    for name in proxy {
        headers.remove(name);
    }
    if let Some(upgrade) = upgrade {
        headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(UPGRADE, upgrade);
    }
}

/// Headers a client must not strip by naming them in Connection: the load balancer's
/// account of who is calling and how (`Connection: x-forwarded-for` would otherwise
/// leave only the gateway's address in it), and the host.
fn kept_whatever_connection_says(name: &str) -> bool {
    name == "host" || name.starts_with("x-forwarded-") || name == "x-amzn-trace-id"
}

/// The header names listed in Connection headers, lowercased.
fn connection_tokens(headers: &HeaderMap) -> impl Iterator<Item = String> + '_ {
    headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty())
}

/// Removes what would hand the user's sign-in to the session's code: the ALB's token
/// headers, its session cookies and the gateway's own. Other cookies pass unchanged.
pub fn remove_credentials(headers: &mut HeaderMap) {
    let oidc: Vec<HeaderName> = headers
        .keys()
        .filter(|name| name.as_str().starts_with(OIDC_HEADER_PREFIX))
        .cloned()
        .collect();
    for name in oidc {
        headers.remove(name);
    }
    if !headers.contains_key(COOKIE) {
        return;
    }
    let kept: Vec<&[u8]> = headers
        .get_all(COOKIE)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b';'))
        .map(<[u8]>::trim_ascii)
        .filter(|pair| !pair.is_empty() && !is_alb_cookie(pair) && !is_sign_in_cookie(pair))
        .collect();
    let joined = kept.join(&b"; "[..]);
    headers.remove(COOKIE);
    // Made of bytes of valid header values joined by "; ", so always valid.
    if let Ok(value) = HeaderValue::from_bytes(&joined) {
        if !joined.is_empty() {
            headers.insert(COOKIE, value);
        }
    }
}

fn is_alb_cookie(pair: &[u8]) -> bool {
    let name = pair
        .split(|&b| b == b'=')
        .next()
        .unwrap_or_default()
        .trim_ascii();
    name.len() >= ALB_COOKIE_PREFIX.len()
        && name[..ALB_COOKIE_PREFIX.len()].eq_ignore_ascii_case(ALB_COOKIE_PREFIX)
}

/// Tells the session's service who asked and how: `X-Forwarded-For` gains the peer
/// (the load balancer, which put the client first), `X-Forwarded-Proto` stays the load
/// balancer's (`http` without one), `X-Forwarded-Host` is the requested host.
pub fn set_forwarded(headers: &mut HeaderMap, peer: IpAddr, host: &HeaderValue) {
    let xff = HeaderName::from_static("x-forwarded-for");
    let earlier: Vec<&str> = headers
        .get_all(&xff)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .collect();
    let peer = peer.to_string();
    let chain = if earlier.is_empty() {
        peer
    } else {
        format!("{}, {peer}", earlier.join(", "))
    };
    if let Ok(chain) = HeaderValue::from_str(&chain) {
        headers.insert(xff, chain);
    }
    headers
        .entry(HeaderName::from_static("x-forwarded-proto"))
        .or_insert(HeaderValue::from_static("http"));
    headers.insert(HeaderName::from_static("x-forwarded-host"), host.clone());
}

/// Whether a path may be forwarded: no `.` or `..` segment, even percent-encoded, no
/// encoded `/` or `\`, no `\`. A session's service would resolve them, and some
/// resolve them outside what they serve.
pub fn safe_path(path: &str) -> bool {
    if !path.starts_with('/') || path.contains('\\') {
        return false;
    }
    let lower = path.to_ascii_lowercase();
    if lower.contains("%2f") || lower.contains("%5c") {
        return false;
    }
    !lower.split('/').any(|segment| {
        let dots = segment.replace("%2e", ".");
        dots == "." || dots == ".."
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        map
    }

    #[test]
    fn hop_by_hop_headers_and_those_connection_names_are_removed() {
        let mut h = headers(&[
            ("connection", "keep-alive, X-Secret"),
            ("keep-alive", "timeout=5"),
            ("x-secret", "s"),
            ("te", "trailers"),
            ("trailer", "x"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "h2c"),
            ("proxy-authorization", "Basic x"),
            ("proxy-connection", "keep-alive"),
            ("accept", "*/*"),
        ]);
        remove_hop_by_hop(&mut h, false);
        assert_eq!(h, headers(&[("accept", "*/*")]));
    }

    #[test]
    fn connection_cannot_strip_what_the_load_balancer_says_about_the_caller() {
        let mut h = headers(&[
            (
                "connection",
                "X-Forwarded-For, x-forwarded-proto, Host, x-amzn-trace-id, x-app",
            ),
            ("x-forwarded-for", "203.0.113.7"),
            ("x-forwarded-proto", "https"),
            ("host", "api--s.example.com"),
            ("x-amzn-trace-id", "Root=1"),
            ("x-app", "gone"),
        ]);
        remove_hop_by_hop(&mut h, false);
        assert_eq!(
            h,
            headers(&[
                ("x-forwarded-for", "203.0.113.7"),
                ("x-forwarded-proto", "https"),
                ("host", "api--s.example.com"),
                ("x-amzn-trace-id", "Root=1"),
            ])
        );
    }

    #[test]
    fn an_upgrade_keeps_its_connection_and_upgrade_headers() {
        let mut h = headers(&[
            ("connection", "Upgrade, keep-alive"),
            ("upgrade", "websocket"),
            ("sec-websocket-key", "k"),
        ]);
        assert!(is_upgrade(&h));
        remove_hop_by_hop(&mut h, true);
        assert_eq!(
            h,
            headers(&[
                ("sec-websocket-key", "k"),
                ("connection", "upgrade"),
                ("upgrade", "websocket"),
            ])
        );
        assert!(!is_upgrade(&headers(&[("upgrade", "websocket")])));
        assert!(!is_upgrade(&headers(&[("connection", "upgrade")])));
    }

    #[test]
    fn the_users_tokens_and_the_alb_and_gateway_sign_in_cookies_are_removed() {
        let mut h = headers(&[
            ("x-amzn-oidc-data", "t"),
            ("x-amzn-oidc-accesstoken", "t"),
            ("x-amzn-oidc-identity", "u"),
            ("x-amzn-trace-id", "Root=1"),
            (
                "cookie",
                "AWSELBAuthSessionCookie-0=abc; theme=dark; awselbauthsessioncookie-1=def",
            ),
            ("cookie", "sid=42; __Host-session-gateway=1.dQ.mac"),
        ]);
        remove_credentials(&mut h);
        assert_eq!(
            h,
            headers(&[
                ("x-amzn-trace-id", "Root=1"),
                ("cookie", "theme=dark; sid=42")
            ])
        );
        let mut only_alb = headers(&[("cookie", "AWSELBAuthSessionCookie-0=abc")]);
        remove_credentials(&mut only_alb);
        assert!(only_alb.is_empty());
    }

    #[test]
    fn forwarded_headers_extend_what_the_load_balancer_set() {
        let host = HeaderValue::from_static("api--sess-1.example.com");
        let mut h = headers(&[
            ("x-forwarded-for", "203.0.113.7"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "evil.example.com"),
        ]);
        set_forwarded(&mut h, "10.0.0.5".parse().unwrap(), &host);
        assert_eq!(
            h,
            headers(&[
                ("x-forwarded-for", "203.0.113.7, 10.0.0.5"),
                ("x-forwarded-proto", "https"),
                ("x-forwarded-host", "api--sess-1.example.com"),
            ])
        );
        let mut bare = HeaderMap::new();
        set_forwarded(&mut bare, "127.0.0.1".parse().unwrap(), &host);
        assert_eq!(bare["x-forwarded-for"], "127.0.0.1");
        assert_eq!(bare["x-forwarded-proto"], "http");
    }

    #[test]
    fn dot_segments_and_encoded_separators_are_unsafe() {
        for path in [
            "/",
            "/a/b.c/d",
            "/a..b/",
            "/.well-known/x",
            "/a/%2e%2ex",
            "/%20",
        ] {
            assert!(safe_path(path), "{path}");
        }
        for path in [
            "/..",
            "/../etc/passwd",
            "/a/./b",
            "/a/.",
            "/%2e%2e/x",
            "/%2E%2e/x",
            "/.%2e/x",
            "/%2e/x",
            "/a%2fb",
            "/a%2Fb",
            "/a%5cb",
            "/a\\b",
            "a/b",
            "",
            "*",
        ] {
            assert!(!safe_path(path), "{path}");
        }
    }
}
