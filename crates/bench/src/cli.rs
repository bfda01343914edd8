//! Command line: one subcommand per scenario, plus the options every scenario shares.

use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::BoxError;
use crate::datastream::DataStreamArgs;
use crate::kv::KvArgs;
use crate::overload::OverloadArgs;
use crate::raft::RaftArgs;
use crate::rpc::RpcArgs;

/// peerwire benchmarks, run side by side with their baselines in one invocation.
#[derive(Debug, Parser)]
#[command(name = "peerwire-bench", version, about)]
pub(crate) struct Cli {
    /// The scenario to run.
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// The scenarios.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Unary echo over one connection with N requests in flight: peerwire vs raw TCP, tonic,
    /// tarpc.
    Rpc(RpcArgs),
    /// RpcEnv asks (named endpoints, typed messages) with N in flight, beside the raw peerwire
    /// call path, raw TCP and tonic.
    Rpcenv(RpcArgs),
    /// Typed-protocol calls (service envelope, serde engine; idempotent and through the retry
    /// cache) with N in flight, beside the raw peerwire call path, raw TCP and tonic.
    Service(RpcArgs),
    /// Ten clients offering 4x the measured capacity (one hog) beside the same mix at 50%:
    /// admitted and busy rates per client, admitted p99, peak RSS; fair vs FIFO call queue.
    Overload(OverloadArgs),
    /// A raft leader and two followers over the raft transport: append entries/s, heartbeat
    /// round trip idle and during a snapshot, snapshot throughput; beside raw buffered TCP.
    Raft(RaftArgs),
    /// Bulk streams of large packets: one hop, and a primary fanning out to two replicas
    /// (star, chain); goodput and CPU per GiB beside raw TCP.
    Datastream(DataStreamArgs),
    /// A whole file (1 GiB) pulled from one server: a pull stream, its chunks as separate
    /// calls, beside raw TCP sendfile of the same file and tonic server streaming; goodput,
    /// CPU per GiB, memory held.
    Pull(crate::pull::PullArgs),
    /// A server-streaming method's replies (1 KiB items) read by one client: peerwire's
    /// streaming method beside tonic server streaming; items/s, CPU per million items.
    Stream(crate::stream::StreamArgs),
    /// A legitimate client's echo latency alone and beside 1,000 slow peers (silent, or a byte
    /// a second, before or after the handshake): peerwire and tonic.
    Slowloris(crate::slowloris::SlowlorisArgs),
    /// Small echoes sharing one connection with 64 MiB echoes: the small calls' latency alone
    /// and beside the large ones (head-of-line blocking), and the large calls' MB/s; peerwire
    /// vs tonic, tarpc, raw TCP.
    Mixed(crate::mixed::MixedArgs),
    /// Puts against a local 3-node peerwire-kv cluster (native client) at several client
    /// counts, beside a local 3-member etcd (gRPC) when an `etcd` binary is on PATH.
    Kv(KvArgs),
    /// The echo server of `rpc`, `rpcenv` and `service`, run by those scenarios in a child
    /// process: prints its address, serves until stdin closes.
    #[command(hide = true)]
    EchoServer(crate::server_proc::EchoServerArgs),
}

/// Options shared by every scenario.
#[derive(Debug, Clone, Args)]
pub(crate) struct CommonArgs {
    /// Tokio worker threads of the server runtime, and (separately) of the client runtime.
    #[arg(long, default_value_t = 1)]
    pub(crate) threads: usize,
    /// Measured seconds per (run, parameters, impl).
    #[arg(long, default_value_t = 5.0)]
    pub(crate) secs: f64,
    /// Warm-up seconds before each measurement (not recorded).
    #[arg(long, default_value_t = 1.0)]
    pub(crate) warmup: f64,
    /// Runs; the median run by ops/s is reported.
    #[arg(long, default_value_t = 3)]
    pub(crate) runs: usize,
    /// Print one JSON object per result line on stdout instead of a table.
    #[arg(long)]
    pub(crate) json: bool,
}

impl CommonArgs {
    /// Checks the values, so a run does not fail after minutes of measuring.
    pub(crate) fn validate(&self) -> Result<(), BoxError> {
        if self.threads == 0 {
            return Err("--threads must be at least 1".into());
        }
        if self.runs == 0 {
            return Err("--runs must be at least 1".into());
        }
        if !(self.secs.is_finite() && self.secs > 0.0) {
            return Err(format!(
                "--secs must be a positive number of seconds, got {}",
                self.secs
            )
            .into());
        }
        if !(self.warmup.is_finite() && self.warmup >= 0.0) {
            return Err(
                format!("--warmup must be zero or more seconds, got {}", self.warmup).into(),
            );
        }
        Ok(())
    }

    /// The measured window.
    pub(crate) fn measure(&self) -> Duration {
        Duration::from_secs_f64(self.secs)
    }

    /// The warm-up.
    pub(crate) fn warmup(&self) -> Duration {
        Duration::from_secs_f64(self.warmup)
    }
}

/// The impls a scenario runs: those named in `--impls` (each must be one of `known`), or all of
/// `known` when none is named.
pub(crate) fn select_impls<'a>(
    requested: &'a [String],
    known: &[&'static str],
) -> Result<Vec<&'a str>, BoxError>
where
    'static: 'a,
{
    let impls: Vec<&str> = if requested.is_empty() {
        known.to_vec()
    } else {
        requested.iter().map(String::as_str).collect()
    };
    if let Some(bad) = impls.iter().find(|i| !known.contains(i)) {
        return Err(format!("unknown impl `{bad}`; available: {}", known.join(", ")).into());
    }
    Ok(impls)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn impls_default_to_all_and_unknown_ones_are_named() {
        let known = ["a", "b"];
        assert_eq!(select_impls(&[], &known).unwrap(), vec!["a", "b"]);
        assert_eq!(select_impls(&["b".to_owned()], &known).unwrap(), vec!["b"]);
        let err = select_impls(&["c".to_owned()], &known).unwrap_err();
        assert!(err.to_string().contains("`c`; available: a, b"), "{err}");
    }

    #[test]
    fn cli_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn rejects_bad_common_values() {
        let ok = CommonArgs {
            threads: 1,
            secs: 1.0,
            warmup: 0.0,
            runs: 1,
            json: false,
        };
        assert!(ok.validate().is_ok());
        for bad in [
            CommonArgs {
                threads: 0,
                ..ok.clone()
            },
            CommonArgs {
                runs: 0,
                ..ok.clone()
            },
            CommonArgs {
                secs: 0.0,
                ..ok.clone()
            },
            CommonArgs {
                warmup: -1.0,
                ..ok.clone()
            },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
    }
}
