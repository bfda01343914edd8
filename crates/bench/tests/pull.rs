//! `peerwire-bench pull` as a user runs it, on a small file: every impl pulls the whole file
//! and each row carries goodput, CPU per GiB and the ratios to raw sendfile and tonic.

use std::process::Command;

use serde_json::Value;

#[test]
fn every_impl_pulls_the_whole_file() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_peerwire-bench"))
        .args([
            "pull",
            "--file-bytes",
            "3000001",
            "--chunk-bytes",
            "65536",
            "--runs",
            "1",
            "--warmup",
            "0",
            "--json",
            "--dir",
        ])
        .arg(dir.path())
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
        [
            "peerwire-stream",
            "peerwire-chunks",
            "raw-sendfile",
            "tonic"
        ]
    );
    for row in &rows {
        assert!(row["bytes_per_sec"].as_f64().unwrap() > 0.0, "{row}");
        assert!(row["vs_raw_sendfile"].as_f64().unwrap() > 0.0, "{row}");
        assert!(row["vs_tonic"].as_f64().unwrap() > 0.0, "{row}");
    }
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "the file was removed"
    );
}
