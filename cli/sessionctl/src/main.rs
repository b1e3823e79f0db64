use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;

use sessionctl::cli::Cli;
use sessionctl::client::HttpApi;
use sessionctl::wait::SystemClock;
use sessionctl::{report, run, Terminal};

fn main() -> ExitCode {
    let settings = Cli::parse().settings().unwrap_or_else(|err| err.exit());
    let api = HttpApi::new(&settings.api_url, &settings.token, settings.timeout);
    let stderr = std::io::stderr();
    let mut terminal = Terminal {
        out: &mut std::io::stdout().lock(),
        err: &mut stderr.lock(),
        err_is_terminal: stderr.is_terminal(),
    };
    match run(&settings, &api, &mut SystemClock::start(), &mut terminal) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            report(&err, settings.output, terminal.err);
            ExitCode::from(err.exit_code())
        }
    }
}
