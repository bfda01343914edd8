//! Inboxes (Spark's `Inbox`): each endpoint's bounded message queue, processed one message at
//! a time by a message loop.
//!
//! `Start` is the first message and `Stop` the last: after a stop no message is accepted, and
//! those already queued are processed before `on_stop`. A full inbox refuses user messages at
//! once (the sender sees busy); connection events are dropped (and counted) rather than
//! blocking the connection that raised them. A loop processes at most [`BUDGET`] messages of one
//! inbox before letting other inboxes run, so a flooded endpoint cannot starve the others.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::FutureExt;
use peerwire_wire::Status;
use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;

use super::codec;
use super::endpoint::{Endpoint, EndpointContext, EndpointError, MessageContext, SharedEndpoint};
use super::endpoint_ref::{EndpointRef, Target, with_decode_context};
use super::env::{EnvInner, RpcEnv};
use super::reply::ReplyContext;
use futures::future::BoxFuture;
use peerwire::connection::Connection;
use peerwire::server::CallQueue;

/// Messages one loop processes from one inbox before it lets other inboxes run.
const BUDGET: usize = 64;

/// An entry of an inbox.
pub(crate) enum InboxMessage {
    Start,
    OneWay {
        type_name: Bytes,
        body: Bytes,
        ctx: MessageContext,
        conn: Option<Connection>,
    },
    Ask {
        type_name: Bytes,
        body: Bytes,
        conn: Option<Connection>,
        reply: ReplyContext,
    },
    Connected(SocketAddr),
    Disconnected(SocketAddr),
    NetworkError(String, SocketAddr),
    Stop,
}

impl InboxMessage {
    fn is_user(&self) -> bool {
        matches!(self, Self::OneWay { .. } | Self::Ask { .. })
    }

    /// Fails an ask that could not be delivered.
    pub(crate) fn refuse(self, status: Status, message: String) {
        if let Self::Ask { reply, .. } = self {
            reply.state().fail_if_pending(status, message);
        }
    }
}

/// A message that was not queued, with the reason (boxed: the error path is rare and the
/// message large).
pub(crate) type Refused = Box<(PostError, InboxMessage)>;

/// Why a message was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PostError {
    NotFound,
    Full { capacity: usize },
    Stopped,
}

/// What an endpoint kind does with one message (generic: not boxed per message).
pub(crate) trait Handle: Send + 'static {
    fn handle(
        &mut self,
        message: InboxMessage,
        env: &Arc<EnvInner>,
        name: &str,
    ) -> impl std::future::Future<Output = ()> + Send;
}

/// How a drain of an inbox ended.
pub(crate) enum Drained {
    /// Nothing left; the inbox is no longer scheduled.
    Empty,
    /// The budget was spent with messages left.
    BudgetSpent,
    /// `Stop` was processed.
    Stopped,
}

/// An endpoint behind an object-safe interface: one boxed future per drain, not per message.
pub(crate) trait ErasedEndpoint: Send {
    fn drain<'a>(
        &'a mut self,
        inbox: &'a Arc<Inbox>,
        env: &'a Arc<EnvInner>,
    ) -> BoxFuture<'a, Drained>;
}

impl<T: Handle> ErasedEndpoint for T {
    fn drain<'a>(
        &'a mut self,
        inbox: &'a Arc<Inbox>,
        env: &'a Arc<EnvInner>,
    ) -> BoxFuture<'a, Drained> {
        Box::pin(drain_inbox(self, inbox, env))
    }
}

