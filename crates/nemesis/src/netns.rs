//! The hosts of a run: one network namespace per node, and a hub namespace that holds the
//! bridge every node's link hangs off and the harness's own (client) address. Nothing is added
//! to the namespace the harness was started in, and the only addresses used are the ones given
//! here, inside namespaces made here.
//!
//! Names carry the harness's process id and a random tag (`pwn-<pid>-<tag>-hub`,
//! `pwn-<pid>-<tag>-n<i>`), so two runs never collide, and a later run can remove what a run
//! that was killed left behind ([`remove_stale`]). [`Hosts`] removes its namespaces, and every
//! process still in them, when dropped.

use std::fmt::Write as _;
use std::io::Write as _;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};

use crate::partition::{Cuts, NodeId, nft_script};

/// The prefix of every namespace the harness makes.
pub const PREFIX: &str = "pwn";

/// The hub's (the clients') address.
pub const HUB_IP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);

/// Node `i`'s address (`10.77.0.1i`). Each run has its own bridge in its own hub namespace, so
/// two runs using the same addresses never meet.
pub fn node_ip(i: NodeId) -> Ipv4Addr {
    Ipv4Addr::new(10, 77, 0, 10 + i)
}

/// The link name inside each node's namespace.
const NODE_LINK: &str = "eth0";

/// Why setting up or changing the hosts failed.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// A command could not be started.
    #[error("running `{command}`: {source}")]
    Spawn {
        /// The command.
        command: String,
        /// Why.
        source: std::io::Error,
    },
    /// A command failed.
    #[error("`{command}` failed: {stderr}")]
    Failed {
        /// The command.
        command: String,
        /// What it printed on stderr.
        stderr: String,
    },
    /// Entering the hub namespace failed.
    #[error("entering namespace {name}: {reason}")]
    Enter {
        /// The namespace.
        name: String,
        /// Why.
        reason: String,
    },
}

/// Runs a command to completion, feeding it `stdin` if given.
fn run(program: &str, args: &[&str], stdin: Option<&str>) -> Result<String, NetError> {
    let command = format!("{program} {}", args.join(" "));
    let mut child = Command::new(program)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| NetError::Spawn {
            command: command.clone(),
            source,
        })?;
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(input.as_bytes())
            .map_err(|source| NetError::Spawn {
                command: command.clone(),
                source,
            })?;
    }
    let out = child.wait_with_output().map_err(|source| NetError::Spawn {
        command: command.clone(),
        source,
    })?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(NetError::Failed {
            command,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        })
    }
}

fn ip(args: &[&str]) -> Result<String, NetError> {
    run("ip", args, None)
}

/// Whether this machine lets the harness make namespaces, bridges, veth pairs and nftables
/// rules: tries each once in a namespace of its own and removes it. `Err` says what is missing.
pub fn available() -> Result<(), String> {
    let name = format!("{PREFIX}-{}-probe", std::process::id());
    ip(&["netns", "add", &name]).map_err(|e| e.to_string())?;
    let result = (|| {
        ip(&["-n", &name, "link", "add", "br0", "type", "bridge"])?;
        ip(&[
            "-n", &name, "link", "add", "v0", "type", "veth", "peer", "name", "v1",
        ])?;
        run(
            "ip",
            &["netns", "exec", &name, "nft", "-f", "-"],
            Some(&nft_script(&Cuts::none(), 1, node_ip)),
        )?;
        Ok::<_, NetError>(())
    })()
    .map_err(|e| e.to_string());
    let _ = ip(&["netns", "del", &name]);
    result
}

/// The namespaces [`Hosts`] made in runs whose harness is gone (its pid is not alive), with
/// every process still in them killed, removed. Returns their names.
pub fn remove_stale() -> Vec<String> {
    let Ok(list) = ip(&["netns", "list"]) else {
        return Vec::new();
    };
    let mut removed = Vec::new();
    for line in list.lines() {
        let name = line.split_whitespace().next().unwrap_or("");
        let mut parts = name.splitn(3, '-');
        if parts.next() != Some(PREFIX) {
            continue;
        }
        let Some(pid) = parts.next().and_then(|p| p.parse::<i32>().ok()) else {
            continue;
        };
        let alive = std::path::Path::new(&format!("/proc/{pid}")).exists();
        if !alive {
            kill_all_in(name);
            if ip(&["netns", "del", name]).is_ok() {
                removed.push(name.to_owned());
            }
        }
    }
    removed
}

/// SIGKILLs every process in namespace `name` but this one (the harness lives in its hub).
fn kill_all_in(name: &str) {
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;
    let me = std::process::id() as i32;
    if let Ok(pids) = ip(&["netns", "pids", name]) {
        for pid in pids
            .lines()
            .filter_map(|p| p.trim().parse::<i32>().ok())
            .filter(|&p| p != me)
        {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            let _ = kill(Pid::from_raw(pid), Signal::SIGCONT);
        }
    }
}

/// Moves the calling thread into the network namespace `name` (made by `ip netns add`): the
/// sockets it opens from then on, and the threads it starts, are in that namespace.
pub fn enter(name: &str) -> Result<(), NetError> {
    let setns = || -> Result<(), String> {
        let file =
            std::fs::File::open(format!("/var/run/netns/{name}")).map_err(|e| e.to_string())?;
        nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).map_err(|e| e.to_string())
    };
    setns().map_err(|reason| NetError::Enter {
        name: name.to_owned(),
        reason,
    })
}

