//! RpcEnv behaviour: the cases Spark's own suite checks, and more.

use peerwire::envelope::CodecError;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use peerwire::{Error, NotExecuted, Status, Unknown};
use peerwire_rpc::{
    Codec, Endpoint, EndpointContext, EndpointError, EndpointOptions, EndpointRef, MessageContext,
    ReplyContext, RpcEnv, RpcEnvConfig, SharedEndpoint,
};
use peerwire_testkit::{Gate, bounded};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

#[derive(Debug, Serialize, Deserialize)]
enum Msg {
    Note(String),
    Echo(String),
    Fail(String),
    Sleep,
    CallBack(EndpointRef<Self>),
    StopSelf,
}

#[derive(Debug, Serialize, Deserialize)]
enum Other {
    Unrelated,
}

/// Records everything that happens to it as text events.
struct Recorder {
    events: mpsc::UnboundedSender<String>,
    gate: Arc<Gate>,
    me: Option<(RpcEnv, EndpointRef<Msg>)>,
    note_on_start: bool,
}

impl Recorder {
    fn new(gate: Arc<Gate>) -> (Self, mpsc::UnboundedReceiver<String>) {
        let (events, rx) = mpsc::unbounded_channel();
        (
            Self {
                events,
                gate,
                me: None,
                note_on_start: false,
            },
            rx,
        )
    }

    fn event(&self, e: impl Into<String>) {
        let _ = self.events.send(e.into());
    }
}

impl Endpoint for Recorder {
    type Message = Msg;

    async fn on_start(&mut self, ctx: &EndpointContext<Msg>) {
        self.event("start");
        self.me = Some((ctx.env().clone(), ctx.self_ref().clone()));
        if self.note_on_start {
            ctx.self_ref()
                .send(Msg::Note("from on_start".into()))
                .unwrap();
        }
    }

    async fn receive(&mut self, msg: Msg, _ctx: &MessageContext) -> Result<(), EndpointError> {
        match msg {
            Msg::Note(s) => self.event(format!("note:{s}")),
            Msg::Fail(s) => return Err(EndpointError::new(s)),
            Msg::StopSelf => {
                let (env, me) = self.me.as_ref().unwrap();
                env.stop(me);
                env.stop(me);
            }
            other => self.event(format!("unexpected:{other:?}")),
        }
        Ok(())
    }

    async fn receive_and_reply(
        &mut self,
        msg: Msg,
        reply: ReplyContext,
    ) -> Result<(), EndpointError> {
        match msg {
            Msg::Echo(s) => reply.reply(&s),
            Msg::Fail(s) => return Err(EndpointError::new(s)),
            Msg::Sleep => {
                self.event("sleeping");
                self.gate.pass().await;
                reply.reply(&"slept".to_owned());
            }
            Msg::CallBack(caller) => {
                let answer: String = caller
                    .ask(Msg::Echo("ping".into()))
                    .await
                    .map_err(|e| EndpointError::new(e.to_string()))?;
                reply.reply(&format!("caller said {answer}"));
            }
            other => reply.fail(format!("cannot answer {other:?}")),
        }
        Ok(())
    }

    async fn on_stop(&mut self) {
        self.event("stop");
    }

    async fn on_connected(&mut self, _remote: SocketAddr) {
        self.event("connected");
    }

    async fn on_disconnected(&mut self, _remote: SocketAddr) {
        self.event("disconnected");
    }

    async fn on_error(&mut self, error: EndpointError) {
        self.event(format!("error:{error}"));
    }

    async fn on_network_error(&mut self, error: String, _remote: SocketAddr) {
        self.event(format!("network-error:{error}"));
    }
}

async fn server_env(name: &str) -> RpcEnv {
    RpcEnv::start(RpcEnvConfig::server(name, "127.0.0.1:0".parse().unwrap()))
        .await
        .unwrap()
}

async fn client_env(name: &str) -> RpcEnv {
    RpcEnv::start(RpcEnvConfig::client(name)).await.unwrap()
}

/// A server env with a `rec` endpoint held at `gate`, a client env, and the client's ref to it.
async fn remote_recorder(gate: &Arc<Gate>) -> (RpcEnv, RpcEnv, EndpointRef<Msg>) {
    let server = server_env("server").await;
    let (rec, _events) = Recorder::new(gate.clone());
    server.setup_endpoint("rec", rec).unwrap();
    let client = client_env("client").await;
    let remote = client
        .endpoint_ref::<Msg>(server.address().unwrap(), "rec")
        .await
        .unwrap();
    (server, client, remote)
}

