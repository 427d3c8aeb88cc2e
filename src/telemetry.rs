//! Logging setup: `tracing` with `RUST_LOG` filtering (default `info`, kube's own chatter
//! at `warn`) and a choice of human-readable text or one JSON object per line for log
//! pipelines (`--log-format`). Text is coloured only on a terminal: in a Pod, a file or a
//! pipe, ANSI escape codes would only garble the lines.

use std::ffi::OsStr;
use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Installs the global subscriber. Fails if `RUST_LOG` does not parse or a subscriber is
/// already installed.
pub fn init(format: LogFormat) -> Result<(), String> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(v) if !v.trim().is_empty() => {
            EnvFilter::try_new(&v).map_err(|e| format!("RUST_LOG={v:?}: {e}"))?
        }
        _ => EnvFilter::new("info,kube=warn,kube_runtime=warn,tower=warn,hyper=warn"),
    };
    let ansi = format == LogFormat::Text
        && use_colour(
            std::io::stderr().is_terminal(),
            std::env::var_os("NO_COLOR").as_deref(),
        );
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    let result = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
    };
    result.map_err(|e| format!("cannot install the log subscriber: {e}"))
}

/// Whether to colour text logs: only when they go to a terminal and `NO_COLOR` is unset
/// (<https://no-color.org>: set to anything but the empty string, it turns colour off).
pub fn use_colour(is_terminal: bool, no_color: Option<&OsStr>) -> bool {
    is_terminal && no_color.is_none_or(OsStr::is_empty)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        assert!(use_colour(true, None));
        assert!(use_colour(true, Some(OsStr::new(""))));
        assert!(!use_colour(true, Some(OsStr::new("1"))));
        assert!(!use_colour(true, Some(OsStr::new("0"))));
        // A Pod's log, a file or a pipe: never, whatever NO_COLOR says.
        assert!(!use_colour(false, None));
        assert!(!use_colour(false, Some(OsStr::new("1"))));
    }
}
