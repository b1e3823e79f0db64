//! The gateway's configuration, read from the environment once at start-up; each
//! failure names its variable.

use std::net::SocketAddr;
use std::time::Duration;

use crate::signin::{SignInKey, MIN_KEY_BYTES};

pub use session_core::config::{ConfigError, ProcessEnv, Source};

/// The longest a session look-up may be cached: a stopped session must lose access
/// within 5 s, and an expired answer may serve up to 1 s more while it is read again
/// (`CachedLookup::grace`).
pub const MAX_SESSION_CACHE_TTL_MS: u64 = 4_000;

/// Below this, ordinary browser requests (cookies included) would be refused.
const MIN_HEADER_BYTES: usize = 8 * 1024;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// The proxy listener, behind the load balancer.
    pub listen: SocketAddr,
    /// Answers `GET /healthz` for the load balancer's target group.
    pub health_listen: SocketAddr,
    pub sessions_table: String,
    /// Sessions' hosts are `{service}--{session_id}.{session_domain}`; may carry a
    /// `:port` (the local stack).
    pub session_domain: String,
    /// The load balancer whose signature is the only one accepted (`signer`).
    pub alb_arn: String,
    /// Where the load balancer's public keys are, as `{url}/{kid}`; no trailing `/`.
    pub alb_public_keys_url: String,
    pub session_cache_ttl: Duration,
    pub max_request_body_bytes: u64,
    pub max_header_bytes: usize,
    pub upstream_connect_timeout: Duration,
    /// How long a session's service may stay silent: no response head, and no request
    /// body sent to it, for this long is a 504.
    pub upstream_response_timeout: Duration,
    /// How long a client may take to send a request head, and so how long an idle
    /// keep-alive connection stays open (hyper's timer runs while it waits for a head).
    pub header_read_timeout: Duration,
    /// Signs the sign-in tickets and cookies of the session hosts (`signin.rs`).
    pub sign_in_key: SignInKey,
    /// How long a sign-in cookie on a session host lasts.
    pub sign_in_ttl: Duration,
    /// The scheme of the URLs users see: `https` behind the load balancer, `http` on
    /// the local stack. The functions' variable of the same name.
    pub url_scheme: String,
    /// The HTTP API's base URL, without a trailing `/`, that the console's
    /// `/_gateway/api/*` is forwarded to (`console_api.rs`); `None` answers those 404.
    pub api_url: Option<String>,
}

