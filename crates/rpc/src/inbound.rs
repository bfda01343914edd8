//! The RpcEnv side of a connection: requests and one-way messages on the `rpcenv` route go
//! straight to the dispatcher (Spark's `NettyRpcHandler`), and connection events go to every
//! endpoint. Used by the environment's server connections and, for reverse calls, by the
//! connections its client opens.

use std::sync::Weak;

use bytes::Bytes;
use peerwire_wire::{OneWay, Request, Status};

use super::endpoint::MessageContext;
use super::env::EnvInner;
use super::envelope::{Envelope, VERIFIER, text};
use super::inbox::{InboxMessage, PostError};
use super::reply::{ReplyContext, ReplySink};
use peerwire::connection::{Connection, ReplySlot, Service};

pub(crate) struct RpcInbound {
    pub(crate) env: Weak<EnvInner>,
}

/// The failure status and message for a message that could not be posted.
pub(crate) fn post_failure(env: &EnvInner, name: &str, error: PostError) -> (Status, String) {
    let at = env.display_address();
    match error {
        PostError::NotFound | PostError::Stopped => (
            Status::UnknownRoute,
            format!("endpoint `{name}` not found at {at}"),
        ),
        PostError::Full { capacity } => (
            Status::Busy,
            format!(
                "inbox of endpoint `{name}` at {at} is full at {capacity} messages (setting `inbox_capacity`)"
            ),
        ),
    }
}

impl Service for RpcInbound {
    fn on_request(&self, conn: &Connection, request: Request, slot: ReplySlot) {
        let Some(env) = self.env.upgrade() else {
            conn.fail(
                slot,
                request.id,
                Status::ShuttingDown,
                0,
                "rpc env has shut down".into(),
            );
            return;
        };
        let envelope = match Envelope::decode(request.payload) {
            Ok(e) => e,
            Err(e) => {
                conn.fail(
                    slot,
                    request.id,
                    Status::BadRequest,
                    0,
                    format!("bad rpcenv envelope: {e}"),
                );
                return;
            }
        };
        if envelope.receiver.as_ref() == VERIFIER.as_bytes() {
            let name = String::from_utf8_lossy(&envelope.body);
            let exists = env.dispatcher.contains(&name);
            let payload = Bytes::from_static(if exists { b"\x01" } else { b"\x00" });
            conn.reply(slot, request.id, payload);
            return;
        }
        let endpoint = String::from_utf8_lossy(&envelope.receiver);
        if let Err(denied) = conn.check_access(peerwire::access::Access::Endpoint(&endpoint)) {
            conn.fail(
                slot,
                request.id,
                Status::AccessDenied,
                0,
                denied.to_string(),
            );
            return;
        }
        let limit = usize::from(peerwire::context::DEFAULT_MAX_CONTEXT);
        let context = match peerwire::context::accept(
            request.context,
            limit,
            "the rpc env's context limit, peerwire::context::DEFAULT_MAX_CONTEXT",
        ) {
            Ok(c) => c,
            Err(message) => {
                conn.fail(slot, request.id, Status::BadRequest, 0, message);
                return;
            }
        };
        let receiver = envelope.receiver.clone();
        let reply = ReplyContext::new(
            ReplySink::Remote {
                conn: conn.clone(),
                id: request.id,
                slot,
            },
            envelope.receiver,
            envelope.sender,
            Some(conn.principal().clone()),
            env.codec.clone(),
            context,
        );
        let message = InboxMessage::Ask {
            type_name: envelope.type_name,
            body: envelope.body,
            conn: Some(conn.clone()),
            reply,
        };
        let name = text(&receiver);
        if let Err(refused) = env.dispatcher.post(name, message) {
            let (error, message) = *refused;
            let (status, text) = post_failure(&env, name, error);
            message.refuse(status, text);
        }
    }

    fn on_oneway(&self, conn: &Connection, message: OneWay) {
        let Some(env) = self.env.upgrade() else {
            return;
        };
        let envelope = match Envelope::decode(message.payload) {
            Ok(e) => e,
            Err(e) => {
                metrics::counter!("peerwire_rpc_dropped_total", "reason" => "bad_envelope")
                    .increment(1);
                tracing::debug!(error = %e, "bad rpcenv envelope dropped");
                return;
            }
        };
        let endpoint = String::from_utf8_lossy(&envelope.receiver);
        if let Err(denied) = conn.check_access(peerwire::access::Access::Endpoint(&endpoint)) {
            metrics::counter!("peerwire_rpc_dropped_total", "reason" => "access_denied")
                .increment(1);
            tracing::debug!(%denied, "one-way message refused");
            return;
        }
        let receiver = envelope.receiver.clone();
        let message = InboxMessage::OneWay {
            type_name: envelope.type_name,
            body: envelope.body,
            ctx: MessageContext {
                sender: envelope.sender,
                remote: Some(conn.peer().addr),
                principal: Some(conn.principal().clone()),
            },
            conn: Some(conn.clone()),
        };
        let name = text(&receiver);
        if let Err(refused) = env.dispatcher.post(name, message) {
            let (error, _) = *refused;
            let (_, text) = post_failure(&env, name, error);
            metrics::counter!("peerwire_rpc_dropped_total", "reason" => "post").increment(1);
            tracing::debug!(%text, "one-way message dropped");
        }
    }

    fn on_connected(&self, conn: &Connection) {
        if let Some(env) = self.env.upgrade() {
            let remote = conn.peer().addr;
            env.dispatcher
                .post_to_all(|| InboxMessage::Connected(remote));
        }
    }

    fn on_disconnected(&self, conn: &Connection, _why: &str) {
        if let Some(env) = self.env.upgrade() {
            let remote = conn.peer().addr;
            env.dispatcher
                .post_to_all(|| InboxMessage::Disconnected(remote));
        }
    }
}
