//! `carbonshift crd`: print the CarbonAwareJob CustomResourceDefinition generated from the
//! Rust types. `crds/carbonshift.io_carbonawarejobs.yaml` is this output (a test fails when
//! it is stale).

use super::{CliResult, Failure, Format};

/// Print the CarbonAwareJob CRD.
///
/// Example:
///   carbonshift crd > crds/carbonshift.io_carbonawarejobs.yaml
///   carbonshift crd | kubectl apply --server-side -f -
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Example:\n  carbonshift crd | kubectl apply --server-side -f -\n  carbonshift crd --format json | jq .spec.versions[0].schema"
)]
pub struct Args {
    /// Output format: table (YAML, the default) or json.
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
}

pub async fn run(args: Args) -> CliResult {
    let text = match args.format {
        Format::Table => crate::api::crd_yaml().map_err(|e| Failure::runtime(e.to_string()))?,
        Format::Json => {
            let mut s = crate::api::crd_json().map_err(|e| Failure::runtime(e.to_string()))?;
            s.push('\n');
            s
        }
        Format::Csv => {
            return Err(Failure::input(
                "the CRD has no CSV form; use --format table (YAML) or json",
            ))
        }
    };
    print!("{text}");
    Ok(())
}