impl Config {
    /// Every variable read. `AWS_REGION` only when `ALB_PUBLIC_KEYS_URL` is unset (ECS
    /// sets it in every Fargate task).
    pub const VARS: &'static [&'static str] = &[
        "GATEWAY_LISTEN",
        "GATEWAY_HEALTH_LISTEN",
        "SESSIONS_TABLE",
        "SESSION_DOMAIN",
        "ALB_ARN",
        "ALB_PUBLIC_KEYS_URL",
        "AWS_REGION",
        "SESSION_CACHE_TTL_MS",
        "MAX_REQUEST_BODY_BYTES",
        "MAX_HEADER_BYTES",
        "UPSTREAM_CONNECT_TIMEOUT_MS",
        "UPSTREAM_RESPONSE_TIMEOUT_S",
        "HEADER_READ_TIMEOUT_S",
        "SIGN_IN_KEY",
        "SIGN_IN_TTL_S",
        "SESSION_URL_SCHEME",
        "API_URL",
    ];

    /// Sign-in cookies last 8 hours by default (a working day), and a week at most.
    pub const DEFAULT_SIGN_IN_TTL_S: u64 = 8 * 3600;
    pub const MAX_SIGN_IN_TTL_S: u64 = 7 * 24 * 3600;

    /// An idle connection from the load balancer must outlive the load balancer's own
    /// idle timeout (60 s), or it may send a request on a connection we are closing and
    /// answer 502: AWS's advice for targets. Slow heads are no threat here: the load
    /// balancer reads the whole head before it forwards a request, and only it can
    /// reach the gateway.
    pub const DEFAULT_HEADER_READ_TIMEOUT_S: u64 = 65;

    pub fn from_source(env: &impl Source) -> Result<Self, ConfigError> {
        let session_domain = env.required("SESSION_DOMAIN")?.trim().to_ascii_lowercase();
        if !valid_domain(&session_domain) {
            return Err(ConfigError::Invalid {
                name: "SESSION_DOMAIN",
                message: format!(
                    "must be a DNS name with an optional :port, such as sessions.example.com, \
                     got {session_domain:?}"
                ),
            });
        }
        let alb_arn = env.required("ALB_ARN")?.trim().to_owned();
        if !alb_arn.starts_with("arn:") {
            return Err(ConfigError::Invalid {
                name: "ALB_ARN",
                message: format!("must be the load balancer's ARN, got {alb_arn:?}"),
            });
        }
        let alb_public_keys_url = match env
            .get("ALB_PUBLIC_KEYS_URL")
            .filter(|v| !v.trim().is_empty())
        {
            Some(url) => {
                let url = url.trim().trim_end_matches('/').to_owned();
                if !(url.starts_with("https://") || url.starts_with("http://")) {
                    return Err(ConfigError::Invalid {
                        name: "ALB_PUBLIC_KEYS_URL",
                        message: format!("must be an http(s) URL, got {url:?}"),
                    });
                }
                url
            }
            None => {
                let region = env.required("AWS_REGION")?;
                format!(
                    "https://public-keys.auth.elb.{}.amazonaws.com",
                    region.trim()
                )
            }
        };
        let ttl_ms = env.parsed("SESSION_CACHE_TTL_MS", 1_000u64)?;
        if ttl_ms > MAX_SESSION_CACHE_TTL_MS {
            return Err(ConfigError::Invalid {
                name: "SESSION_CACHE_TTL_MS",
                message: format!(
                    "must be at most {MAX_SESSION_CACHE_TTL_MS}: a stopped session must lose \
                     access within 5 s, and an expired answer serves up to 1 s more while it \
                     is read again, got {ttl_ms}"
                ),
            });
        }
        let max_header_bytes = env.parsed("MAX_HEADER_BYTES", 64 * 1024usize)?;
        if max_header_bytes < MIN_HEADER_BYTES {
            return Err(ConfigError::Invalid {
                name: "MAX_HEADER_BYTES",
                message: format!("must be at least {MIN_HEADER_BYTES}, got {max_header_bytes}"),
            });
        }
        let sign_in_key = SignInKey::new(env.required("SIGN_IN_KEY")?.into_bytes()).ok_or(
            ConfigError::Invalid {
                name: "SIGN_IN_KEY",
                message: format!("must be a secret of at least {MIN_KEY_BYTES} bytes"),
            },
        )?;
        let sign_in_ttl_s = positive(env, "SIGN_IN_TTL_S", Self::DEFAULT_SIGN_IN_TTL_S)?;
        if sign_in_ttl_s > Self::MAX_SIGN_IN_TTL_S {
            return Err(ConfigError::Invalid {
                name: "SIGN_IN_TTL_S",
                message: format!(
                    "must be at most {} (a week), got {sign_in_ttl_s}",
                    Self::MAX_SIGN_IN_TTL_S
                ),
            });
        }
        let url_scheme = env
            .get("SESSION_URL_SCHEME")
            .map(|s| s.trim().to_ascii_lowercase())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "https".to_owned());
        if url_scheme != "https" && url_scheme != "http" {
            return Err(ConfigError::Invalid {
                name: "SESSION_URL_SCHEME",
                message: format!("must be https or http, got {url_scheme:?}"),
            });
        }
        let api_url = env
            .get("API_URL")
            .map(|url| url.trim().trim_end_matches('/').to_owned())
            .filter(|url| !url.is_empty());
        if let Some(url) = &api_url {
            if !valid_api_url(url) {
                return Err(ConfigError::Invalid {
                    name: "API_URL",
                    message: format!(
                        "must be an absolute http(s) URL without credentials, query or \
                         fragment, such as https://abc123.execute-api.eu-west-1.amazonaws.com, \
                         got {url:?}"
                    ),
                });
            }
        }
        Ok(Self {
            listen: env.parsed("GATEWAY_LISTEN", SocketAddr::from(([0, 0, 0, 0], 8080)))?,
            health_listen: env.parsed(
                "GATEWAY_HEALTH_LISTEN",
                SocketAddr::from(([0, 0, 0, 0], 8081)),
            )?,
            sessions_table: env.required("SESSIONS_TABLE")?,
            session_domain,
            alb_arn,
            alb_public_keys_url,
            session_cache_ttl: Duration::from_millis(ttl_ms),
            max_request_body_bytes: env.parsed("MAX_REQUEST_BODY_BYTES", 100 * 1024 * 1024u64)?,
            max_header_bytes,
            upstream_connect_timeout: Duration::from_millis(positive(
                env,
                "UPSTREAM_CONNECT_TIMEOUT_MS",
                3_000,
            )?),
            upstream_response_timeout: Duration::from_secs(positive(
                env,
                "UPSTREAM_RESPONSE_TIMEOUT_S",
                60,
            )?),
            header_read_timeout: Duration::from_secs(positive(
                env,
                "HEADER_READ_TIMEOUT_S",
                Self::DEFAULT_HEADER_READ_TIMEOUT_S,
            )?),
            sign_in_key,
            sign_in_ttl: Duration::from_secs(sign_in_ttl_s),
            url_scheme,
            api_url,
        })
    }
}

