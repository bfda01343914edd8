//! The connection's deadline task: one timer per connection, not one per call.
//!
//! The calls this side sends are registered in the call table with their deadline
//! ([`super::calls::Calls::register`]); this task sleeps until the table's next deadline, expires
//! every call whose deadline passed (its caller gets `DeadlineExceeded`, the peer a cancel
//! frame), and sleeps again. A call whose deadline is earlier than every pending one wakes it
//! to sleep less. It runs until the connection is fully closed, so deadlines hold while a
//! connection drains.

use std::sync::Arc;

use peerwire_wire::Frame;
use tokio::time::Instant;

use super::Conn;

/// Runs until the connection is closed.
pub(crate) async fn run(conn: Arc<Conn>) {
    loop {
        let next = conn
            .calls
            .lock()
            .expect("calls lock poisoned")
            .next_deadline();
        let sleep = async {
            match next {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            () = conn.closed.cancelled() => return,
            // A call with an earlier deadline was registered (a permit is kept if it came
            // while this task was not waiting, so none is missed).
            () = conn.deadline_rearm.notified() => {}
            () = sleep => {
                let expired = conn
                    .calls
                    .lock()
                    .expect("calls lock poisoned")
                    .expire(Instant::now());
                for id in expired {
                    // A full queue of control frames: the peer's own deadline check stops it.
                    let _ = conn.try_send_control(Frame::Cancel { id });
                }
            }
        }
    }
}
