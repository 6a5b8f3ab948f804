//! Logs go to journald when running under systemd, else to stderr.

use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

/// `level` is a level for our crate (`info`, `debug`, …) or a full filter
/// directive (`warn,pacsync_server=trace`).
pub fn init(level: &str) {
    let directive = if level.contains('=') || level.contains(',') {
        level.to_owned()
    } else {
        format!("warn,pacsync_server={level},pacsync_core={level}")
    };
    let filter = EnvFilter::try_new(&directive)
        .unwrap_or_else(|_| EnvFilter::new("warn,pacsync_server=info"));
    // systemd sets JOURNAL_STREAM for services whose output goes to the journal.
    let journald = std::env::var_os("JOURNAL_STREAM").and_then(|_| tracing_journald::layer().ok());
    let registry = tracing_subscriber::registry().with(filter);
    let result = match journald {
        Some(layer) => registry.with(layer).try_init(),
        None => registry
            .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
            .try_init(),
    };
    // A second init (tests) keeps the first subscriber.
    drop(result);
}
