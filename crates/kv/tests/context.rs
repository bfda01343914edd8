//! Context across nodes in peerwire-kv: a write sent to a follower with a caller context and a
//! trace context is forwarded to the leader carrying both, the leader's raft entry carries them
//! to every member over the append lane, and each node's audit log names them (client →
//! follower → leader → every member as it applies the write); the same through the HTTP API's
//! headers.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use common::{Cluster, raw_http};
use peerwire::context::{CALLER, Context, DEFAULT_MAX_CONTEXT, TRACEPARENT};
use peerwire_kv::KvClient;
use peerwire_kv::cluster::DEFAULT_CLUSTER_TOKEN;
use peerwire_kv::service::AUDIT_TARGET;
use tracing_subscriber::layer::SubscriberExt;

type Events = Arc<Mutex<Vec<BTreeMap<String, String>>>>;

/// Keeps the fields of every audit event.
struct Audit(Events);

struct Fields<'a>(&'a mut BTreeMap<String, String>);

impl tracing::field::Visit for Fields<'_> {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_u64(&mut self, field: &tracing::field::Field, value: u64) {
        self.0.insert(field.name().into(), value.to_string());
    }

    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().into(), format!("{value:?}"));
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Audit {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        if event.metadata().target() == AUDIT_TARGET {
            let mut fields = BTreeMap::new();
            event.record(&mut Fields(&mut fields));
            self.0.lock().unwrap().push(fields);
        }
    }
}

fn events_of(events: &Events) -> Vec<BTreeMap<String, String>> {
    events.lock().unwrap().clone()
}

/// The audit event of `method` on `key` at `node`.
fn find(
    events: &[BTreeMap<String, String>],
    node: u64,
    method: &str,
    key: &str,
) -> BTreeMap<String, String> {
    events
        .iter()
        .find(|e| e["node"] == node.to_string() && e["method"] == method && e["key"] == key)
        .unwrap_or_else(|| panic!("no {method} of {key} at node {node} in {events:#?}"))
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writes_context_reaches_the_leader_and_every_member_that_applies_it() {
    let events: Events = Arc::default();
    tracing::subscriber::set_global_default(
        tracing_subscriber::registry().with(Audit(events.clone())),
    )
    .expect("the only subscriber of this test binary");
    let c = Cluster::start(3).await;
    let leader = c.leader(None).await;
    let follower = (1..=3).find(|id| *id != leader).unwrap();
    let addr = c.peers.iter().find(|(i, _)| *i == follower).unwrap().1;
    let client = KvClient::new(vec![addr], DEFAULT_CLUSTER_TOKEN);
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let context = Context::from_entries(
        [
            (CALLER, &b"etl-job-3 (carol)"[..]),
            (
                TRACEPARENT,
                format!("00-{trace}-00f067aa0ba902b7-01").as_bytes(),
            ),
        ],
        usize::from(DEFAULT_MAX_CONTEXT),
    )
    .unwrap();
    peerwire::context::scope(context, client.put("audited", b"v"))
        .await
        .unwrap();
    // A write without a context is not in the audit log.
    client.put("quiet", b"v").await.unwrap();

    let events_handle = events;
    let events = events_of(&events_handle);
    let first = find(&events, follower, "put", "audited");
    let forwarded = find(&events, leader, "leader.propose", "audited");
    for e in [&first, &forwarded] {
        assert_eq!(e["caller"], "etl-job-3 (carol)");
        assert_eq!(e["trace_id"], trace);
        assert_eq!(e["key"], "audited");
    }
    assert!(events.iter().all(|e| e["key"] != "quiet"), "{events:#?}");

    // The leader's raft entry carried the context over the append lane: every member logs the
    // write as it applies it (a linearizable read on a node returns once that node applied
    // everything before it).
    for (_, addr) in &c.peers {
        KvClient::new(vec![*addr], DEFAULT_CLUSTER_TOKEN)
            .get("audited", false)
            .await
            .unwrap();
    }
    let events_now = events_of(&events_handle);
    for (id, _) in &c.peers {
        let applied = find(&events_now, *id, "apply", "audited");
        assert_eq!(applied["caller"], "etl-job-3 (carol)");
        assert_eq!(applied["trace_id"], trace);
        assert!(applied["index"].parse::<u64>().unwrap() > 0);
    }
    assert!(
        events_now.iter().all(|e| e["key"] != "quiet"),
        "{events_now:#?}"
    );

    // Through the HTTP API on a follower: the context comes from the request's headers.
    let http_trace = "0af7651916cd43dd8448eb211c80319c";
    let answer = raw_http(
        c.node(follower).http_addr().unwrap(),
        &format!(
            "PUT /via-http HTTP/1.1\r\nhost: x\r\ntraceparent: 00-{http_trace}-b7ad6b7169203331-01\r\n\
             x-caller-context: nightly-report\r\ncontent-length: 1\r\nconnection: close\r\n\r\nv"
        ),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 204"), "{answer}");
    for (_, addr) in &c.peers {
        KvClient::new(vec![*addr], DEFAULT_CLUSTER_TOKEN)
            .get("via-http", false)
            .await
            .unwrap();
    }
    let events_now = events_of(&events_handle);
    let mut seen = vec![
        find(&events_now, follower, "http.put", "via-http"),
        find(&events_now, leader, "leader.propose", "via-http"),
    ];
    for (id, _) in &c.peers {
        seen.push(find(&events_now, *id, "apply", "via-http"));
    }
    for e in &seen {
        assert_eq!(e["caller"], "nightly-report", "{e:?}");
        assert_eq!(e["trace_id"], http_trace, "{e:?}");
    }
    // Context headers over the limits are refused, naming the context.
    let answer = raw_http(
        c.node(follower).http_addr().unwrap(),
        &format!(
            "PUT /too-much HTTP/1.1\r\nhost: x\r\nx-caller-context: {}\r\ncontent-length: 1\r\nconnection: close\r\n\r\nv",
            "c".repeat(5000)
        ),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("bad_context"), "{answer}");
    c.shutdown().await;
}
