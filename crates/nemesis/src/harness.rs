//! One run: start the cluster in its namespaces, run the workload while the nemesis works
//! through its schedule, heal, read every key once more, stop, check, and leave the history,
//! the faults and the summary in the output directory.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::check;
use crate::cluster::{Cluster, NodeSpec};
use crate::history::{self, Op};
use crate::nemesis::Nemesis;
use crate::netns::Hosts;
use crate::schedule::{self, Kind, Timing};
use crate::summary::{self, RunFacts, Summary};
use crate::workload::{self, Clock, WorkloadConfig};

/// What to run.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// Seed of the schedule and the clients' choices.
    pub seed: u64,
    /// Nodes (3 or 5).
    pub nodes: u8,
    /// Length of the schedule.
    pub length: Duration,
    /// The kinds of fault to draw from.
    pub kinds: Vec<Kind>,
    /// Durations of quiet and faulty periods.
    pub timing: Timing,
    /// Clients.
    pub clients: u32,
    /// Keys in use at once.
    pub slots: u32,
    /// Operations per key before it is retired.
    pub ops_per_key: u64,
    /// Operations per second in all.
    pub rate: f64,
    /// Mutual TLS on every lane.
    pub tls: bool,
    /// The `peerwire-kv` program.
    pub kv_bin: PathBuf,
    /// Where the history, faults, summary and node logs go.
    pub out: PathBuf,
}

/// How a run ended.
#[derive(Debug)]
pub struct Outcome {
    /// The summary.
    pub summary: Summary,
    /// Its text.
    pub text: String,
}

/// Runs once on `hosts` (already made, with this thread's runtime inside the hub namespace).
///
/// # Cancel safety
///
/// Not cancel safe: cancel through `stop`, which ends the schedule early and still heals,
/// stops the nodes and checks what was recorded.
pub async fn run(
    hosts: &Hosts,
    cfg: &RunConfig,
    stop: CancellationToken,
) -> Result<Outcome, String> {
    std::fs::create_dir_all(&cfg.out).map_err(|e| format!("{}: {e}", cfg.out.display()))?;
    let tls_dir = if cfg.tls {
        let dir = cfg.out.join("tls");
        let status = std::process::Command::new(&cfg.kv_bin)
            .arg("certs")
            .arg("--dir")
            .arg(&dir)
            .args(["--nodes", &cfg.nodes.to_string()])
            .stdout(std::process::Stdio::null())
            .status()
            .map_err(|e| format!("running {} certs: {e}", cfg.kv_bin.display()))?;
        if !status.success() {
            return Err(format!("{} certs failed: {status}", cfg.kv_bin.display()));
        }
        Some(dir)
    } else {
        None
    };
    let client_tls = tls_dir
        .as_deref()
        .map(|d| peerwire::tls::TlsConfig::from_dir(d, "client").map_err(|e| e.to_string()))
        .transpose()?;
    let mut cluster = Cluster::start(
        hosts,
        NodeSpec {
            kv_bin: cfg.kv_bin.clone(),
            dir: cfg.out.clone(),
            tls_dir,
        },
    )
    .map_err(|e| format!("starting the nodes: {e}"))?;
    let clock = Clock::start();
    let steps = schedule::plan(cfg.seed, &cfg.kinds, cfg.length, cfg.timing);
    println!(
        "peerwire-nemesis: seed {}, {} nodes{}, {} steps over {:?}; output in {}",
        cfg.seed,
        cfg.nodes,
        if cfg.tls { ", mutual TLS" } else { "" },
        steps.len(),
        cfg.length,
        cfg.out.display()
    );
    print!("{}", hosts.describe());

    let (faults, ops, workload_secs, crashes, finals, disagreements) = {
        let mut nemesis = Nemesis::new(hosts, &mut cluster, clock);
        // Every node must accept a write before the workload starts.
        let (ready, _) = nemesis.recovery().await;
        let Some(ready_ms) = ready else {
            return Err("the cluster did not accept writes on every node within 30 s".into());
        };
        println!("cluster ready: every node accepted a write after {ready_ms} ms");

        let workload_stop = CancellationToken::new();
        let started = Instant::now();
        let workload = tokio::spawn(workload::run(
            WorkloadConfig {
                clients: cfg.clients,
                slots: cfg.slots,
                ops_per_key: cfg.ops_per_key,
                rate: cfg.rate,
                seed: cfg.seed,
                nodes: cfg.nodes,
                tls: client_tls,
            },
            clock,
            workload_stop.clone(),
        ));
        let faults = nemesis.run(&steps, &stop).await;
        // Healed; let the workload see the healthy cluster for a moment.
        let (writable, caught_up) = nemesis.recovery().await;
        println!(
            "healed at the end: writable after {}, caught up after {}",
            writable.map_or("-".into(), |m| format!("{m} ms")),
            caught_up.map_or("-".into(), |m| format!("{m} ms"))
        );
        workload_stop.cancel();
        let ops = workload.await.map_err(|e| format!("workload: {e}"))?;
        let workload_secs = started.elapsed().as_secs_f64();
        let crashes: Vec<String> = nemesis_crashes(&mut nemesis);
        let mut keys: Vec<String> = ops.iter().map(|o| o.key.clone()).collect();
        keys.sort();
        keys.dedup();
        let finals = workload::final_reads(&keys, cfg.nodes, &clock, Duration::from_secs(10)).await;
        // Every node has caught up by now (checked above): its local values must agree.
        let _ = nemesis.recovery().await;
        let disagreements = workload::replica_disagreements(&finals, cfg.nodes, &clock).await;
        for (key, node, local, fin) in &disagreements {
            println!(
                "replica disagreement: node {node} has {local:?} for {key}, the final read {fin:?}"
            );
        }
        (
            faults,
            ops,
            workload_secs,
            crashes,
            finals,
            disagreements.len(),
        )
    };
    cluster.stop().await;

    let mut history: Vec<Op> = ops;
    history.extend(finals);
    history::save(&cfg.out.join("history.jsonl"), &history)
        .map_err(|e| format!("writing the history: {e}"))?;
    std::fs::write(
        cfg.out.join("faults.json"),
        serde_json::to_string_pretty(&faults).unwrap_or_default(),
    )
    .map_err(|e| format!("writing faults.json: {e}"))?;

    let report = check::check(&history);
    let summary = summary::summarise(
        &history,
        RunFacts {
            seed: cfg.seed,
            nodes: cfg.nodes,
            tls: cfg.tls,
            secs: workload_secs,
            faults: &faults,
            report: &report,
            disagreements,
            crashes,
        },
    );
    let text = summary::render(&summary, &report);
    std::fs::write(cfg.out.join("summary.txt"), &text)
        .map_err(|e| format!("writing summary.txt: {e}"))?;
    std::fs::write(
        cfg.out.join("summary.json"),
        serde_json::to_string_pretty(&summary).unwrap_or_default(),
    )
    .map_err(|e| format!("writing summary.json: {e}"))?;
    Ok(Outcome { summary, text })
}

fn nemesis_crashes(nemesis: &mut Nemesis<'_>) -> Vec<String> {
    nemesis
        .exited()
        .into_iter()
        .map(|(n, status)| format!("node {n} exited on its own: {status}"))
        .collect()
}
