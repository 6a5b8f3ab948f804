//! `pacsync` — the command line of pacsync, and its WayBar module.
//!
//! An unprivileged client of pacsyncd's D-Bus API: it never runs pacman
//! itself; every change is the daemon's, after polkit said yes.

mod commands;
mod output;
mod waybar;

use std::process::ExitCode;

use clap::{Args, CommandFactory, Parser, Subcommand};
use pacsync_dbus::{DaemonError, DaemonProxy};

/// Exit codes, documented in `pacsync --help` and the man page.
pub mod exit {
    pub const OK: u8 = 0;
    pub const ERROR: u8 = 1;
    pub const USAGE: u8 = 2;
    pub const NOT_IN_SYNC: u8 = 3;
    pub const DAEMON_UNREACHABLE: u8 = 4;
    pub const NOT_AUTHORIZED: u8 = 5;
}

const AFTER_HELP: &str = "\
Exit codes:
  0  success (for `status`: in sync)
  1  error (the message says which)
  2  usage error
  3  not in sync (`status` only: behind, ahead, diverged, …)
  4  pacsyncd unreachable (not running, or no system bus)
  5  not authorized (polkit refused)

Script flags: --status, --sync, --set-latest and --revert do what the
subcommands of the same names do, without asking (as with --yes).";

#[derive(Debug, Parser)]
#[command(name = "pacsync", version, about = "Keep this machine's packages in step with its pool", after_help = AFTER_HELP)]
pub struct Cli {
    #[command(subcommand)]
    command: Option<Command>,

    #[command(flatten)]
    global: Global,

    /// Print the status (as `pacsync status`).
    #[arg(long, group = "script")]
    status: bool,
    /// Sync to the pool's target without asking (as `pacsync sync --yes`).
    #[arg(long, group = "script")]
    sync: bool,
    /// Make this machine's state the pool's target without asking.
    #[arg(long = "set-latest", group = "script")]
    set_latest: bool,
    /// Revert the last operation without asking.
    #[arg(long, group = "script")]
    revert: bool,
}

#[derive(Debug, Clone, Args)]
pub struct Global {
    /// Print JSON instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    /// The D-Bus address of the system bus (default: the system bus, or
    /// $DBUS_SYSTEM_BUS_ADDRESS).
    #[arg(long, global = true, value_name = "ADDRESS")]
    pub bus: Option<String>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Show the status against the pool's target (exit 3 when not in sync).
    Status,
    /// Show what an operation would change, without doing it.
    Plan {
        /// sync, revert or set-latest.
        #[arg(long, default_value = "sync", value_parser = ["sync", "revert", "set-latest"])]
        kind: String,
    },
    /// Make this machine equal to the pool's target.
    Sync {
        /// Do not ask before applying.
        #[arg(long, short = 'y')]
        yes: bool,
    },
    /// Make this machine's packages the pool's new target.
    SetLatest {
        /// A comment for the target's history.
        #[arg(long, short = 'm', default_value = "")]
        message: String,
        #[arg(long, short = 'y')]
        yes: bool,
    },
    /// Go back to the state before the last sync or revert.
    Revert {
        #[arg(long, short = 'y')]
        yes: bool,
    },
    /// Cancel the running operation (possible until pacman starts).
    Cancel,
    /// Show the latest operations.
    History {
        #[arg(long, short = 'n', default_value_t = 20)]
        limit: u32,
    },
    /// Enroll this machine with a server.
    Register {
        /// The server's URL, e.g. https://pacsync.example.org
        #[arg(long)]
        server: String,
        /// The enrollment token an admin issued.
        #[arg(long)]
        token: String,
        /// The machine's name on the server (default: the host name).
        #[arg(long)]
        name: Option<String>,
    },
    /// Stream the status as WayBar JSON, one line per change.
    Waybar,
    /// Print shell completions.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff).
    Man,
}

/// A failure with the exit code it maps to.
#[derive(Debug)]
pub struct Failure {
    pub code: u8,
    pub message: String,
}

impl Failure {
    pub fn new(code: u8, message: impl Into<String>) -> Failure {
        Failure {
            code,
            message: message.into(),
        }
    }
}

impl From<DaemonError> for Failure {
    fn from(e: DaemonError) -> Failure {
        match e {
            DaemonError::NotAuthorized(m) => {
                Failure::new(exit::NOT_AUTHORIZED, format!("not authorized: {m}"))
            }
            DaemonError::ZBus(z) => Failure::from(z),
            other => {
                let text = other.to_string();
                Failure::new(exit::ERROR, text)
            }
        }
    }
}

