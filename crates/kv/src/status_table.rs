//! `peerwire-kv status` as a table (etcdctl's `endpoint status -w table`): one line per
//! endpoint asked, or what went wrong asking it. Pure.

use std::fmt::Write as _;

use crate::node::Role;
use crate::service::Status;

fn role(r: Role) -> &'static str {
    match r {
        Role::Leader => "leader",
        Role::Follower => "follower",
        Role::Candidate => "candidate",
        Role::PreCandidate => "pre-candidate",
    }
}

/// The table of `answers`: each endpoint asked with its status or the error asking it.
pub fn render(answers: &[(String, Result<Status, String>)]) -> String {
    let header = [
        "ENDPOINT", "ID", "ROLE", "LEADER", "TERM", "COMMIT", "APPLIED", "SNAPSHOT", "PEERS UP",
        "ERRORS",
    ];
    let mut lines: Vec<Vec<String>> = vec![header.iter().map(|h| (*h).to_owned()).collect()];
    for (endpoint, answer) in answers {
        let line = match answer {
            Ok(s) => {
                let up = s.members.iter().filter(|m| m.active).count();
                let mut errors: Vec<String> = s.refusal.iter().cloned().collect();
                errors.extend(s.members.iter().filter(|m| !m.active).map(|m| {
                    format!(
                        "peer {}: {}",
                        m.id,
                        m.last_error.as_deref().unwrap_or("inactive")
                    )
                }));
                vec![
                    endpoint.clone(),
                    s.id.to_string(),
                    role(s.role).to_owned(),
                    if s.leader == 0 {
                        "none".to_owned()
                    } else {
                        s.leader.to_string()
                    },
                    s.term.to_string(),
                    s.commit.to_string(),
                    s.applied.to_string(),
                    s.snapshot_index.to_string(),
                    format!("{up}/{}", s.members.len()),
                    errors.join("; "),
                ]
            }
            Err(e) => {
                let mut line = vec![endpoint.clone()];
                line.extend(std::iter::repeat_n("-".to_owned(), header.len() - 2));
                line.push(e.clone());
                line
            }
        };
        lines.push(line);
    }
    let widths: Vec<usize> = (0..header.len())
        .map(|i| {
            lines
                .iter()
                .map(|l| l[i].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for line in &lines {
        let mut text = String::new();
        for (i, cell) in line.iter().enumerate() {
            if i + 1 == line.len() {
                text.push_str(cell);
            } else {
                let _ = write!(text, "{cell:<w$}  ", w = widths[i]);
            }
        }
        let _ = writeln!(out, "{}", text.trim_end());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::MemberStatus;

    fn member(id: u64, active: bool) -> MemberStatus {
        MemberStatus {
            id,
            address: format!("127.0.0.1:{id}2379"),
            active,
            active_for_secs: None,
            rtt_us: None,
            last_error: (!active).then(|| "connection refused".to_owned()),
        }
    }

    #[test]
    fn one_line_per_endpoint_with_the_errors_last() {
        let leader = Status {
            id: 1,
            leader: 1,
            term: 3,
            commit: 120,
            applied: 119,
            role: Role::Leader,
            snapshot_index: 100,
            refusal: None,
            members: vec![member(1, true), member(2, true), member(3, false)],
        };
        let text = render(&[
            ("http://127.0.0.1:12379".into(), Ok(leader)),
            (
                "http://127.0.0.1:32379".into(),
                Err("connection refused".into()),
            ),
        ]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with("ENDPOINT"), "{text}");
        assert!(lines[0].ends_with("ERRORS"), "{text}");
        for cell in [
            "leader",
            "120",
            "119",
            "100",
            "2/3",
            "peer 3: connection refused",
        ] {
            assert!(lines[1].contains(cell), "missing {cell}: {text}");
        }
        assert!(lines[2].ends_with("connection refused"), "{text}");
        // Columns line up: the ROLE column starts at the same place on every line.
        let at = lines[0].find("ROLE").unwrap();
        assert_eq!(&lines[1][at..at + 6], "leader");
    }
}
