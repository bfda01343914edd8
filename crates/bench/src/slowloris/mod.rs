//! Scenario `slowloris`: a legitimate client's unary echo latency with no other connections,
//! and beside N slow peers (a quarter each: silent, trickling the handshake, idle after it,
//! trickling a frame; each reconnecting when closed), for peerwire and tonic.
//!
//! Reported per impl: the clean and the attacked run's ops/s and latency, the ratio of their
//! p99s (the target for peerwire: at most 2), and how long the server kept each kind of slow
//! peer. peerwire closes them at its handshake or read timeout; tonic (hyper's HTTP/2 server
//! with default settings) has no such timeout, so its slow peers stay until the end.

mod attack;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::{BufMut, BytesMut};
use clap::Args;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::BoxError;
use crate::baseline::tonic_echo::Tonic;
use crate::cli::CommonArgs;
use crate::echo::EchoImpl;
use crate::harness::{LoadResult, LoadSpec};
use crate::impls::peerwire_echo::Peerwire;
use crate::report::{Measurement, median_index};
use crate::runtime::RuntimeThread;

use attack::{Script, Slow};

/// `peerwire-bench slowloris` options.
#[derive(Debug, Clone, Args)]
pub(crate) struct SlowlorisArgs {
    /// Slow connections held open against the server during the attacked run.
    #[arg(long, default_value_t = 1000)]
    slow: usize,
    /// How often a trickling peer sends its next byte, in milliseconds.
    #[arg(long, default_value_t = 1000)]
    trickle_ms: u64,
    /// Legitimate calls kept in flight.
    #[arg(long, default_value_t = 16)]
    inflight: usize,
    /// Request payload in bytes.
    #[arg(long, default_value_t = 1024)]
    payload: usize,
    /// Impls: `peerwire`, `tonic` [default: both].
    #[arg(long, value_delimiter = ',')]
    impls: Vec<String>,
    /// Shared options.
    #[command(flatten)]
    common: CommonArgs,
}

/// The impls this scenario knows.
const IMPLS: [&str; 2] = ["peerwire", "tonic"];

/// One measurement: the legitimate load, and the slow peers' tallies when attacked.
struct Outcome {
    load: LoadResult,
    /// Per kind: (closed, median lifetime ms, max lifetime ms).
    kinds: Vec<(u64, u64, u64)>,
}

/// The script of peerwire's slow peers: a valid hello for a default server, and the head of a
/// one-way frame announcing 1 MiB followed by 4 KiB of its body.
fn peerwire_script() -> Script {
    use peerwire::wire::{
        Frame, FrameKind, HEADER_LEN, Hello, Lane, MIN_PROTOCOL_VERSION, PROTOCOL_VERSION,
    };
    let identity = peerwire::ServerConfig::default().identity;
    let mut hello = BytesMut::new();
    Frame::Hello(Hello {
        min_version: MIN_PROTOCOL_VERSION,
        max_version: PROTOCOL_VERSION,
        lane: Lane::Rpc,
        group: 0,
        cluster_id: identity.cluster_id,
        node_id: 0,
        target_node_id: 0,
        epoch: 0,
        max_frame_body: peerwire::config::DEFAULT_MAX_FRAME_BODY,
        max_message: peerwire::config::DEFAULT_MAX_MESSAGE_BYTES,
    })
    .encode(&mut hello);
    let mut frame = BytesMut::with_capacity(HEADER_LEN + 4096);
    frame.put_u32(1 << 20);
    frame.put_u8(FrameKind::OneWay as u8);
    frame.put_u8(0);
    frame.put_u16(0);
    frame.put_u64(0);
    frame.put_bytes(0, 4096);
    Script {
        hello: hello.to_vec(),
        frame: frame.to_vec(),
    }
}

/// The script of tonic's slow peers: HTTP/2's client preface and an empty SETTINGS frame, and
/// the head of a HEADERS frame announcing 16 KiB followed by 4 KiB of it.
fn tonic_script() -> Script {
    let mut hello = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    hello.extend_from_slice(&[0, 0, 0, 0x4, 0, 0, 0, 0, 0]);
    let mut frame = vec![0x00, 0x40, 0x00, 0x1, 0x4, 0, 0, 0, 1];
    frame.resize(frame.len() + 4096, 0);
    Script { hello, frame }
}

