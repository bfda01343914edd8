//! Outboxes (Spark's `Outbox`): one per remote address, for one-way messages. Sending never
//! waits: while the connection is being made, messages queue (bounded); once connected they
//! are written in order; if connecting fails, every queued message is dropped with a clear
//! error — logged, counted, and delivered to every endpoint as a network error. The next send
//! reconnects.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;

use super::ROUTE;
use super::env::EnvInner;
use super::inbox::InboxMessage;
use peerwire::connection::Connection;
use peerwire::error::{Error, NotExecuted};

#[derive(Default)]
struct State {
    conn: Option<Connection>,
    pending: VecDeque<Bytes>,
    connecting: bool,
}

struct Outbox {
    addr: SocketAddr,
    state: Mutex<State>,
}

#[derive(Default)]
pub(crate) struct Outboxes {
    map: Mutex<HashMap<SocketAddr, Arc<Outbox>>>,
}

impl Outboxes {
    /// Queues an encoded envelope for `addr`.
    pub(crate) fn send(
        &self,
        env: &Arc<EnvInner>,
        addr: SocketAddr,
        envelope: Bytes,
    ) -> Result<(), Error> {
        let outbox = self
            .map
            .lock()
            .expect("outboxes lock poisoned")
            .entry(addr)
            .or_insert_with(|| {
                Arc::new(Outbox {
                    addr,
                    state: Mutex::new(State::default()),
                })
            })
            .clone();
        let mut state = outbox.state.lock().expect("outbox lock poisoned");
        if let Some(conn) = state.conn.as_ref().filter(|c| c.is_open()) {
            return conn.send_oneway(ROUTE, envelope);
        }
        state.conn = None;
        let capacity = env.cfg.outbox_capacity;
        if state.pending.len() >= capacity {
            return Err(Error::NotExecuted {
                peer: addr,
                reason: NotExecuted::LocalQueueFull {
                    queue: "outbox",
                    limit: capacity,
                    unit: "entries",
                    setting: "outbox_capacity",
                },
            });
        }
        state.pending.push_back(envelope);
        if !state.connecting {
            state.connecting = true;
            let outbox = outbox.clone();
            let task_env = env.clone();
            env.tasks
                .spawn(async move { outbox.connect(&task_env).await });
        }
        Ok(())
    }
}

impl Outbox {
    async fn connect(&self, env: &Arc<EnvInner>) {
        let result = env.client.connection(self.addr, None).await;
        let mut state = self.state.lock().expect("outbox lock poisoned");
        state.connecting = false;
        match result {
            Ok(conn) => {
                for envelope in state.pending.drain(..) {
                    if let Err(e) = conn.send_oneway(ROUTE, envelope) {
                        metrics::counter!("peerwire_rpc_outbox_dropped_total").increment(1);
                        tracing::warn!(peer = %self.addr, error = %e, "queued message dropped");
                    }
                }
                state.conn = Some(conn);
            }
            Err(e) => {
                let dropped = state.pending.len();
                state.pending.clear();
                drop(state);
                metrics::counter!("peerwire_rpc_outbox_dropped_total").increment(dropped as u64);
                let error = format!("{dropped} queued message(s) to {} dropped: {e}", self.addr);
                tracing::warn!(%error, "outbox connect failed");
                let addr = self.addr;
                env.dispatcher
                    .post_to_all(|| InboxMessage::NetworkError(error.clone(), addr));
            }
        }
    }
}
