//! `peerwire-bench rpc` as a user runs it: the echo server in a child process of its own, a
//! connection sweep, costs per call and per connection in every JSON row, and a plot.

use std::process::Command;

use serde_json::Value;

fn bench() -> Command {
    Command::new(env!("CARGO_BIN_EXE_peerwire-bench"))
}

#[test]
fn a_connection_sweep_reports_costs_from_a_child_server() {
    let dir = tempfile::tempdir().unwrap();
    let plot = dir.path().join("rpc.png");
    let font_at_hand = std::env::var_os("PEERWIRE_PLOT_FONT").is_some()
        || std::path::Path::new("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf").exists();
    let mut cmd = bench();
    cmd.args([
        "rpc",
        "--impls",
        "peerwire,raw-tcp",
        "--connections",
        "1,8",
        "--inflight",
        "1",
        "--secs",
        "0.3",
        "--warmup",
        "0",
        "--runs",
        "1",
        "--json",
    ]);
    if font_at_hand {
        cmd.arg("--plot").arg(&plot);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(rows.len(), 4, "{rows:?}");
    for row in &rows {
        assert!(row["ops_per_sec"].as_f64().unwrap() > 0.0, "{row}");
        assert!(row["cpu_s_per_mcall"].as_f64().unwrap() > 0.0, "{row}");
        assert!(row["mb_per_sec"].as_f64().unwrap() > 0.0, "{row}");
        // Memory is read from the child server's /proc entry: present, never negative.
        assert!(
            row["server_kib_per_conn_idle"].as_f64().unwrap() >= 0.0,
            "{row}"
        );
        assert!(
            row["server_kib_per_conn_busy"].as_f64().unwrap()
                >= row["server_kib_per_conn_idle"].as_f64().unwrap(),
            "{row}"
        );
    }
    let conns: Vec<u64> = rows
        .iter()
        .map(|r| r["connections"].as_u64().unwrap())
        .collect();
    assert_eq!(conns, [1, 1, 8, 8]);
    // Progress went to stderr, never into the JSON on stdout.
    assert!(String::from_utf8_lossy(&out.stderr).contains("[rpc]"));
    if font_at_hand {
        let png = std::fs::read(&plot).unwrap();
        assert_eq!(&png[1..4], b"PNG");
    }
}

#[test]
fn the_child_server_reports_a_bad_impl_without_hanging() {
    let out = bench()
        .args(["echo-server", "--impl", "no-such-impl"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no-such-impl"));
}

/// The `-prom` impls run the same servers with peerwire-kv's Prometheus recorder installed in
/// the child, beside the same impls without one, so a row puts a number on the metrics' cost.
#[test]
fn the_metered_impls_run_beside_the_unmetered_ones() {
    let out = bench()
        .args([
            "service",
            "--impls",
            "peerwire-prom,peerwire-service-prom,peerwire-service",
            "--inflight",
            "4",
            "--secs",
            "0.3",
            "--warmup",
            "0",
            "--runs",
            "1",
            "--json",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let impls: Vec<&str> = rows.iter().map(|r| r["impl"].as_str().unwrap()).collect();
    assert_eq!(
        impls,
        ["peerwire-prom", "peerwire-service-prom", "peerwire-service"]
    );
    for row in &rows {
        assert!(row["ops_per_sec"].as_f64().unwrap() > 0.0, "{row}");
    }
}

/// Secret mode and TLS run with their servers in child processes (the TLS material made by the
/// parent reaches the child), beside plaintext.
#[test]
fn the_secured_impls_run_from_child_servers() {
    let out = bench()
        .args([
            "rpc",
            "--impls",
            "peerwire,peerwire-secret,peerwire-tls",
            "--inflight",
            "4",
            "--payload",
            "1024,100000",
            "--secs",
            "0.3",
            "--warmup",
            "0",
            "--runs",
            "1",
            "--json",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(rows.len(), 6, "{rows:?}");
    for row in &rows {
        assert!(row["ops_per_sec"].as_f64().unwrap() > 0.0, "{row}");
    }
}