async fn next(rx: &mut mpsc::UnboundedReceiver<String>) -> String {
    bounded("an endpoint event", rx.recv())
        .await
        .expect("endpoint gone")
}

/// Next event that is not a connection event.
async fn next_message(rx: &mut mpsc::UnboundedReceiver<String>) -> String {
    loop {
        let e = next(rx).await;
        if e != "connected" && e != "disconnected" {
            return e;
        }
    }
}

#[tokio::test]
async fn send_and_ask_locally_and_remotely() {
    let server = server_env("server").await;
    let (rec, mut events) = Recorder::new(Gate::new());
    let local = server.setup_endpoint("rec", rec).unwrap();
    assert_eq!(next(&mut events).await, "start");

    let answer: String = local.ask(Msg::Echo("local".into())).await.unwrap();
    assert_eq!(answer, "local");
    local.send(Msg::Note("local note".into())).unwrap();
    assert_eq!(next_message(&mut events).await, "note:local note");

    let client = client_env("client").await;
    let remote = client
        .endpoint_ref::<Msg>(server.address().unwrap(), "rec")
        .await
        .unwrap();
    assert_eq!(remote.address(), server.address());
    let answer: String = remote.ask(Msg::Echo("remote".into())).await.unwrap();
    assert_eq!(answer, "remote");
    remote.send(Msg::Note("remote note".into())).unwrap();
    assert_eq!(next_message(&mut events).await, "note:remote note");

    client.shutdown().await;
    server.shutdown().await;
}

#[tokio::test]
async fn ask_times_out_as_unknown() {
    let gate = Gate::new();
    let (server, client, remote) = remote_recorder(&gate).await;
    let err = remote
        .ask_with_timeout::<String>(Msg::Sleep, Duration::from_millis(100))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Unknown {
                reason: Unknown::DeadlineExceeded { .. },
                ..
            }
        ),
        "{err:?}"
    );
    gate.open();
    client.shutdown().await;
    server.shutdown().await;
}

#[tokio::test]
async fn on_start_comes_first_and_may_use_its_own_ref_and_on_stop_comes_last() {
    let env = server_env("server").await;
    let (mut rec, mut events) = Recorder::new(Gate::new());
    rec.note_on_start = true;
    let r = env.setup_endpoint("rec", rec).unwrap();
    // Sent before on_start ran: still processed after it (and before what on_start sends,
    // which was queued later).
    r.send(Msg::Note("early".into())).unwrap();
    assert_eq!(next(&mut events).await, "start");
    assert_eq!(next(&mut events).await, "note:early");
    assert_eq!(next(&mut events).await, "note:from on_start");
    r.send(Msg::Note("last".into())).unwrap();
    env.stop(&r);
    assert_eq!(next(&mut events).await, "note:last");
    assert_eq!(next(&mut events).await, "stop");
    // The endpoint was dropped after on_stop: nothing else ever arrives.
    assert_eq!(
        bounded("the endpoint to be dropped", events.recv()).await,
        None
    );
    assert!(matches!(
        r.send(Msg::Note("late".into())),
        Err(Error::EndpointNotFound { .. })
    ));
    env.shutdown().await;
}

#[tokio::test]
async fn errors_reach_on_error_and_the_asker() {
    let env = server_env("server").await;
    let (rec, mut events) = Recorder::new(Gate::new());
    let local = env.setup_endpoint("rec", rec).unwrap();
    assert_eq!(next(&mut events).await, "start");
    local.send(Msg::Fail("boom".into())).unwrap();
    assert_eq!(next_message(&mut events).await, "error:boom");

    let client = client_env("client").await;
    let remote = client
        .endpoint_ref::<Msg>(env.address().unwrap(), "rec")
        .await
        .unwrap();
    match remote.ask::<String>(Msg::Fail("bad ask".into())).await {
        Err(Error::Remote {
            status, message, ..
        }) => {
            assert_eq!(status, Status::HandlerFailed);
            assert_eq!(message, "bad ask");
        }
        other => panic!("expected a remote failure, got {other:?}"),
    }
    assert_eq!(next_message(&mut events).await, "error:bad ask");
    // Locally too.
    assert!(matches!(
        local.ask::<String>(Msg::Fail("x".into())).await,
        Err(Error::Remote { .. })
    ));
    client.shutdown().await;
    env.shutdown().await;
}