impl From<zbus::Error> for Failure {
    fn from(e: zbus::Error) -> Failure {
        let unreachable = match &e {
            zbus::Error::MethodError(name, _, _) => {
                let n = name.as_str();
                n == "org.freedesktop.DBus.Error.ServiceUnknown"
                    || n == "org.freedesktop.DBus.Error.NameHasNoOwner"
                    || n == "org.freedesktop.DBus.Error.NoReply"
            }
            zbus::Error::InputOutput(_) | zbus::Error::Address(_) | zbus::Error::Handshake(_) => {
                true
            }
            zbus::Error::FDO(f) => matches!(
                **f,
                zbus::fdo::Error::ServiceUnknown(_)
                    | zbus::fdo::Error::NameHasNoOwner(_)
                    | zbus::fdo::Error::NoReply(_)
            ),
            _ => false,
        };
        if unreachable {
            Failure::new(
                exit::DAEMON_UNREACHABLE,
                format!(
                    "pacsyncd is not reachable ({e}); is it installed and running? (systemctl status pacsyncd)"
                ),
            )
        } else {
            Failure::new(exit::ERROR, e.to_string())
        }
    }
}

impl From<zbus::fdo::Error> for Failure {
    fn from(e: zbus::fdo::Error) -> Failure {
        Failure::from(zbus::Error::FDO(Box::new(e)))
    }
}

pub async fn connect(global: &Global) -> Result<zbus::Connection, Failure> {
    let builder = match &global.bus {
        Some(addr) => zbus::connection::Builder::address(addr.as_str()),
        None => zbus::connection::Builder::system(),
    };
    let conn = async { builder?.build().await }.await.map_err(|e| {
        Failure::new(
            exit::DAEMON_UNREACHABLE,
            format!("cannot connect to the system bus: {e}"),
        )
    })?;
    Ok(conn)
}

pub async fn proxy(conn: &zbus::Connection) -> Result<DaemonProxy<'static>, Failure> {
    DaemonProxy::builder(conn)
        .cache_properties(zbus::proxy::CacheProperties::No)
        .build()
        .await
        .map_err(Failure::from)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let global = cli.global.clone();
    let result = match (
        cli.command,
        cli.status,
        cli.sync,
        cli.set_latest,
        cli.revert,
    ) {
        (Some(Command::Completions { shell }), ..) => {
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "pacsync",
                &mut std::io::stdout(),
            );
            Ok(exit::OK)
        }
        (Some(Command::Man), ..) => clap_mangen::Man::new(Cli::command())
            .render(&mut std::io::stdout())
            .map(|()| exit::OK)
            .map_err(|e| Failure::new(exit::ERROR, e.to_string())),
        (Some(Command::Waybar), ..) => waybar::run(&global).await,
        (Some(cmd), ..) => run(cmd, &global).await,
        (None, true, ..) => run(Command::Status, &global).await,
        (None, _, true, ..) => run(Command::Sync { yes: true }, &global).await,
        (None, _, _, true, _) => {
            run(
                Command::SetLatest {
                    message: String::new(),
                    yes: true,
                },
                &global,
            )
            .await
        }
        (None, .., true) => run(Command::Revert { yes: true }, &global).await,
        (None, ..) => run(Command::Status, &global).await,
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(f) => {
            if global.json {
                println!(
                    "{}",
                    serde_json::json!({ "error": { "code": f.code, "message": f.message } })
                );
            } else {
                eprintln!("pacsync: {}", f.message);
            }
            ExitCode::from(f.code)
        }
    }
}

async fn run(cmd: Command, global: &Global) -> Result<u8, Failure> {
    let conn = connect(global).await?;
    let daemon = proxy(&conn).await?;
    match cmd {
        Command::Status => commands::status(&daemon, global).await,
        Command::Plan { kind } => commands::plan(&daemon, global, &kind).await,
        Command::Sync { yes } => commands::operate(&daemon, global, "sync", yes, "").await,
        Command::SetLatest { message, yes } => {
            commands::operate(&daemon, global, "set-latest", yes, &message).await
        }
        Command::Revert { yes } => commands::operate(&daemon, global, "revert", yes, "").await,
        Command::Cancel => commands::cancel(&daemon, global).await,
        Command::History { limit } => commands::history(&daemon, global, limit).await,
        Command::Register {
            server,
            token,
            name,
        } => commands::register(&daemon, global, &server, &token, name).await,
        Command::Waybar | Command::Completions { .. } | Command::Man => Ok(exit::USAGE),
    }
}