/// Runs one measurement of impl `I`: server, client and (with `slow > 0`) the slow peers each
/// on a runtime of their own.
fn run_once<I: EchoImpl + 'static>(
    args: &SlowlorisArgs,
    script: &Script,
    slow: usize,
) -> Result<Outcome, BoxError> {
    let common = &args.common;
    let server_rt = RuntimeThread::start("bench-server", common.threads)?;
    let (server, addr): (I::Server, SocketAddr) = server_rt.run(I::start_server())?;
    let attack_rt = RuntimeThread::start("bench-slow", 1)?;
    let stop = CancellationToken::new();
    let tasks = TaskTracker::new();
    let tallies = {
        let (script, stop, tasks) = (script.clone(), stop.clone(), tasks.clone());
        let trickle = Duration::from_millis(args.trickle_ms);
        attack_rt.run(async move { attack::start(addr, slow, &script, trickle, &stop, &tasks) })
    };
    let client_rt = RuntimeThread::start("bench-client", common.threads)?;
    let result = client_rt.run(crate::rpc::echo_load::<I>(
        addr,
        crate::rpc::payload_bytes(args.payload),
        args.inflight,
        LoadSpec::new(common.warmup(), common.measure()),
    ));
    client_rt.shutdown();
    stop.cancel();
    tasks.close();
    attack_rt.run(async move { tasks.wait().await });
    attack_rt.shutdown();
    server_rt.run(I::stop_server(server));
    server_rt.shutdown();
    let kinds = tallies
        .lock()
        .expect("tallies lock poisoned")
        .iter()
        .map(|t| {
            let q = |q| {
                if t.lifetime_ms.is_empty() {
                    0
                } else {
                    t.lifetime_ms.value_at_quantile(q)
                }
            };
            (t.closed, q(0.5), q(1.0))
        })
        .collect();
    Ok(Outcome {
        load: result?,
        kinds,
    })
}

