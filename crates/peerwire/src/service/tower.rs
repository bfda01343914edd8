//! Plain `tower::Service`s as route handlers, so users can stack tower middleware (timeouts,
//! concurrency limits, load shedding, tracing) in front of their code.

use std::task::{Context, Poll};

use bytes::Bytes;
use tower_service::Service;

use crate::server::{Handler, HandlerError, Request};
use crate::transport::BoxFuture;

/// A route handler made from a `tower::Service<Request>`; see [`tower_handler`].
#[derive(Debug, Clone)]
pub struct TowerHandler<S> {
    service: S,
}

/// Serves a route with a tower service. The service is cloned per call (tower's usual
/// contract for shared services) and driven to readiness first.
pub fn tower_handler<S>(service: S) -> TowerHandler<S>
where
    S: Service<Request, Response = Bytes, Error = HandlerError> + Clone + Send + Sync + 'static,
    S::Future: Send + 'static,
{
    TowerHandler { service }
}

impl<S> Handler for TowerHandler<S>
where
    S: Service<Request, Response = Bytes, Error = HandlerError> + Clone + Send + Sync + 'static,
    S::Future: Send + 'static,
{
    fn call(&self, request: Request) -> BoxFuture<'static, Result<Bytes, HandlerError>> {
        let mut service = self.service.clone();
        Box::pin(async move {
            std::future::poll_fn(|cx: &mut Context<'_>| -> Poll<Result<(), HandlerError>> {
                service.poll_ready(cx)
            })
            .await?;
            service.call(request).await
        })
    }
}
