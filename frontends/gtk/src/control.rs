//! The automation socket: with `PACSYNC_GTK_CONTROL=/path/to/socket` the
//! window listens there for one-line commands and answers each with one
//! JSON line. Tests and screenshot scripts drive the real window through it
//! with the same widget calls a click makes (`gtk_widget_activate`-style
//! `emit_clicked`), and read back what the widgets show.
//!
//! Commands: `state`; `click NAME` (a button's widget name: sync,
//! set-latest, revert, refresh, cancel, dismiss, dialog-confirm,
//! dialog-cancel, settings-save, settings-register); `page NAME` (plan,
//! history, settings); `filter TEXT`; `sort COLUMN asc|desc`;
//! `screenshot PATH` (the main window) and `screenshot-dialog PATH`.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use gtk::prelude::*;
use gtk::{gdk, glib, graphene};
use serde_json::{Value, json};

use crate::window::Ui;

type Request = (String, std::sync::mpsc::Sender<Value>);

/// Listen on `path`; commands are carried out on the GTK main loop.
pub fn serve(ui: &Rc<Ui>, path: PathBuf) -> std::io::Result<()> {
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path)?;
    let (tx, rx) = async_channel::unbounded::<Request>();
    std::thread::spawn(move || {
        for stream in listener.incoming().map_while(Result::ok) {
            let tx = tx.clone();
            std::thread::spawn(move || {
                let Ok(reader) = stream.try_clone() else {
                    return;
                };
                let mut writer = stream;
                for line in BufReader::new(reader).lines().map_while(Result::ok) {
                    let (reply_tx, reply_rx) = std::sync::mpsc::channel();
                    if tx.send_blocking((line, reply_tx)).is_err() {
                        return;
                    }
                    let reply = reply_rx
                        .recv()
                        .unwrap_or_else(|_| json!({"error": "the window closed"}));
                    if writeln!(writer, "{reply}").is_err() {
                        return;
                    }
                }
            });
        }
    });
    let ui = ui.clone();
    glib::spawn_future_local(async move {
        while let Ok((line, reply)) = rx.recv().await {
            let line = line.trim();
            let answer = match line.split_once(' ') {
                Some(("screenshot", path)) => {
                    let window = ui.window.clone().upcast::<gtk::Window>();
                    shot(screenshot(&window, Path::new(path)).await)
                }
                Some(("screenshot-dialog", path)) => {
                    let dialog = ui.dialog.borrow().as_ref().map(|d| d.window.clone());
                    match dialog {
                        Some(d) => shot(screenshot(&d, Path::new(path)).await),
                        None => json!({"error": "no dialog is open"}),
                    }
                }
                _ => run(&ui, line),
            };
            let _ = reply.send(answer);
        }
    });
    Ok(())
}

fn run(ui: &Rc<Ui>, line: &str) -> Value {
    let (command, arg) = line.split_once(' ').unwrap_or((line, ""));
    let result = match command {
        "state" => return state(ui),
        "click" => click(ui, arg),
        "page" => {
            if ui.stack.child_by_name(arg).is_some() {
                ui.stack.set_visible_child_name(arg);
                Ok(())
            } else {
                Err(format!("no page {arg:?}"))
            }
        }
        "filter" => {
            ui.plan.search.set_text(arg);
            // The entry delays search-changed; filter now.
            ui.plan.search.emit_by_name::<()>("search-changed", &[]);
            Ok(())
        }
        "sort" => {
            let (column, order) = arg.rsplit_once(' ').unwrap_or((arg, "asc"));
            if ui.plan.sort_by(column, order == "desc") {
                Ok(())
            } else {
                Err(format!("no column {column:?}"))
            }
        }
        other => Err(format!("unknown command {other:?}")),
    };
    match result {
        Ok(()) => json!({"ok": true}),
        Err(e) => json!({"error": e}),
    }
}

fn shot(result: Result<(), String>) -> Value {
    match result {
        Ok(()) => json!({"ok": true}),
        Err(e) => json!({"error": e}),
    }
}

fn find_button(root: &gtk::Widget, name: &str) -> Option<gtk::Button> {
    if root.widget_name() == name
        && let Some(b) = root.downcast_ref::<gtk::Button>()
    {
        return Some(b.clone());
    }
    let mut child = root.first_child();
    while let Some(c) = child {
        if let Some(b) = find_button(&c, name) {
            return Some(b);
        }
        child = c.next_sibling();
    }
    None
}

