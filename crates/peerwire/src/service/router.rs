//! The service router: the handler of the service route. It finds the protocol, checks the
//! version and the method's engine, consults the retry cache for non-idempotent methods, and
//! runs the method — as an ordinary call, so the call queue's scheduling, deadlines and
//! cancellation apply to every service call.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use bytes::Bytes;
use peerwire_wire::Status;

use super::engine;
use super::envelope::{ServiceEnvelope, text};
use super::protocol::{Method, MethodMetrics, Protocol};
use super::retry_cache::{Lookup, RetryCache};
use crate::server::{Handler, HandlerError, Request};
use crate::transport::BoxFuture;

/// Outcomes kept in the retry cache at most (per server).
const RETRY_CACHE_CAPACITY: usize = 100_000;

/// Bytes of outcomes kept in the retry cache at most (per server); older outcomes are evicted
/// first. At 1 KiB replies this holds about 60,000 calls.
const RETRY_CACHE_MAX_BYTES: usize = 64 * 1024 * 1024;

/// How long an outcome stays in the retry cache: 10 minutes, Hadoop's default
/// (`dfs.namenode.retrycache.expirytime.millis`), longer than any client keeps retrying.
const RETRY_CACHE_TTL: Duration = Duration::from_secs(600);

pub(crate) struct ServiceRouter {
    protocols: HashMap<String, Protocol>,
    cache: Arc<RetryCache>,
    node_id: u64,
}

fn refuse(status: Status, message: String) -> HandlerError {
    HandlerError {
        status,
        message,
        retry_after: None,
    }
}

impl ServiceRouter {
    pub(crate) fn new(mut protocols: Vec<Protocol>, node_id: u64) -> Arc<Self> {
        for p in &mut protocols {
            for (name, method) in &mut p.methods {
                method.metrics = Some(MethodMetrics::register(&p.name, name));
            }
        }
        Arc::new(Self {
            protocols: protocols.into_iter().map(|p| (p.name.clone(), p)).collect(),
            cache: RetryCache::new(RETRY_CACHE_CAPACITY, RETRY_CACHE_MAX_BYTES, RETRY_CACHE_TTL),
            node_id,
        })
    }

    pub(crate) async fn dispatch(
        self: Arc<Self>,
        mut request: Request,
    ) -> Result<Bytes, HandlerError> {
        let envelope = ServiceEnvelope::decode(std::mem::take(&mut request.payload))
            .map_err(|e| refuse(Status::BadRequest, format!("bad service envelope: {e}")))?;
        let name = text(&envelope.protocol);
        let protocol = self.protocols.get(name).ok_or_else(|| {
            refuse(
                Status::UnknownProtocol,
                format!("node {} serves no protocol `{name}`", self.node_id),
            )
        })?;
        if protocol.version != envelope.protocol_version {
            return Err(refuse(
                Status::ProtocolVersionMismatch,
                format!(
                    "node {} serves `{name}` version {}, the call is for version {}",
                    self.node_id, protocol.version, envelope.protocol_version
                ),
            ));
        }
        let method_name = text(&envelope.method);
        request
            .connection()
            .check_access(crate::access::Access::Method {
                protocol: name,
                method: method_name,
            })
            .map_err(|denied| refuse(Status::AccessDenied, denied.to_string()))?;
        let method = protocol.methods.get(method_name).ok_or_else(|| {
            refuse(
                Status::UnknownMethod,
                format!("protocol `{name}` has no method `{method_name}`"),
            )
        })?;
        if method.engine != envelope.engine {
            return Err(refuse(
                Status::BadRequest,
                format!(
                    "`{name}.{method_name}` takes {}, the call is encoded with {}",
                    engine::name_of(method.engine),
                    engine::name_of(envelope.engine)
                ),
            ));
        }
        let started = Instant::now();
        let outcome = self.run(method, envelope, request).await;
        if let Some(m) = &method.metrics {
            m.finished(&outcome, started);
        }
        outcome
    }

    /// Runs `method`: at once when it is idempotent, else through the retry cache.
    async fn run(
        &self,
        method: &Method,
        envelope: ServiceEnvelope,
        request: Request,
    ) -> Result<Bytes, HandlerError> {
        if method.idempotent {
            return method.handler.call(envelope.body, request).await;
        }
        let key = (envelope.client_id, envelope.call_id);
        loop {
            match self.cache.begin(key, Instant::now()) {
                Lookup::Run(guard) => {
                    let outcome = method.handler.call(envelope.body, request).await;
                    guard.complete(&outcome);
                    return outcome;
                }
                Lookup::Cached(outcome) => {
                    metrics::counter!("peerwire_retry_cache_hits_total").increment(1);
                    return outcome;
                }
                Lookup::Wait(notify) => {
                    let notified = notify.notified();
                    tokio::pin!(notified);
                    notified.as_mut().enable();
                    // Look again now that the wake-up is armed: the running call may have
                    // finished, or been abandoned (then this attempt runs it).
                    match self.cache.peek(key) {
                        Some(Some(outcome)) => return outcome,
                        Some(None) => notified.await,
                        None => {}
                    }
                }
            }
        }
    }
}

/// The router as the service route's handler.
pub(crate) struct RouterHandler(pub(crate) Arc<ServiceRouter>);

impl Handler for RouterHandler {
    fn call(&self, request: Request) -> BoxFuture<'static, Result<Bytes, HandlerError>> {
        Box::pin(self.0.clone().dispatch(request))
    }
}
