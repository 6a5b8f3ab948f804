//! `pacsync-gtk` — the window of pacsync: the status, the plan to the
//! pool's target, Sync / Set as latest / Revert with a confirmation showing
//! the plan, progress with Cancel, history and settings.
//!
//! An unprivileged client of pacsyncd on the system bus that follows it by
//! signals; every change is the daemon's, after polkit said yes.

mod confirm;
mod control;
mod daemon;
mod model;
mod plan_table;
mod settings;
mod window;

use std::path::PathBuf;

use clap::Parser;
use gtk::prelude::*;
use gtk::{gdk, gio, glib};

/// Where packages install the status icons (also in the hicolor theme).
const INSTALLED_ICONS: &str = "/usr/share/pacsync/icons";
/// Set to a socket path to drive the window from outside (see `control`).
const CONTROL_ENV: &str = "PACSYNC_GTK_CONTROL";

const CSS: &str = "
.status-in_sync { color: @success_color; }
.status-behind, .status-syncing { color: @warning_color; }
.status-ahead { color: @theme_selected_bg_color; }
.status-diverged, .status-error { color: @error_color; }
.plan-install, .outcome-succeeded, .success { color: @success_color; }
.plan-remove, .outcome-failed, label.error { color: @error_color; }
#progress { padding: 12px; border: 1px solid @borders; border-radius: 8px; }
";

#[derive(Debug, Parser)]
#[command(name = "pacsync-gtk", version, about = "The window of pacsync")]
struct Args {
    /// The D-Bus address of the system bus (default: the system bus, or
    /// $DBUS_SYSTEM_BUS_ADDRESS).
    #[arg(long, value_name = "ADDRESS")]
    bus: Option<String>,
    /// A directory holding the pacsync icons (default:
    /// /usr/share/pacsync/icons when it exists, else the icon theme).
    #[arg(long, value_name = "DIR")]
    icon_dir: Option<PathBuf>,
}

fn main() -> glib::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("PACSYNC_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("pacsync_gtk=info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    // zbus runs on a runtime of its own; GTK keeps the main thread.
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("pacsync-gtk: {e}");
            return glib::ExitCode::FAILURE;
        }
    };
    let app = gtk::Application::builder()
        .application_id("org.pacsync.Gtk")
        .flags(gio::ApplicationFlags::default())
        .build();
    let handle = runtime.handle().clone();
    app.connect_activate(move |app| {
        if let Some(w) = app.active_window() {
            w.present();
            return;
        }
        activate(app, &args, handle.clone());
    });
    // Our arguments are parsed above; GTK gets only the program name.
    let code = app.run_with_args(&[std::env::args().next().unwrap_or_default()]);
    runtime.shutdown_background();
    code
}

fn activate(app: &gtk::Application, args: &Args, runtime: tokio::runtime::Handle) {
    if let Some(display) = gdk::Display::default() {
        let css = gtk::CssProvider::new();
        css.load_from_data(CSS);
        gtk::style_context_add_provider_for_display(
            &display,
            &css,
            gtk::STYLE_PROVIDER_PRIORITY_APPLICATION,
        );
        let icons = args
            .icon_dir
            .clone()
            .or_else(|| Some(PathBuf::from(INSTALLED_ICONS)).filter(|p| p.is_dir()));
        if let Some(dir) = icons {
            gtk::IconTheme::for_display(&display).add_search_path(dir);
        }
    }
    let (daemon, events) = daemon::Daemon::start(runtime, args.bus.clone());
    let ui = window::build(app, daemon);
    add_actions(app, &ui);
    {
        let ui = ui.clone();
        glib::spawn_future_local(async move {
            while let Ok(event) = events.recv().await {
                ui.handle(event);
            }
        });
    }
    if let Some(path) = std::env::var_os(CONTROL_ENV).map(PathBuf::from)
        && let Err(e) = control::serve(&ui, path.clone())
    {
        tracing::error!("cannot listen on {}: {e}", path.display());
    }
    ui.window.present();
}

fn add_actions(app: &gtk::Application, ui: &std::rc::Rc<window::Ui>) {
    let refresh = gio::SimpleAction::new("refresh", None);
    {
        let ui = ui.clone();
        refresh.connect_activate(move |_, _| {
            if ui.refresh_button.is_sensitive() {
                ui.refresh();
            }
        });
    }
    let find = gio::SimpleAction::new("find", None);
    {
        let ui = ui.clone();
        find.connect_activate(move |_, _| {
            ui.stack.set_visible_child_name("plan");
            ui.plan.search.grab_focus();
        });
    }
    let quit = gio::SimpleAction::new("quit", None);
    {
        let app = app.clone();
        quit.connect_activate(move |_, _| app.quit());
    }
    app.add_action(&refresh);
    app.add_action(&find);
    app.add_action(&quit);
    app.set_accels_for_action("app.refresh", &["F5", "<Control>r"]);
    app.set_accels_for_action("app.find", &["<Control>f"]);
    app.set_accels_for_action("app.quit", &["<Control>q"]);
}
