//! `peerwire-bench`: peerwire benchmarks, each run side by side with its baselines (raw tokio
//! TCP, tonic, tarpc) in the same invocation, reporting the median of several runs and ratios.
//!
//! Results go to stdout (a table, or JSON lines with `--json`); progress goes to stderr.
//!
//! ```text
//! peerwire-bench rpc --payload 1024 --inflight 1,64 --threads 1 --secs 5 --warmup 1 --runs 3
//! ```

mod baseline;
mod cli;
mod costs;
mod cpu;
mod datastream;
mod echo;
mod harness;
mod impls;
mod kv;
mod mixed;
mod overload;
mod plot;
mod progress;
mod pull;
mod raft;
mod report;
mod rpc;
mod rss;
mod runtime;
mod server_proc;
mod slowloris;
mod stream;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command};

/// mimalloc instead of the system allocator: glibc returns freed multi-MiB buffers (every
/// received bulk packet is one) to the kernel and faults them back in, which costs more CPU
/// than the transport itself at GB/s. Baselines run in the same process with the same
/// allocator.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Errors of the benchmark tool: a message for the operator.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Logs of the systems under test (peerwire-kv's `snapshot saved`, say) on stderr, only
    // when asked for: `RUST_LOG=peerwire_kv=info peerwire-bench kv`.
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .init();
    }
    let result = match cli.command {
        Command::Rpc(args) => rpc::run(&args, &rpc::RPC),
        Command::Rpcenv(args) => rpc::run(&args, &rpc::RPCENV),
        Command::Service(args) => rpc::run(&args, &rpc::SERVICE),
        Command::Overload(args) => overload::run(&args),
        Command::Raft(args) => raft::run(&args),
        Command::Datastream(args) => datastream::run(&args),
        Command::Pull(args) => pull::run(&args),
        Command::Stream(args) => stream::run(&args),
        Command::Kv(args) => kv::run(&args),
        Command::Slowloris(args) => slowloris::run(&args),
        Command::Mixed(args) => mixed::run(&args),
        Command::EchoServer(args) => args.kind.serve_until_stdin_closes(args.threads),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("peerwire-bench: error: {e}");
            ExitCode::FAILURE
        }
    }
}
