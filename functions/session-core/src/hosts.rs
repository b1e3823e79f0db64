//! How a session service's host is named: `{label}--{session_id}.{domain}`, e.g.
//! `api--sess-0193abcd….sessions.example.com` (the pattern of Coder's subdomain apps).
//! The functions build URLs with [`session_host`]; the gateway routes with
//! [`parse_host`]. One definition, so the two can never disagree.

use crate::session::SessionId;

/// Separates a service's label from the session id in the first DNS label. Labels never
/// hold it, so the first one ends the label, whatever `-` the session id holds.
const SEPARATOR: &str = "--";

/// A service's DNS label: its url_key lowercased with `_` turned into `-` (DNS labels
/// have no `_`), so `suv_ui` is `suv-ui`.
pub fn service_label(url_key: &str) -> String {
    url_key.to_ascii_lowercase().replace('_', "-")
}

/// The host of one service of one session. `domain` may carry a `:port` (the local
/// stack serves on `localhost:9080`).
pub fn session_host(url_key: &str, session_id: &SessionId, domain: &str) -> String {
    format!("{}{SEPARATOR}{session_id}.{domain}", service_label(url_key))
}

/// What a request's host names: a service label and a session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionHost {
    pub label: String,
    pub session_id: SessionId,
}

/// Reads a host (an HTTP `Host` header) as `{label}--{session_id}.{domain}`.
/// Case-insensitive; a `:port` on either `host` or `domain` is ignored, and so is one
/// trailing dot. `None` for anything else: another domain, extra labels
/// (`x.api--id.domain`), a label outside `[a-z0-9-]` or holding `--`, an invalid
/// session id, any character outside `[a-z0-9.:-]`.
pub fn parse_host(host: &str, domain: &str) -> Option<SessionHost> {
    let host = normalize(host)?;
    let domain = normalize(domain)?;
    let (first, rest) = host.split_once('.')?;
    if rest != domain || domain.is_empty() {
        return None;
    }
    let (label, session_id) = first.split_once(SEPARATOR)?;
    let label_ok = !label.is_empty()
        && !label.contains(SEPARATOR)
        && label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if !label_ok {
        return None;
    }
    // Lowercased, as DNS names are case-insensitive: minted ids are lowercase, and an id
    // an operator chose with capitals has no host that reaches it.
    let session_id = SessionId::parse(session_id).ok()?;
    Some(SessionHost {
        label: label.to_owned(),
        session_id,
    })
}

/// The DNS label of the login host, `login.{domain}`: the one host where the load
/// balancer signs users in (the identity provider's one callback URL), and from which
/// the gateway hands each session host a sign-in ticket. No session service has it:
/// service hosts always hold `--`.
pub const LOGIN_LABEL: &str = "login";

/// The login host of `domain` (with `domain`'s `:port`, if any).
pub fn login_host(domain: &str) -> String {
    format!("{LOGIN_LABEL}.{domain}")
}

/// Whether `host` is the login host of `domain` (the same rules as [`parse_host`]).
pub fn is_login_host(host: &str, domain: &str) -> bool {
    match (normalize(host), normalize(domain)) {
        (Some(host), Some(domain)) => host
            .strip_prefix(LOGIN_LABEL)
            .and_then(|rest| rest.strip_prefix('.'))
            .is_some_and(|rest| rest == domain),
        _ => false,
    }
}

