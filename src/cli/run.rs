//! `carbonshift run`.

use super::CliResult;

#[derive(Debug, clap::Args)]
pub struct Args {}

pub async fn run(_args: Args) -> CliResult {
    Err(super::Failure::runtime(
        "carbonshift run: not implemented yet",
    ))
}
