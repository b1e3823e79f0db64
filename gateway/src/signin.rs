//! Sign-in for hosts made per session, with any OpenID Connect provider.
//!
//! Providers match callback URLs exactly (Cognito, Keycloak, Entra ID, Google), so the
//! load balancer can sign users in on one fixed host only: the login host,
//! `login.{domain}`, whose `/oauth2/idpresponse` is the one registered callback. Each
//! session host then gets the user's sign-in from the gateway (the flow of Coder's
//! subdomain apps):
//!
//! 1. A browser's GET to a session host without the gateway's cookie is redirected to
//!    `login.{domain}/_gateway/authorize?to={url}`.
//! 2. There the load balancer signs the user in and passes its signed token; the
//!    gateway mints a **ticket** for that user and that one session host, valid
//!    [`TICKET_TTL_S`], and answers a page that POSTs it to the session host's
//!    `/_gateway/ticket`: in a form body, so the ticket is in no URL, access log or
//!    history.
//! 3. The session host takes the ticket only from the login page (its `Origin`), and
//!    answers with the **cookie** [`COOKIE_NAME`] (`__Host-`: host-only, `Secure`;
//!    `HttpOnly`, `SameSite=Lax`), signed for the user and that host, and a 303 back to
//!    the path first asked for.
//! 4. Later requests carry the cookie: its signature, host and expiry are checked, and
//!    then, as for the load balancer's token, the session's owner and status.
//!
//! Tickets and cookies are `{expiry}.{user, base64url}.{HMAC-SHA256, base64url}`, the
//! MAC over what they are for, the session host (`{label}--{session_id}`), the expiry
//! and the user, under `SIGN_IN_KEY`. A ticket is never a cookie, nor the other way
//! round, nor valid on another host.

use std::fmt;
use std::time::Duration;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use hyper::header::{HeaderMap, COOKIE};
use session_core::hosts::{parse_host, SessionHost};
use sha2::{Digest, Sha256};

/// The gateway's sign-in cookie on each session host.
pub const COOKIE_NAME: &str = "__Host-session-gateway";
/// On the login host: mints a ticket for the session URL in `to`.
pub const AUTHORIZE_PATH: &str = "/_gateway/authorize";
/// On a session host: takes a ticket (POST), sets the cookie.
pub const TICKET_PATH: &str = "/_gateway/ticket";
/// A ticket is redeemed by the browser right away: a minute covers a slow network.
pub const TICKET_TTL_S: u64 = 60;
/// The shortest `SIGN_IN_KEY` accepted: 256 bits, the size of the MAC.
pub const MIN_KEY_BYTES: usize = 32;
/// The largest ticket form body read (a ticket and a path).
pub const MAX_TICKET_FORM_BYTES: usize = 16 * 1024;

/// What the login page runs: submit its form. Allowed by hash in its CSP.
const SUBMIT_SCRIPT: &str = "document.forms[0].submit()";

/// The key that signs tickets and cookies. Never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct SignInKey(Vec<u8>);

impl SignInKey {
    /// `None` if shorter than [`MIN_KEY_BYTES`].
    pub fn new(key: impl Into<Vec<u8>>) -> Option<Self> {
        let key = key.into();
        (key.len() >= MIN_KEY_BYTES).then_some(Self(key))
    }
}

impl fmt::Debug for SignInKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SignInKey(..)")
    }
}

#[derive(Clone, Copy)]
enum Purpose {
    Ticket,
    Cookie,
}

impl Purpose {
    fn as_str(self) -> &'static str {
        match self {
            Purpose::Ticket => "ticket",
            Purpose::Cookie => "cookie",
        }
    }
}

/// Mints and checks tickets and cookies.
#[derive(Clone, Debug)]
pub struct SignIn {
    key: SignInKey,
    cookie_ttl: Duration,
}

impl SignIn {
    pub fn new(key: SignInKey, cookie_ttl: Duration) -> Self {
        Self { key, cookie_ttl }
    }

    /// A ticket for `user` to sign in on the session host `host`, from `now` (Unix s).
    pub fn ticket(&self, user: &str, host: &SessionHost, now: u64) -> String {
        self.seal(
            Purpose::Ticket,
            user,
            host,
            now.saturating_add(TICKET_TTL_S),
        )
    }

    /// The user a ticket signs in on `host`, if it is a valid, unexpired ticket for it.
    pub fn redeem(&self, ticket: &str, host: &SessionHost, now: u64) -> Option<String> {
        self.open(Purpose::Ticket, ticket, host, now)
    }

