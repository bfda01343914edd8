//! The echo server of `rpc`, `rpcenv` and `service` in a child process of its own, so that its
//! resident memory and CPU time are its own and can be read from `/proc/<pid>`.
//!
//! The parent runs this same binary again as `peerwire-bench echo-server --impl NAME --threads
//! N`. The child starts the impl's server, prints its address as the one line of its stdout,
//! and serves until its stdin reaches end of file; then it stops the server and exits 0.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use clap::Args;

use crate::BoxError;
use crate::echo::EchoImpl;
use crate::rpc::ImplKind;
use crate::runtime::RuntimeThread;

/// How long a stopping child gets to shut its server down and exit before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(15);

/// `peerwire-bench echo-server` options (run by the benchmark itself, not by people).
#[derive(Debug, Clone, Args)]
pub(crate) struct EchoServerArgs {
    /// The impl whose echo server to run.
    #[arg(long = "impl", value_parser = ImplKind::parse)]
    pub(crate) kind: ImplKind,
    /// Tokio worker threads of the server runtime.
    #[arg(long, default_value_t = 1)]
    pub(crate) threads: usize,
}

/// The child's side: serves impl `I` until stdin closes.
pub(crate) fn serve<I: EchoImpl + 'static>(threads: usize) -> Result<(), BoxError> {
    let rt = RuntimeThread::start("bench-server", threads)?;
    let (server, addr) = rt.run(I::start_server())?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "{addr}")?;
        out.flush()?;
    }
    // The parent holds our stdin open for as long as it wants the server; end of file (or a
    // read error: the parent is gone) means stop.
    let mut sink = [0u8; 64];
    let mut stdin = std::io::stdin().lock();
    while matches!(stdin.read(&mut sink), Ok(n) if n > 0) {}
    rt.run(I::stop_server(server));
    rt.shutdown();
    Ok(())
}

/// The parent's handle on a child echo server. Dropping it kills the child.
#[derive(Debug)]
pub(crate) struct ServerProcess {
    child: Child,
    stdin: Option<ChildStdin>,
    addr: SocketAddr,
    name: &'static str,
}

impl ServerProcess {
    /// Starts impl `kind`'s echo server in a child process with `threads` workers and waits
    /// for its address.
    pub(crate) fn spawn(kind: ImplKind, threads: usize) -> Result<Self, BoxError> {
        let exe = std::env::current_exe()
            .map_err(|e| format!("finding this executable to run the echo server: {e}"))?;
        let mut child = Command::new(&exe)
            .args([
                "echo-server",
                "--impl",
                kind.name(),
                "--threads",
                &threads.to_string(),
            ])
            .envs([crate::impls::peerwire_echo::child_env()?])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("starting {} echo-server: {e}", exe.display()))?;
        let stdin = child.stdin.take();
        let mut process = Self {
            stdin,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            name: kind.name(),
            child,
        };
        let stdout = process
            .child
            .stdout
            .take()
            .ok_or("the echo server's stdout was not captured")?;
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line)?;
        process.addr = line.trim().parse().map_err(|_| {
            format!(
                "the {} echo server printed {line:?} instead of its address (it failed to \
                 start; its stderr is above)",
                process.name
            )
        })?;
        Ok(process)
    }

    /// The server's address.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The child's process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Closes the child's stdin and waits for it to stop its server and exit; kills it after
    /// [`STOP_TIMEOUT`].
    pub(crate) fn stop(mut self) -> Result<(), BoxError> {
        drop(self.stdin.take());
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return if status.success() {
                    Ok(())
                } else {
                    Err(format!("the {} echo server exited with {status}", self.name).into())
                };
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                return Err(format!(
                    "the {} echo server did not exit within {STOP_TIMEOUT:?} of being told to \
                     stop; killed",
                    self.name
                )
                .into());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
