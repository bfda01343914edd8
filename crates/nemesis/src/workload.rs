//! The workload: concurrent clients, half through the HTTP API and half through the native
//! client, each pinned to one node, writing unique values to and reading a rotating set of
//! keys, recording every operation with its invoke and complete times and outcome.
//!
//! Keys rotate as Jepsen's independent keys do: each of `slots` slots moves to a fresh key
//! after `ops_per_key` operations, so every key's history stays short enough to check however
//! long the run.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::Method;
use peerwire_kv::client::ClientError;
use peerwire_kv::cluster::DEFAULT_CLUSTER_TOKEN;
use peerwire_kv::state::Value;
use peerwire_kv::{KvClient, KvError};
use tokio_util::sync::CancellationToken;

use crate::cluster::{http_addr, peer_addr};
use crate::history::{Api, FINAL_CLIENT, Op, OpKind, Outcome};
use crate::http::{Answer, HttpClient};
use crate::partition::NodeId;

/// How long a client waits for one operation before calling its outcome unknown: longer than
/// a node's own deadline (5 s), so a node that cannot reach a quorum is heard answering with
/// its error rather than cut short.
pub const OP_TIMEOUT: Duration = Duration::from_secs(7);

/// The run's one clock: nanoseconds since it began.
#[derive(Debug, Clone, Copy)]
pub struct Clock(Instant);

impl Clock {
    /// A clock that starts now.
    pub fn start() -> Self {
        Self(Instant::now())
    }

    /// Nanoseconds since the start.
    pub fn now_ns(&self) -> u64 {
        self.0.elapsed().as_nanos() as u64
    }
}

/// The workload's shape.
#[derive(Debug, Clone)]
pub struct WorkloadConfig {
    /// Clients (even: HTTP, odd: native), client `c` on node `c % nodes + 1`.
    pub clients: u32,
    /// Keys in use at once.
    pub slots: u32,
    /// Operations on a key before its slot moves to a new one.
    pub ops_per_key: u64,
    /// Operations per second, all clients together (each client spaces its own).
    pub rate: f64,
    /// The seed of each client's choices (client `c` uses `seed + c`).
    pub seed: u64,
    /// Nodes.
    pub nodes: NodeId,
    /// TLS for the native client (`client.pem`/`.key` and `ca.pem`).
    pub tls: Option<peerwire::tls::TlsConfig>,
}

/// Which key each slot is on.
#[derive(Debug)]
struct Keys {
    counters: Vec<AtomicU64>,
    per_key: u64,
}

impl Keys {
    fn pick(&self, slot: usize) -> String {
        let n = self.counters[slot].fetch_add(1, Ordering::Relaxed);
        format!("s{slot}-g{}", n / self.per_key)
    }
}

/// Runs the clients until `stop`, returning every operation.
///
/// # Cancel safety
///
/// Not cancel safe: cancel through `stop` so operations in flight are recorded.
pub async fn run(cfg: WorkloadConfig, clock: Clock, stop: CancellationToken) -> Vec<Op> {
    let keys = Arc::new(Keys {
        counters: (0..cfg.slots).map(|_| AtomicU64::new(0)).collect(),
        per_key: cfg.ops_per_key.max(1),
    });
    let http = HttpClient::new();
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..cfg.clients {
        let node = (c % u32::from(cfg.nodes)) as NodeId + 1;
        let api = if c % 2 == 0 { Api::Http } else { Api::Native };
        let client = match api {
            Api::Http => Conn::Http(Box::new(http.clone())),
            Api::Native => {
                let mut pcfg = peerwire::ClientConfig::default();
                pcfg.connection.tls = cfg.tls.clone();
                Conn::Native(Box::new(KvClient::with_config(
                    vec![peer_addr(node)],
                    DEFAULT_CLUSTER_TOKEN,
                    pcfg,
                )))
            }
        };
        let keys = keys.clone();
        let stop = stop.clone();
        let interval = Duration::from_secs_f64(f64::from(cfg.clients) / cfg.rate.max(0.1));
        let mut rng = fastrand::Rng::with_seed(cfg.seed.wrapping_add(u64::from(c)));
        let slots = cfg.slots as usize;
        tasks.spawn(async move {
            let mut ops = Vec::new();
            let mut seq = 0u64;
            while !stop.is_cancelled() {
                let key = keys.pick(rng.usize(..slots));
                let write = rng.bool();
                let op = if write {
                    seq += 1;
                    client
                        .write(c, node, key, format!("{c}-{seq}"), &clock)
                        .await
                } else {
                    client.read(c, node, key, false, &clock).await
                };
                ops.push(op);
                let pause = interval.mul_f64(rng.f64() * 2.0);
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tokio::time::sleep(pause) => {}
                }
            }
            ops
        });
    }
    let mut all = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        if let Ok(ops) = joined {
            all.extend(ops);
        }
    }
    all.sort_by_key(|o| o.invoke_ns);
    all
}