/// The host lowercased, without its port and one trailing dot; `None` if it holds a
/// character outside `[a-z0-9.:-]`, an empty label or a port that is not digits.
fn normalize(host: &str) -> Option<String> {
    let host = host.to_ascii_lowercase();
    if !host
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b".:-".contains(&b))
    {
        return None;
    }
    let name = match host.split_once(':') {
        None => host.as_str(),
        Some((name, port)) => {
            let port_ok =
                !port.is_empty() && port.len() <= 5 && port.bytes().all(|b| b.is_ascii_digit());
            if !port_ok {
                return None;
            }
            name
        }
    };
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.is_empty() || name.split('.').any(str::is_empty) {
        return None;
    }
    Some(name.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const DOMAIN: &str = "sessions.example.com";

    fn id() -> SessionId {
        SessionId::parse("sess-0193abcd0193abcd0193abcd0193abcd").unwrap()
    }

    #[test]
    fn the_login_host_is_recognized_and_names_no_session() {
        assert_eq!(login_host(DOMAIN), "login.sessions.example.com");
        assert_eq!(login_host("localhost:9080"), "login.localhost:9080");
        for host in [
            "login.sessions.example.com",
            "LOGIN.Sessions.Example.com.",
            "login.sessions.example.com:443",
        ] {
            assert!(is_login_host(host, DOMAIN), "{host}");
            assert_eq!(parse_host(host, DOMAIN), None, "{host}");
        }
        for host in [
            "login.example.com",
            "x.login.sessions.example.com",
            "loginx.sessions.example.com",
            "login--x.sessions.example.com",
            "sessions.example.com",
        ] {
            assert!(!is_login_host(host, DOMAIN), "{host}");
        }
        assert!(is_login_host("login.localhost:9080", "localhost:9080"));
    }

    #[test]
    fn a_service_label_is_its_url_key_in_dns_form() {
        assert_eq!(service_label("api"), "api");
        assert_eq!(service_label("suv_ui"), "suv-ui");
        assert_eq!(service_label("Front_End"), "front-end");
    }

    #[test]
    fn a_session_host_joins_label_session_and_domain() {
        assert_eq!(
            session_host("suv_ui", &id(), DOMAIN),
            "suv-ui--sess-0193abcd0193abcd0193abcd0193abcd.sessions.example.com"
        );
        assert_eq!(
            session_host("api", &id(), "localhost:9080"),
            "api--sess-0193abcd0193abcd0193abcd0193abcd.localhost:9080"
        );
    }

    #[test]
    fn a_session_host_is_parsed_back_case_insensitively_with_or_without_port() {
        let expected = Some(SessionHost {
            label: "suv-ui".into(),
            session_id: id(),
        });
        let host = session_host("suv_ui", &id(), DOMAIN);
        assert_eq!(parse_host(&host, DOMAIN), expected);
        assert_eq!(parse_host(&host.to_uppercase(), DOMAIN), expected);
        assert_eq!(parse_host(&format!("{host}:443"), DOMAIN), expected);
        assert_eq!(parse_host(&format!("{host}."), DOMAIN), expected);
        assert_eq!(parse_host(&format!("{host}.:443"), DOMAIN), expected);
        assert_eq!(parse_host(&host, "Sessions.Example.com."), expected);
        let local = session_host("suv_ui", &id(), "localhost:9080");
        assert_eq!(parse_host(&local, "localhost:9080"), expected);
        assert_eq!(parse_host(&local, "localhost"), expected);
    }

    #[test]
    fn hosts_that_do_not_name_one_session_service_of_the_domain_are_refused() {
        let sid = id();
        for host in [
            format!("api--{sid}.other.example.com"),
            format!("api--{sid}.example.com"),
            format!("x.api--{sid}.{DOMAIN}"),
            format!("api--{sid}.x.{DOMAIN}"),
            format!("api--{sid}.{DOMAIN}.evil.com"),
            format!("api--{sid}{DOMAIN}"),
            format!("--{sid}.{DOMAIN}"),
            format!("api_x--{sid}.{DOMAIN}"),
            format!("api{sid}.{DOMAIN}"),
            format!("api--.{DOMAIN}"),
            format!("api--{sid}..{DOMAIN}"),
            format!(".api--{sid}.{DOMAIN}"),
            format!("api--{sid}.{DOMAIN}.."),
            format!("api--{sid}.{DOMAIN}:"),
            format!("api--{sid}.{DOMAIN}:80:80"),
            format!("api--{sid}.{DOMAIN}:https"),
            format!("api--{sid}.{DOMAIN}/x"),
            format!("api--{sid}.{DOMAIN} "),
            format!("api--{sid}.{DOMAIN}\0"),
            format!("api--{sid}@{DOMAIN}"),
            format!("api--sess-{}.{DOMAIN}", "a".repeat(64)),
            DOMAIN.to_owned(),
            String::new(),
            ".".to_owned(),
        ] {
            assert_eq!(parse_host(&host, DOMAIN), None, "{host:?}");
        }
        assert_eq!(parse_host(&format!("api--{sid}."), ""), None);
    }

    #[test]
    fn the_first_double_dash_ends_the_label() {
        // Labels never hold `--`; an id chosen by an operator may.
        let parsed = parse_host(&format!("api--my--id.{DOMAIN}"), DOMAIN).unwrap();
        assert_eq!(parsed.label, "api");
        assert_eq!(parsed.session_id.as_str(), "my--id");
    }

    fn url_key() -> impl Strategy<Value = String> {
        "[a-z0-9]([a-z0-9]|_[a-z0-9]){0,20}"
    }

    fn session_id() -> impl Strategy<Value = SessionId> {
        prop_oneof![
            Just(()).prop_map(|_| SessionId::generate()),
            "sess-[0-9a-f]{32}".prop_map(|raw| SessionId::parse(&raw).unwrap()),
        ]
    }

    fn domain() -> impl Strategy<Value = String> {
        (
            "[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?(\\.[a-z0-9]{1,10}){0,3}",
            proptest::option::of(1u16..),
        )
            .prop_map(|(name, port)| match port {
                Some(port) => format!("{name}:{port}"),
                None => name,
            })
    }

    proptest! {
        #[test]
        fn every_session_host_parses_back(key in url_key(), sid in session_id(), domain in domain()) {
            let host = session_host(&key, &sid, &domain);
            let parsed = parse_host(&host, &domain);
            prop_assert_eq!(parsed, Some(SessionHost { label: service_label(&key), session_id: sid }));
        }

        #[test]
        fn any_string_is_parsed_without_panicking(host in any::<String>(), domain in any::<String>()) {
            let _ = parse_host(&host, &domain);
        }

        #[test]
        fn host_like_strings_are_parsed_without_panicking(
            host in "[a-zA-Z0-9.:_-]{0,80}",
            domain in "[a-z0-9.:-]{0,30}",
        ) {
            if let Some(parsed) = parse_host(&host, &domain) {
                prop_assert!(!parsed.label.contains("--"));
            }
        }
    }
}
