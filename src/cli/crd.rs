//! `carbonshift crd`: print the CarbonAwareJob CustomResourceDefinition generated from the
//! Rust types. `crds/carbonshift.io_carbonawarejobs.yaml` is this output (a test fails when
//! it is stale).

use super::{CliResult, Failure};
use crate::api::Crd;

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

/// Print a CustomResourceDefinition of carbonshift's (the CarbonAwareJob's by default).
///
/// Example:
///   carbonshift crd > crds/carbonshift.io_carbonawarejobs.yaml
///   carbonshift crd | kubectl apply --server-side -f -
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  carbonshift crd > crds/carbonshift.io_carbonawarejobs.yaml\n  carbonshift crd | kubectl apply --server-side -f -\n  carbonshift crd --kind carbon-window > crds/carbonshift.io_carbonwindows.yaml\n  carbonshift crd --format json | jq .spec.versions[0].schema"
)]
pub struct Args {
    /// Which CRD: CarbonAwareJob, or for the Kueue admission check (`run --kueue`)
    /// CarbonWindow (a Workload's ledger) and CarbonWindowParameters (a check's defaults).
    #[arg(long, value_enum, default_value = "carbon-aware-job")]
    pub kind: CrdKind,

    /// Output format.
    #[arg(long, value_enum, default_value = "yaml")]
    pub format: CrdFormat,
}

/// The CRDs `--kind` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CrdKind {
    #[value(alias = "CarbonAwareJob")]
    CarbonAwareJob,
    #[value(alias = "CarbonWindow")]
    CarbonWindow,
    #[value(alias = "CarbonWindowParameters")]
    CarbonWindowParameters,
}

pub async fn run(args: Args) -> CliResult {
    let crd = match args.kind {
        CrdKind::CarbonAwareJob => Crd::CarbonAwareJob,
        CrdKind::CarbonWindow => Crd::CarbonWindow,
        CrdKind::CarbonWindowParameters => Crd::CarbonWindowParameters,
    }
    .definition();
    let text = match args.format {
        CrdFormat::Yaml => {
            serde_yaml::to_string(&crd).map_err(|e| Failure::runtime(e.to_string()))?
        }
        CrdFormat::Json => {
            let mut s =
                serde_json::to_string_pretty(&crd).map_err(|e| Failure::runtime(e.to_string()))?;
            s.push('\n');
            s
        }
    };
    print!("{text}");
    Ok(())
}
