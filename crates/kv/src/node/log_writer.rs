//! The log writer: makes raft `Ready`s durable off the raft loop, in order, several at a time
//! (one redb transaction and one fsync for every `Ready` that queued while the previous write
//! ran). The loop hands each `Ready`'s entries and hard state here, tells raft-rs with
//! `advance_append_async`, and goes on taking proposals and acknowledgements; when a write is
//! done the writer reports the `Ready` numbers and the messages that had to wait for it
//! (votes, a follower's acknowledgements), and the loop calls `on_persist_ready`.
//!
//! A leader thus commits as soon as a quorum *including or excluding itself* holds an entry
//! (etcd's leader writes its log in parallel with the followers), and a follower acknowledges
//! each batch once, after its fsync.

use std::sync::Arc;

use raft::eraftpb::{Entry, HardState, Message};
use tokio::sync::mpsc;

use crate::log_store::{Batch, LogStore, LogStoreError};

/// What one `Ready` asks to make durable.
#[derive(Debug, Default)]
pub(crate) struct WriteJob {
    /// The `Ready`'s number.
    pub(crate) number: u64,
    pub(crate) entries: Vec<Entry>,
    pub(crate) hard_state: Option<HardState>,
    /// Messages to send once this is durable.
    pub(crate) messages: Vec<Message>,
}

/// A finished write: every `Ready` up to `number` is durable.
#[derive(Debug)]
pub(crate) struct Persisted {
    pub(crate) number: u64,
    /// The last log index the write held (0: none).
    pub(crate) last_index: u64,
    /// When the write started and when it was durable.
    pub(crate) started: std::time::Instant,
    pub(crate) finished: std::time::Instant,
    /// How many jobs the write covered.
    pub(crate) jobs: usize,
    pub(crate) messages: Vec<Message>,
}

/// Jobs queued before the raft loop waits for the writer (back-pressure on the loop).
pub(crate) const WRITE_QUEUE: usize = 256;

/// Most jobs written in one transaction.
const MAX_JOBS_PER_WRITE: usize = 1024;

/// Runs the writer until `jobs` closes (then returns) or a write fails (reported, then
/// returns).
pub(crate) async fn run(
    store: Arc<LogStore>,
    mut jobs: mpsc::Receiver<WriteJob>,
    done: mpsc::UnboundedSender<Result<Persisted, LogStoreError>>,
) {
    let mut batch = Vec::new();
    while jobs.recv_many(&mut batch, MAX_JOBS_PER_WRITE).await > 0 {
        let taken = std::mem::take(&mut batch);
        let store = store.clone();
        let started = std::time::Instant::now();
        let written = tokio::task::spawn_blocking(move || {
            let batches: Vec<Batch<'_>> = taken
                .iter()
                .map(|j| Batch {
                    snapshot: None,
                    entries: &j.entries,
                    hard_state: j.hard_state.as_ref(),
                })
                .collect();
            store.persist_all(&batches)?;
            drop(batches);
            Ok::<_, LogStoreError>((taken, std::time::Instant::now()))
        })
        .await
        .map_err(|e| LogStoreError::Io(format!("the log writer's task failed: {e}")))
        .and_then(|r| r);
        let report = written.map(|(jobs, finished)| Persisted {
            number: jobs.last().map_or(0, |j| j.number),
            last_index: jobs
                .iter()
                .filter_map(|j| j.entries.last().map(|e| e.index))
                .max()
                .unwrap_or(0),
            started,
            finished,
            jobs: jobs.len(),
            messages: jobs.into_iter().flat_map(|j| j.messages).collect(),
        });
        let failed = report.is_err();
        if done.send(report).is_err() || failed {
            return;
        }
    }
}
