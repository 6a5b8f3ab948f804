//! pacsyncd — pacsync's system daemon.
//!
//! Serves `org.pacsync.Daemon1` on the system bus (the address in
//! `DBUS_SYSTEM_BUS_ADDRESS` when set, as for any system-bus client).

mod archive;
mod config;
mod daemon;
mod executor;
mod machine;
mod operation;
mod pacman;
mod pacman_version;
mod push;
mod reporter;
mod server;
mod service;
mod store;
mod watch;

use std::path::PathBuf;

use anyhow::Context;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::{Config, DEFAULT_CONFIG_PATH};
use crate::daemon::Daemon;
use crate::service::DaemonService;

const USAGE: &str = "usage: pacsyncd [--config FILE]\n\
    Serves org.pacsync.Daemon1 on the system bus. FILE defaults to /etc/pacsync/pacsyncd.toml.";

fn init_logging() {
    let filter = EnvFilter::try_from_env("PACSYNC_LOG")
        .unwrap_or_else(|_| EnvFilter::new("pacsyncd=info,warn"));
    // Under systemd stderr is connected to the journal (JOURNAL_STREAM);
    // log there natively, with fields, and to stderr everywhere else.
    let journald = std::env::var_os("JOURNAL_STREAM").and_then(|_| tracing_journald::layer().ok());
    let registry = tracing_subscriber::registry().with(filter);
    match journald {
        Some(layer) => registry.with(layer).init(),
        None => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(std::io::stderr)
                    .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())),
            )
            .init(),
    }
}

fn parse_args() -> anyhow::Result<(PathBuf, bool)> {
    let mut args = std::env::args().skip(1);
    let mut path = (PathBuf::from(DEFAULT_CONFIG_PATH), false);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--config" => {
                let p = args.next().context("--config needs a file")?;
                path = (PathBuf::from(p), true);
            }
            "--version" => {
                println!("pacsyncd {}", env!("CARGO_PKG_VERSION"));
                std::process::exit(0);
            }
            "--help" | "-h" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => anyhow::bail!("unknown argument {other:?}\n{USAGE}"),
        }
    }
    Ok(path)
}

#[tokio::main]
async fn main() {
    init_logging();
    if let Err(e) = run().await {
        tracing::error!("{e:#}");
        eprintln!("pacsyncd: {e:#}");
        std::process::exit(1);
    }
}

async fn run() -> anyhow::Result<()> {
    let (config_path, explicit) = parse_args()?;
    let config = Config::load(&config_path, explicit)?;
    match pacman_version::detect(&config.pacman.binary, &config.pacman.config).await {
        Some(info) => tracing::info!(
            pacman = %info.pacman,
            libalpm = %info.libalpm,
            download_user = info.download_user.as_deref().unwrap_or(""),
            sandboxed_downloads = info.sandboxed_downloads(),
            "pacman found"
        ),
        None => tracing::warn!(
            "cannot tell which pacman {} is; running it all the same",
            config.pacman.binary.display()
        ),
    }
    let daemon = Daemon::new(config)?;
    daemon.rescan().await;

    let connection = zbus::connection::Builder::system()
        .context("cannot reach the system bus")?
        .serve_at(
            pacsync_dbus::OBJECT_PATH,
            DaemonService {
                daemon: daemon.clone(),
            },
        )?
        .name(pacsync_dbus::BUS_NAME)?
        .build()
        .await
        .context("cannot own org.pacsync.Daemon1 on the system bus (only root may)")?;
    let _ = daemon.connection.set(connection);
    daemon.update(|_| ()).await;
    tracing::info!("serving {} on the system bus", pacsync_dbus::BUS_NAME);

    tokio::spawn(reporter::run(daemon.clone()));
    tokio::spawn(push::run(daemon.clone()));
    let watcher = tokio::spawn(watch::run(daemon.clone()));

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: stopping"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: stopping"),
        r = watcher => {
            match r {
                Ok(Err(e)) => anyhow::bail!("watching the pacman database failed: {e:#}"),
                Ok(Ok(())) => anyhow::bail!("the pacman database watch ended"),
                Err(e) => anyhow::bail!("the database watcher panicked: {e}"),
            }
        }
    }
    Ok(())
}
