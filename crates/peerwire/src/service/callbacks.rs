//! Typed protocols served on connections this side opened: the server at the other end calls
//! them back over the same connection (a subscription's notifications, a coordinator asking a
//! worker), so either side of a connection can call the other.

use std::sync::Arc;
use std::time::Duration;

use peerwire_wire::{Request as WireRequest, Status};

use super::SERVICE_ROUTE;
use super::protocol::Protocol;
use super::router::ServiceRouter;
use crate::connection::{Connection, ReplySlot, Service};
use crate::server::Request;

/// Serves `protocols` to the peers of a client's connections: give it to
/// [`Client::for_service`](crate::Client::for_service) (at the rpc lane), and a server's
/// handler can call it back with
/// [`ProtocolClient::call_on`](super::ProtocolClient::call_on) over
/// [`Request::connection`](crate::Request::connection). Methods run in tasks of their own (a
/// client has no call queue); non-idempotent ones go through a retry cache as on a server.
pub struct Callbacks {
    router: Arc<ServiceRouter>,
    max_context: usize,
}

impl std::fmt::Debug for Callbacks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Callbacks").finish_non_exhaustive()
    }
}

impl Callbacks {
    /// Serves `protocols`; `node_id` names this side in refusals.
    pub fn new(protocols: Vec<Protocol>, node_id: u64) -> Arc<Self> {
        Arc::new(Self {
            router: ServiceRouter::new(protocols, node_id),
            max_context: usize::from(crate::context::DEFAULT_MAX_CONTEXT),
        })
    }
}

impl Service for Callbacks {
    fn on_request(&self, conn: &Connection, request: WireRequest, slot: ReplySlot) {
        if request.route != SERVICE_ROUTE.as_bytes() {
            conn.fail(
                slot,
                request.id,
                Status::UnknownRoute,
                0,
                format!(
                    "this client serves typed protocols only (route `{SERVICE_ROUTE}`), not `{}`",
                    String::from_utf8_lossy(&request.route)
                ),
            );
            return;
        }
        let context = match crate::context::accept(
            request.context,
            self.max_context,
            "the callbacks' context limit, peerwire::context::DEFAULT_MAX_CONTEXT",
        ) {
            Ok(c) => c,
            Err(message) => {
                conn.fail(slot, request.id, Status::BadRequest, 0, message);
                return;
            }
        };
        let id = request.id;
        let call = Request {
            id,
            route: request.route,
            context: context.clone(),
            payload: request.payload,
            deadline: (request.deadline_ms > 0).then(|| {
                tokio::time::Instant::now() + Duration::from_millis(u64::from(request.deadline_ms))
            }),
            oneway: false,
            connection: conn.clone(),
        };
        let (router, conn) = (self.router.clone(), conn.clone());
        tokio::spawn(async move {
            let outcome = crate::context::scope(context, router.dispatch(call)).await;
            match outcome {
                Ok(reply) => conn.reply(slot, id, reply),
                Err(e) => {
                    let retry_ms = e
                        .retry_after
                        .map_or(0, |d| d.as_millis().min(u128::from(u32::MAX)) as u32);
                    conn.fail(slot, id, e.status, retry_ms, e.message);
                }
            }
        });
    }
}
