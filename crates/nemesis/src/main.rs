//! `peerwire-nemesis`: run peerwire-kv across network namespaces under a seeded nemesis and
//! check the history; check a saved history again; remove what a killed run left behind.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use peerwire_nemesis::harness::{self, RunConfig};
use peerwire_nemesis::schedule::{Kind, Timing};
use peerwire_nemesis::{check, history, netns, summary};
use tokio_util::sync::CancellationToken;

#[derive(Debug, Parser)]
#[command(
    name = "peerwire-nemesis",
    version,
    about = "peerwire-kv on namespaced hosts under a Jepsen-style nemesis"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// One seeded run: start the cluster, run the workload under the nemesis, check, summarise.
    Run(RunArgs),
    /// Check a saved history (`history.jsonl`) again.
    Check {
        /// The history file.
        history: PathBuf,
    },
    /// Remove the namespaces (and processes in them) of runs whose harness is gone.
    Cleanup,
}

#[derive(Debug, Args)]
struct RunArgs {
    /// Nodes (3 or 5).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u8).range(3..=9))]
    nodes: u8,
    /// Length of the fault schedule in seconds.
    #[arg(long, default_value_t = 60)]
    secs: u64,
    /// The seed (default: a random one, printed so the run can be repeated).
    #[arg(long)]
    seed: Option<u64>,
    /// The kinds of fault, comma-separated [default: all].
    #[arg(long, value_enum, value_delimiter = ',')]
    nemesis: Vec<Kind>,
    /// Clients (even ones use HTTP, odd ones the native client; client c talks to node
    /// c mod nodes + 1).
    #[arg(long, default_value_t = 8)]
    clients: u32,
    /// Keys written and read at once.
    #[arg(long, default_value_t = 4)]
    keys: u32,
    /// Operations on a key before the workload moves to a fresh one.
    #[arg(long, default_value_t = 300)]
    ops_per_key: u64,
    /// Operations per second, all clients together.
    #[arg(long, default_value_t = 200.0)]
    rate: f64,
    /// Shortest and longest healthy time between faults, in seconds.
    #[arg(long, num_args = 2, default_values_t = [2.0, 5.0])]
    quiet: Vec<f64>,
    /// Shortest and longest time a fault is held, in seconds.
    #[arg(long, num_args = 2, default_values_t = [5.0, 12.0])]
    hold: Vec<f64>,
    /// Mutual TLS on every peerwire lane.
    #[arg(long)]
    tls: bool,
    /// The peerwire-kv program [default: `peerwire-kv` beside this program].
    #[arg(long)]
    kv_bin: Option<PathBuf>,
    /// Where the history, faults, summary and node logs go [default: a new directory under
    /// the system's temporary directory].
    #[arg(long)]
    out: Option<PathBuf>,
    /// If network namespaces cannot be used here, say so and exit successfully (for CI).
    #[arg(long)]
    skip_unavailable: bool,
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Run(args) => run(args),
        Command::Check { history } => match history::load(&history) {
            Ok(ops) => {
                let report = check::check(&ops);
                for v in &report.violations {
                    println!("VIOLATION on key {} at {}", v.key, summary::describe(&v.op));
                    for op in &v.window {
                        println!("    {}", summary::describe(op));
                    }
                }
                for l in &report.lost {
                    println!("LOST WRITE {}", summary::describe(&l.write));
                }
                println!(
                    "checked {} operations on {} keys: {} violations, {} lost writes",
                    report.checked_ops,
                    report.keys,
                    report.violations.len(),
                    report.lost.len()
                );
                if report.passed() {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::FAILURE
                }
            }
            Err(e) => {
                eprintln!("peerwire-nemesis: {e}");
                ExitCode::from(2)
            }
        },
        Command::Cleanup => {
            for name in netns::remove_stale() {
                println!("removed {name}");
            }
            ExitCode::SUCCESS
        }
    }
}

fn secs(v: &[f64]) -> (Duration, Duration) {
    (Duration::from_secs_f64(v[0]), Duration::from_secs_f64(v[1]))
}

fn run(args: RunArgs) -> ExitCode {
    if let Err(why) = netns::available() {
        if args.skip_unavailable {
            println!(
                "peerwire-nemesis: SKIPPED: network namespaces cannot be used here ({why}); it needs root, iproute2 and nftables"
            );
            return ExitCode::SUCCESS;
        }
        eprintln!("peerwire-nemesis: network namespaces cannot be used here: {why}");
        return ExitCode::from(2);
    }
    for name in netns::remove_stale() {
        println!("removed {name}, left behind by a run that is gone");
    }
    let kv_bin = match args.kv_bin.clone() {
        Some(p) => p,
        None => match std::env::current_exe() {
            Ok(me) => me.with_file_name("peerwire-kv"),
            Err(e) => {
                eprintln!("peerwire-nemesis: finding this program: {e}");
                return ExitCode::from(2);
            }
        },
    };
    if !kv_bin.exists() {
        eprintln!(
            "peerwire-nemesis: {} not found (build it with `cargo build -p peerwire-kv`, or pass --kv-bin)",
            kv_bin.display()
        );
        return ExitCode::from(2);
    }
    let seed = args.seed.unwrap_or_else(|| fastrand::u64(..));
    let out = args.out.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("peerwire-nemesis-{seed}-{}", std::process::id()))
    });
    let cfg = RunConfig {
        seed,
        nodes: args.nodes,
        length: Duration::from_secs(args.secs),
        kinds: if args.nemesis.is_empty() {
            Kind::ALL.to_vec()
        } else {
            args.nemesis.clone()
        },
        timing: Timing {
            quiet: secs(&args.quiet),
            hold: secs(&args.hold),
        },
        clients: args.clients,
        slots: args.keys.max(1),
        ops_per_key: args.ops_per_key,
        rate: args.rate,
        tls: args.tls,
        kv_bin: std::path::absolute(&kv_bin).unwrap_or(kv_bin),
        out,
    };
    let hosts = match netns::Hosts::create(cfg.nodes) {
        Ok(h) => h,
        Err(e) => {
            eprintln!("peerwire-nemesis: making the hosts: {e}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = hosts.enter_hub() {
        eprintln!("peerwire-nemesis: {e}");
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("peerwire-nemesis: starting the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let result = runtime.block_on(async {
        let stop = CancellationToken::new();
        let on_signal = stop.clone();
        tokio::spawn(async move {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
            let terminated = async {
                match term.as_mut() {
                    Some(t) => {
                        t.recv().await;
                    }
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = terminated => {}
            }
            eprintln!("peerwire-nemesis: stopping early (signal): healing, stopping the nodes, checking what was recorded");
            on_signal.cancel();
        });
        harness::run(&hosts, &cfg, stop).await
    });
    drop(runtime);
    drop(hosts);
    match result {
        Ok(outcome) => {
            print!("\n{}", outcome.text);
            println!(
                "history, faults, summary and node logs: {}",
                cfg.out.display()
            );
            if outcome.summary.passed {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("peerwire-nemesis: {e} (logs in {})", cfg.out.display());
            ExitCode::FAILURE
        }
    }
}