fn positive(env: &impl Source, name: &'static str, default: u64) -> Result<u64, ConfigError> {
    let value = env.parsed(name, default)?;
    if value == 0 {
        return Err(ConfigError::Invalid {
            name,
            message: "must be at least 1".into(),
        });
    }
    Ok(value)
}

/// An `http` or `https` URL with a host, to which a path can be appended as is: no
/// user info (it would be sent, and logged, with every call), query or fragment.
fn valid_api_url(url: &str) -> bool {
    let Ok(uri) = url.parse::<hyper::Uri>() else {
        return false;
    };
    let scheme_ok = matches!(uri.scheme_str(), Some("https" | "http"));
    let host_ok = uri
        .authority()
        .is_some_and(|a| !a.host().is_empty() && !a.as_str().contains('@'));
    scheme_ok && host_ok && uri.query().is_none() && !url.contains('#')
}

/// `[a-z0-9-]` labels joined by dots, with an optional `:port`.
fn valid_domain(domain: &str) -> bool {
    let (name, port) = match domain.split_once(':') {
        Some((name, port)) => (name, Some(port)),
        None => (domain, None),
    };
    let port_ok = port.is_none_or(|p| p.parse::<u16>().is_ok_and(|p| p > 0));
    let name_ok = !name.is_empty()
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        });
    port_ok && name_ok
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        let mut env: HashMap<String, String> = [
            ("SESSIONS_TABLE", "sessions"),
            ("SESSION_DOMAIN", "sessions.example.com"),
            (
                "ALB_ARN",
                "arn:aws:elasticloadbalancing:eu-west-1:123456789012:loadbalancer/app/gw/1",
            ),
            ("AWS_REGION", "eu-west-1"),
            ("SIGN_IN_KEY", "0123456789abcdef0123456789abcdef"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        for (k, v) in pairs {
            env.insert((*k).to_owned(), (*v).to_owned());
        }
        env
    }

    #[test]
    fn defaults_fit_behind_an_application_load_balancer() {
        let config = Config::from_source(&env(&[])).unwrap();
        assert_eq!(config.listen, "0.0.0.0:8080".parse().unwrap());
        assert_eq!(config.health_listen, "0.0.0.0:8081".parse().unwrap());
        assert_eq!(
            config.alb_public_keys_url,
            "https://public-keys.auth.elb.eu-west-1.amazonaws.com"
        );
        assert_eq!(config.session_cache_ttl, Duration::from_secs(1));
        assert_eq!(config.max_request_body_bytes, 100 * 1024 * 1024);
        assert_eq!(config.max_header_bytes, 64 * 1024);
        assert_eq!(config.upstream_connect_timeout, Duration::from_secs(3));
        assert_eq!(config.upstream_response_timeout, Duration::from_secs(60));
        assert!(config.header_read_timeout > Duration::from_secs(60));
        assert_eq!(config.sign_in_ttl, Duration::from_secs(8 * 3600));
        assert_eq!(config.url_scheme, "https");
        assert_eq!(config.api_url, None);
    }

    #[test]
    fn each_bad_variable_is_named() {
        for (name, value) in [
            ("SESSION_CACHE_TTL_MS", "4001"),
            ("SESSION_CACHE_TTL_MS", "soon"),
            ("SESSION_DOMAIN", "https://sessions.example.com"),
            ("SESSION_DOMAIN", "sessions..example.com"),
            ("SESSION_DOMAIN", "localhost:http"),
            ("ALB_ARN", "my-alb"),
            ("ALB_PUBLIC_KEYS_URL", "ftp://keys"),
            ("MAX_HEADER_BYTES", "1024"),
            ("UPSTREAM_CONNECT_TIMEOUT_MS", "0"),
            ("UPSTREAM_RESPONSE_TIMEOUT_S", "-1"),
            ("HEADER_READ_TIMEOUT_S", "0"),
            ("GATEWAY_LISTEN", "8080"),
            ("MAX_REQUEST_BODY_BYTES", "lots"),
            ("SIGN_IN_KEY", "0123456789abcdef0123456789abcde"),
            ("SIGN_IN_TTL_S", "0"),
            ("SIGN_IN_TTL_S", "604801"),
            ("SESSION_URL_SCHEME", "ftp"),
            ("API_URL", "abc123.execute-api.eu-west-1.amazonaws.com"),
            ("API_URL", "ftp://api.example.com"),
            ("API_URL", "https://"),
            ("API_URL", "https://api.example.com/?stage=prod"),
            ("API_URL", "https://api.example.com/#x"),
            ("API_URL", "https://user:secret@api.example.com"),
            ("API_URL", "https://api.example.com/a b"),
        ] {
            let err = Config::from_source(&env(&[(name, value)])).unwrap_err();
            assert!(
                err.to_string()
                    .starts_with(&format!("environment variable {name} is invalid")),
                "{name}={value}: {err}"
            );
        }
        for name in [
            "SESSIONS_TABLE",
            "SESSION_DOMAIN",
            "ALB_ARN",
            "AWS_REGION",
            "SIGN_IN_KEY",
        ] {
            let mut env = env(&[]);
            env.remove(name);
            let err = Config::from_source(&env).unwrap_err();
            assert_eq!(
                err.to_string(),
                format!("environment variable {name} is required but not set")
            );
        }
    }

    #[test]
    fn a_keys_url_and_a_local_domain_with_port_are_taken_as_given() {
        let config = Config::from_source(&env(&[
            ("ALB_PUBLIC_KEYS_URL", "http://127.0.0.1:9999/"),
            ("SESSION_DOMAIN", "LocalHost:9080"),
            ("SESSION_CACHE_TTL_MS", "4000"),
        ]))
        .unwrap();
        assert_eq!(config.alb_public_keys_url, "http://127.0.0.1:9999");
        assert_eq!(config.session_domain, "localhost:9080");
        assert_eq!(config.session_cache_ttl, Duration::from_secs(4));
    }

    #[test]
    fn the_api_url_is_kept_without_its_trailing_slash_and_may_be_plain_http_or_unset() {
        for (given, kept) in [
            (
                "https://abc123.execute-api.eu-west-1.amazonaws.com/",
                "https://abc123.execute-api.eu-west-1.amazonaws.com",
            ),
            (
                " https://api.example.com/prod ",
                "https://api.example.com/prod",
            ),
            ("http://127.0.0.1:9000", "http://127.0.0.1:9000"),
        ] {
            let config = Config::from_source(&env(&[("API_URL", given)])).unwrap();
            assert_eq!(config.api_url.as_deref(), Some(kept), "{given}");
        }
        let blank = Config::from_source(&env(&[("API_URL", " ")])).unwrap();
        assert_eq!(blank.api_url, None);
    }

    #[test]
    fn docs_gateway_md_documents_every_variable_and_no_other() {
        let doc = include_str!("../../docs/gateway.md");
        let section = doc
            .split("### The gateway's configuration")
            .nth(1)
            .and_then(|rest| rest.split("\n### ").next())
            .expect("docs/gateway.md has the section");
        let documented: std::collections::BTreeSet<&str> = section
            .lines()
            .filter_map(|line| line.strip_prefix("| `")?.split('`').next())
            .collect();
        let read: std::collections::BTreeSet<&str> = Config::VARS.iter().copied().collect();
        assert_eq!(documented, read);
    }

    #[test]
    fn vars_lists_every_variable_read() {
        let source = include_str!("config.rs");
        let read: std::collections::BTreeSet<&str> = source
            .split('"')
            .filter(|s| s.len() > 3 && s.bytes().all(|b| b.is_ascii_uppercase() || b == b'_'))
            .collect();
        let listed: std::collections::BTreeSet<&str> = Config::VARS.iter().copied().collect();
        assert_eq!(read, listed);
    }
}
