//! [`ReplyContext`]: how an endpoint answers an ask, now or later, from any task.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use peerwire_wire::Status;
use serde::Serialize;
use tokio::sync::oneshot;

use super::codec::{self, Codec};
use peerwire::connection::{Connection, ReplySlot};

/// Where the answer goes.
pub(crate) enum ReplySink {
    /// Over the connection the ask arrived on; the slot is the call's in-flight slot.
    Remote {
        conn: Connection,
        id: u64,
        slot: ReplySlot,
    },
    /// To a local asker.
    Local(oneshot::Sender<Result<Bytes, (Status, String)>>),
}

impl ReplySink {
    fn ok(self, payload: Bytes) {
        match self {
            Self::Remote { conn, id, slot } => conn.reply(slot, id, payload),
            Self::Local(tx) => {
                let _ = tx.send(Ok(payload));
            }
        }
    }

    fn fail(self, status: Status, message: String) {
        match self {
            Self::Remote { conn, id, slot } => conn.fail(slot, id, status, 0, message),
            Self::Local(tx) => {
                let _ = tx.send(Err((status, message)));
            }
        }
    }
}

/// The pending answer, shared by every clone of the context; answered at most once.
pub(crate) struct ReplyState {
    sink: Mutex<Option<ReplySink>>,
    /// The endpoint's name (a slice of the request: no copy).
    endpoint: Bytes,
}

impl ReplyState {
    fn endpoint(&self) -> std::borrow::Cow<'_, str> {
        String::from_utf8_lossy(&self.endpoint)
    }
}

impl ReplyState {
    fn take(&self) -> Option<ReplySink> {
        self.sink.lock().expect("reply lock poisoned").take()
    }

    /// Fails the ask if nobody answered it yet.
    pub(crate) fn fail_if_pending(&self, status: Status, message: String) {
        if let Some(sink) = self.take() {
            sink.fail(status, message);
        }
    }
}

impl Drop for ReplyState {
    fn drop(&mut self) {
        if let Some(sink) = self.sink.get_mut().ok().and_then(Option::take) {
            sink.fail(
                Status::HandlerFailed,
                format!(
                    "endpoint `{}` dropped the reply context without answering",
                    self.endpoint()
                ),
            );
        }
    }
}

/// Answers one ask. Move it into another task to answer later; if every copy is dropped
/// unanswered, the asker gets a failure saying so (no ask ever hangs on a forgotten context).
#[derive(Clone)]
pub struct ReplyContext {
    state: Arc<ReplyState>,
    sender: Option<SocketAddr>,
    principal: Option<peerwire::Principal>,
    codec: Arc<dyn Codec>,
    context: peerwire::context::Context,
}

impl std::fmt::Debug for ReplyContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplyContext")
            .field("endpoint", &self.state.endpoint())
            .field("sender", &self.sender)
            .finish_non_exhaustive()
    }
}

impl ReplyContext {
    pub(crate) fn new(
        sink: ReplySink,
        endpoint: Bytes,
        sender: Option<SocketAddr>,
        principal: Option<peerwire::Principal>,
        codec: Arc<dyn Codec>,
        context: peerwire::context::Context,
    ) -> Self {
        Self {
            state: Arc::new(ReplyState {
                sink: Mutex::new(Some(sink)),
                endpoint,
            }),
            sender,
            principal,
            codec,
            context,
        }
    }

    /// The context the ask carried (trace context, caller context; see
    /// [`peerwire::context`]): asks the endpoint makes while answering carry it on.
    pub fn context(&self) -> &peerwire::context::Context {
        &self.context
    }

    /// The caller context of the ask (its `caller` entry), as Hadoop's `CallerContext`.
    pub fn caller_context(&self) -> Option<&str> {
        self.context.get_str(peerwire::context::CALLER)
    }

    pub(crate) fn state(&self) -> Arc<ReplyState> {
        self.state.clone()
    }

    /// Answers the ask with `value`. Later answers (from clones) are ignored.
    pub fn reply<R: Serialize>(self, value: &R) {
        let Some(sink) = self.state.take() else {
            return;
        };
        match codec::encode(&*self.codec, value) {
            Ok(bytes) => sink.ok(bytes),
            Err(e) => sink.fail(
                Status::Internal,
                format!(
                    "endpoint `{}` could not encode its reply: {e}",
                    self.state.endpoint()
                ),
            ),
        }
    }

    /// Fails the ask with `message` (the asker sees a remote failure).
    pub fn fail(self, message: impl Into<String>) {
        self.state
            .fail_if_pending(Status::HandlerFailed, message.into());
    }

    /// The asking environment's advertised address (`None` for client-mode or local askers).
    pub fn sender_address(&self) -> Option<SocketAddr> {
        self.sender
    }

    /// Who sent the ask, as far as its connection proved it (`None` for an ask from this
    /// environment).
    pub fn principal(&self) -> Option<&peerwire::Principal> {
        self.principal.as_ref()
    }
}
