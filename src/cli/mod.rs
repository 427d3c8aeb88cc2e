//! Subcommands of the `carbonshift` binary. Each module owns its clap `Args` and a `run`
//! function; `main.rs` only parses and dispatches.

use std::fmt;

pub mod crd;
pub mod forecast;
pub mod plan;
pub mod run;
pub mod simulate;
pub mod zones;

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