    /// The `Set-Cookie` value that signs `user` in on `host` from `now`.
    pub fn set_cookie(&self, user: &str, host: &SessionHost, now: u64) -> String {
        let ttl = self.cookie_ttl.as_secs();
        let value = self.seal(Purpose::Cookie, user, host, now.saturating_add(ttl));
        format!("{COOKIE_NAME}={value}; Path=/; Max-Age={ttl}; Secure; HttpOnly; SameSite=Lax")
    }

    /// The user signed in on `host` by a cookie of the request, if one is valid.
    pub fn cookie_user(&self, headers: &HeaderMap, host: &SessionHost, now: u64) -> Option<String> {
        cookie_values(headers).find_map(|value| self.open(Purpose::Cookie, value, host, now))
    }

    fn mac(&self, purpose: Purpose, host: &SessionHost, expiry: u64, user: &str) -> Hmac<Sha256> {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.key.0)
            .expect("HMAC takes a key of any length");
        for part in [
            purpose.as_str().as_bytes(),
            b"\0",
            host.label.as_bytes(),
            b"--",
            host.session_id.as_str().as_bytes(),
        ] {
            mac.update(part);
        }
        mac.update(b"\0");
        mac.update(expiry.to_string().as_bytes());
        mac.update(b"\0");
        mac.update(user.as_bytes());
        mac
    }

    fn seal(&self, purpose: Purpose, user: &str, host: &SessionHost, expiry: u64) -> String {
        let tag = self
            .mac(purpose, host, expiry, user)
            .finalize()
            .into_bytes();
        format!(
            "{expiry}.{}.{}",
            URL_SAFE_NO_PAD.encode(user),
            URL_SAFE_NO_PAD.encode(tag)
        )
    }

    fn open(&self, purpose: Purpose, sealed: &str, host: &SessionHost, now: u64) -> Option<String> {
        let mut parts = sealed.split('.');
        let (Some(expiry), Some(user), Some(tag), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return None;
        };
        // Digits only: no sign, no second spelling of one expiry.
        if expiry.is_empty() || expiry.len() > 20 || !expiry.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let expiry: u64 = expiry.parse().ok()?;
        let user = String::from_utf8(URL_SAFE_NO_PAD.decode(user).ok()?).ok()?;
        let tag = URL_SAFE_NO_PAD.decode(tag).ok()?;
        self.mac(purpose, host, expiry, &user)
            .verify_slice(&tag)
            .ok()?;
        (now < expiry && !user.is_empty()).then_some(user)
    }
}

/// The values of every cookie named [`COOKIE_NAME`] in the request.
fn cookie_values(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| {
            let (name, value) = pair.trim().split_once('=')?;
            (name.trim() == COOKIE_NAME).then(|| value.trim())
        })
}

/// Whether a cookie pair (`name=value`) is the gateway's sign-in cookie.
pub fn is_sign_in_cookie(pair: &[u8]) -> bool {
    let name = pair
        .split(|&b| b == b'=')
        .next()
        .unwrap_or_default()
        .trim_ascii();
    name.eq_ignore_ascii_case(COOKIE_NAME.as_bytes())
}

/// Where a browser without a sign-in goes: the login host's authorize page, with the
/// URL it asked for.
pub fn login_redirect(scheme: &str, domain: &str, host: &str, path_and_query: &str) -> String {
    let to = format!("{scheme}://{host}{path_and_query}");
    let query: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("to", &to)
        .finish();
    format!(
        "{scheme}://{}{AUTHORIZE_PATH}?{query}",
        session_core::hosts::login_host(domain)
    )
}

/// A session URL to sign in to, from the authorize page's `to`.
#[derive(Debug, PartialEq, Eq)]
pub struct SignInTarget {
    /// The host as written in `to` (its case and port kept: the browser's origin).
    pub host: String,
    pub session_host: SessionHost,
    /// Where to go on that host once signed in: a path, never another host.
    pub path: String,
}