/// A client's connection.
#[derive(Debug)]
pub enum Conn {
    /// Through the HTTP API.
    Http(Box<HttpClient>),
    /// Through the native client.
    Native(Box<KvClient>),
}

/// Whether a native error certainly means the request was not applied.
fn certainly_not_applied(e: &KvError) -> bool {
    e.is_retryable()
        || matches!(
            e,
            KvError::BadKey { .. } | KvError::ValueTooLarge { .. } | KvError::Removed(_)
        )
}

/// The HTTP error kinds that certainly mean the request was not applied.
const NOT_APPLIED: [&str; 8] = [
    "not_leader",
    "no_leader",
    "dropped",
    "stopping",
    "unavailable",
    "bad_key",
    "too_large",
    "removed",
];

impl Conn {
    /// Writes `value` to `key` through node `node`, recording the operation.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future loses the record; the write may still be applied.
    pub async fn write(
        &self,
        client: u32,
        node: NodeId,
        key: String,
        value: String,
        clock: &Clock,
    ) -> Op {
        let invoke_ns = clock.now_ns();
        let (outcome, error) = match self {
            Self::Http(http) => {
                let answer = http
                    .request(
                        Method::PUT,
                        http_addr(node),
                        &format!("/{key}"),
                        Some(Bytes::from(value.clone())),
                        OP_TIMEOUT,
                    )
                    .await;
                match answer {
                    Answer::Status {
                        code: 200 | 204, ..
                    } => (Outcome::Ok, None),
                    Answer::Status {
                        code, error, body, ..
                    } => {
                        let text = format!("{code} {}", String::from_utf8_lossy(&body).trim());
                        match error {
                            Some(k) if NOT_APPLIED.contains(&k.as_str()) => {
                                (Outcome::Failed, Some(text))
                            }
                            _ => (Outcome::Unknown, Some(text)),
                        }
                    }
                    Answer::NotSent(e) => (Outcome::Failed, Some(e)),
                    Answer::Broken(e) => (Outcome::Unknown, Some(e)),
                }
            }
            Self::Native(kv) => {
                match tokio::time::timeout(OP_TIMEOUT, kv.put(&key, value.as_bytes())).await {
                    Ok(Ok(())) => (Outcome::Ok, None),
                    Ok(Err(ClientError::Kv(e))) if certainly_not_applied(&e) => {
                        (Outcome::Failed, Some(e.to_string()))
                    }
                    Ok(Err(e @ ClientError::Unreachable(_))) => {
                        (Outcome::Failed, Some(e.to_string()))
                    }
                    Ok(Err(e)) => (Outcome::Unknown, Some(e.to_string())),
                    Err(_) => (
                        Outcome::Unknown,
                        Some(format!("no answer within {OP_TIMEOUT:?}")),
                    ),
                }
            }
        };
        Op {
            client,
            api: self.api(),
            node,
            key,
            kind: OpKind::Write,
            value: Some(value),
            invoke_ns,
            complete_ns: clock.now_ns(),
            outcome,
            error,
        }
    }

