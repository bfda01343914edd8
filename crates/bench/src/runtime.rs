//! A tokio runtime on its own OS thread(s), so a benchmark's server and client never share
//! worker threads, and a way to tear it down completely before the next measurement.

use std::future::Future;
use std::io;
use std::sync::mpsc as std_mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::runtime::Handle;
use tokio::sync::oneshot;

/// How long [`RuntimeThread::shutdown`] lets tasks that are still running wind down before the
/// runtime is dropped anyway.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

/// A multi-thread tokio runtime owned by a dedicated OS thread.
///
/// The owner thread builds the runtime with the requested number of worker threads, then parks
/// in `block_on` until [`shutdown`](Self::shutdown) (or drop), after which it shuts the runtime
/// down — aborting anything still spawned on it — and joins its workers. Work is submitted
/// with [`run`](Self::run), which spawns the future on the workers (not on the calling thread).
#[derive(Debug)]
pub(crate) struct RuntimeThread {
    name: String,
    handle: Handle,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl RuntimeThread {
    /// Starts a runtime named `name` (threads are called `{name}-w`) with `workers` worker
    /// threads, timers and I/O enabled.
    pub(crate) fn start(name: &str, workers: usize) -> io::Result<Self> {
        if workers == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("runtime `{name}`: worker threads must be at least 1"),
            ));
        }
        let (handle_tx, handle_rx) = std_mpsc::channel::<io::Result<Handle>>();
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let worker_name = format!("{name}-w");
        let thread = std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(workers)
                    .thread_name(worker_name)
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(e) => {
                        let _ = handle_tx.send(Err(e));
                        return;
                    }
                };
                if handle_tx.send(Ok(runtime.handle().clone())).is_err() {
                    return;
                }
                // A dropped sender (owner gone without calling shutdown) also ends the wait.
                let _ = runtime.block_on(stop_rx);
                runtime.shutdown_timeout(SHUTDOWN_TIMEOUT);
            })?;
        let handle = match handle_rx.recv() {
            Ok(Ok(handle)) => handle,
            Ok(Err(e)) => {
                let _ = thread.join();
                return Err(e);
            }
            Err(_) => {
                let _ = thread.join();
                return Err(io::Error::other(format!(
                    "runtime thread `{name}` exited before its runtime was built"
                )));
            }
        };
        Ok(Self {
            name: name.to_owned(),
            handle,
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }

    /// The runtime's handle, for spawning without waiting.
    #[allow(dead_code)] // part of the reusable surface; later scenarios spawn background load
    pub(crate) fn handle(&self) -> &Handle {
        &self.handle
    }

    /// Runs `future` on this runtime's workers and blocks the calling thread until it
    /// completes. A panic inside the future is resumed on the calling thread.
    ///
    /// Must not be called from inside another tokio runtime.
    pub(crate) fn run<F>(&self, future: F) -> F::Output
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let task = self.handle.spawn(future);
        match self.handle.block_on(task) {
            Ok(output) => output,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => panic!("task on runtime `{}` was cancelled: {e}", self.name),
        }
    }

    /// Stops the runtime: tasks still spawned on it are cancelled (after up to
    /// [`SHUTDOWN_TIMEOUT`] for blocking ones), worker threads and the owner thread are joined.
    pub(crate) fn shutdown(mut self) {
        self.stop_and_join();
    }

    fn stop_and_join(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            eprintln!("warning: runtime thread `{}` panicked", self.name);
        }
    }
}

impl Drop for RuntimeThread {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_on_named_workers_and_shuts_down() {
        let rt = RuntimeThread::start("rt-test", 2).expect("start runtime");
        let name = rt.run(async {
            tokio::task::yield_now().await;
            std::thread::current().name().map(str::to_owned)
        });
        assert_eq!(name.as_deref(), Some("rt-test-w"));
        // A task that never finishes must not keep the runtime alive.
        rt.handle().spawn(std::future::pending::<()>());
        rt.shutdown();
    }

    #[test]
    fn zero_workers_is_an_error() {
        assert!(RuntimeThread::start("rt-zero", 0).is_err());
    }
}