#[tokio::test]
async fn unknown_message_type_is_refused_naming_endpoint_and_type() {
    let env = server_env("server").await;
    let (rec, _events) = Recorder::new(Gate::new());
    env.setup_endpoint("rec", rec).unwrap();
    let client = client_env("client").await;
    let wrong = client
        .endpoint_ref::<Other>(env.address().unwrap(), "rec")
        .await
        .unwrap();
    match wrong.ask::<String>(Other::Unrelated).await {
        Err(Error::NotExecuted {
            reason: NotExecuted::Rejected { status, message },
            ..
        }) => {
            assert_eq!(status, Status::BadRequest);
            assert!(
                message.contains("`rec`") && message.contains("Other"),
                "{message}"
            );
        }
        other => panic!("expected a rejection, got {other:?}"),
    }
    client.shutdown().await;
    env.shutdown().await;
}

#[tokio::test]
async fn messages_from_one_sender_are_processed_in_order() {
    let env = server_env("server").await;
    let (rec, mut events) = Recorder::new(Gate::new());
    env.setup_endpoint("rec", rec).unwrap();
    assert_eq!(next(&mut events).await, "start");
    let client = client_env("client").await;
    let remote = client
        .endpoint_ref::<Msg>(env.address().unwrap(), "rec")
        .await
        .unwrap();
    for i in 0..500 {
        remote.send(Msg::Note(i.to_string())).unwrap();
    }
    for i in 0..500 {
        assert_eq!(next_message(&mut events).await, format!("note:{i}"));
    }
    client.shutdown().await;
    env.shutdown().await;
}

#[tokio::test]
async fn stop_is_reentrant() {
    let env = server_env("server").await;
    let (rec, mut events) = Recorder::new(Gate::new());
    let r = env.setup_endpoint("rec", rec).unwrap();
    assert_eq!(next(&mut events).await, "start");
    // The endpoint stops itself twice, and the owner stops it twice more.
    r.send(Msg::StopSelf).unwrap();
    env.stop(&r);
    env.stop(&r);
    assert_eq!(next(&mut events).await, "stop");
    assert_eq!(
        bounded("the endpoint to be dropped", events.recv()).await,
        None
    );
    env.shutdown().await;
}

#[tokio::test]
async fn connection_events_in_server_and_client_mode() {
    let server = server_env("server").await;
    let (rec, mut server_events) = Recorder::new(Gate::new());
    server.setup_endpoint("rec", rec).unwrap();
    assert_eq!(next(&mut server_events).await, "start");

    let client = client_env("client").await;
    let (watcher, mut client_events) = Recorder::new(Gate::new());
    client.setup_endpoint("watcher", watcher).unwrap();
    assert_eq!(next(&mut client_events).await, "start");

    let remote = client
        .endpoint_ref::<Msg>(server.address().unwrap(), "rec")
        .await
        .unwrap();
    let _: String = remote.ask(Msg::Echo("x".into())).await.unwrap();
    assert_eq!(next(&mut server_events).await, "connected");
    assert_eq!(next(&mut client_events).await, "connected");

    // A second server goes away while the client-mode env stays: the client hears it.
    let other = server_env("other").await;
    let (rec2, _other_events) = Recorder::new(Gate::new());
    other.setup_endpoint("rec", rec2).unwrap();
    let remote2 = client
        .endpoint_ref::<Msg>(other.address().unwrap(), "rec")
        .await
        .unwrap();
    let _: String = remote2.ask(Msg::Echo("y".into())).await.unwrap();
    assert_eq!(next(&mut client_events).await, "connected");
    other.shutdown().await;
    assert_eq!(next(&mut client_events).await, "disconnected");

    // The client goes away: the server-mode env hears it.
    client.shutdown().await;
    assert_eq!(next(&mut server_events).await, "disconnected");
    server.shutdown().await;
}

#[tokio::test]
async fn a_ref_inside_a_message_is_used_to_call_back_a_client_mode_env() {
    let server = server_env("server").await;
    let (rec, _server_events) = Recorder::new(Gate::new());
    server.setup_endpoint("rec", rec).unwrap();

    // The client has no listener: the server can reach `callee` only over the connection the
    // client opened.
    let client = client_env("client").await;
    let (callee, _client_events) = Recorder::new(Gate::new());
    let callee_ref = client.setup_endpoint("callee", callee).unwrap();
    assert_eq!(callee_ref.address(), None);

    let remote = client
        .endpoint_ref::<Msg>(server.address().unwrap(), "rec")
        .await
        .unwrap();
    let answer: String = remote.ask(Msg::CallBack(callee_ref)).await.unwrap();
    assert_eq!(answer, "caller said ping");
    client.shutdown().await;
    server.shutdown().await;
}