    /// Reads `key` through node `node` (linearizable unless `serializable`).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe (the record is lost).
    pub async fn read(
        &self,
        client: u32,
        node: NodeId,
        key: String,
        serializable: bool,
        clock: &Clock,
    ) -> Op {
        let invoke_ns = clock.now_ns();
        let (outcome, value, error) = match self {
            Self::Http(http) => {
                let path = if serializable {
                    format!("/{key}?serializable=true")
                } else {
                    format!("/{key}")
                };
                match http
                    .request(Method::GET, http_addr(node), &path, None, OP_TIMEOUT)
                    .await
                {
                    Answer::Status {
                        code: 200, body, ..
                    } => (
                        Outcome::Ok,
                        Some(String::from_utf8_lossy(&body).into_owned()),
                        None,
                    ),
                    Answer::Status {
                        code: 404,
                        error: Some(e),
                        ..
                    } if e == "not_found" => (Outcome::Ok, None, None),
                    Answer::Status { code, body, .. } => (
                        Outcome::Failed,
                        None,
                        Some(format!("{code} {}", String::from_utf8_lossy(&body).trim())),
                    ),
                    Answer::NotSent(e) | Answer::Broken(e) => (Outcome::Failed, None, Some(e)),
                }
            }
            Self::Native(kv) => {
                match tokio::time::timeout(OP_TIMEOUT, kv.get(&key, serializable)).await {
                    Ok(Ok(Value::Inline(v))) => (
                        Outcome::Ok,
                        Some(String::from_utf8_lossy(&v).into_owned()),
                        None,
                    ),
                    Ok(Ok(Value::Blob(_))) => {
                        (Outcome::Failed, None, Some("a blob, not a value".into()))
                    }
                    Ok(Err(ClientError::Kv(KvError::NotFound))) => (Outcome::Ok, None, None),
                    Ok(Err(e)) => (Outcome::Failed, None, Some(e.to_string())),
                    Err(_) => (
                        Outcome::Failed,
                        None,
                        Some(format!("no answer within {OP_TIMEOUT:?}")),
                    ),
                }
            }
        };
        Op {
            client,
            api: self.api(),
            node,
            key,
            kind: OpKind::Read,
            value,
            invoke_ns,
            complete_ns: clock.now_ns(),
            outcome,
            error,
        }
    }

    fn api(&self) -> Api {
        match self {
            Self::Http(_) => Api::Http,
            Self::Native(_) => Api::Native,
        }
    }
}

/// Reads every key once more, linearizably, through the nodes in turn (retrying until one
/// answers, up to `within` per key): the final reads lost writes are judged against.
///
/// # Cancel safety
///
/// Cancel safe (the records are lost).
pub async fn final_reads(
    keys: &[String],
    nodes: NodeId,
    clock: &Clock,
    within: Duration,
) -> Vec<Op> {
    let http = Conn::Http(Box::default());
    let mut out = Vec::new();
    for (n, key) in keys.iter().enumerate() {
        let started = Instant::now();
        let mut attempt = 0usize;
        loop {
            let node = ((n + attempt) % nodes as usize) as NodeId + 1;
            let op = http
                .read(FINAL_CLIENT, node, key.clone(), false, clock)
                .await;
            let ok = op.outcome == Outcome::Ok;
            if ok || started.elapsed() > within {
                out.push(op);
                break;
            }
            attempt += 1;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    out
}

/// Every node's local (serializable) value of each key, compared with the final linearizable
/// read: the keys where a node disagrees, as `(key, node, its value, the final value)`.
///
/// # Cancel safety
///
/// Cancel safe.
pub async fn replica_disagreements(
    finals: &[Op],
    nodes: NodeId,
    clock: &Clock,
) -> Vec<(String, NodeId, Option<String>, Option<String>)> {
    let http = Conn::Http(Box::default());
    let mut out = Vec::new();
    for fin in finals.iter().filter(|o| o.outcome == Outcome::Ok) {
        for node in 1..=nodes {
            let local = http
                .read(FINAL_CLIENT, node, fin.key.clone(), true, clock)
                .await;
            if local.outcome == Outcome::Ok && local.value != fin.value {
                out.push((fin.key.clone(), node, local.value, fin.value.clone()));
            } else if local.outcome != Outcome::Ok {
                out.push((
                    fin.key.clone(),
                    node,
                    Some(format!("(no answer: {})", local.error.unwrap_or_default())),
                    fin.value.clone(),
                ));
            }
        }
    }
    out
}