/// Runs the scenario and prints the results.
pub(crate) fn run(args: &SlowlorisArgs) -> Result<(), BoxError> {
    let common = &args.common;
    common.validate()?;
    if args.inflight == 0 {
        return Err("--inflight must be at least 1".into());
    }
    let impls = crate::cli::select_impls(&args.impls, &IMPLS)?;
    // results[impl][condition] = one outcome per run; condition 0 is clean, 1 attacked. A
    // failed run (the legitimate client got an error) is a result too: it is counted, not fatal.
    let mut results: Vec<[Vec<Outcome>; 2]> = impls.iter().map(|_| [vec![], vec![]]).collect();
    let mut failures: Vec<[Vec<String>; 2]> = impls.iter().map(|_| [vec![], vec![]]).collect();
    for run in 1..=common.runs {
        for (i, name) in impls.iter().enumerate() {
            for (c, slow) in [0, args.slow].into_iter().enumerate() {
                let label = format!("run {run}/{}, {name}, {slow} slow peers", common.runs);
                eprintln!("[slowloris] {label} ...");
                let outcome = match *name {
                    "peerwire" => run_once::<Peerwire>(args, &peerwire_script(), slow),
                    _ => run_once::<Tonic>(args, &tonic_script(), slow),
                };
                match outcome {
                    Ok(outcome) => {
                        let m = Measurement::from_load(&outcome.load);
                        eprintln!(
                            "[slowloris] {label}: {:.0} ops/s, p50 {} µs, p99 {} µs; closed per kind {:?}",
                            m.ops_per_sec,
                            m.p50_us,
                            m.p99_us,
                            outcome.kinds.iter().map(|k| k.0).collect::<Vec<_>>()
                        );
                        results[i][c].push(outcome);
                    }
                    Err(e) => {
                        eprintln!("[slowloris] {label}: the legitimate client failed: {e}");
                        failures[i][c].push(e.to_string());
                    }
                }
            }
        }
    }

    let mut lines = Vec::new();
    for (i, name) in impls.iter().enumerate() {
        if results[i][0].is_empty() || results[i][1].is_empty() {
            lines.push(json!({
                "scenario": "slowloris",
                "impl": name,
                "slow_peers": args.slow,
                "failed_runs": {"clean": failures[i][0], "attacked": failures[i][1]},
            }));
            continue;
        }
        let median = |outcomes: &[Outcome]| -> (Measurement, Vec<u64>, usize) {
            let m: Vec<Measurement> = outcomes
                .iter()
                .map(|o| Measurement::from_load(&o.load))
                .collect();
            let p99s: Vec<f64> = m.iter().map(|m| m.p99_us as f64).collect();
            let at = median_index(&p99s).expect("at least one run");
            (m[at], p99s.iter().map(|p| *p as u64).collect(), at)
        };
        let (clean, clean_p99s, _) = median(&results[i][0]);
        let (attacked, attacked_p99s, at) = median(&results[i][1]);
        let ratio = if clean.p99_us > 0 {
            attacked.p99_us as f64 / clean.p99_us as f64
        } else {
            f64::NAN
        };
        let kinds: Vec<Value> = Slow::ALL
            .iter()
            .zip(&results[i][1][at].kinds)
            .map(|(k, (closed, median_ms, max_ms))| {
                json!({"kind": k.name(), "closed": closed, "lifetime_median_ms": median_ms, "lifetime_max_ms": max_ms})
            })
            .collect();
        lines.push(json!({
            "scenario": "slowloris",
            "impl": name,
            "slow_peers": args.slow,
            "trickle_ms": args.trickle_ms,
            "inflight": args.inflight,
            "payload_bytes": args.payload,
            "runs": common.runs,
            "secs": common.secs,
            "clean": {"ops_per_sec": clean.ops_per_sec.round() as u64, "p50_us": clean.p50_us, "p99_us": clean.p99_us, "p99_us_runs": clean_p99s},
            "attacked": {"ops_per_sec": attacked.ops_per_sec.round() as u64, "p50_us": attacked.p50_us, "p99_us": attacked.p99_us, "p99_us_runs": attacked_p99s},
            "p99_attacked_vs_clean": (ratio * 100.0).round() / 100.0,
            "slow_peers_closed": kinds,
            "failed_runs": {"clean": failures[i][0].len(), "attacked": failures[i][1].len()},
        }));
    }
    if common.json {
        for line in &lines {
            println!("{line}");
        }
        return Ok(());
    }
    println!(
        "slowloris: unary echo, {} in flight, payload {} B, beside {} slow peers (a byte every {} ms, reconnecting when closed); {} s measured after {} s warm-up; median of {} run(s) by p99",
        args.inflight,
        args.payload,
        args.slow,
        args.trickle_ms,
        common.secs,
        common.warmup,
        common.runs
    );
    println!(
        "{:<10} {:>12} {:>10} {:>12} {:>10} {:>9} {:>14}",
        "impl", "clean ops/s", "clean p99", "slow ops/s", "slow p99", "p99 ×", "failed runs"
    );
    for l in &lines {
        if l.get("clean").is_none() {
            println!(
                "{:<10} every run failed: {}",
                l["impl"].as_str().unwrap_or_default(),
                l["failed_runs"]
            );
            continue;
        }
        println!(
            "{:<10} {:>12} {:>8}µs {:>12} {:>8}µs {:>9} {:>14}",
            l["impl"].as_str().unwrap_or_default(),
            l["clean"]["ops_per_sec"].to_string(),
            l["clean"]["p99_us"].to_string(),
            l["attacked"]["ops_per_sec"].to_string(),
            l["attacked"]["p99_us"].to_string(),
            l["p99_attacked_vs_clean"].to_string(),
            format!(
                "{} + {}",
                l["failed_runs"]["clean"], l["failed_runs"]["attacked"]
            )
        );
    }
    println!(
        "slow peers closed by the server during the attacked run (median run): closed, median / max lifetime"
    );
    for l in &lines {
        let kinds: Vec<String> = l["slow_peers_closed"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|k| {
                format!(
                    "{} {} ({} / {} ms)",
                    k["kind"].as_str().unwrap_or_default(),
                    k["closed"],
                    k["lifetime_median_ms"],
                    k["lifetime_max_ms"]
                )
            })
            .collect();
        println!(
            "{:<10} {}",
            l["impl"].as_str().unwrap_or_default(),
            kinds.join(", ")
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_impls_run_clean_and_attacked() {
        let args = SlowlorisArgs {
            slow: 40,
            trickle_ms: 20,
            inflight: 2,
            payload: 64,
            impls: Vec::new(),
            common: CommonArgs {
                threads: 1,
                secs: 0.2,
                warmup: 0.0,
                runs: 1,
                json: true,
            },
        };
        for slow in [0, args.slow] {
            let p = run_once::<Peerwire>(&args, &peerwire_script(), slow).unwrap();
            assert!(p.load.ops > 0);
            let t = run_once::<Tonic>(&args, &tonic_script(), slow).unwrap();
            assert!(t.load.ops > 0);
        }
    }

    #[test]
    fn the_peerwire_script_is_a_hello_the_server_accepts() {
        let script = peerwire_script();
        let mut buf = BytesMut::from(&script.hello[..]);
        let mut dec = peerwire::wire::FrameDecoder::new(peerwire::wire::Limits::default());
        assert!(matches!(
            dec.decode(&mut buf),
            Ok(Some(peerwire::wire::Frame::Hello(_)))
        ));
    }
}