/// Processes up to [`BUDGET`] messages of `inbox`, one at a time, catching panics.
async fn drain_inbox<T: Handle>(
    endpoint: &mut T,
    inbox: &Arc<Inbox>,
    env: &Arc<EnvInner>,
) -> Drained {
    for _ in 0..BUDGET {
        let Some(message) = inbox.pop() else {
            return Drained::Empty;
        };
        let is_stop = matches!(message, InboxMessage::Stop);
        let run = AssertUnwindSafe(endpoint.handle(message, env, &inbox.name)).catch_unwind();
        if let Err(panic) = run.await {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            metrics::counter!("peerwire_rpc_endpoint_panics_total").increment(1);
            tracing::error!(endpoint = %inbox.name, panic = %what, "endpoint panicked");
        }
        if is_stop {
            return Drained::Stopped;
        }
    }
    Drained::BudgetSpent
}

pub(crate) struct Erased<E>(pub(crate) E);

fn decode_message<M: DeserializeOwned>(
    env: &Arc<EnvInner>,
    conn: Option<&Connection>,
    endpoint: &str,
    type_name: &Bytes,
    body: &Bytes,
) -> Result<M, EndpointError> {
    let expected = std::any::type_name::<M>();
    let type_name = super::envelope::text(type_name);
    if type_name != expected {
        return Err(EndpointError(format!(
            "endpoint `{endpoint}` does not handle message type `{type_name}` (it takes `{expected}`)"
        )));
    }
    with_decode_context(env, conn, || codec::decode::<M>(&*env.codec, body)).map_err(|e| {
        EndpointError(format!(
            "endpoint `{endpoint}` could not decode a `{type_name}` message: {e}"
        ))
    })
}

impl<E: Endpoint> Handle for Erased<E> {
    async fn handle(&mut self, message: InboxMessage, env: &Arc<EnvInner>, name: &str) {
        let endpoint = &mut self.0;
        {
            match message {
                InboxMessage::Start => {
                    let ctx = EndpointContext {
                        self_ref: EndpointRef::new(
                            name.to_owned(),
                            Target::Local,
                            Arc::downgrade(env),
                        ),
                        env: RpcEnv { inner: env.clone() },
                    };
                    endpoint.on_start(&ctx).await;
                }
                InboxMessage::OneWay {
                    type_name,
                    body,
                    ctx,
                    conn,
                } => {
                    let decoded =
                        decode_message::<E::Message>(env, conn.as_ref(), name, &type_name, &body);
                    let result = match decoded {
                        Ok(message) => endpoint.receive(message, &ctx).await,
                        Err(e) => Err(e),
                    };
                    if let Err(e) = result {
                        endpoint.on_error(e).await;
                    }
                }
                InboxMessage::Ask {
                    type_name,
                    body,
                    conn,
                    reply,
                } => {
                    let state = reply.state();
                    match decode_message::<E::Message>(env, conn.as_ref(), name, &type_name, &body)
                    {
                        Ok(message) => {
                            // An ask with a context is answered in its scope (asks made while
                            // answering carry it on) and, with trace context, in its span.
                            let context = reply.context().clone();
                            let answered = if context.is_empty() {
                                endpoint.receive_and_reply(message, reply).await
                            } else {
                                let span = peerwire::context::call_span(name.as_bytes(), &context)
                                    .unwrap_or_else(tracing::Span::none);
                                tracing::Instrument::instrument(
                                    peerwire::context::scope(
                                        context,
                                        endpoint.receive_and_reply(message, reply),
                                    ),
                                    span,
                                )
                                .await
                            };
                            if let Err(e) = answered {
                                state.fail_if_pending(Status::HandlerFailed, e.0.clone());
                                endpoint.on_error(e).await;
                            }
                        }
                        Err(e) => {
                            state.fail_if_pending(Status::BadRequest, e.0.clone());
                            drop(reply);
                            endpoint.on_error(e).await;
                        }
                    }
                }
                InboxMessage::Connected(remote) => endpoint.on_connected(remote).await,
                InboxMessage::Disconnected(remote) => endpoint.on_disconnected(remote).await,
                InboxMessage::NetworkError(error, remote) => {
                    endpoint.on_network_error(error, remote).await;
                }
                InboxMessage::Stop => endpoint.on_stop().await,
            }
        }
    }
}

