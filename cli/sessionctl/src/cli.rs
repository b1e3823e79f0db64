//! The command line: commands, options, their environment variables and defaults.

use std::fmt;
use std::time::Duration;

use clap::error::ErrorKind;
use clap::{CommandFactory, Parser, Subcommand, ValueEnum};

use crate::duration::parse_duration;
use crate::error::EXIT_STATUS_HELP;
use crate::wait::WaitOptions;

const ABOUT: &str = "Start, watch, list, heartbeat and stop your sessions of the session API.";

const LONG_ABOUT: &str = "\
Start, watch, list, heartbeat and stop your sessions of the session API.

A session is your own environment (api, frontend and suv_ui) of an image version;
`sessionctl versions` lists the versions you can start. `sessionctl start --wait`
asks for one and shows its progress on stderr until it runs, then prints its URLs.
Output goes to stdout: a table for people, or with --output json the API's JSON
objects for scripts. Messages and progress go to stderr.";

const AFTER_HELP: &str = "\
Environment:
  SESSIONCTL_API_URL  the API's base URL, as --api-url (terraform output api_endpoint)
  SESSIONCTL_TOKEN    the bearer token, as --token; never printed

Examples:
  sessionctl versions
  sessionctl start --version 1.0.0 --wait
  sessionctl list --limit 5
  sessionctl status sess-0123456789abcdef0123456789abcdef --output json
  sessionctl stop sess-0123456789abcdef0123456789abcdef --wait
";

/// The heading of the options every command takes.
const GLOBAL: &str = "Global options";

/// A bearer token. Its `Debug` hides it, so no diagnostic can print it.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl Token {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<String> for Token {
    fn from(raw: String) -> Self {
        Self(raw)
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<hidden>)")
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// Aligned text for people.
    Table,
    /// The API's JSON objects, for scripts (errors too, on stderr).
    Json,
}

#[derive(Debug, Parser)]
#[command(
    name = "sessionctl",
    version,
    about = ABOUT,
    long_about = LONG_ABOUT,
    after_help = format!("{EXIT_STATUS_HELP}\n\n{AFTER_HELP}"),
)]
pub struct Cli {
    /// The API's base URL, e.g. https://abc123.execute-api.eu-west-1.amazonaws.com
    #[arg(long, global = true, env = "SESSIONCTL_API_URL", value_name = "URL", help_heading = GLOBAL)]
    pub api_url: Option<String>,

    /// Bearer token for the API (sent as `Authorization: Bearer <TOKEN>`)
    #[arg(
        long,
        global = true,
        env = "SESSIONCTL_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN",
        help_heading = GLOBAL
    )]
    pub token: Option<Token>,

    /// Output format of stdout
    #[arg(long, short, global = true, value_enum, default_value_t = Output::Table, help_heading = GLOBAL)]
    pub output: Output,

    /// Time limit of each HTTP request (e.g. 30s, 500ms)
    #[arg(long, global = true, value_name = "DURATION", default_value = "30s", value_parser = parse_duration, help_heading = GLOBAL)]
    pub timeout: Duration,

    /// With --wait: how long to wait before giving up (the session keeps going)
    #[arg(long, global = true, value_name = "DURATION", default_value = "15m", value_parser = parse_duration, help_heading = GLOBAL)]
    pub wait_timeout: Duration,

    /// With --wait: time between two looks at the session
    #[arg(long, global = true, value_name = "DURATION", default_value = "2s", value_parser = parse_duration, help_heading = GLOBAL)]
    pub poll_interval: Duration,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand, PartialEq, Eq)]
