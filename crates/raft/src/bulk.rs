//! The bulk thread: a runtime of its own for the snapshot lane (sending, receiving, and the
//! raft side's `receive_snapshot`).
//!
//! Streaming a snapshot keeps a core busy with copies and socket writes. On the transport's
//! own runtime that work would sit in the same run queue as the message lane's heartbeats and
//! votes, which then wait behind each chunk. On a thread of its own, the operating system's
//! scheduler shares the cores instead: a heartbeat wakes a thread that has been idle, and is
//! served at once. On Linux the thread also runs at nice 10, so that when both want a core
//! the heartbeat's thread wins: a snapshot is throughput-bound and may wait a little, a
//! heartbeat is latency-bound and may not.

use tokio::runtime::Handle;
use tokio_util::sync::CancellationToken;

/// A thread running a current-thread runtime until dropped.
#[derive(Debug)]
pub(crate) struct BulkThread {
    handle: Handle,
    stop: CancellationToken,
}

impl BulkThread {
    /// Starts the thread, named `name`.
    pub(crate) fn start(name: String) -> std::io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let handle = runtime.handle().clone();
        let stop = CancellationToken::new();
        let until = stop.clone();
        std::thread::Builder::new().name(name).spawn(move || {
            lower_priority();
            runtime.block_on(until.cancelled());
            // Tasks still there are dropped; blocking work they started finishes on its own.
            runtime.shutdown_background();
        })?;
        Ok(Self { handle, stop })
    }

    /// The runtime to spawn bulk tasks on.
    pub(crate) fn handle(&self) -> &Handle {
        &self.handle
    }
}

/// Nice 10 for the calling thread (the normal policies' `Crossplatform(22)`), where the
/// platform has nice values; elsewhere, or if refused, the thread keeps its priority.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    {
        use thread_priority::{ThreadPriority, ThreadPriorityValue};
        let value = ThreadPriorityValue::try_from(22u8).expect("22 is a valid priority");
        if let Err(e) =
            thread_priority::set_current_thread_priority(ThreadPriority::Crossplatform(value))
        {
            tracing::debug!(error = ?e, "the bulk thread keeps its priority");
        }
    }
}

impl Drop for BulkThread {
    /// Stops the thread; its remaining tasks are dropped.
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn runs_tasks_on_its_own_thread_until_dropped() {
        let bulk = BulkThread::start("bulk-test".into()).unwrap();
        let name = bulk
            .handle()
            .spawn(async { std::thread::current().name().map(str::to_owned) })
            .await
            .unwrap();
        assert_eq!(name.as_deref(), Some("bulk-test"));
        #[cfg(target_os = "linux")]
        {
            // Field 19 of the thread's stat line is its nice value.
            let nice = bulk
                .handle()
                .spawn(async {
                    let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
                    let after_name = &stat[stat.rfind(')').unwrap() + 2..];
                    after_name
                        .split(' ')
                        .nth(16)
                        .unwrap()
                        .parse::<i32>()
                        .unwrap()
                })
                .await
                .unwrap();
            assert_eq!(nice, 10);
        }
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let pending = bulk.handle().spawn(async move {
            let _ = rx.await;
        });
        drop(bulk);
        // The thread's runtime went away with the task still waiting: it is cancelled.
        assert!(pending.await.unwrap_err().is_cancelled());
        drop(tx);
    }
}
