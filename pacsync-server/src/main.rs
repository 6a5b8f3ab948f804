//! `pacsync-server`: serve the API (default), run migrations, or do admin
//! chores from the shell. Configuration: see docs/server.md.

use std::io::{BufRead as _, IsTerminal as _};
use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use pacsync_server::Settings;
use pacsync_server::auth::Role;
use pacsync_server::store::Store;

/// mimalloc rather than glibc's malloc: a report allocates and frees a few
/// hundred KiB of JSON on whichever thread runs it, which glibc's per-thread
/// arenas answer with fragmentation (resident memory) and contention.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(version, about = "pacsync's central server")]
struct Cli {
    /// TOML config file (else $PACSYNC_CONFIG, else none); the environment
    /// overrides it.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the API (the default).
    Serve,
    /// Run pending database migrations and exit.
    Migrate,
    /// Exit 0 if the local server answers /health/ready, else 1 (for
    /// container health checks; reads the same configuration as `serve`).
    Healthcheck,
    /// Admin chores.
    #[command(subcommand)]
    Admin(Admin),
    /// The package archive (docs/archive.md).
    #[command(subcommand)]
    Archive(pacsync_server::archive::cli::ArchiveCommand),
}

#[derive(Debug, Subcommand)]
enum Admin {
    /// Create a user; the password is read from PACSYNC_ADMIN_PASSWORD or
    /// the first line of standard input.
    CreateUser {
        name: String,
        #[arg(long, value_parser = parse_role, default_value = "admin")]
        role: Role,
    },
    /// Issue an enrollment token for machines; printed once, stored hashed.
    EnrollmentToken {
        /// Pool (id or name) the enrolled machines join.
        #[arg(long)]
        pool: Option<String>,
        /// Lifetime, e.g. 30m, 24h, 7d.
        #[arg(long, default_value = "24h", value_parser = humantime::parse_duration)]
        expires: std::time::Duration,
    },
    /// Make an API token for automation; printed once, stored hashed.
    ApiToken {
        /// A name to tell it by in listings and the audit log.
        name: String,
        #[arg(long, value_parser = parse_role, default_value = "viewer")]
        role: Role,
        /// Lifetime, e.g. 90d; without it the token lasts until revoked.
        #[arg(long, value_parser = humantime::parse_duration)]
        expires: Option<std::time::Duration>,
    },
}

fn parse_role(s: &str) -> Result<Role, String> {
    Role::parse(s).ok_or_else(|| format!("role must be admin, operator or viewer, not {s:?}"))
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let settings = Settings::load(cli.config.as_deref())?;
    if let Some(Command::Healthcheck) = cli.command {
        // No logging setup: the exit code and one line are the answer.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting the async runtime")?;
        return match runtime.block_on(pacsync_server::healthcheck::check(&settings)) {
            Ok(()) => Ok(()),
            Err(e) => {
                eprintln!("unhealthy: {e:#}");
                std::process::exit(1);
            }
        };
    }
    pacsync_server::logging::init(&settings.log_level);
    match cli.command.unwrap_or(Command::Serve) {
        Command::Healthcheck => Ok(()),
        Command::Serve => serve(settings),
        Command::Migrate => {
            let store = Store::open(&settings.database)?;
            let done = store.migrate()?;
            println!("applied {} migration(s)", done.len());
            Ok(())
        }
        Command::Archive(cmd) => {
            let store = Store::open(&settings.database)?;
            store.migrate()?;
            let archive = pacsync_server::archive::Archive::open(&settings.archive)?;
            let code = pacsync_server::archive::cli::run(&store, &archive, cmd)?;
            std::process::exit(code);
        }
        Command::Admin(admin) => {
            let store = Store::open(&settings.database)?;
            store.migrate()?;
            match admin {
                Admin::CreateUser { name, role } => {
                    let password = read_password()?;
                    let user = pacsync_server::admin::create_user(&store, &name, role, &password)?;
                    println!("created user {} ({})", user.name, user.role);
                }
                Admin::EnrollmentToken { pool, expires } => {
                    let ttl = i64::try_from(expires.as_secs()).context("--expires too large")?;
                    let (row, token) =
                        pacsync_server::admin::enrollment_token(&store, pool.as_deref(), ttl)?;
                    eprintln!(
                        "enrollment token {} (expires {}); it is shown only now:",
                        row.id,
                        pacsync_server::api::rfc3339(row.expires_at)
                    );
                    println!("{token}");
                }
                Admin::ApiToken {
                    name,
                    role,
                    expires,
                } => {
                    let ttl = expires
                        .map(|e| i64::try_from(e.as_secs()).context("--expires too large"))
                        .transpose()?;
                    let (row, token) = pacsync_server::admin::api_token(&store, &name, role, ttl)?;
                    eprintln!(
                        "API token {} ({}, {}); it is shown only now:",
                        row.name,
                        row.role,
                        row.expires_at.map_or_else(
                            || "no expiry".to_owned(),
                            |e| format!("expires {}", pacsync_server::api::rfc3339(e))
                        )
                    );
                    println!("{token}");
                }
            }
            Ok(())
        }
    }
}

fn read_password() -> anyhow::Result<String> {
    if let Ok(p) = std::env::var("PACSYNC_ADMIN_PASSWORD") {
        return Ok(p);
    }
    if std::io::stdin().is_terminal() {
        eprint!("password: ");
    }
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("reading the password from stdin")?;
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}

fn serve(settings: Settings) -> anyhow::Result<()> {
    // Database calls run on blocking threads, each holding one while it
    // waits for a pooled connection: more threads than connections only
    // wait, and every extra thread costs memory (stack, malloc arena).
    let blocking = settings.database.effective_pool_size() as usize + 4;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(blocking)
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let addr = format!("{}:{}", settings.http_host, settings.http_port);
        let listener = tokio::net::TcpListener::bind(&addr)
            .await
            .with_context(|| format!("listening on {addr}"))?;
        let scheme = if settings.tls.is_some() {
            "https"
        } else {
            "http"
        };
        let local = listener.local_addr()?;
        let database = match settings.database.kind {
            pacsync_server::settings::DatabaseKind::Internal => {
                format!("SQLite at {}", settings.database.url.expose())
            }
            pacsync_server::settings::DatabaseKind::Postgresql => "PostgreSQL".to_owned(),
        };
        let server = pacsync_server::Server::prepare(settings).await?;
        println!("pacsync-server listening on {scheme}://{local} ({database})");
        tracing::info!("listening on {scheme}://{local}");
        server.serve(listener, shutdown_signal()).await
    })
}

/// Completes on SIGTERM or SIGINT.
async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::warn!("cannot watch SIGTERM: {e}");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = term => {}
    }
    tracing::info!("shutdown requested");
}