/// Reads the `to` of an authorize request's query: a URL of `scheme` on a session
/// host of `domain`. Anything else (another scheme, host or domain, a path that could
/// leave the host) is `None`: the login host redirects to nowhere else.
pub fn sign_in_target(query: Option<&str>, scheme: &str, domain: &str) -> Option<SignInTarget> {
    let mut to = form_urlencoded::parse(query?.as_bytes())
        .filter(|(name, _)| name == "to")
        .map(|(_, value)| value.into_owned());
    let (Some(to), None) = (to.next(), to.next()) else {
        return None;
    };
    let rest = to.strip_prefix(scheme)?.strip_prefix("://")?;
    let (host, path) = match rest.find(['/', '?', '#']) {
        Some(at) => rest.split_at(at),
        None => (rest, "/"),
    };
    let path = safe_return_path(path)?;
    let session_host = parse_host(host, domain)?;
    Some(SignInTarget {
        host: host.to_owned(),
        session_host,
        path,
    })
}

/// `path` if it stays on the host it is used on: it starts with one `/` (not `//` or
/// `/\`, which browsers read as another host), holds no control character or space,
/// and carries no fragment. A bare query gets the root path.
pub fn safe_return_path(path: &str) -> Option<String> {
    let path = if path.starts_with('?') {
        format!("/{path}")
    } else {
        path.to_owned()
    };
    let path = path.split('#').next().unwrap_or_default().to_owned();
    let bytes = path.as_bytes();
    let ok = bytes.first() == Some(&b'/')
        && !matches!(bytes.get(1), Some(b'/' | b'\\'))
        && bytes.iter().all(|&b| b.is_ascii_graphic());
    ok.then_some(path)
}

/// The page the login host answers: it posts `ticket` and `path` to the session
/// host's [`TICKET_PATH`] at once (or on a click, without script).
pub fn ticket_page(scheme: &str, target: &SignInTarget, ticket: &str) -> String {
    let action = format!("{scheme}://{}{TICKET_PATH}", target.host);
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>Signing in</title></head>\n<body>\
         <form method=\"post\" action=\"{}\">\
         <input type=\"hidden\" name=\"ticket\" value=\"{}\">\
         <input type=\"hidden\" name=\"to\" value=\"{}\">\
         <p>Signing you in to your session…</p>\
         <noscript><button type=\"submit\">Continue</button></noscript></form>\
         <script>{SUBMIT_SCRIPT}</script></body></html>\n",
        escape(&action),
        escape(ticket),
        escape(&target.path),
    )
}

/// The ticket page's Content-Security-Policy: nothing but its own script, and a form
/// that may post to the session host only.
pub fn ticket_page_policy(scheme: &str, target: &SignInTarget) -> String {
    let hash = STANDARD.encode(Sha256::digest(SUBMIT_SCRIPT.as_bytes()));
    format!(
        "default-src 'none'; script-src 'sha256-{hash}'; form-action {scheme}://{}; \
         base-uri 'none'; frame-ancestors 'none'",
        target.host
    )
}

/// The ticket form's fields: `(ticket, path)`.
pub fn ticket_form(body: &[u8]) -> Option<(String, String)> {
    let mut ticket = None;
    let mut to = None;
    for (name, value) in form_urlencoded::parse(body) {
        let slot = match name.as_ref() {
            "ticket" => &mut ticket,
            "to" => &mut to,
            _ => continue,
        };
        if slot.replace(value.into_owned()).is_some() {
            return None;
        }
    }
    let to = safe_return_path(to.as_deref().unwrap_or("/")).unwrap_or_else(|| "/".to_owned());
    Some((ticket?, to))
}

fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            c => escaped.push(c),
        }
    }
    escaped
}

#[cfg(test)]
mod tests {
    use hyper::header::HeaderValue;
    use session_core::session::SessionId;

    use super::*;

    const DOMAIN: &str = "sessions.example.com";
    const NOW: u64 = 1_800_000_000;

    fn sign_in() -> SignIn {
        SignIn::new(
            SignInKey::new(*b"0123456789abcdef0123456789abcdef").unwrap(),
            Duration::from_secs(3600),
        )
    }

    fn host(label: &str, id: &str) -> SessionHost {
        SessionHost {
            label: label.into(),
            session_id: SessionId::parse(id).unwrap(),
        }
    }

    fn api() -> SessionHost {
        host("api", "sess-0001")
    }

    fn cookie_headers(cookie: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(COOKIE, HeaderValue::from_str(cookie).unwrap());
        headers
    }

    /// The value of a `Set-Cookie` header, as the browser sends it back.
    fn sent_back(set_cookie: &str) -> String {
        set_cookie.split(';').next().unwrap().to_owned()
    }

    #[test]
    fn a_key_shorter_than_256_bits_is_refused_and_never_printed() {
        assert!(SignInKey::new(vec![7u8; MIN_KEY_BYTES - 1]).is_none());
        let key = SignInKey::new(b"a-very-secret-key-of-32-bytes-ok".to_vec()).unwrap();
        assert!(!format!("{key:?} {:?}", sign_in()).contains("secret"));
    }

