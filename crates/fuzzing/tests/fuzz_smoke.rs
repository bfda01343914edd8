//! Every fuzz target over its seeds and a fixed number of seeded mutations of them: the
//! targets' oracles hold in CI, and a crash found by `cargo fuzz` stays fixed once its input
//! is added to `fuzz/regressions/<target>/`. Fuzzing proper is `cargo +nightly fuzz run
//! <target>` (docs/TESTING.md).

use std::path::Path;

use peerwire_fuzzing::{TARGETS, seeds};

/// Mutations per target per seed (the end-to-end target serves a whole connection per input,
/// so it gets fewer).
fn mutations(target: &str) -> usize {
    if target == "connection" { 40 } else { 400 }
}

/// One random edit of `input`, in the style of libFuzzer's mutators.
fn mutate(rng: &mut fastrand::Rng, input: &mut Vec<u8>, other: &[u8]) {
    let len = input.len();
    match rng.u8(0..7) {
        0 if len > 0 => input[rng.usize(0..len)] ^= 1 << rng.u8(0..8),
        1 if len > 0 => input[rng.usize(0..len)] = rng.u8(..),
        2 => {
            let at = rng.usize(0..=len);
            let n = rng.usize(1..9);
            let bytes: Vec<u8> = (0..n).map(|_| rng.u8(..)).collect();
            input.splice(at..at, bytes);
        }
        3 if len > 0 => {
            let at = rng.usize(0..len);
            let end = (at + rng.usize(1..17)).min(len);
            input.drain(at..end);
        }
        4 if len > 0 => input.truncate(rng.usize(0..len)),
        5 if len > 0 && !other.is_empty() => {
            // Splice: our head, then the other input's tail.
            let at = rng.usize(0..len);
            let from = rng.usize(0..other.len());
            input.truncate(at);
            input.extend_from_slice(&other[from..]);
        }
        _ if len >= 4 => {
            // An interesting integer over four bytes (lengths are where decoders go wrong).
            let at = rng.usize(0..=len - 4);
            let v: u32 = *rng
                .choice(&[0, 1, 0x7f, 0x80, 0xff, 0xffff, 0x7fff_ffff, u32::MAX])
                .unwrap();
            input[at..at + 4].copy_from_slice(&v.to_be_bytes());
        }
        _ => input.push(rng.u8(..)),
    }
}

fn regressions(target: &str) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/regressions")
        .join(target);
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .map(|e| std::fs::read(e.unwrap().path()).unwrap())
        .collect()
}

#[test]
fn every_target_survives_its_seeds_mutations_and_regressions() {
    for (name, target) in TARGETS {
        let seeds = seeds(name);
        assert!(!seeds.is_empty(), "{name} has seeds");
        let mut rng = fastrand::Rng::with_seed(0x5eed);
        for input in regressions(name).iter().chain(&seeds) {
            target(input);
        }
        for (i, seed) in seeds.iter().enumerate() {
            let other = &seeds[(i + 1) % seeds.len()];
            for _ in 0..mutations(name) {
                let mut input = seed.clone();
                for _ in 0..rng.usize(1..5) {
                    mutate(&mut rng, &mut input, other);
                }
                target(&input);
            }
        }
    }
}

#[test]
fn the_connection_seeds_reach_every_lane_past_the_handshake() {
    use peerwire::wire::Frame;
    for (i, seed) in seeds("connection").iter().enumerate() {
        let replies = peerwire_fuzzing::connection_replies(seed);
        let kinds: Vec<_> = replies.iter().map(Frame::kind).collect();
        if seed[0] & 1 == 0 {
            // No hello from the target: the seed's own hello is answered.
            assert!(
                matches!(replies.first(), Some(Frame::HelloAck(_))),
                "seed {i}: {kinds:?}"
            );
            continue;
        }
        assert!(
            matches!(replies.first(), Some(Frame::HelloAck(_))),
            "seed {i}: {kinds:?}"
        );
        let answered = replies
            .iter()
            .filter(|f| matches!(f, Frame::Response(_)))
            .count();
        // A snapshot whose connection closes is abandoned, answered or not depending on
        // whether the lane's task saw the calls or the close first: only the ack is certain.
        if seed[0] >> 1 == 4 {
            continue;
        }
        // Raft batches are one-way: nothing but the ack comes back, and no failure.
        if matches!(seed[0] >> 1, 1 | 2) {
            assert!(
                !replies.iter().any(|f| matches!(f, Frame::Failure(_))),
                "seed {i}: {kinds:?}"
            );
        } else {
            assert!(answered >= 1, "seed {i} got a response: {kinds:?}");
        }
    }
}

/// Writes every target's seeds to `fuzz/corpus/<target>/` as the starting corpus for `cargo
/// fuzz run`: `cargo test -p peerwire --test fuzz_smoke -- --ignored`.
#[test]
#[ignore = "writes files: run by hand before fuzzing"]
fn write_seed_corpus() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus");
    for (name, _) in TARGETS {
        let dir = root.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        for (i, seed) in seeds(name).iter().enumerate() {
            std::fs::write(dir.join(format!("seed-{i}")), seed).unwrap();
        }
    }
}