pub enum Command {
    /// Start a session; its id, and with --wait its URLs, go to stdout
    Start {
        /// Image version to run (default: the API's, `latest`)
        #[arg(long, value_name = "VERSION")]
        version: Option<String>,
        /// Show the progress on stderr until the session runs, then print its URLs
        #[arg(long)]
        wait: bool,
        /// Makes a retried start return the session of the first attempt instead of
        /// starting a second one (1 to 128 visible ASCII characters)
        #[arg(long, value_name = "KEY")]
        idempotency_key: Option<String>,
    },
    /// Stop a session (202: it is stopping; an ended session is left as it is)
    Stop {
        session_id: String,
        /// Wait until the session has ended
        #[arg(long)]
        wait: bool,
    },
    /// Show a session: status, URLs, timestamps, why it ended
    Status { session_id: String },
    /// List your sessions, newest first: all of them, or the newest --limit
    List {
        /// Show at most this many (the JSON's next_token is then set when there are more)
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
        limit: Option<u32>,
    },
    /// Tell the API a running session is in use, so that it is not stopped as idle
    Heartbeat { session_id: String },
    /// List the image versions a session can run, newest first, `latest` marked
    Versions,
}

/// What a run needs, checked: the URL and token are present and usable.
#[derive(Debug)]
pub struct Settings {
    pub api_url: String,
    pub token: Token,
    pub output: Output,
    pub timeout: Duration,
    pub wait: WaitOptions,
    pub command: Command,
}