#[tokio::test]
async fn endpoint_not_found() {
    let server = server_env("server").await;
    let client = client_env("client").await;
    match client
        .endpoint_ref::<Msg>(server.address().unwrap(), "nope")
        .await
    {
        Err(Error::EndpointNotFound { address, name }) => {
            assert_eq!(name, "nope");
            assert_eq!(address, server.address().unwrap().to_string());
        }
        other => panic!("expected endpoint not found, got {other:?}"),
    }
    assert!(matches!(
        server
            .endpoint_ref::<Msg>(server.address().unwrap(), "nope")
            .await,
        Err(Error::EndpointNotFound { .. })
    ));
    client.shutdown().await;
    server.shutdown().await;
}

#[tokio::test]
async fn shutdown_fails_pending_asks_with_a_clear_error() {
    let gate = Gate::new();
    let (server, client, remote) = remote_recorder(&gate).await;
    let pending = tokio::spawn({
        let remote = remote.clone();
        async move { remote.ask::<String>(Msg::Sleep).await }
    });
    gate.wait_entered(1).await;
    client.shutdown().await;
    match bounded("the pending ask", pending).await.unwrap() {
        Err(Error::EnvStopped { env }) => assert_eq!(env, "client"),
        other => panic!("expected env stopped, got {other:?}"),
    }
    assert!(matches!(
        remote.send(Msg::Note("x".into())),
        Err(Error::EnvStopped { .. })
    ));
    gate.open();
    server.shutdown().await;
}

#[tokio::test]
async fn a_full_inbox_answers_busy() {
    let gate = Gate::new();
    let env = server_env("server").await;
    let (rec, _events) = Recorder::new(gate.clone());
    let r = env
        .setup_endpoint_with(
            "rec",
            rec,
            EndpointOptions {
                inbox_capacity: Some(1),
                ..Default::default()
            },
        )
        .unwrap();
    let sleeping = tokio::spawn({
        let r = r.clone();
        async move { r.ask::<String>(Msg::Sleep).await }
    });
    gate.wait_entered(1).await;
    // The sleeping ask has been taken; one message fits, the next does not.
    r.send(Msg::Note("fits".into())).unwrap();
    match r.ask::<String>(Msg::Echo("too many".into())).await {
        Err(Error::NotExecuted {
            reason: NotExecuted::Busy { message, .. },
            ..
        }) => {
            assert!(message.contains("inbox_capacity"), "{message}");
        }
        other => panic!("expected busy, got {other:?}"),
    }
    // Remotely the same.
    let client = client_env("client").await;
    let remote = client
        .endpoint_ref::<Msg>(env.address().unwrap(), "rec")
        .await
        .unwrap();
    let err = remote
        .ask::<String>(Msg::Echo("remote".into()))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::NotExecuted {
                reason: NotExecuted::Busy { .. },
                ..
            }
        ),
        "{err:?}"
    );
    gate.open();
    assert_eq!(
        bounded("the sleeping ask", sleeping)
            .await
            .unwrap()
            .unwrap(),
        "slept"
    );
    client.shutdown().await;
    env.shutdown().await;
}

#[tokio::test]
async fn a_slow_endpoint_does_not_delay_another() {
    let gate = Gate::new();
    let mut cfg = RpcEnvConfig::server("server", "127.0.0.1:0".parse().unwrap());
    cfg.message_loops = 1;
    let env = RpcEnv::start(cfg).await.unwrap();
    let (slow, _slow_events) = Recorder::new(gate.clone());
    let slow = env
        .setup_endpoint_with(
            "slow",
            slow,
            EndpointOptions {
                isolated: true,
                ..Default::default()
            },
        )
        .unwrap();
    let (fast, _fast_events) = Recorder::new(Gate::new());
    let fast = env.setup_endpoint("fast", fast).unwrap();
    let sleeping = tokio::spawn({
        let slow = slow.clone();
        async move { slow.ask::<String>(Msg::Sleep).await }
    });
    gate.wait_entered(1).await;
    // The slow endpoint holds its own loop; the single shared loop still serves `fast`.
    for i in 0..10 {
        let answer: String = fast.ask(Msg::Echo(i.to_string())).await.unwrap();
        assert_eq!(answer, i.to_string());
    }
    gate.open();
    bounded("the slow ask", sleeping).await.unwrap().unwrap();
    env.shutdown().await;
}

/// JSON as an alternative codec: any serde format plugs in.
struct JsonCodec;

