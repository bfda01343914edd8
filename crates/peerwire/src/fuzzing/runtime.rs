//! One current-thread runtime per fuzzing thread, reused across inputs.

use std::future::Future;

thread_local! {
    static RUNTIME: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a current-thread runtime");
}

/// Runs `fut` to completion on this thread's current-thread runtime (one per thread, reused
/// across fuzz inputs).
pub fn block_on<F: Future>(fut: F) -> F::Output {
    RUNTIME.with(|rt| rt.block_on(fut))
}
