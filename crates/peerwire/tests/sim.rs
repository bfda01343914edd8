//! Seeded simulations on turmoil's network: RpcEnv asks, the raft transport and a data stream
//! under random partitions (both ways and one way), holds, crashes and restarts, and latency
//! ([`Chaos`]). A run is a function of its seed. CI runs seeds `0..SEEDS`; more by hand with
//! `PEERWIRE_SIM_SEEDS=200 cargo test -p peerwire --test sim --release` (docs/TESTING.md).
//!
//! What every run checks: no panic; every ask reaches an outcome by its deadline; no reply
//! reaches the wrong caller; after the faults heal, every peer works again within 5 s.

use std::cell::Cell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use peerwire::{ConnectionConfig, Error};
use peerwire_rpc::{Endpoint, EndpointError, ReplyContext, RpcEnv, RpcEnvConfig};
use peerwire_testkit::sim::{Chaos, SimListener, network};
use tokio::time::Instant;

/// Seeds run by default.
const SEEDS: u64 = 8;
/// Simulated time with faults, before everything heals.
const CHAOS: Duration = Duration::from_secs(20);
/// After healing, every peer must work again within this.
const RECOVERY: Duration = Duration::from_secs(5);
const PORT: u16 = 7000;

fn seeds() -> std::ops::Range<u64> {
    let n = std::env::var("PEERWIRE_SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(SEEDS);
    let first = std::env::var("PEERWIRE_SIM_FIRST")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    first..first + n
}

/// Log lines carry the simulated time.
struct SimTime;

impl tracing_subscriber::fmt::time::FormatTime for SimTime {
    fn format_time(&self, w: &mut tracing_subscriber::fmt::format::Writer<'_>) -> std::fmt::Result {
        write!(w, "{:>12?}", turmoil::sim_elapsed().unwrap_or_default())
    }
}

/// Logs as `RUST_LOG` says (off by default).
fn logs() {
    let _ = tracing_subscriber::fmt()
        .with_timer(SimTime)
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

fn sim(seed: u64) -> turmoil::Sim<'static> {
    // All hosts run on this thread: seeding its generator (backoff jitter) makes the run a
    // function of the seed, whatever ran before it.
    fastrand::seed(seed);
    turmoil::Builder::new()
        .rng_seed(seed)
        .simulation_duration(CHAOS + Duration::from_secs(60))
        .tick_duration(Duration::from_millis(1))
        .build()
}

/// Connection settings for the simulated network: quick heartbeats and timeouts, so a dead
/// link is found within a second.
fn connection() -> ConnectionConfig {
    ConnectionConfig {
        network: network(),
        heartbeat_interval: Duration::from_millis(100),
        read_timeout: Duration::from_millis(600),
        handshake_timeout: Duration::from_millis(500),
        drain_timeout: Duration::from_millis(200),
        ..ConnectionConfig::default()
    }
}

/// Runs the simulation, with `chaos` until [`CHAOS`] and healed after; `healed` tells the
/// hosts when (simulated time since the start, as `turmoil::elapsed()` reads it).
fn drive(
    sim: &mut turmoil::Sim<'_>,
    chaos: &mut Chaos,
    healed: &Rc<Cell<Option<Duration>>>,
) -> turmoil::Result {
    loop {
        if healed.get().is_none() {
            if sim.elapsed() >= CHAOS {
                chaos.heal(sim);
                healed.set(Some(sim.elapsed()));
            } else {
                chaos.tick(sim);
            }
        }
        if sim.step()? {
            return Ok(());
        }
    }
}

struct Echo;

impl Endpoint for Echo {
    type Message = String;

    async fn receive_and_reply(
        &mut self,
        msg: String,
        reply: ReplyContext,
    ) -> Result<(), EndpointError> {
        reply.reply(&msg);
        Ok(())
    }
}

fn env_config(name: &str) -> RpcEnvConfig {
    let mut cfg = RpcEnvConfig::client(name);
    cfg.client.connection = connection();
    cfg.client.connect_timeout = Duration::from_millis(300);
    // Redials back off to at most 2 s (with jitter): a healed peer is redialled in time.
    cfg.client.backoff.max = Duration::from_secs(2);
    cfg.server.connection = connection();
    cfg.message_loops = 2;
    cfg
}

/// Asks from one worker until healed, then until the first success; returns (asks, answered).
async fn asker(
    echo: peerwire_rpc::EndpointRef<String>,
    worker: usize,
    healed: Rc<Cell<Option<Duration>>>,
) -> (u64, u64) {
    const TIMEOUT: Duration = Duration::from_millis(300);
    let (mut asks, mut answered) = (0, 0);
    loop {
        asks += 1;
        let msg = format!("w{worker}-{asks}");
        let started = Instant::now();
        let started_sim = turmoil::elapsed();
        let outcome = echo.ask_with_timeout::<String>(msg.clone(), TIMEOUT).await;
        let took = started.elapsed();
        assert!(
            took <= TIMEOUT + Duration::from_millis(2),
            "ask {msg} took {took:?}, past its {TIMEOUT:?} deadline: {outcome:?}"
        );
        match outcome {
            Ok(reply) => {
                assert_eq!(reply, msg, "a reply reached the wrong caller");
                answered += 1;
                if let Some(at) = healed.get() {
                    assert!(
                        started_sim.saturating_sub(at) <= RECOVERY,
                        "first answer {:?} after healing",
                        started_sim.saturating_sub(at)
                    );
                    return (asks, answered);
                }
            }
            Err(Error::NotExecuted { .. } | Error::Unknown { .. }) => {
                if let Some(at) = healed.get() {
                    assert!(
                        turmoil::elapsed().saturating_sub(at) <= RECOVERY,
                        "no answer within {RECOVERY:?} of healing; last: {outcome:?}"
                    );
                }
                // Refused at once (the server is down): pace the retries.
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(other) => panic!("ask {msg}: unexpected outcome {other:?}"),
        }
    }
}

#[test]
fn rpcenv_asks_survive_partitions_holds_crashes_and_latency() {
    logs();
    for seed in seeds() {
        let mut sim = sim(seed);
        let healed = Rc::new(Cell::new(None));
        sim.host("server", || async {
            let listener = SimListener::bind("server", PORT).await?;
            let mut cfg = env_config("server");
            cfg.advertise = Some(peerwire::transport::Listener::local_addr(&listener)?);
            let env = RpcEnv::start_on(cfg, Some(listener))?;
            env.setup_endpoint("echo", Echo)?;
            std::future::pending::<()>().await;
            Ok(())
        });
        let client_healed = healed.clone();
        let totals = Rc::new(Cell::new((0, 0)));
        let client_totals = totals.clone();
        sim.client("client", async move {
            let env = RpcEnv::start_on(env_config("client"), None::<SimListener>)?;
            let server = SocketAddr::new(turmoil::lookup("server"), PORT);
            let echo = env.endpoint_ref_unchecked::<String>(server, "echo");
            let workers = (0..4).map(|w| asker(echo.clone(), w, client_healed.clone()));
            let results = futures::future::join_all(workers).await;
            client_totals.set(results.iter().fold((0, 0), |(a, b), (x, y)| (a + x, b + y)));
            env.shutdown().await;
            Ok(())
        });
        let mut chaos = Chaos::new(seed, &["server", "client"], &["server"]);
        if let Err(e) = drive(&mut sim, &mut chaos, &healed) {
            panic!("seed {seed}: {e}; faults: {:?}", chaos.log);
        }
        let (asks, answered) = totals.get();
        assert!(
            answered > 0 && asks >= answered,
            "seed {seed}: {asks} asks, {answered} answered"
        );
        eprintln!(
            "seed {seed}: {asks} asks, {answered} answered, {} faults",
            chaos.log.len()
        );
    }
}

const NODES: [&str; 3] = ["n1", "n2", "n3"];

fn node_addr(id: u64) -> SocketAddr {
    SocketAddr::new(turmoil::lookup(NODES[id as usize - 1]), PORT)
}

/// What the checking nodes share: when the faults healed, and how many are satisfied.
#[derive(Clone, Default)]
struct Checks {
    healed: Rc<Cell<Option<Duration>>>,
    satisfied: Rc<Cell<usize>>,
}

/// One raft node: a transport with a fake raft behind it, serving its lanes on the simulated
/// network, sending an append and a heartbeat to each peer every 50 ms. With `checks`, it
/// asserts that within [`RECOVERY`] of healing every peer is active and has been heard from,
/// then keeps serving until every checking node is satisfied; without, it runs until the
/// simulation ends.
async fn raft_node(id: u64, checks: Option<Checks>) -> turmoil::Result {
    use peerwire_raft::{MessageKind, Transport};
    use peerwire_testkit::raft::{Event, FakeMsg, FakeRaft, test_config};

    let mut cfg = test_config(0x51, id);
    cfg.connection = connection();
    cfg.request_timeout = Duration::from_millis(500);
    cfg.bulk_thread = false;
    let (raft, mut events) = FakeRaft::new();
    let listener = SimListener::bind(NODES[id as usize - 1], PORT).await?;
    let transport = Transport::start(cfg.clone(), raft)?;
    let _server = peerwire::Server::builder(cfg.server_config())
        .mount_all(&transport)
        .serve(listener)?;
    let peers: Vec<u64> = (1..=3).filter(|p| *p != id).collect();
    for p in &peers {
        transport.add_peer(*p, vec![node_addr(*p)])?;
    }
    let healed = checks.as_ref().map(|c| c.healed.clone());
    let mut satisfied = false;
    let mut heard_after_heal = std::collections::BTreeSet::new();
    let mut ticker = tokio::time::interval(Duration::from_millis(50));
    let mut seq = 0;
    loop {
        tokio::select! {
            _ = ticker.tick() => {
                seq += 1;
                transport.send(peers.iter().flat_map(|p| {
                    [
                        FakeMsg::new(MessageKind::Append, id, *p, seq),
                        FakeMsg::new(MessageKind::Heartbeat, id, *p, seq),
                    ]
                }));
            }
            Some(event) = events.recv() => {
                if let Event::Message(m) = event {
                    assert_eq!(m.to, id, "node {id} got a message for node {}", m.to);
                    assert!(peers.contains(&m.from), "node {id} got a message from {}", m.from);
                    if healed.as_ref().and_then(|h| h.get()).is_some() {
                        heard_after_heal.insert(m.from);
                    }
                }
            }
        }
        let Some(at) = healed.as_ref().and_then(|h| h.get()) else {
            continue;
        };
        let since = turmoil::elapsed().saturating_sub(at);
        let checks = checks.as_ref().expect("only checking nodes see the heal");
        if satisfied {
            if checks.satisfied.get() == 2 {
                transport.stop().await;
                return Ok(());
            }
            continue;
        }
        if heard_after_heal.len() == peers.len() && transport.active_peers() == peers {
            eprintln!("node {id}: all peers active {since:?} after healing");
            satisfied = true;
            checks.satisfied.set(checks.satisfied.get() + 1);
            continue;
        }
        assert!(
            since <= RECOVERY,
            "node {id}: {since:?} after healing, active {:?}, heard from {heard_after_heal:?}",
            transport.active_peers()
        );
    }
}

#[test]
fn raft_transport_lanes_recover_after_partitions_holds_crashes_and_latency() {
    logs();
    for seed in seeds() {
        let mut sim = sim(seed);
        let checks = Checks::default();
        // n1 may crash (the host function runs again on restart); n2 and n3 check.
        sim.host("n1", || raft_node(1, None));
        for id in [2, 3] {
            sim.client(NODES[id as usize - 1], raft_node(id, Some(checks.clone())));
        }
        let mut chaos = Chaos::new(seed, &NODES, &["n1"]);
        if let Err(e) = drive(&mut sim, &mut chaos, &checks.healed) {
            panic!("seed {seed}: {e}; faults: {:?}", chaos.log);
        }
        eprintln!("seed {seed}: {} faults", chaos.log.len());
    }
}

/// The data-stream settings of the simulation: half-second requests, so a dead hop fails a
/// stream quickly, and a two-second idle timeout, so abandoned streams leave soon.
fn ds_config(id: u64) -> peerwire_datastream::DataStreamConfig {
    peerwire_datastream::DataStreamConfig {
        identity: peerwire::Identity {
            cluster_id: 0xd5,
            node_id: id,
            epoch: 1,
        },
        connection: connection(),
        request_timeout: DS_REQUEST,
        max_outstanding: 4,
        idle_timeout: Duration::from_secs(2),
        ..Default::default()
    }
}

const DS_REQUEST: Duration = Duration::from_millis(500);

/// The data-stream servers the client host inspects (every host runs on this thread).
type DsServers = Rc<std::cell::RefCell<Vec<Option<DataStreamServer<MemorySink>>>>>;

use peerwire_datastream::DataStreamServer;
use peerwire_testkit::datastream::{MemorySink, SinkState};

/// One data-stream server on the simulated network, registered in `servers` until the
/// simulation ends (or its host crashes).
async fn ds_node(id: u64, sink: MemorySink, servers: DsServers) -> turmoil::Result {
    let cfg = ds_config(id);
    let listener = SimListener::bind(NODES[id as usize - 1], PORT).await?;
    let ds = DataStreamServer::new(cfg.clone(), sink)?;
    for p in (1..=3).filter(|p| *p != id) {
        ds.add_peer(p, node_addr(p));
    }
    let _server = peerwire::Server::builder(peerwire::ServerConfig {
        identity: cfg.identity,
        connection: cfg.connection.clone(),
        ..peerwire::ServerConfig::default()
    })
    .mount_all(&ds)
    .serve(listener)?;
    servers.borrow_mut()[id as usize - 1] = Some(ds);
    std::future::pending::<()>().await;
    Ok(())
}

/// The bytes of packet `k` of stream `s`: distinct per stream, so bytes routed to the wrong
/// stream show.
fn ds_packet(s: u64, k: u64) -> bytes::Bytes {
    let mut rng = fastrand::Rng::with_seed(s << 16 | k);
    let len = rng.usize(2_000..16_000);
    bytes::Bytes::from((0..len).map(|_| rng.u8(..)).collect::<Vec<u8>>())
}

/// Checks that every replica's sink holds the first `acked` bytes it acknowledged of `sent`.
fn check_acked(
    sinks: &[MemorySink; 3],
    stream: &peerwire_datastream::StreamRef,
    replicas: &[peerwire_datastream::ReplicaBytes],
    sent: &[u8],
) {
    for r in replicas {
        assert!((1..=3).contains(&r.node), "an ack from node {}", r.node);
        let record = sinks[r.node as usize - 1]
            .record(stream)
            .unwrap_or_else(|| panic!("node {} acknowledged {stream:?} it never opened", r.node));
        let n = r.bytes as usize;
        assert!(
            n <= sent.len(),
            "node {} acknowledged {n} of {} bytes",
            r.node,
            sent.len()
        );
        assert!(
            record.data.len() >= n && record.data[..n] == sent[..n],
            "node {} acknowledged {n} bytes of {stream:?} that its sink does not hold",
            r.node
        );
    }
}

/// Opens streams to n1 (star and chain over all three) one after another, writing 8 packets
/// each and closing. Every open, write and close must end by its bound; every acknowledged
/// byte must be in the acknowledging replicas' sinks; a closed stream must be whole on all
/// three. After healing, a stream must succeed within [`RECOVERY`], and then every server must
/// drop its abandoned streams within the idle timeout. Returns (streams, completed).
async fn ds_client(sinks: [MemorySink; 3], servers: DsServers, checks: Checks) -> (u64, u64) {
    use peerwire_datastream::{DataStreamClient, RoutingTable, StreamFlags};

    let client = DataStreamClient::new(ds_config(0)).expect("client config");
    let (mut streams, mut completed) = (0u64, 0u64);
    // Open: a connect (bounded by the request timeout) and the open request.
    let open_bound = DS_REQUEST * 2 + Duration::from_millis(2);
    // A write: room in the window, then the acknowledgement, each bounded.
    let write_bound = DS_REQUEST * 2 + Duration::from_millis(2);
    loop {
        streams += 1;
        let routing = if streams % 2 == 0 {
            RoutingTable::chain(&[1, 2, 3]).unwrap()
        } else {
            RoutingTable::star(1, &[2, 3]).unwrap()
        };
        let began = Instant::now();
        let began_sim = turmoil::elapsed();
        let opened = client
            .open(node_addr(1), bytes::Bytes::new(), routing)
            .await;
        assert!(
            began.elapsed() <= open_bound,
            "an open took {:?}",
            began.elapsed()
        );
        let mut ok = false;
        if let Ok(mut out) = opened {
            let stream = out.stream();
            let mut sent = Vec::new();
            ok = true;
            for k in 0..8 {
                let data = ds_packet(streams, k);
                sent.extend_from_slice(&data);
                let t = Instant::now();
                let acked = match out.write(data, StreamFlags::NONE).await {
                    Ok(ack) => ack.await,
                    Err(e) => Err(e),
                };
                assert!(t.elapsed() <= write_bound, "a write took {:?}", t.elapsed());
                match acked {
                    Ok(ack) => {
                        let mut nodes: Vec<u64> = ack.replicas.iter().map(|r| r.node).collect();
                        nodes.sort_unstable();
                        assert_eq!(nodes, [1, 2, 3], "an ack must cover the whole route");
                        check_acked(&sinks, &stream, &ack.replicas, &sent);
                    }
                    Err(e) => {
                        assert!(e.node().is_some_and(|n| (1..=3).contains(&n)), "{e}");
                        ok = false;
                        break;
                    }
                }
            }
            if ok {
                let t = Instant::now();
                match out.close().await {
                    Ok(reply) => {
                        assert_eq!(reply.bytes, sent.len() as u64);
                        assert_eq!(reply.replicas.len(), 3);
                        check_acked(&sinks, &stream, &reply.replicas, &sent);
                        for (i, sink) in sinks.iter().enumerate() {
                            let record = sink.record(&stream).unwrap();
                            assert_eq!(record.data, sent, "node {} holds another stream", i + 1);
                            assert_eq!(record.state, SinkState::Closed, "node {}", i + 1);
                        }
                        completed += 1;
                    }
                    Err(e) => {
                        assert!(e.node().is_some_and(|n| (1..=3).contains(&n)), "{e}");
                        ok = false;
                    }
                }
                assert!(t.elapsed() <= write_bound, "a close took {:?}", t.elapsed());
            }
        }
        let Some(healed) = checks.healed.get() else {
            if !ok {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            continue;
        };
        if ok && began_sim >= healed {
            break;
        }
        assert!(
            turmoil::elapsed().saturating_sub(healed) <= RECOVERY,
            "no stream completed within {RECOVERY:?} of healing"
        );
        if !ok {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    // Every stream but the finished ones was abandoned or failed: each server must drop them
    // within its idle timeout (plus a request timeout for a failure in flight).
    let healthy_at = Instant::now();
    let limit = ds_config(1).idle_timeout + DS_REQUEST * 2;
    loop {
        let left: Vec<(u64, usize, usize)> = servers
            .borrow()
            .iter()
            .flatten()
            .map(|ds| (ds.node_id(), ds.active_streams(), ds.buffered_bytes()))
            .filter(|(_, streams, bytes)| *streams > 0 || *bytes > 0)
            .collect();
        if left.is_empty() {
            break;
        }
        assert!(
            healthy_at.elapsed() <= limit,
            "streams left after {limit:?} (node, streams, buffered bytes): {left:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    client.shutdown().await;
    (streams, completed)
}

#[test]
fn data_streams_fail_cleanly_and_recover_after_partitions_holds_crashes_and_latency() {
    logs();
    for seed in seeds() {
        let mut sim = sim(seed);
        let checks = Checks::default();
        let sinks = [MemorySink::new(), MemorySink::new(), MemorySink::new()];
        let servers: DsServers = Rc::new(std::cell::RefCell::new(vec![None, None, None]));
        // n3 may crash: its host function runs again on restart, with a fresh server.
        for id in [1, 2] {
            let (sink, servers) = (sinks[id as usize - 1].clone(), servers.clone());
            sim.host(NODES[id as usize - 1], move || {
                ds_node(id, sink.clone(), servers.clone())
            });
        }
        {
            let (sink, servers) = (sinks[2].clone(), servers.clone());
            sim.host("n3", move || {
                servers.borrow_mut()[2] = None;
                ds_node(3, sink.clone(), servers.clone())
            });
        }
        let totals = Rc::new(Cell::new((0, 0)));
        let client_totals = totals.clone();
        let client_checks = checks.clone();
        sim.client("client", async move {
            client_totals.set(ds_client(sinks, servers, client_checks).await);
            Ok(())
        });
        let mut chaos = Chaos::new(seed, &["n1", "n2", "n3", "client"], &["n3"]);
        if let Err(e) = drive(&mut sim, &mut chaos, &checks.healed) {
            panic!("seed {seed}: {e}; faults: {:?}", chaos.log);
        }
        let (streams, completed) = totals.get();
        assert!(completed > 0, "seed {seed}: no stream completed");
        eprintln!(
            "seed {seed}: {streams} streams, {completed} completed, {} faults",
            chaos.log.len()
        );
    }
}