impl Codec for JsonCodec {
    fn name(&self) -> &'static str {
        "json"
    }

    fn encode(&self, value: &dyn erased_serde::Serialize) -> Result<Vec<u8>, CodecError> {
        serde_json::to_vec(value).map_err(|e| CodecError::new("json", e))
    }

    fn decode(
        &self,
        bytes: &[u8],
        visit: &mut dyn FnMut(
            &mut dyn erased_serde::Deserializer<'_>,
        ) -> Result<(), erased_serde::Error>,
    ) -> Result<(), CodecError> {
        let mut de = serde_json::Deserializer::from_slice(bytes);
        let mut erased = <dyn erased_serde::Deserializer>::erase(&mut de);
        visit(&mut erased).map_err(|e| CodecError::new("json", e))
    }
}

#[tokio::test]
async fn the_codec_is_pluggable() {
    let mut cfg = RpcEnvConfig::server("server", "127.0.0.1:0".parse().unwrap());
    cfg.codec = Arc::new(JsonCodec);
    let server = RpcEnv::start(cfg).await.unwrap();
    let (rec, _events) = Recorder::new(Gate::new());
    server.setup_endpoint("rec", rec).unwrap();
    let mut cfg = RpcEnvConfig::client("client");
    cfg.codec = Arc::new(JsonCodec);
    let client = RpcEnv::start(cfg).await.unwrap();
    let remote = client
        .endpoint_ref::<Msg>(server.address().unwrap(), "rec")
        .await
        .unwrap();
    let answer: String = remote.ask(Msg::Echo("json".into())).await.unwrap();
    assert_eq!(answer, "json");
    client.shutdown().await;
    server.shutdown().await;
}

/// Answers `Sleep` after the gate opens; many at once.
struct Parallel {
    gate: Arc<Gate>,
    events: mpsc::UnboundedSender<String>,
}

impl SharedEndpoint for Parallel {
    type Message = Msg;

    async fn receive_and_reply(&self, msg: Msg, reply: ReplyContext) -> Result<(), EndpointError> {
        match msg {
            Msg::Sleep => {
                self.gate.pass().await;
                reply.reply(&"slept".to_owned());
            }
            other => reply.fail(format!("cannot answer {other:?}")),
        }
        Ok(())
    }

    async fn on_stop(&self) {
        let _ = self.events.send("stop".into());
    }
}

#[tokio::test]
async fn a_shared_endpoint_processes_messages_concurrently() {
    let gate = Gate::new();
    let env = server_env("server").await;
    let (events, mut rx) = mpsc::unbounded_channel();
    let par = env
        .setup_shared_endpoint(
            "par",
            Parallel {
                gate: gate.clone(),
                events,
            },
            4,
            EndpointOptions::default(),
        )
        .unwrap();
    let asks: Vec<_> = (0..4)
        .map(|_| {
            let par = par.clone();
            tokio::spawn(async move { par.ask::<String>(Msg::Sleep).await })
        })
        .collect();
    // All four are inside the endpoint at the same time (a sequential endpoint would hold one).
    gate.wait_entered(4).await;
    env.stop(&par);
    gate.open();
    for ask in asks {
        assert_eq!(
            bounded("a concurrent ask", ask).await.unwrap().unwrap(),
            "slept"
        );
    }
    // on_stop ran after all of them.
    assert_eq!(bounded("on_stop", rx.recv()).await.as_deref(), Some("stop"));
    env.shutdown().await;
}

#[tokio::test]
async fn outbox_reports_a_failed_connect_and_reconnects_on_the_next_send() {
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let client = client_env("client").await;
    let (watcher, mut watcher_events) = Recorder::new(Gate::new());
    client.setup_endpoint("watcher", watcher).unwrap();
    assert_eq!(next(&mut watcher_events).await, "start");

    // Nobody listens yet: the send is queued, the connect fails, and every endpoint hears why.
    let r = client.endpoint_ref_unchecked::<Msg>(addr, "rec");
    r.send(Msg::Note("lost".into())).unwrap();
    let event = next_message(&mut watcher_events).await;
    assert!(
        event.starts_with("network-error:1 queued message(s) to"),
        "{event}"
    );

    // The peer comes up; the next send reconnects and is delivered.
    let server = RpcEnv::start(RpcEnvConfig::server("server", addr))
        .await
        .unwrap();
    let (rec, mut rec_events) = Recorder::new(Gate::new());
    server.setup_endpoint("rec", rec).unwrap();
    assert_eq!(next(&mut rec_events).await, "start");
    r.send(Msg::Note("found".into())).unwrap();
    assert_eq!(next_message(&mut rec_events).await, "note:found");
    client.shutdown().await;
    server.shutdown().await;
}