impl Cli {
    /// Checks what clap cannot (the URL and token may come from the environment); a
    /// refusal is a usage error, exit status 2. The token is never quoted back.
    pub fn settings(self) -> Result<Settings, clap::Error> {
        let usage = |kind, message: &str| Cli::command().error(kind, message);
        let api_url = self
            .api_url
            .map(|url| url.trim().trim_end_matches('/').to_owned())
            .filter(|url| !url.is_empty())
            .ok_or_else(|| {
                usage(
                    ErrorKind::MissingRequiredArgument,
                    "the API's URL is needed: --api-url or SESSIONCTL_API_URL",
                )
            })?;
        let scheme = api_url.split_once("://").map(|(scheme, _)| scheme);
        if !matches!(scheme, Some("http" | "https")) {
            return Err(usage(
                ErrorKind::ValueValidation,
                &format!("--api-url {api_url:?} is not an http:// or https:// URL"),
            ));
        }
        let token = self.token.ok_or_else(|| {
            usage(
                ErrorKind::MissingRequiredArgument,
                "a token is needed: --token or SESSIONCTL_TOKEN",
            )
        })?;
        let usable = !token.0.is_empty() && token.0.bytes().all(|b| b.is_ascii_graphic());
        if !usable {
            return Err(usage(
                ErrorKind::ValueValidation,
                "the token (--token or SESSIONCTL_TOKEN) must be visible ASCII characters, without spaces",
            ));
        }
        Ok(Settings {
            api_url,
            token,
            output: self.output,
            timeout: self.timeout,
            wait: WaitOptions {
                timeout: self.wait_timeout,
                interval: self.poll_interval,
            },
            command: self.command,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse<S: AsRef<str>>(args: &[S]) -> Result<Cli, clap::Error> {
        let args = args.iter().map(|a| a.as_ref().to_owned());
        Cli::try_parse_from(std::iter::once("sessionctl".to_owned()).chain(args))
    }

    fn settings<S: AsRef<str>>(args: &[S]) -> Result<Settings, clap::Error> {
        parse(args)?.settings()
    }

    /// `args` after a valid URL and token.
    fn with_base(args: &[&str]) -> Vec<String> {
        [
            "--api-url",
            "https://api.example.com/",
            "--token",
            "dev:alice",
        ]
        .iter()
        .chain(args)
        .map(|a| a.to_string())
        .collect()
    }

    #[test]
    fn the_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn start_takes_a_version_a_wait_and_an_idempotency_key() {
        let s = settings(&with_base(&[
            "start",
            "--version",
            "1.0.0",
            "--wait",
            "--idempotency-key",
            "k-1",
        ]))
        .unwrap();
        assert_eq!(
            s.command,
            Command::Start {
                version: Some("1.0.0".into()),
                wait: true,
                idempotency_key: Some("k-1".into()),
            }
        );
        assert_eq!(s.api_url, "https://api.example.com");
        assert_eq!(s.output, Output::Table);
        assert_eq!(s.timeout, Duration::from_secs(30));
        assert_eq!(
            s.wait,
            WaitOptions {
                timeout: Duration::from_secs(900),
                interval: Duration::from_secs(2)
            }
        );
    }

    #[test]
    fn global_options_go_before_or_after_the_command() {
        let s = settings(&with_base(&[
            "status",
            "sess-1",
            "--output",
            "json",
            "--timeout",
            "5s",
            "--poll-interval",
            "250ms",
            "--wait-timeout",
            "2m",
        ]))
        .unwrap();
        assert_eq!(
            s.command,
            Command::Status {
                session_id: "sess-1".into()
            }
        );
        assert_eq!(s.output, Output::Json);
        assert_eq!(s.timeout, Duration::from_secs(5));
        assert_eq!(s.wait.interval, Duration::from_millis(250));
        assert_eq!(s.wait.timeout, Duration::from_secs(120));
        let s = settings(&[
            "-o",
            "json",
            "--api-url",
            "http://127.0.0.1:1",
            "--token",
            "t",
            "list",
        ])
        .unwrap();
        assert_eq!(s.command, Command::List { limit: None });
        assert_eq!(s.output, Output::Json);
    }

    #[test]
    fn versions_takes_no_argument() {
        let s = settings(&with_base(&["versions", "-o", "json"])).unwrap();
        assert_eq!((s.command, s.output), (Command::Versions, Output::Json));
        let err = settings(&with_base(&["versions", "1.0.0"])).unwrap_err();
        assert_eq!(err.exit_code(), 2, "{err}");
    }

    #[test]
    fn usage_errors_exit_2() {
        let bad: [&[&str]; 9] = [
            &["start", "--bogus"],
            &["status"],
            &["list", "--limit", "0"],
            &["list", "--limit", "many"],
            &["start", "--timeout", "0s"],
            &["start", "--poll-interval", "soon"],
            &["start", "--output", "yaml"],
            &["restart"],
            &["stop"],
        ];
        for args in bad {
            let err = settings(&with_base(args)).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{args:?}: {err}");
        }
    }

    #[test]
    fn the_url_and_token_are_required_and_checked() {
        let missing_url = settings(&["--token", "t", "list"]).unwrap_err();
        assert_eq!(missing_url.kind(), ErrorKind::MissingRequiredArgument);
        assert!(missing_url.to_string().contains("SESSIONCTL_API_URL"));
        let missing_token = settings(&["--api-url", "http://x", "list"]).unwrap_err();
        assert!(missing_token.to_string().contains("SESSIONCTL_TOKEN"));
        let not_http = settings(&["--api-url", "ftp://x", "--token", "t", "list"]).unwrap_err();
        assert_eq!(not_http.exit_code(), 2);
        let secret = "dev:alice with a secret";
        let bad_token =
            settings(&["--api-url", "http://x", "--token", secret, "list"]).unwrap_err();
        assert_eq!(bad_token.exit_code(), 2);
        assert!(!bad_token.to_string().contains("secret"), "{bad_token}");
    }

    #[test]
    fn the_token_is_never_shown() {
        let cli = parse(&with_base(&["list"])).unwrap();
        assert!(!format!("{cli:?}").contains("dev:alice"));
        let help = Cli::command().render_long_help().to_string();
        assert!(help.contains("SESSIONCTL_TOKEN"));
    }

    #[test]
    fn the_help_documents_the_exit_statuses_and_the_environment() {
        let help = Cli::command().render_long_help().to_string();
        for needle in [
            "Exit status:",
            "  3  the API refused the request",
            "  4  not found (404)",
            "  5  conflict (409)",
            "  6  --wait: the session ended",
            "  7  --wait: --wait-timeout passed first",
            "  8  the API is unreachable",
            "SESSIONCTL_API_URL",
        ] {
            assert!(help.contains(needle), "{needle:?} missing from:\n{help}");
        }
    }
}
