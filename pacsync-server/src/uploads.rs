//! Full state reports are parsed, hashed and compressed by a few dedicated
//! threads (one per core) instead of the shared blocking pool; the report's
//! own write transaction then inserts the content, so a worker never waits
//! for the database (not even to ask whether it has the content) and goes
//! on with the next report meanwhile.
//! The work is CPU-bound, so more at once would not go faster; and each
//! report makes a few hundred KiB of short-lived allocations, which the
//! allocator keeps per thread — on a dozen pool threads that is a lot of
//! resident memory, on two it is little.
//!
//! The workers run at a lower CPU priority ([`NICE`]) than the threads
//! answering requests. Parsing is the one long stretch of CPU work on the
//! server; everything else is short and waits for something — a writer's
//! turn above all, which every report needs and which must not be held by
//! a thread the scheduler passed over for a parser.

use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use tokio::sync::{mpsc, oneshot};

use crate::api::ApiError;
use crate::store::content::PreparedState;
use pacsync_core::state::PackageState;

/// A checked full report: the content's hash, the parsed state (which the
/// report's status needs), and the row to insert unless the server had
/// that content already.
#[derive(Debug)]
pub struct Upload {
    pub hash: String,
    pub state: Arc<PackageState>,
    pub new: Option<PreparedState>,
}

/// The workers' nice value (the threads answering requests run at 0).
pub const NICE: i32 = 5;

/// What a worker does with one body: check it and make its content ready
/// to store.
pub type Handler = Arc<dyn Fn(&[u8]) -> Result<Upload, ApiError> + Send + Sync>;

type Job = (Bytes, oneshot::Sender<Result<Upload, ApiError>>);

#[derive(Debug, Clone)]
pub struct Uploads {
    tx: mpsc::Sender<Job>,
}

impl Uploads {
    /// Starts the workers; they stop when every clone of the returned
    /// handle is gone.
    pub fn start(handler: Handler) -> Uploads {
        let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
        let (tx, rx) = mpsc::channel::<Job>(workers * 4);
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..workers {
            let (rx, handler) = (rx.clone(), handler.clone());
            let spawned = std::thread::Builder::new()
                .name(format!("pacsync-upload-{i}"))
                .spawn(move || {
                    lower_priority();
                    loop {
                        let job = match rx.lock() {
                            Ok(mut r) => r.blocking_recv(),
                            Err(_) => None,
                        };
                        let Some((body, answer)) = job else { return };
                        let _ = answer.send(handler(&body));
                    }
                });
            if let Err(e) = spawned {
                tracing::error!("cannot start an upload worker: {e}");
            }
        }
        Uploads { tx }
    }

    /// Hands `body` to a worker and waits for its answer.
    pub async fn check(&self, body: Bytes) -> Result<Upload, ApiError> {
        let (answer, result) = oneshot::channel();
        self.tx
            .send((body, answer))
            .await
            .map_err(|_| ApiError::internal("upload workers are gone"))?;
        result
            .await
            .map_err(|_| ApiError::internal("an upload worker failed"))?
    }
}

/// Lowers the calling thread's CPU priority to [`NICE`] (on Linux a nice
/// value is a thread's own), never raising it. Failing leaves it as it
/// was, which is slower under load but not wrong.
fn lower_priority() {
    if own_nice().unwrap_or(0) >= NICE {
        return;
    }
    let me = Some(rustix::thread::gettid());
    if let Err(e) = rustix::process::setpriority_process(me, NICE) {
        tracing::debug!("cannot lower an upload worker's priority: {e}");
    }
}

/// The calling thread's nice value.
fn own_nice() -> rustix::io::Result<i32> {
    rustix::process::getpriority_process(Some(rustix::thread::gettid()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Answers the worker's own nice value, in the error's message.
    fn nice_of_worker(_: &[u8]) -> Result<Upload, ApiError> {
        let nice = own_nice().map_or_else(|e| format!("getpriority: {e}"), |n| n.to_string());
        Err(ApiError::bad_request("nice", nice))
    }

    #[tokio::test]
    async fn workers_run_below_the_threads_answering_requests() {
        let uploads = Uploads::start(Arc::new(nice_of_worker));
        let here = own_nice().expect("getpriority");
        let Err(answer) = uploads.check(Bytes::from_static(b"{}")).await else {
            panic!("the handler answers an error");
        };
        // A process that already runs at NICE or above stays where it is.
        let expected = here.max(NICE);
        assert_eq!(answer.message, expected.to_string(), "{answer:?}");
    }
}
