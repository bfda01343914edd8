//! Message loops (Spark's `MessageLoop`): tasks that take inboxes with pending messages from a
//! queue and process them. A shared pool serves most endpoints; an endpoint that asks for
//! isolation gets a loop of its own, so a slow endpoint never starves the rest.

use std::sync::{Arc, Weak};

use tokio_util::task::TaskTracker;

use super::env::EnvInner;
use super::inbox::Inbox;
use peerwire::server::CallQueue;
use peerwire::server::FifoScheduler;

pub(crate) type LoopQueue = Arc<CallQueue<Arc<Inbox>>>;

/// The environment's message loops.
pub(crate) struct MessageLoops {
    shared: LoopQueue,
    isolated: std::sync::Mutex<Vec<LoopQueue>>,
    tasks: TaskTracker,
}

fn queue() -> LoopQueue {
    // Unbounded: each inbox is queued at most once at a time, so its length is bounded by the
    // number of endpoints.
    Arc::new(CallQueue::new(
        Box::new(FifoScheduler::new(usize::MAX)),
        None,
    ))
}

fn spawn_loop(tasks: &TaskTracker, queue: LoopQueue, env: Weak<EnvInner>) {
    tasks.spawn(async move {
        while let Some(inbox) = queue.pop().await {
            let Some(env) = env.upgrade() else { return };
            inbox.process(&env).await;
        }
    });
}

impl MessageLoops {
    pub(crate) fn new() -> Self {
        Self {
            shared: queue(),
            isolated: std::sync::Mutex::new(Vec::new()),
            tasks: TaskTracker::new(),
        }
    }

    /// Starts `n` shared loops.
    pub(crate) fn start_shared(&self, n: usize, env: Weak<EnvInner>) {
        for _ in 0..n {
            spawn_loop(&self.tasks, self.shared.clone(), env.clone());
        }
    }

    pub(crate) fn shared(&self) -> LoopQueue {
        self.shared.clone()
    }

    /// A new loop for one endpoint.
    pub(crate) fn isolated(&self, env: Weak<EnvInner>) -> LoopQueue {
        let q = queue();
        spawn_loop(&self.tasks, q.clone(), env);
        self.isolated
            .lock()
            .expect("loops lock poisoned")
            .push(q.clone());
        q
    }

    fn close_queues(&self) {
        self.shared.close();
        for q in self.isolated.lock().expect("loops lock poisoned").iter() {
            q.close();
        }
    }

    /// Lets every loop finish once its queue is empty, and waits for them.
    pub(crate) async fn close(&self) {
        self.close_queues();
        self.tasks.close();
        self.tasks.wait().await;
    }
}

impl Drop for MessageLoops {
    /// An environment dropped without `shutdown`: let its loops end instead of waiting forever.
    fn drop(&mut self) {
        self.close_queues();
    }
}
