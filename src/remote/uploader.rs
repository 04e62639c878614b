//! Uploads that start as soon as a file is final: the dump pipeline submits each finished file
//! (never waiting), at most `parallel` uploads run at once while other dumps go on, and each
//! file's outcome is reported as it completes. With `delete_uploaded`, a local file is removed
//! only after its upload was confirmed.

use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinSet;

use super::error::RemoteError;
use super::store::RemoteStore;
use super::types::Uploaded;

/// How an [`Uploader`] works.
#[derive(Clone, Debug)]
pub struct UploaderOptions {
    /// Files uploaded at once (each with its own parts in flight).
    pub parallel: usize,
    /// Remove each local file once its upload is confirmed (pg_back's `delete_uploaded`).
    pub delete_uploaded: bool,
}

impl Default for UploaderOptions {
    fn default() -> Self {
        UploaderOptions {
            parallel: 2,
            delete_uploaded: false,
        }
    }
}

/// What became of one submitted file.
#[derive(Debug)]
pub struct UploadOutcome {
    /// The local file.
    pub file: PathBuf,
    /// Its key (without the prefix).
    pub key: String,
    /// The upload's result.
    pub result: Result<Uploaded, RemoteError>,
    /// With `delete_uploaded` and a confirmed upload: whether the local file was removed
    /// (the error text names the file and the cause).
    pub removed: Option<Result<(), String>>,
}

impl UploadOutcome {
    /// Whether the file is safely remote (whatever became of the local copy).
    pub fn uploaded(&self) -> bool {
        self.result.is_ok()
    }
}

#[derive(Debug)]
struct Job {
    file: PathBuf,
    key: String,
}

/// Submits files to a running [`Uploader`]; cheap to clone, never blocks.
#[derive(Clone, Debug)]
pub struct UploadQueue {
    jobs: mpsc::UnboundedSender<Job>,
}

impl UploadQueue {
    /// Queues `file` for upload as `key`. `false` when the uploader is already finishing.
    pub fn submit(&self, file: PathBuf, key: String) -> bool {
        self.jobs.send(Job { file, key }).is_ok()
    }
}

/// Uploads submitted files concurrently, reporting each outcome.
pub struct Uploader {
    queue: Option<UploadQueue>,
    outcomes: mpsc::UnboundedReceiver<UploadOutcome>,
    dispatcher: tokio::task::JoinHandle<()>,
}

impl Uploader {
    /// Starts the uploader on the current tokio runtime.
    pub fn spawn(store: Arc<RemoteStore>, options: UploaderOptions) -> Uploader {
        let (jobs, job_rx) = mpsc::unbounded_channel();
        let (outcome_tx, outcomes) = mpsc::unbounded_channel();
        let dispatcher = tokio::spawn(dispatch(store, options, job_rx, outcome_tx));
        Uploader {
            queue: Some(UploadQueue { jobs }),
            outcomes,
            dispatcher,
        }
    }

    /// A handle for submitting files from elsewhere (another task, a dump lane).
    pub fn queue(&self) -> Option<UploadQueue> {
        self.queue.clone()
    }

    /// Queues `file` for upload as `key`; `false` after [`Uploader::close`].
    pub fn submit(&self, file: PathBuf, key: String) -> bool {
        self.queue.as_ref().is_some_and(|q| q.submit(file, key))
    }

    /// The next finished upload, in completion order; `None` once the uploader is closed (by
    /// [`Uploader::close`] and every [`UploadQueue`] dropped) and everything has been reported.
    pub async fn next_outcome(&mut self) -> Option<UploadOutcome> {
        self.outcomes.recv().await
    }

    /// Stops accepting files from this handle; queued ones still go up.
    pub fn close(&mut self) {
        self.queue = None;
    }

    /// Closes, waits for every queued upload and returns the outcomes not yet taken.
    pub async fn finish(mut self) -> Vec<UploadOutcome> {
        self.close();
        let mut rest = Vec::new();
        while let Some(outcome) = self.outcomes.recv().await {
            rest.push(outcome);
        }
        let _ = self.dispatcher.await;
        rest
    }
}

async fn dispatch(
    store: Arc<RemoteStore>,
    options: UploaderOptions,
    mut jobs: mpsc::UnboundedReceiver<Job>,
    outcomes: mpsc::UnboundedSender<UploadOutcome>,
) {
    let slots = Arc::new(Semaphore::new(options.parallel.max(1)));
    let mut running = JoinSet::new();
    while let Some(job) = jobs.recv().await {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            break;
        };
        let store = store.clone();
        let outcomes = outcomes.clone();
        let delete_uploaded = options.delete_uploaded;
        running.spawn(async move {
            let outcome = upload_one(&store, job, delete_uploaded).await;
            drop(slot);
            let _ = outcomes.send(outcome);
        });
        while running.try_join_next().is_some() {}
    }
    while running.join_next().await.is_some() {}
}

async fn upload_one(store: &RemoteStore, job: Job, delete_uploaded: bool) -> UploadOutcome {
    let result = store.upload(&job.file, &job.key).await;
    let removed = match (&result, delete_uploaded) {
        (Ok(_), true) => Some(
            tokio::fs::remove_file(&job.file)
                .await
                .map_err(|e| format!("cannot remove {}: {e}", job.file.display())),
        ),
        _ => None,
    };
    UploadOutcome {
        file: job.file,
        key: job.key,
        result,
        removed,
    }
}