/// A [`SharedEndpoint`] with the slots that bound its concurrency.
pub(crate) struct Concurrent<E> {
    pub(crate) endpoint: Arc<E>,
    pub(crate) slots: Arc<tokio::sync::Semaphore>,
    pub(crate) concurrency: u32,
}

/// Presents a [`SharedEndpoint`] as an [`Endpoint`], so both kinds share one message path.
struct SharedAdapter<E>(Arc<E>);

impl<E: SharedEndpoint> Endpoint for SharedAdapter<E> {
    type Message = E::Message;

    fn on_start(
        &mut self,
        ctx: &EndpointContext<E::Message>,
    ) -> impl std::future::Future<Output = ()> + Send {
        self.0.on_start(ctx)
    }

    fn receive(
        &mut self,
        message: E::Message,
        ctx: &MessageContext,
    ) -> impl std::future::Future<Output = Result<(), EndpointError>> + Send {
        self.0.receive(message, ctx)
    }

    fn receive_and_reply(
        &mut self,
        message: E::Message,
        reply: ReplyContext,
    ) -> impl std::future::Future<Output = Result<(), EndpointError>> + Send {
        self.0.receive_and_reply(message, reply)
    }

    fn on_stop(&mut self) -> impl std::future::Future<Output = ()> + Send {
        self.0.on_stop()
    }

    fn on_connected(&mut self, remote: SocketAddr) -> impl std::future::Future<Output = ()> + Send {
        self.0.on_connected(remote)
    }

    fn on_disconnected(
        &mut self,
        remote: SocketAddr,
    ) -> impl std::future::Future<Output = ()> + Send {
        self.0.on_disconnected(remote)
    }

    fn on_network_error(
        &mut self,
        error: String,
        remote: SocketAddr,
    ) -> impl std::future::Future<Output = ()> + Send {
        self.0.on_network_error(error, remote)
    }

    fn on_error(&mut self, error: EndpointError) -> impl std::future::Future<Output = ()> + Send {
        self.0.on_error(error)
    }
}

impl<E: SharedEndpoint> Handle for Concurrent<E> {
    async fn handle(&mut self, message: InboxMessage, env: &Arc<EnvInner>, name: &str) {
        let mut adapter = Erased(SharedAdapter(self.endpoint.clone()));
        match message {
            message @ (InboxMessage::OneWay { .. } | InboxMessage::Ask { .. }) => {
                // Waiting for a slot holds this inbox's loop: the inbox applies the
                // backpressure, and messages still start in order.
                let Ok(slot) = self.slots.clone().acquire_owned().await else {
                    return;
                };
                let task_env = env.clone();
                let name = name.to_owned();
                env.tasks.spawn(async move {
                    let run = AssertUnwindSafe(adapter.handle(message, &task_env, &name));
                    if run.catch_unwind().await.is_err() {
                        metrics::counter!("peerwire_rpc_endpoint_panics_total").increment(1);
                        tracing::error!(endpoint = %name, "endpoint panicked");
                    }
                    drop(slot);
                });
            }
            InboxMessage::Stop => {
                // Every message in flight finishes before on_stop.
                let _all = self.slots.acquire_many(self.concurrency).await;
                adapter.handle(InboxMessage::Stop, env, name).await;
            }
            other => adapter.handle(other, env, name).await,
        }
    }
}

struct State {
    queue: VecDeque<InboxMessage>,
    /// The inbox is in its loop's queue or being processed.
    scheduled: bool,
    /// `Stop` was queued: nothing else is accepted.
    stopped: bool,
}

/// One endpoint's queue and the endpoint itself.
pub(crate) struct Inbox {
    pub(crate) name: String,
    state: Mutex<State>,
    capacity: usize,
    /// The endpoint; `None` once it has stopped (dropping it breaks reference cycles).
    endpoint: tokio::sync::Mutex<Option<Box<dyn ErasedEndpoint>>>,
    home: Arc<CallQueue<Arc<Self>>>,
    /// Fires when `on_stop` has run.
    pub(crate) terminated: CancellationToken,
}

