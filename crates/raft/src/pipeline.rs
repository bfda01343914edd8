//! The pipeline to one peer (etcd's `pipeline`): used while the long-lived lanes are down. A
//! small pool of workers shares a bounded queue; each sends one message per call and waits
//! for the peer's acknowledgement, so a slow or dead peer holds at most `pipeline_workers`
//! messages in flight.

use std::sync::Arc;

use bytes::BytesMut;
use peerwire_wire::Lane;
use tokio::sync::{Mutex, mpsc};

use super::link::{Link, PIPE_ROUTE};
use super::message::RaftMessage;
use super::peer_state::PeerShared;
use peerwire::client::{CallOptions, Peer, RetryPolicy};
use peerwire::connection::Route;

/// The sending end of a peer's pipeline.
#[derive(Debug)]
pub(crate) struct Pipeline<M> {
    tx: mpsc::Sender<M>,
}

impl<M: RaftMessage> Pipeline<M> {
    /// Starts the workers.
    pub(crate) fn start(link: &Arc<Link>, peer: &Arc<PeerShared>) -> Self {
        let (tx, rx) = mpsc::channel(link.cfg.pipeline_queue);
        let rx = Arc::new(Mutex::new(rx));
        for _ in 0..link.cfg.pipeline_workers {
            link.spawn(worker(link.clone(), peer.clone(), rx.clone()));
        }
        Self { tx }
    }

    /// How many messages wait in the queue.
    pub(crate) fn queued(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
    }

    /// Queues `msg`; gives it back if the queue is full.
    pub(crate) fn try_send(&self, msg: M) -> Result<(), M> {
        self.tx.try_send(msg).map_err(|e| match e {
            mpsc::error::TrySendError::Full(m) | mpsc::error::TrySendError::Closed(m) => m,
        })
    }
}

async fn worker<M: RaftMessage>(
    link: Arc<Link>,
    peer: Arc<PeerShared>,
    rx: Arc<Mutex<mpsc::Receiver<M>>>,
) {
    let client = link.client(Lane::RaftPipeline).clone();
    let route = Route::from(PIPE_ROUTE);
    let opts = CallOptions {
        deadline: Some(link.cfg.request_timeout),
        retry: Some(RetryPolicy::never()),
        ..CallOptions::default()
    };
    loop {
        let counters = peer.sent.lane(Lane::RaftPipeline);
        let next = tokio::select! {
            m = async {
                let mut rx = rx.lock().await;
                let m = rx.recv().await;
                counters.queue_depth.set(rx.len() as f64);
                m
            } => m,
            _ = peer.stop.cancelled() => None,
        };
        let Some(msg) = next else { return };
        if link.is_removed() {
            continue;
        }
        let group = msg.group();
        let mut body = BytesMut::new();
        msg.encode(&mut body);
        drop(msg);
        let len = body.len() as u64;
        let addr = peer.addr();
        let sent = tokio::select! {
            r = client.call_with(Peer::new(addr, peer.id), route.clone(), body.freeze(), opts.clone()) => r,
            _ = peer.stop.cancelled() => return,
        };
        match sent {
            Ok(_) => {
                counters.messages.increment(1);
                counters.bytes.increment(len);
                peer.activate(Lane::RaftPipeline);
            }
            Err(e) => {
                counters.failures.increment(1);
                peer.sent.dropped(Lane::RaftPipeline, "send_failed", 1);
                if !peer.lane_failed(&link, Lane::RaftPipeline, &e) {
                    peer.unreachable(addr);
                }
                link.report.unreachable(group, peer.id);
            }
        }
    }
}
