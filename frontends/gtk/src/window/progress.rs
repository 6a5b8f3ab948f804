//! The progress panel: the running operation's phase and percentage, the
//! lines it has reported, and how the last one ended.

use gtk::prelude::*;

use super::{Ui, button};
use crate::model::{self, Presence};

/// What the progress panel has seen of the current (or last) operation.
#[derive(Debug, Default, Clone)]
pub struct ProgressLog {
    pub kind: String,
    pub lines: Vec<String>,
    pub outcome: Option<(String, String)>,
}

impl ProgressLog {
    /// A progress signal's line, once; a finished operation's log makes
    /// way for the next one.
    pub(super) fn record(&mut self, phase: &str, percent: u32, message: &str) {
        if self.outcome.is_some() {
            *self = ProgressLog::default();
        }
        let line = if message.is_empty() {
            format!("{percent:>3}%  {phase}")
        } else {
            format!("{percent:>3}%  {phase}: {message}")
        };
        if self.lines.last() != Some(&line) {
            self.lines.push(line);
        }
    }
}

pub(super) struct Panel {
    pub root: gtk::Box,
    pub title: gtk::Label,
    pub bar: gtk::ProgressBar,
    pub log_label: gtk::Label,
    pub cancel_button: gtk::Button,
    pub dismiss_button: gtk::Button,
}

pub(super) fn build() -> Panel {
    let progress_title = gtk::Label::builder()
        .xalign(0.0)
        .css_classes(["heading"])
        .build();
    let progress_bar = gtk::ProgressBar::builder().show_text(true).build();
    let progress_log_label = gtk::Label::builder()
        .xalign(0.0)
        .yalign(0.0)
        .selectable(true)
        .wrap(true)
        .css_classes(["monospace"])
        .build();
    let progress_scroll = gtk::ScrolledWindow::builder()
        .child(&progress_log_label)
        .min_content_height(80)
        .max_content_height(140)
        .propagate_natural_height(true)
        .build();
    let cancel_button = button(
        "_Cancel operation",
        "cancel",
        "Cancel (possible until pacman starts)",
    );
    cancel_button.add_css_class("destructive-action");
    let dismiss_button = button("_Close", "dismiss", "Hide this report");
    dismiss_button.set_sensitive(true);
    let progress_buttons = gtk::Box::new(gtk::Orientation::Horizontal, 8);
    progress_buttons.set_halign(gtk::Align::End);
    progress_buttons.append(&cancel_button);
    progress_buttons.append(&dismiss_button);
    let progress_panel = gtk::Box::new(gtk::Orientation::Vertical, 6);
    progress_panel.set_widget_name("progress");
    progress_panel.add_css_class("card");
    progress_panel.set_visible(false);
    for w in [
        progress_title.upcast_ref::<gtk::Widget>(),
        progress_bar.upcast_ref(),
        progress_scroll.upcast_ref(),
        progress_buttons.upcast_ref(),
    ] {
        progress_panel.append(w);
    }

    Panel {
        root: progress_panel,
        title: progress_title,
        bar: progress_bar,
        log_label: progress_log_label,
        cancel_button,
        dismiss_button,
    }
}

impl Ui {
    pub(super) fn show_progress(&self) {
        let presence = self.presence.borrow().clone();
        let log = self.progress.borrow().clone();
        let running = match &presence {
            Presence::Ready(v) if v.is_busy() => Some(v.operation.clone()),
            _ => None,
        };
        self.cancel_button
            .set_sensitive(running.is_some() && self.buttons().cancel);
        self.cancel_button.set_visible(running.is_some());
        self.dismiss_button
            .set_visible(running.is_none() && log.outcome.is_some());
        if let Some(op) = &running {
            self.progress_title.set_text(&format!(
                "{} running — {}",
                model::operation_word(&op.kind),
                if op.phase.is_empty() {
                    "starting"
                } else {
                    &op.phase
                }
            ));
            self.progress_bar
                .set_fraction(f64::from(op.percent.min(100)) / 100.0);
            self.progress_bar
                .set_text(Some(&format!("{}%", op.percent)));
        } else if let Some((outcome, message)) = &log.outcome {
            self.progress_title.set_text(&format!(
                "{} {}: {}",
                model::operation_word(&log.kind),
                outcome,
                message
            ));
            if outcome == "succeeded" {
                self.progress_bar.set_fraction(1.0);
                self.progress_bar.set_text(Some("100%"));
            }
        }
        self.progress_log_label.set_text(&log.lines.join("\n"));
        self.progress_panel
            .set_visible(running.is_some() || log.outcome.is_some());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_line_once_and_a_new_log_after_an_outcome() {
        let mut log = ProgressLog::default();
        log.record("checking", 2, "");
        log.record("checking", 2, "");
        log.record("installing", 40, "alpha");
        assert_eq!(log.lines, ["  2%  checking", " 40%  installing: alpha"]);
        log.outcome = Some(("succeeded".into(), String::new()));
        log.record("checking", 1, "");
        assert_eq!((log.lines.len(), log.outcome), (1, None));
    }
}
