//! Full state reports are parsed, hashed and compressed by a few dedicated
//! threads (one per core) instead of the shared blocking pool; the report's
//! own write transaction then inserts the content, so a worker never waits
//! for a writer's turn and goes on with the next report meanwhile.
//! The work is CPU-bound, so more at once would not go faster; and each
//! report makes a few hundred KiB of short-lived allocations, which the
//! allocator keeps per thread — on a dozen pool threads that is a lot of
//! resident memory, on two it is little.

use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use tokio::sync::{mpsc, oneshot};

use crate::api::ApiError;
use crate::store::Store;
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

/// What a worker does with one body: check it and make its content ready
/// to store.
pub type Handler = fn(&Store, &[u8]) -> Result<Upload, ApiError>;

type Job = (Bytes, oneshot::Sender<Result<Upload, ApiError>>);

#[derive(Debug, Clone)]
pub struct Uploads {
    tx: mpsc::Sender<Job>,
}

impl Uploads {
    /// Starts the workers; they stop when every clone of the returned
    /// handle is gone.
    pub fn start(store: Store, handler: Handler) -> Uploads {
        let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
        let (tx, rx) = mpsc::channel::<Job>(workers * 4);
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..workers {
            let (rx, store) = (rx.clone(), store.clone());
            let spawned = std::thread::Builder::new()
                .name(format!("pacsync-upload-{i}"))
                .spawn(move || {
                    loop {
                        let job = match rx.lock() {
                            Ok(mut r) => r.blocking_recv(),
                            Err(_) => None,
                        };
                        let Some((body, answer)) = job else { return };
                        let _ = answer.send(handler(&store, &body));
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
