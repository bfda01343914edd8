//! A 64 MiB snapshot over the raft transport: streamed with bounded memory, with progress, and
//! reported as a success. Alone in its test binary so that the process's memory is its own.

use std::time::Duration;

use peerwire_raft::{LanesUp, MessageKind, Snapshot, SnapshotStatus};
use peerwire_testkit::bounded;
use peerwire_testkit::raft::{Event, FNV_START, FakeMsg, fake_cluster, fnv1a};

fn msg(kind: MessageKind, from: u64, to: u64, seq: u64) -> FakeMsg {
    FakeMsg::new(kind, from, to, seq)
}

/// Peak resident memory of this process, in bytes (Linux).
fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_64_mib_snapshot_streams_with_bounded_memory_and_reports_success() {
    const SIZE: u64 = 64 << 20;
    let mut nodes = fake_cluster(7, 2).await;
    let t = nodes[0].transport.clone();
    peerwire_testkit::wait_until("lanes up", || {
        t.lanes_up(2)
            == Some(LanesUp {
                append: true,
                message: true,
            })
    })
    .await;
    let rss_before = rss_bytes();
    // The body is generated as it is read: nothing holds the whole snapshot.
    let body = tokio::io::AsyncReadExt::take(tokio::io::repeat(0xA5), SIZE);
    let progress = t.send_snapshot(Snapshot::new(
        msg(MessageKind::Snapshot, 1, 2, 77),
        SIZE,
        body,
    ));
    assert_eq!(progress.total(), SIZE);

    let sampler = {
        let progress = progress.clone();
        tokio::spawn(async move {
            let (mut peak, mut seen) = (0u64, Vec::new());
            while progress.outcome().is_none() {
                peak = peak.max(rss_bytes());
                seen.push(progress.sent());
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            (peak, seen)
        })
    };
    let received = nodes[1]
        .wait_for("the snapshot", |e| match e {
            Event::Snapshot {
                msg,
                bytes,
                checksum,
                max_chunk,
            } => Some((msg, bytes, checksum, max_chunk)),
            _ => None,
        })
        .await;
    assert_eq!(
        bounded("snapshot outcome", progress.finished()).await,
        Ok(())
    );
    let (peak, seen) = sampler.await.unwrap();

    let (m, bytes, checksum, max_chunk) = received;
    assert_eq!((m.seq, m.from, bytes), (77, 1, SIZE));
    let mut want = FNV_START;
    let block = vec![0xA5u8; 1 << 20];
    for _ in 0..64 {
        want = fnv1a(want, &block);
    }
    assert_eq!(checksum, want, "every byte arrived in order");
    assert!(max_chunk <= 256 * 1024, "chunks of {max_chunk} bytes");
    assert_eq!(progress.sent(), SIZE);
    assert!(seen.windows(2).all(|w| w[0] <= w[1]), "progress only grows");
    let growth = peak.saturating_sub(rss_before);
    assert!(
        growth < 24 << 20,
        "RSS grew by {growth} bytes while streaming 64 MiB"
    );
    let report = nodes[0]
        .wait_for("snapshot report", |e| match e {
            Event::SnapshotReport { to, status } => Some((to, status)),
            _ => None,
        })
        .await;
    assert_eq!(report, (2, SnapshotStatus::Finish));
    for n in nodes {
        n.stop().await;
    }
}
