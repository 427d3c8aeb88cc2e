//! The `carbonshift` binary: parse the command line and dispatch.

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

use carbonshift::cli;

/// Run GPU batch and training jobs when the electricity grid is cleanest.
#[derive(Debug, Parser)]
#[command(name = "carbonshift", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the operator (controller for CarbonAwareJobs).
    Run(cli::run::Args),
    /// Print one of carbonshift's CustomResourceDefinitions as YAML.
    Crd(cli::crd::Args),
    /// Replay a real intensity trace and compare scheduling strategies.
    Simulate(cli::simulate::Args),
    /// Show what the operator would do with a CarbonAwareJob manifest, without a cluster.
    Plan(cli::plan::Args),
    /// Fetch and print the normalised forecast of a provider for a region.
    Forecast(cli::forecast::Args),
    /// List the embedded grid zones: coverage, mean intensity, licence.
    Zones(cli::zones::Args),
}

fn main() -> ExitCode {
    // clap exits with 2 on a bad flag (and 0 after --help or --version).
    let matches = cli::with_exit_status(Cli::command()).get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(c) => c,
        Err(e) => e.exit(),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Run(a) => cli::run::run(a).await,
            Command::Crd(a) => cli::crd::run(a).await,
            Command::Simulate(a) => cli::simulate::run(a).await,
            Command::Plan(a) => cli::plan::run(a).await,
            Command::Forecast(a) => cli::forecast::run(a).await,
            Command::Zones(a) => cli::zones::run(a).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("error: {f}");
            ExitCode::from(f.code)
        }
    }
}
