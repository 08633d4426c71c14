//! Tracing set-up shared by every binary: human-readable logs on stderr,
//! filtered by `RUST_LOG` (default `info`).

use tracing_subscriber::EnvFilter;

/// Install the global subscriber. Safe to call more than once (later calls
/// are no-ops), so tests and multi-role binaries need not coordinate.
pub fn init(service: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
    tracing::debug!(service, "tracing initialised");
}
