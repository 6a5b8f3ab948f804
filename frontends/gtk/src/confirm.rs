//! The confirmation before every change: the plan of exactly what will
//! happen (the daemon's Preview), then Confirm or Cancel (Escape).

use std::rc::Rc;

use gtk::glib;
use gtk::prelude::*;

use crate::model::{Column, Verb};
use crate::window::Ui;

#[derive(Debug, Clone)]
pub struct Confirmation {
    pub window: gtk::Window,
    pub verb: Verb,
    pub rows: usize,
    pub confirm: gtk::Button,
}

/// Show the dialog for `verb`, with its plan loaded from the daemon.
pub fn ask(ui: &Rc<Ui>, verb: Verb) {
    let ui = ui.clone();
    glib::spawn_future_local(async move {
        let steps = match ui.preview(verb).await {
            Ok(s) => s,
            Err(e) => {
                ui.show_error(&e);
                return;
            }
        };
        let dialog = gtk::Window::builder()
            .title(verb.title())
            .modal(true)
            .transient_for(&ui.window)
            .default_width(640)
            .default_height(420)
            .build();
        dialog.set_widget_name("confirmation");
        let body = gtk::Box::new(gtk::Orientation::Vertical, 10);
        body.set_margin_top(16);
        body.set_margin_bottom(16);
        body.set_margin_start(16);
        body.set_margin_end(16);
        let heading = gtk::Label::builder()
            .label(verb.title())
            .xalign(0.0)
            .css_classes(["title-2"])
            .build();
        let summary = gtk::Label::builder()
            .label(format!(
                "{} ({})",
                verb.explanation(),
                pacsync_dbus::PlanCounts::of_steps(&steps).summary()
            ))
            .xalign(0.0)
            .wrap(true)
            .build();
        body.append(&heading);
        body.append(&summary);

        let grid = gtk::Grid::builder()
            .column_spacing(18)
            .row_spacing(4)
            .build();
        for (c, column) in Column::ALL.iter().enumerate() {
            let l = gtk::Label::builder()
                .label(column.title())
                .xalign(0.0)
                .css_classes(["heading"])
                .build();
            grid.attach(&l, c as i32, 0, 1, 1);
        }
        for (r, step) in steps.iter().enumerate() {
            for (c, column) in Column::ALL.iter().enumerate() {
                let l = gtk::Label::builder()
                    .label(column.text(step))
                    .xalign(0.0)
                    .build();
                grid.attach(&l, c as i32, r as i32 + 1, 1, 1);
            }
        }
        let scroll = gtk::ScrolledWindow::builder()
            .child(&grid)
            .vexpand(true)
            .build();
        body.append(&scroll);

        let comment = gtk::Entry::builder()
            .placeholder_text("Comment for the pool's history (optional)")
            .visible(verb == Verb::SetLatest)
            .activates_default(true)
            .build();
        comment.set_widget_name("comment");
        body.append(&comment);

        let cancel = gtk::Button::with_mnemonic("_Cancel");
        cancel.set_widget_name("dialog-cancel");
        let confirm = gtk::Button::with_mnemonic(verb.confirm_label());
        confirm.set_widget_name("dialog-confirm");
        confirm.add_css_class(if verb == Verb::Sync {
            "suggested-action"
        } else {
            "destructive-action"
        });
        // Nothing to do: say so, and let only Cancel close.
        confirm.set_sensitive(!steps.is_empty() || verb == Verb::SetLatest);
        let buttons = gtk::Box::new(gtk::Orientation::Horizontal, 8);
        buttons.set_halign(gtk::Align::End);
        buttons.append(&cancel);
        buttons.append(&confirm);
        body.append(&buttons);
        dialog.set_child(Some(&body));
        dialog.set_default_widget(Some(&confirm));

        let close = gtk::ShortcutController::new();
        close.add_shortcut(gtk::Shortcut::new(
            gtk::ShortcutTrigger::parse_string("Escape"),
            Some(gtk::NamedAction::new("window.close")),
        ));
        dialog.add_controller(close);

        {
            let dialog = dialog.clone();
            cancel.connect_clicked(move |_| dialog.close());
        }
        {
            let dialog = dialog.clone();
            let ui = ui.clone();
            let comment = comment.clone();
            confirm.connect_clicked(move |_| {
                ui.start(verb, comment.text().to_string());
                dialog.close();
            });
        }
        {
            let ui = ui.clone();
            dialog.connect_close_request(move |_| {
                ui.dialog.borrow_mut().take();
                glib::Propagation::Proceed
            });
        }
        *ui.dialog.borrow_mut() = Some(Confirmation {
            window: dialog.clone(),
            verb,
            rows: steps.len(),
            confirm: confirm.clone(),
        });
        dialog.present();
        confirm.grab_focus();
    });
}
