//! Context across nodes in peerwire-kv: a write sent to a follower with a caller context and a
//! trace context is forwarded to the leader carrying both, and each node's audit log names
//! them (client → follower → leader: two hops).

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use common::Cluster;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forwarded_write_carries_the_callers_context_to_the_leader() {
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

    let events = events.lock().unwrap().clone();
    let at = |node: u64, method: &str| {
        events
            .iter()
            .find(|e| e["node"] == node.to_string() && e["method"] == method)
            .unwrap_or_else(|| panic!("no {method} at node {node} in {events:#?}"))
            .clone()
    };
    let first = at(follower, "put");
    let forwarded = at(leader, "leader.propose");
    for e in [&first, &forwarded] {
        assert_eq!(e["caller"], "etl-job-3 (carol)");
        assert_eq!(e["trace_id"], trace);
        assert_eq!(e["key"], "audited");
    }
    assert!(events.iter().all(|e| e["key"] != "quiet"), "{events:#?}");
    c.shutdown().await;
}