    #[test]
    fn a_ticket_signs_its_user_in_on_its_host_for_a_minute() {
        let s = sign_in();
        let ticket = s.ticket("alice", &api(), NOW);
        assert_eq!(s.redeem(&ticket, &api(), NOW), Some("alice".into()));
        assert_eq!(
            s.redeem(&ticket, &api(), NOW + TICKET_TTL_S - 1),
            Some("alice".into())
        );
        assert_eq!(s.redeem(&ticket, &api(), NOW + TICKET_TTL_S), None);
    }

    #[test]
    fn a_ticket_is_worth_nothing_on_another_host_or_as_a_cookie() {
        let s = sign_in();
        let ticket = s.ticket("alice", &api(), NOW);
        for other in [
            host("frontend", "sess-0001"),
            host("api", "sess-0002"),
            host("api", "sess-00010"),
        ] {
            assert_eq!(s.redeem(&ticket, &other, NOW), None, "{other:?}");
        }
        let as_cookie = cookie_headers(&format!("{COOKIE_NAME}={ticket}"));
        assert_eq!(s.cookie_user(&as_cookie, &api(), NOW), None);
    }

    #[test]
    fn a_cookie_signs_its_user_in_on_its_host_until_it_expires() {
        let s = sign_in();
        let set = s.set_cookie("alice", &api(), NOW);
        for attribute in [
            "Path=/",
            "Max-Age=3600",
            "Secure",
            "HttpOnly",
            "SameSite=Lax",
        ] {
            assert!(set.contains(attribute), "{set}");
        }
        assert!(
            !set.contains("Domain="),
            "a __Host- cookie is host-only: {set}"
        );
        let headers = cookie_headers(&format!("theme=dark; {}", sent_back(&set)));
        assert_eq!(s.cookie_user(&headers, &api(), NOW), Some("alice".into()));
        assert_eq!(
            s.cookie_user(&headers, &api(), NOW + 3599),
            Some("alice".into())
        );
        assert_eq!(s.cookie_user(&headers, &api(), NOW + 3600), None);
        assert_eq!(
            s.cookie_user(&headers, &host("frontend", "sess-0001"), NOW),
            None
        );
        let value = sent_back(&set).split_once('=').unwrap().1.to_owned();
        assert_eq!(s.redeem(&value, &api(), NOW), None, "a cookie is no ticket");
    }

    #[test]
    fn a_changed_user_expiry_signature_or_key_is_refused() {
        let s = sign_in();
        let value = sent_back(&s.set_cookie("alice", &api(), NOW))
            .split_once('=')
            .unwrap()
            .1
            .to_owned();
        let parts: Vec<&str> = value.split('.').collect();
        let mallory = URL_SAFE_NO_PAD.encode("mallory");
        let forged = [
            format!("{}.{}.{}", parts[0], mallory, parts[2]),
            format!("{}.{}.{}", NOW + 999_999, parts[1], parts[2]),
            format!("+{}.{}.{}", parts[0], parts[1], parts[2]),
            format!("{}.{}.{}A", parts[0], parts[1], parts[2]),
            format!("{}.{}", parts[0], parts[1]),
            format!("{value}.x"),
            String::new(),
        ];
        for forged in forged {
            let headers = cookie_headers(&format!("{COOKIE_NAME}={forged}"));
            assert_eq!(s.cookie_user(&headers, &api(), NOW), None, "{forged}");
        }
        let other_key = SignIn::new(
            SignInKey::new(*b"another key, also 32 bytes long!").unwrap(),
            Duration::from_secs(3600),
        );
        let headers = cookie_headers(&format!("{COOKIE_NAME}={value}"));
        assert_eq!(other_key.cookie_user(&headers, &api(), NOW), None);
    }

    #[test]
    fn the_sign_in_cookie_is_recognized_whatever_its_case_and_others_are_not() {
        assert!(is_sign_in_cookie(b"__Host-session-gateway=abc"));
        assert!(is_sign_in_cookie(b"__host-SESSION-gateway=abc"));
        assert!(!is_sign_in_cookie(b"__Host-session-gateway-x=abc"));
        assert!(!is_sign_in_cookie(b"theme=dark"));
    }