fn click(ui: &Rc<Ui>, name: &str) -> Result<(), String> {
    let dialog = ui.dialog.borrow().as_ref().map(|d| d.window.clone());
    let found = dialog
        .and_then(|d| find_button(d.upcast_ref(), name))
        .or_else(|| find_button(ui.window.upcast_ref(), name))
        .ok_or_else(|| format!("no button {name:?}"))?;
    if !found.is_sensitive() || !found.is_visible() {
        return Err(format!("button {name:?} is not clickable now"));
    }
    found.emit_clicked();
    Ok(())
}

fn state(ui: &Rc<Ui>) -> Value {
    let presence = ui.presence.borrow().clone();
    let (status, view) = match &presence {
        crate::model::Presence::Ready(v) => (v.status.clone(), Some(v.clone())),
        crate::model::Presence::Unavailable(_) => ("unavailable".into(), None),
    };
    let log = ui.progress.borrow().clone();
    let dialog = ui.dialog.borrow().as_ref().map(|d| {
        json!({
            "title": d.window.title().map(|t| t.to_string()),
            "verb": d.verb.preview_kind(),
            "rows": d.rows,
            "confirm_enabled": d.confirm.is_sensitive(),
        })
    });
    let sensitive = |b: &gtk::Button| b.is_sensitive() && b.is_visible();
    json!({
        "status": status,
        "status_text": ui.status_label.text().as_str(),
        "details": ui.details.text().as_str(),
        "icon": ui.status_icon.icon_name().map(|s| s.to_string()),
        "pool": view.as_ref().map(|v| v.pool.clone()),
        "plan": ui.plan.visible_rows(),
        "plan_placeholder": ui.plan.placeholder_text(),
        "filter": ui.plan.filter_text(),
        "progress": {
            "visible": ui.progress_panel.is_visible(),
            "title": ui.progress_title.text().as_str(),
            "fraction": ui.progress_bar.fraction(),
            "log": log.lines,
            "outcome": log.outcome.as_ref().map(|(o, _)| o.clone()),
        },
        "error": ui.error_bar.is_revealed().then(|| ui.error_label.text().to_string()),
        "buttons": {
            "sync": sensitive(&ui.sync_button),
            "set_latest": sensitive(&ui.set_latest_button),
            "revert": sensitive(&ui.revert_button),
            "refresh": sensitive(&ui.refresh_button),
            "cancel": sensitive(&ui.cancel_button),
        },
        "dialog": dialog,
        "history": ui.history_rows.borrow().iter().map(|h| json!({
            "kind": h.kind, "outcome": h.outcome, "message": h.message,
        })).collect::<Vec<_>>(),
        "page": ui.stack.visible_child_name().map(|s| s.to_string()),
        "settings_result": ui.settings.result.text().as_str(),
    })
}

/// Wait until `window` has painted a frame (after the last change).
async fn painted(window: &gtk::Window) {
    let Some(clock) = window.frame_clock() else {
        return;
    };
    let (tx, rx) = async_channel::bounded::<()>(1);
    let handler = clock.connect_after_paint(move |_| {
        let _ = tx.try_send(());
    });
    window.queue_draw();
    let _ = rx.recv().await;
    clock.disconnect(handler);
}

/// Render `window` as GTK draws it and save a PNG.
async fn screenshot(window: &gtk::Window, path: &Path) -> Result<(), String> {
    let mut node = None;
    // A page just switched may need a few frames to settle.
    for _ in 0..20 {
        painted(window).await;
        let (w, h) = (window.width(), window.height());
        if w <= 0 || h <= 0 {
            continue;
        }
        let paintable = gtk::WidgetPaintable::new(Some(window));
        let snapshot = gtk::Snapshot::new();
        paintable.snapshot(&snapshot, f64::from(w), f64::from(h));
        node = snapshot.to_node();
        if node.is_some() {
            break;
        }
    }
    let node = node.ok_or_else(|| "nothing was drawn".to_owned())?;
    let (w, h) = (window.width(), window.height());
    let renderer = window
        .renderer()
        .ok_or_else(|| "the window has no renderer".to_owned())?;
    let texture: gdk::Texture = renderer.render_texture(
        &node,
        Some(&graphene::Rect::new(0.0, 0.0, w as f32, h as f32)),
    );
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    }
    texture.save_to_png(path).map_err(|e| e.to_string())
}