impl Inbox {
    pub(crate) fn new(
        name: String,
        endpoint: Box<dyn ErasedEndpoint>,
        capacity: usize,
        home: Arc<CallQueue<Arc<Self>>>,
    ) -> Arc<Self> {
        Arc::new(Self {
            name,
            state: Mutex::new(State {
                queue: VecDeque::from([InboxMessage::Start]),
                scheduled: true,
                stopped: false,
            }),
            capacity,
            endpoint: tokio::sync::Mutex::new(Some(endpoint)),
            home,
            terminated: CancellationToken::new(),
        })
    }

    /// Schedules the initial `Start` (call once, after registration).
    pub(crate) fn start(self: &Arc<Self>) {
        self.schedule();
    }

    fn schedule(self: &Arc<Self>) {
        // The loops' queue is unbounded; a refusal can only mean it is closed (shutdown).
        if self.home.push(self.clone()).is_err() {
            tracing::debug!(endpoint = %self.name, "message loops closed");
        }
    }

    /// Queues a message; user messages are refused when the inbox is full.
    pub(crate) fn post(self: &Arc<Self>, message: InboxMessage) -> Result<(), Refused> {
        let schedule = {
            let mut state = self.state.lock().expect("inbox lock poisoned");
            if state.stopped {
                return Err(Box::new((PostError::Stopped, message)));
            }
            if state.queue.len() >= self.capacity {
                if !message.is_user() {
                    metrics::counter!("peerwire_rpc_events_dropped_total").increment(1);
                }
                return Err(Box::new((
                    PostError::Full {
                        capacity: self.capacity,
                    },
                    message,
                )));
            }
            state.queue.push_back(message);
            !std::mem::replace(&mut state.scheduled, true)
        };
        if schedule {
            self.schedule();
        }
        Ok(())
    }

    /// Queues `Stop` after everything already queued. Reentrant: later calls do nothing.
    pub(crate) fn stop(self: &Arc<Self>) {
        let schedule = {
            let mut state = self.state.lock().expect("inbox lock poisoned");
            if state.stopped {
                return;
            }
            state.stopped = true;
            state.queue.push_back(InboxMessage::Stop);
            !std::mem::replace(&mut state.scheduled, true)
        };
        if schedule {
            self.schedule();
        }
    }

    /// Takes the next message; when there is none, marks the inbox unscheduled.
    fn pop(&self) -> Option<InboxMessage> {
        let mut state = self.state.lock().expect("inbox lock poisoned");
        let message = state.queue.pop_front();
        if message.is_none() {
            state.scheduled = false;
        }
        message
    }

    /// Processes queued messages, at most [`BUDGET`] before yielding to other inboxes.
    pub(crate) async fn process(self: &Arc<Self>, env: &Arc<EnvInner>) {
        let mut guard = self.endpoint.lock().await;
        let drained = match guard.as_mut() {
            Some(endpoint) => endpoint.drain(self, env).await,
            None => Drained::Stopped,
        };
        match drained {
            Drained::Empty => {}
            Drained::BudgetSpent => {
                drop(guard);
                // Go to the back of the loop's queue so other inboxes get a turn.
                self.schedule();
            }
            Drained::Stopped => {
                *guard = None;
                env.dispatcher.remove(&self.name, self);
                self.terminated.cancel();
                let leftovers: Vec<InboxMessage> = {
                    let mut state = self.state.lock().expect("inbox lock poisoned");
                    state.scheduled = false;
                    state.queue.drain(..).collect()
                };
                for message in leftovers {
                    message.refuse(
                        Status::UnknownRoute,
                        format!("endpoint `{}` has stopped", self.name),
                    );
                }
            }
        }
    }
}