    #[test]
    fn a_browser_without_sign_in_is_sent_to_the_login_host_with_its_url() {
        let location = login_redirect(
            "https",
            DOMAIN,
            "api--sess-0001.sessions.example.com",
            "/a%20b?x=1&y=2",
        );
        assert_eq!(
            location,
            "https://login.sessions.example.com/_gateway/authorize?to=https%3A%2F%2Fapi--sess-0001.sessions.example.com%2Fa%2520b%3Fx%3D1%26y%3D2"
        );
        let query = location.split_once('?').unwrap().1;
        let target = sign_in_target(Some(query), "https", DOMAIN).unwrap();
        assert_eq!(target.session_host, api());
        assert_eq!(target.path, "/a%20b?x=1&y=2");
    }

    #[test]
    fn the_login_host_signs_in_to_session_hosts_of_its_domain_only() {
        let target = |to: &str| {
            let query = form_urlencoded::Serializer::new(String::new())
                .append_pair("to", to)
                .finish();
            sign_in_target(Some(&query), "https", DOMAIN)
        };
        let ok = target("https://API--sess-0001.sessions.example.com:443/x?y=1#frag").unwrap();
        assert_eq!(ok.host, "API--sess-0001.sessions.example.com:443");
        assert_eq!(ok.session_host, api());
        assert_eq!(ok.path, "/x?y=1");
        assert_eq!(
            target("https://api--sess-0001.sessions.example.com")
                .unwrap()
                .path,
            "/"
        );
        for refused in [
            "http://api--sess-0001.sessions.example.com/",
            "https://api--sess-0001.evil.example/",
            "https://evil.example/api--sess-0001.sessions.example.com/",
            "https://api--sess-0001.sessions.example.com@evil.example/",
            "https://login.sessions.example.com/",
            "https://api--sess-0001.sessions.example.com//evil.example/",
            "https://api--sess-0001.sessions.example.com/\\evil.example/",
            "//api--sess-0001.sessions.example.com/",
            "",
        ] {
            assert_eq!(target(refused), None, "{refused}");
        }
        assert_eq!(sign_in_target(None, "https", DOMAIN), None);
        let twice = "to=https%3A%2F%2Fapi--sess-0001.sessions.example.com%2F&to=https%3A%2F%2Fapi--sess-0002.sessions.example.com%2F";
        assert_eq!(sign_in_target(Some(twice), "https", DOMAIN), None);
    }

    #[test]
    fn the_ticket_page_posts_to_the_session_host_only_and_escapes_what_it_shows() {
        let target = SignInTarget {
            host: "api--sess-0001.sessions.example.com".into(),
            session_host: api(),
            path: "/\"><script>alert(1)</script>".into(),
        };
        let page = ticket_page("https", &target, "123.abc.def");
        assert!(
            page.contains("action=\"https://api--sess-0001.sessions.example.com/_gateway/ticket\"")
        );
        assert!(page.contains("name=\"ticket\" value=\"123.abc.def\""));
        assert!(!page.contains("<script>alert"), "{page}");
        assert!(page.contains("&quot;&gt;&lt;script&gt;"), "{page}");
        let policy = ticket_page_policy("https", &target);
        assert!(policy.contains("form-action https://api--sess-0001.sessions.example.com;"));
        assert!(policy.starts_with("default-src 'none'; script-src 'sha256-"));
        let hash = STANDARD.encode(Sha256::digest(SUBMIT_SCRIPT.as_bytes()));
        assert!(page.contains(&format!("<script>{SUBMIT_SCRIPT}</script>")));
        assert!(policy.contains(&hash));
    }

    #[test]
    fn the_ticket_form_gives_its_ticket_and_a_path_that_stays_on_the_host() {
        assert_eq!(
            ticket_form(b"ticket=1.a.b&to=%2Fnotebooks%3Fx%3D1"),
            Some(("1.a.b".into(), "/notebooks?x=1".into()))
        );
        assert_eq!(
            ticket_form(b"ticket=1.a.b"),
            Some(("1.a.b".into(), "/".into()))
        );
        assert_eq!(
            ticket_form(b"ticket=1.a.b&to=https%3A%2F%2Fevil.example%2F"),
            Some(("1.a.b".into(), "/".into()))
        );
        assert_eq!(
            ticket_form(b"ticket=1.a.b&to=%2F%2Fevil.example"),
            Some(("1.a.b".into(), "/".into()))
        );
        assert_eq!(ticket_form(b"to=%2F"), None);
        assert_eq!(ticket_form(b"ticket=a&ticket=b"), None);
    }
}
