//! Subcommands of the `carbonshift` binary. Each module owns its clap `Args` and a `run`
//! function; `main.rs` only parses and dispatches.

use std::fmt;

use crate::forecast::file::Location;
use crate::forecast::{ForecastArgs, ForecastError, ProviderKind};

pub mod crd;
pub mod forecast;
pub mod plan;
pub mod run;
pub mod simulate;
pub mod zones;

/// How the binary exits, shown at the end of every command's `--help`.
pub const EXIT_STATUS: &str = "Exit status: 0 success, 1 runtime failure (network, cluster, I/O), \
2 bad input (flags, files, manifests).";

/// `cmd` and every subcommand with [`EXIT_STATUS`] appended to their `after_help`.
pub fn with_exit_status(cmd: clap::Command) -> clap::Command {
    fn append(c: clap::Command) -> clap::Command {
        let help = match c.get_after_help() {
            Some(h) => format!("{h}\n\n{EXIT_STATUS}"),
            None => EXIT_STATUS.to_string(),
        };
        c.after_help(help)
    }
    append(cmd).mut_subcommands(append)
}

/// Output format shared by every subcommand that prints results.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
    Csv,
}

/// A subcommand's failure: a one-line message and the process exit code.
#[derive(Debug)]
pub struct Failure {
    pub code: u8,
    pub message: String,
}

impl Failure {
    /// Bad input (flags, files, manifests): exit code 2.
    pub fn input(message: impl fmt::Display) -> Self {
        Self {
            code: 2,
            message: message.to_string(),
        }
    }

    /// Anything else (I/O, cluster, network): exit code 1.
    pub fn runtime(message: impl fmt::Display) -> Self {
        Self {
            code: 1,
            message: message.to_string(),
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

pub type CliResult = Result<(), Failure>;

/// A forecast failure of `carbonshift forecast` or `plan`. Bad input (2): a wrong flag, an
/// unknown region, or the `--forecast-file` the user named (a path that cannot be read, or
/// contents that are not a valid forecast, wherever they came from). Anything else, such as
/// an unreachable provider, is a runtime failure (1).
pub fn forecast_failure(e: ForecastError, args: &ForecastArgs) -> Failure {
    let named_file = args.provider == ProviderKind::File;
    let local = named_file
        && args
            .file
            .as_deref()
            .is_some_and(|f| matches!(Location::parse(f), Location::Path(_)));
    match e {
        ForecastError::Config { .. } | ForecastError::UnknownRegion { .. } => Failure::input(e),
        ForecastError::Invalid { .. } if named_file => {
            Failure::input(format!("--forecast-file: {e}"))
        }
        ForecastError::Unavailable { .. } if local => {
            Failure::input(format!("--forecast-file: {e}"))
        }
        _ => Failure::runtime(e),
    }
}
