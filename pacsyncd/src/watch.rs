//! Noticing changes made outside pacsync (`pacman -S` from a shell).
//!
//! pacman removes `db.lck` when a transaction ends, and adds or removes a
//! directory under `local/` for every package it installs or removes. Both
//! are watched with inotify; a change while the lock is held waits for the
//! lock's removal, so a transaction is read once, when it is complete.

use std::sync::Arc;

use futures_util::StreamExt;
use inotify::{Inotify, WatchMask};

use crate::daemon::Daemon;

pub async fn run(daemon: Arc<Daemon>) -> anyhow::Result<()> {
    let paths = loop {
        if let Some(m) = daemon.inner.lock().await.machine.as_ref() {
            break m.paths.clone();
        }
        // No reading yet (a broken pacman.conf): try again on Refresh.
        daemon.report_now.notified().await;
        daemon.rescan().await;
    };
    let inotify = Inotify::init()?;
    let watches = inotify.watches();
    let mut watches_local = watches.clone();
    watches.clone().add(
        &paths.dbpath,
        WatchMask::DELETE | WatchMask::MOVED_TO | WatchMask::CREATE,
    )?;
    let local_mask =
        WatchMask::CREATE | WatchMask::DELETE | WatchMask::MOVED_TO | WatchMask::MOVED_FROM;
    // A database nothing was ever installed into has no `local/` yet.
    let mut local_watched = watches_local.add(paths.local_dir(), local_mask).is_ok();
    let lock = paths.lock_file();
    let mut events = inotify.into_event_stream([0u8; 4096])?;
    while let Some(event) = events.next().await {
        let event = event?;
        let name = event.name.as_deref().and_then(|n| n.to_str()).unwrap_or("");
        if !local_watched && name == "local" {
            local_watched = watches_local.add(paths.local_dir(), local_mask).is_ok();
        }
        let lock_released = name == "db.lck" && event.mask.contains(inotify::EventMask::DELETE);
        if !lock_released && lock.exists() {
            continue;
        }
        // Everything queued so far belongs to the same change.
        while let Some(Some(Ok(_))) = futures_util::FutureExt::now_or_never(events.next()) {}
        if daemon.rescan().await {
            daemon.report_now.notify_one();
        }
    }
    Ok(())
}
