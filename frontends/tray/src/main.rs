//! `pacsync-tray` — the tray icon of pacsync: a StatusNotifierItem whose
//! icon, tooltip and menu follow pacsyncd on the system bus, with desktop
//! notifications when the status changes or an operation ends.
//!
//! An unprivileged client: every change it asks for is the daemon's, after
//! polkit said yes; a refusal becomes a notification.

mod icons;
mod notify;
mod tray;
mod view;

use std::path::PathBuf;

use clap::Parser;
use ksni::TrayMethods;
use pacsync_dbus::follow::Event;
use pacsync_dbus::{DaemonError, DaemonProxy};
use tokio::sync::mpsc;

use crate::notify::{Notifier, Slot};
use crate::tray::{Command, PacsyncTray};
use crate::view::{IconKind, Note, Presence};

/// Where packages install the status icons (also in the hicolor theme).
const INSTALLED_ICONS: &str = "/usr/share/pacsync/icons";

#[derive(Debug, Parser)]
#[command(name = "pacsync-tray", version, about = "The tray icon of pacsync")]
struct Args {
    /// The D-Bus address of the system bus (default: the system bus, or
    /// $DBUS_SYSTEM_BUS_ADDRESS).
    #[arg(long, value_name = "ADDRESS")]
    bus: Option<String>,
    /// A directory holding the pacsync-*.svg status icons, for panels that
    /// look icons up by name (default: /usr/share/pacsync/icons when it
    /// exists; the icons are also embedded).
    #[arg(long, value_name = "DIR")]
    icon_dir: Option<PathBuf>,
    /// The program "Open pacsync" starts.
    #[arg(long, value_name = "PROGRAM", default_value = "pacsync-gtk")]
    window: String,
}

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("PACSYNC_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("pacsync_tray=info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("pacsync-tray: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pacsync-tray: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let icon_dir = args
        .icon_dir
        .clone()
        .or_else(|| Some(PathBuf::from(INSTALLED_ICONS)).filter(|p| p.is_dir()))
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let (commands_tx, mut commands) = mpsc::unbounded_channel();
    let (events_tx, mut events) = mpsc::unbounded_channel();
    let (failures_tx, mut failures) = mpsc::unbounded_channel::<Note>();

    let session = zbus::Connection::session().await.ok();
    if session.is_none() {
        tracing::warn!("no session bus: notifications are off");
    }
    let mut notifier = Notifier::new(session);
    // Registers now if a StatusNotifierWatcher is there; otherwise says so
    // (watcher_offline) and registers as soon as one appears.
    let handle = PacsyncTray::new(commands_tx, icon_dir)
        .assume_sni_available(true)
        .spawn()
        .await
        .map_err(|e| anyhow::anyhow!("cannot serve the tray icon on the session bus: {e}"))?;
    // Follows the daemon until this loop is gone.
    tokio::spawn(pacsync_dbus::follow::follow(
        args.bus.clone(),
        move |event| std::future::ready(events_tx.send(event).is_ok()),
    ));

    let mut daemon: Option<DaemonProxy<'static>> = None;
    let mut shown = Presence::Unavailable(String::new());
    loop {
        tokio::select! {
            Some(event) = events.recv() => match event {
                Event::Connected(proxy) => daemon = Some(proxy),
                Event::Presence(p) => {
                    if matches!(p, Presence::Unavailable(_)) {
                        daemon = None;
                    }
                    if let Some(note) = view::status_change_note(&shown, &p) {
                        notifier.send(&note, Slot::Status).await;
                    }
                    shown = p.clone();
                    handle.update(move |t| t.presence = p).await;
                }
                Event::Finished { kind, outcome, message } => {
                    let note = view::finished_note(&kind, &outcome, &message);
                    notifier.send(&note, Slot::Event).await;
                }
                // The reading that follows shows the progress.
                Event::Progress { .. } => {}
            },
            Some(note) = failures.recv() => notifier.send(&note, Slot::Event).await,
            Some(command) = commands.recv() => match command {
                Command::Quit => break,
                Command::OpenWindow => open_window(&args, &failures_tx),
                verb => match &daemon {
                    Some(d) => call(d.clone(), verb, failures_tx.clone()),
                    None => {
                        let _ = failures_tx.send(Note {
                            summary: "pacsyncd is not running".into(),
                            body: "Start it with: systemctl start pacsyncd".into(),
                            icon: IconKind::Unavailable,
                        });
                    }
                },
            },
        }
    }
    handle.shutdown().await;
    Ok(())
}

/// Call the daemon for `verb` without holding up the tray; a refusal or
/// failure becomes a notification. Success shows through the signals.
fn call(d: DaemonProxy<'static>, verb: Command, failures: mpsc::UnboundedSender<Note>) {
    tokio::spawn(async move {
        let (what, action, result) = match verb {
            Command::Sync => (
                "Sync",
                pacsync_dbus::actions::SYNC,
                d.sync().await.map(drop),
            ),
            Command::SetLatest => (
                "Set as latest",
                pacsync_dbus::actions::SET_LATEST,
                d.set_latest("set from the tray").await.map(drop),
            ),
            Command::Revert => (
                "Revert",
                pacsync_dbus::actions::REVERT,
                d.revert().await.map(drop),
            ),
            Command::Cancel => ("Cancel", "", d.cancel().await),
            Command::OpenWindow | Command::Quit => return,
        };
        if let Err(e) = result {
            let _ = failures.send(refusal_note(what, action, &e));
        }
    });
}

fn refusal_note(what: &str, action: &str, e: &DaemonError) -> Note {
    let (summary, body) = match e {
        DaemonError::NotAuthorized(_) => (
            format!("{what}: not authorized"),
            format!(
                "polkit refused {action} for you. An administrator can grant it \
                 with a polkit rule (pacsync ships 49-pacsync.rules.example)."
            ),
        ),
        DaemonError::Busy(_) => (
            format!("{what}: another operation is running"),
            "Try again when it has finished.".into(),
        ),
        DaemonError::ZBus(err) => (format!("{what} failed"), err.to_string()),
        DaemonError::NotRegistered(m)
        | DaemonError::NotInPool(m)
        | DaemonError::NoTarget(m)
        | DaemonError::ServerUnreachable(m)
        | DaemonError::MissingPackages(m)
        | DaemonError::PacmanFailed(m)
        | DaemonError::Cancelled(m)
        | DaemonError::InvalidArgument(m)
        | DaemonError::Internal(m) => (format!("{what} failed"), m.clone()),
    };
    Note {
        summary,
        body,
        icon: IconKind::Error,
    }
}

fn open_window(args: &Args, failures: &mpsc::UnboundedSender<Note>) {
    let mut cmd = tokio::process::Command::new(&args.window);
    if let Some(bus) = &args.bus {
        cmd.arg("--bus").arg(bus);
    }
    match cmd.spawn() {
        // Reap it whenever it exits.
        Ok(mut child) => {
            tokio::spawn(async move { child.wait().await });
        }
        Err(e) => {
            let _ = failures.send(Note {
                summary: "Cannot open pacsync".into(),
                body: format!("{}: {e}", args.window),
                icon: IconKind::Error,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_polkit_refusal_names_the_action() {
        let n = refusal_note(
            "Sync",
            pacsync_dbus::actions::SYNC,
            &DaemonError::NotAuthorized("no".into()),
        );
        assert_eq!(n.summary, "Sync: not authorized");
        assert!(n.body.contains("org.pacsync.sync"), "{}", n.body);
        let n = refusal_note("Revert", "", &DaemonError::PacmanFailed("conflict".into()));
        assert_eq!(
            (n.summary.as_str(), n.body.as_str()),
            ("Revert failed", "conflict")
        );
    }
}