/// The names of the network namespaces that exist now.
pub fn list() -> Vec<String> {
    ip(&["netns", "list"])
        .map(|l| {
            l.lines()
                .filter_map(|x| x.split_whitespace().next().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// The namespaces, bridge and links of one run.
#[derive(Debug)]
pub struct Hosts {
    tag: String,
    nodes: NodeId,
    /// Namespaces made so far (removed on drop).
    made: Vec<String>,
}

impl Hosts {
    /// Makes the hub namespace with its bridge at [`HUB_IP`] and `nodes` node namespaces,
    /// each with a link to the bridge and the address [`node_ip`]. What was made before a
    /// failure is removed.
    pub fn create(nodes: NodeId) -> Result<Self, NetError> {
        let tag = format!("{PREFIX}-{}-{:04x}", std::process::id(), fastrand::u16(..));
        let mut hosts = Self {
            tag,
            nodes,
            made: Vec::new(),
        };
        hosts.build()?;
        Ok(hosts)
    }

    fn build(&mut self) -> Result<(), NetError> {
        let hub = self.hub();
        ip(&["netns", "add", &hub])?;
        self.made.push(hub.clone());
        ip(&["-n", &hub, "link", "set", "lo", "up"])?;
        ip(&["-n", &hub, "link", "add", "br0", "type", "bridge"])?;
        ip(&[
            "-n",
            &hub,
            "addr",
            "add",
            &format!("{HUB_IP}/24"),
            "dev",
            "br0",
        ])?;
        ip(&["-n", &hub, "link", "set", "br0", "up"])?;
        for i in 1..=self.nodes {
            let ns = self.node(i);
            ip(&["netns", "add", &ns])?;
            self.made.push(ns.clone());
            let hub_end = format!("v{i}");
            ip(&[
                "-n", &hub, "link", "add", &hub_end, "type", "veth", "peer", "name", NODE_LINK,
                "netns", &ns,
            ])?;
            ip(&["-n", &hub, "link", "set", &hub_end, "master", "br0"])?;
            ip(&["-n", &hub, "link", "set", &hub_end, "up"])?;
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
            ip(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{}/24", node_ip(i)),
                "dev",
                NODE_LINK,
            ])?;
            ip(&["-n", &ns, "link", "set", NODE_LINK, "up"])?;
            self.set_cuts_at(i, &Cuts::none())?;
        }
        Ok(())
    }

    /// The hub namespace's name.
    pub fn hub(&self) -> String {
        format!("{}-hub", self.tag)
    }

    /// Node `i`'s namespace's name.
    pub fn node(&self, i: NodeId) -> String {
        format!("{}-n{i}", self.tag)
    }

    /// How many nodes.
    pub fn nodes(&self) -> NodeId {
        self.nodes
    }

    /// Moves the calling thread into the hub namespace, so the sockets it (and the threads it
    /// starts later) opens reach the nodes. Call it before starting the async runtime.
    pub fn enter_hub(&self) -> Result<(), NetError> {
        enter(&self.hub())
    }

    /// Makes node `i` drop what `cuts` says it drops (replacing what it dropped before).
    pub fn set_cuts_at(&self, i: NodeId, cuts: &Cuts) -> Result<(), NetError> {
        let ns = self.node(i);
        run(
            "ip",
            &["netns", "exec", &ns, "nft", "-f", "-"],
            Some(&nft_script(cuts, i, node_ip)),
        )
        .map(drop)
    }

    /// Applies `cuts` on every node.
    pub fn set_cuts(&self, cuts: &Cuts) -> Result<(), NetError> {
        for i in 1..=self.nodes {
            self.set_cuts_at(i, cuts)?;
        }
        Ok(())
    }

    /// Takes node `i`'s link down or brings it up; up, it returns once both ends of the link
    /// report carrier (operationally up), so traffic flows when it returns (at most 2 s).
    pub fn set_link(&self, i: NodeId, up: bool) -> Result<(), NetError> {
        let ns = self.node(i);
        ip(&[
            "-n",
            &ns,
            "link",
            "set",
            NODE_LINK,
            if up { "up" } else { "down" },
        ])?;
        if up {
            let hub = self.hub();
            let port = format!("v{i}");
            let is_up = |ns: &str, link: &str| {
                ip(&["-n", ns, "-o", "link", "show", link])
                    .is_ok_and(|out| out.contains("state UP"))
            };
            let until = std::time::Instant::now() + std::time::Duration::from_secs(2);
            while !(is_up(&ns, NODE_LINK) && is_up(&hub, &port)) {
                if std::time::Instant::now() >= until {
                    return Err(NetError::Failed {
                        command: format!("ip -n {ns} link set {NODE_LINK} up"),
                        stderr: "the link did not come up within 2 s".into(),
                    });
                }
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
        }
        Ok(())
    }

    /// The command prefix that runs a program inside node `i`'s namespace.
    pub fn exec_prefix(&self, i: NodeId) -> [String; 3] {
        ["netns".into(), "exec".into(), self.node(i)]
    }

    /// What exists now, for a report: each namespace and its addresses.
    pub fn describe(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "hub {} {HUB_IP}", self.hub());
        for i in 1..=self.nodes {
            let _ = writeln!(out, "node {i} {} {}", self.node(i), node_ip(i));
        }
        out
    }

    /// Kills every process in the namespaces and removes them (idempotent).
    pub fn remove(&mut self) {
        for name in self.made.drain(..).rev() {
            kill_all_in(&name);
            let _ = ip(&["netns", "del", &name]);
        }
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        self.remove();
    }
}
