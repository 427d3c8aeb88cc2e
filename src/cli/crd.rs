//! `carbonshift crd`: print the CarbonAwareJob CustomResourceDefinition generated from the
//! Rust types. `crds/carbonshift.io_carbonawarejobs.yaml` is this output (a test fails when
//! it is stale).

use super::{CliResult, Failure};

/// The forms the CRD prints in (it has no table or CSV form).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CrdFormat {
    /// YAML, as `kubectl apply -f` and `crds/` take it (`table` is accepted for it, the
    /// other subcommands' default).
    #[value(alias = "table")]
    Yaml,
    /// JSON, one document.
    Json,
}

/// Print the CarbonAwareJob CRD.
///
/// Example:
///   carbonshift crd > crds/carbonshift.io_carbonawarejobs.yaml
///   carbonshift crd | kubectl apply --server-side -f -
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  carbonshift crd > crds/carbonshift.io_carbonawarejobs.yaml\n  carbonshift crd | kubectl apply --server-side -f -\n  carbonshift crd --format json | jq .spec.versions[0].schema"
)]
pub struct Args {
    /// Output format.
    #[arg(long, value_enum, default_value = "yaml")]
    pub format: CrdFormat,
}

pub async fn run(args: Args) -> CliResult {
    let text = match args.format {
        CrdFormat::Yaml => crate::api::crd_yaml().map_err(|e| Failure::runtime(e.to_string()))?,
        CrdFormat::Json => {
            let mut s = crate::api::crd_json().map_err(|e| Failure::runtime(e.to_string()))?;
            s.push('\n');
            s
        }
    };
    print!("{text}");
    Ok(())
}
