//! The hosts a run makes are real: a cut drops real packets between two namespaces and never
//! the clients' traffic, a link taken down cuts the clients too, and everything made (the
//! namespaces and the processes in them) is gone after the hosts are dropped. Skipped, saying
//! so, where network namespaces cannot be made (not root, no iproute2 or nftables).

use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use peerwire_nemesis::netns::{self, HUB_IP, Hosts, node_ip};
use peerwire_nemesis::partition::Cuts;

/// Whether a thread in namespace `ns` can open a TCP connection to `to` (a dropped SYN fails
/// at the timeout).
fn connects(ns: &str, to: SocketAddr) -> bool {
    let ns = ns.to_owned();
    std::thread::spawn(move || {
        netns::enter(&ns).expect("entering the namespace");
        TcpStream::connect_timeout(&to, Duration::from_millis(400)).is_ok()
    })
    .join()
    .expect("the connecting thread")
}

/// Whether `ns` connects to `to` within a few attempts: for a path that should work, where a
/// first SYN may meet a port that is just coming up (each attempt is bounded; TCP's own
/// retransmission would take a second).
fn connects_soon(ns: &str, to: SocketAddr) -> bool {
    (0..5).any(|_| connects(ns, to))
}

/// A listener on `ip:port` inside namespace `ns` (the kernel completes handshakes into its
/// backlog; nothing needs to accept).
fn listen(ns: &str, ip: Ipv4Addr, port: u16) -> TcpListener {
    let ns = ns.to_owned();
    std::thread::spawn(move || {
        netns::enter(&ns).expect("entering the namespace");
        TcpListener::bind((ip, port)).expect("binding inside the namespace")
    })
    .join()
    .expect("the listening thread")
}

#[test]
fn cuts_and_links_drop_real_traffic_and_everything_made_is_removed() {
    if let Err(why) = netns::available() {
        eprintln!("SKIPPED: network namespaces cannot be used here: {why}");
        return;
    }
    let hosts = Hosts::create(3).expect("making the hosts");
    let made = [hosts.hub(), hosts.node(1), hosts.node(2), hosts.node(3)];
    let existing = netns::list();
    for name in &made {
        assert!(existing.contains(name), "{name} missing from {existing:?}");
    }
    let _l2 = listen(&hosts.node(2), node_ip(2), 7000);
    let _l3 = listen(&hosts.node(3), node_ip(3), 7000);
    let to2 = SocketAddr::from((node_ip(2), 7000));
    let to3 = SocketAddr::from((node_ip(3), 7000));
    assert!(connects(&hosts.node(1), to2), "node 1 reaches node 2");
    assert!(connects(&hosts.hub(), to2), "the hub reaches node 2");

    // Node 1 cut from 2 and 3: its packets are dropped, the clients' (the hub's) are not.
    hosts
        .set_cuts(&Cuts::split(&[1], &[2, 3]))
        .expect("cutting");
    assert!(
        !connects(&hosts.node(1), to2),
        "the cut drops node 1's packets"
    );
    assert!(!connects(&hosts.node(1), to3));
    assert!(
        connects(&hosts.node(3), to2),
        "2 and 3 still reach each other"
    );
    assert!(connects(&hosts.hub(), to2), "the clients are never cut");

    hosts.set_cuts(&Cuts::none()).expect("healing");
    assert!(connects_soon(&hosts.node(1), to2), "healed");

    // A link down cuts node 2 from everyone, the clients included; up again, it is back.
    hosts.set_link(2, false).expect("link down");
    assert!(!connects(&hosts.hub(), to2));
    assert!(!connects(&hosts.node(3), to2));
    hosts.set_link(2, true).expect("link up");
    assert!(connects_soon(&hosts.hub(), to2), "back once the link is up");
    assert!(HUB_IP.is_private());

    // A process left in a node's namespace is killed when the hosts go.
    let mut sleeper = std::process::Command::new("ip")
        .args([
            "netns",
            "exec",
            &hosts.node(1),
            "sh",
            "-c",
            "echo in; exec sleep 600",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("starting a process in node 1's namespace");
    // It is inside once it says so.
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(sleeper.stdout.take().expect("piped")),
        &mut line,
    )
    .expect("reading from the process");
    assert_eq!(line.trim(), "in");
    drop(hosts);
    let status = sleeper.wait().expect("waiting for the process");
    assert!(!status.success(), "the process was killed: {status}");
    let left = netns::list();
    for name in &made {
        assert!(!left.contains(name), "{name} still exists");
    }
}
