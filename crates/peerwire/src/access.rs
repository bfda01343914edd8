//! Who may use what (Hadoop's service-level authorization, `hadoop-policy.xml`): an ordered
//! list of rules over principals and targets — lanes, routes, typed protocols and their
//! methods, RpcEnv endpoints. The first rule that matches both the principal and the target
//! decides; when none does, the policy's default does, which is *allow* (a node without a
//! policy behaves as before policies existed).
//!
//! A refusal is its own status ([`Status::AccessDenied`](crate::Status::AccessDenied), or
//! `GoAway(AccessDenied)` for a lane): the call did not run, the client does not retry it, and
//! the message names the principal and the rule that refused it.

use std::sync::Arc;

use peerwire_wire::Lane;

use crate::connection::Principal;

/// Whom a rule applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Who {
    /// Every peer.
    Anyone,
    /// Peers the handshake authenticated (TLS or secret mode).
    Authenticated,
    /// Plaintext peers.
    Anonymous,
    /// Any member proven by its certificate.
    AnyNode,
    /// The member with this node id, proven by its certificate.
    Node(u64),
    /// The client whose certificate carries this name.
    User(String),
    /// Holders of the shared secret of this name.
    Secret(String),
}

impl Who {
    fn matches(&self, p: &Principal) -> bool {
        match (self, p) {
            (Self::Anyone, _) => true,
            (Self::Authenticated, p) => p.is_authenticated(),
            (Self::Anonymous, p) => !p.is_authenticated(),
            (Self::AnyNode, Principal::Node(_)) => true,
            (Self::Node(a), Principal::Node(b)) => a == b,
            (Self::User(a), Principal::User(b)) | (Self::Secret(a), Principal::Secret(b)) => a == b,
            _ => false,
        }
    }
}

/// What a rule covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Every target.
    Everything,
    /// Connections of this lane (checked at the handshake).
    Lane(Lane),
    /// Calls and one-way messages on this route of the rpc lane.
    Route(String),
    /// Every method of this typed protocol.
    Protocol(String),
    /// One method of a typed protocol.
    Method {
        /// The protocol.
        protocol: String,
        /// The method.
        method: String,
    },
    /// Messages to this RpcEnv endpoint.
    Endpoint(String),
}

/// One thing being accessed, as the check sees it.
#[derive(Debug, Clone, Copy)]
pub enum Access<'a> {
    /// A connection of a lane.
    Lane(Lane),
    /// A route.
    Route(&'a [u8]),
    /// A typed protocol's method.
    Method {
        /// The protocol.
        protocol: &'a str,
        /// The method.
        method: &'a str,
    },
    /// An RpcEnv endpoint.
    Endpoint(&'a str),
}

impl Access<'_> {
    /// A label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Lane(_) => "lane",
            Self::Route(_) => "route",
            Self::Method { .. } => "method",
            Self::Endpoint(_) => "endpoint",
        }
    }
}

impl Target {
    fn matches(&self, a: &Access<'_>) -> bool {
        match (self, a) {
            (Self::Everything, _) => true,
            (Self::Lane(l), Access::Lane(m)) => l == m,
            (Self::Route(r), Access::Route(s)) => r.as_bytes() == *s,
            (Self::Protocol(p), Access::Method { protocol, .. }) => p == protocol,
            (
                Self::Method { protocol, method },
                Access::Method {
                    protocol: p,
                    method: m,
                },
            ) => protocol == p && method == m,
            (Self::Endpoint(e), Access::Endpoint(f)) => e == f,
            _ => false,
        }
    }
}

/// Allow or deny.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// The access goes ahead.
    Allow,
    /// The access is refused.
    Deny,
}

#[derive(Debug, Clone)]
struct Rule {
    decision: Decision,
    who: Who,
    target: Target,
}

/// A refused access: whom, what, and which rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{principal} may not use {what} (access rule {rule})")]
pub struct Denied {
    /// The principal refused.
    pub principal: Principal,
    /// What it tried to use.
    pub what: String,
    /// The rule that refused it: its position from 1 and its text, or `default deny`.
    pub rule: String,
}

/// The rules of a node ([`ConnectionConfig::access`](crate::ConnectionConfig::access)).
/// Cheap to clone.
#[derive(Debug, Clone)]
pub struct AccessPolicy {
    rules: Arc<Vec<Rule>>,
    default: Decision,
}

impl Default for AccessPolicy {
    /// Allows everything.
    fn default() -> Self {
        Self {
            rules: Arc::new(Vec::new()),
            default: Decision::Allow,
        }
    }
}

impl AccessPolicy {
    /// A policy that allows what no rule denies (the default).
    pub fn allow_by_default() -> Self {
        Self::default()
    }

    /// A policy that denies what no rule allows.
    pub fn deny_by_default() -> Self {
        Self {
            rules: Arc::new(Vec::new()),
            default: Decision::Deny,
        }
    }

    fn with(mut self, decision: Decision, who: Who, target: Target) -> Self {
        Arc::make_mut(&mut self.rules).push(Rule {
            decision,
            who,
            target,
        });
        self
    }

    /// Adds a rule allowing `who` to use `target` (after the rules already added).
    pub fn allow(self, who: Who, target: Target) -> Self {
        self.with(Decision::Allow, who, target)
    }

    /// Adds a rule denying `who` the use of `target` (after the rules already added).
    pub fn deny(self, who: Who, target: Target) -> Self {
        self.with(Decision::Deny, who, target)
    }

    /// Whether `principal` may make `access`: the first matching rule decides, else the
    /// default.
    pub fn check(&self, principal: &Principal, access: Access<'_>) -> Result<(), Denied> {
        let found = self
            .rules
            .iter()
            .enumerate()
            .find(|(_, r)| r.who.matches(principal) && r.target.matches(&access));
        let (decision, rule) = match found {
            Some((i, r)) => (
                r.decision,
                format!("{}: {:?} {:?} {:?}", i + 1, r.decision, r.who, r.target),
            ),
            None => (self.default, format!("default {:?}", self.default)),
        };
        match decision {
            Decision::Allow => Ok(()),
            Decision::Deny => {
                metrics::counter!("peerwire_access_denied_total", "target" => access.kind())
                    .increment(1);
                Err(Denied {
                    principal: principal.clone(),
                    what: match access {
                        Access::Lane(l) => format!("the {l} lane"),
                        Access::Route(r) => format!("route `{}`", String::from_utf8_lossy(r)),
                        Access::Method { protocol, method } => format!("`{protocol}.{method}`"),
                        Access::Endpoint(e) => format!("endpoint `{e}`"),
                    },
                    rule,
                })
            }
        }
    }

    /// Reads a policy from text, one rule per line, the first match deciding (what
    /// `peerwire-kv node --access-file` reads; blank lines and `#` comments skipped):
    ///
    /// ```text
    /// default allow|deny
    /// allow|deny WHO TARGET
    /// WHO    = anyone | authenticated | anonymous | node | node:ID | user:NAME | secret:NAME
    /// TARGET = everything | lane:NAME-OR-CODE | route:NAME | protocol:NAME
    ///        | method:PROTOCOL.METHOD (split at the last dot) | endpoint:NAME
    /// ```
    ///
    /// # Errors
    ///
    /// The first line that is not a rule, by number, with what was expected.
    pub fn parse(text: &str) -> Result<Self, PolicyError> {
        let mut policy = Self::default();
        for (i, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let bad = |what: &str| PolicyError {
                line: i + 1,
                message: format!("{what} in {line:?}"),
            };
            let words: Vec<&str> = line.split_whitespace().collect();
            match words[..] {
                ["default", d] => {
                    policy.default = match d {
                        "allow" => Decision::Allow,
                        "deny" => Decision::Deny,
                        _ => return Err(bad("expected `default allow` or `default deny`")),
                    }
                }
                [d, who, target] => {
                    let decision = match d {
                        "allow" => Decision::Allow,
                        "deny" => Decision::Deny,
                        _ => return Err(bad("a rule starts with `allow` or `deny`")),
                    };
                    let who = parse_who(who).ok_or_else(|| bad("an unknown principal"))?;
                    let target = parse_target(target).ok_or_else(|| bad("an unknown target"))?;
                    policy = policy.with(decision, who, target);
                }
                _ => {
                    return Err(bad(
                        "expected `allow|deny WHO TARGET` or `default allow|deny`",
                    ));
                }
            }
        }
        Ok(policy)
    }

    /// Whether the policy has no rule and allows everything.
    pub fn is_open(&self) -> bool {
        self.rules.is_empty() && self.default == Decision::Allow
    }
}

/// A policy text that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("access policy, line {line}: {message}")]
pub struct PolicyError {
    /// The line, from 1.
    pub line: usize,
    /// What was wrong.
    pub message: String,
}

fn parse_who(word: &str) -> Option<Who> {
    Some(match word.split_once(':') {
        None => match word {
            "anyone" => Who::Anyone,
            "authenticated" => Who::Authenticated,
            "anonymous" => Who::Anonymous,
            "node" => Who::AnyNode,
            _ => return None,
        },
        Some(("node", id)) => Who::Node(id.parse().ok()?),
        Some(("user", name)) if !name.is_empty() => Who::User(name.to_owned()),
        Some(("secret", name)) if !name.is_empty() => Who::Secret(name.to_owned()),
        _ => return None,
    })
}

fn parse_target(word: &str) -> Option<Target> {
    if word == "everything" {
        return Some(Target::Everything);
    }
    let (kind, name) = word.split_once(':')?;
    if name.is_empty() {
        return None;
    }
    Some(match kind {
        "lane" => Target::Lane(match name.parse::<u8>() {
            Ok(code) => Lane::from_wire(code),
            Err(_) => (0..=u8::MAX)
                .map(Lane::from_wire)
                .find(|l| l.to_string() == name)?,
        }),
        "route" => Target::Route(name.to_owned()),
        "protocol" => Target::Protocol(name.to_owned()),
        "method" => {
            let (protocol, method) = name.rsplit_once('.')?;
            Target::Method {
                protocol: protocol.to_owned(),
                method: method.to_owned(),
            }
        }
        "endpoint" => Target::Endpoint(name.to_owned()),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{IpAddr, Ipv4Addr};

    const ANON: Principal = Principal::Anonymous(IpAddr::V4(Ipv4Addr::LOCALHOST));

    #[test]
    fn the_first_matching_rule_decides_and_the_default_allows() {
        let p = AccessPolicy::default()
            .allow(Who::User("admin".into()), Target::Route("drop".into()))
            .deny(Who::Anyone, Target::Route("drop".into()))
            .deny(
                Who::Anonymous,
                Target::Method {
                    protocol: "Fs".into(),
                    method: "delete".into(),
                },
            )
            .deny(Who::Secret("old".into()), Target::Lane(Lane::RaftAppend));
        let admin = Principal::User("admin".into());
        assert!(p.check(&admin, Access::Route(b"drop")).is_ok());
        let denied = p.check(&ANON, Access::Route(b"drop")).unwrap_err();
        assert!(denied.rule.starts_with("2:"), "{denied}");
        assert!(denied.to_string().contains("anonymous peer"), "{denied}");
        assert!(
            p.check(&ANON, Access::Route(b"echo")).is_ok(),
            "default allow"
        );
        let delete = Access::Method {
            protocol: "Fs",
            method: "delete",
        };
        assert!(p.check(&ANON, delete).is_err());
        assert!(p.check(&admin, delete).is_ok());
        assert!(
            p.check(
                &Principal::Secret("old".into()),
                Access::Lane(Lane::RaftAppend)
            )
            .is_err()
        );
        assert!(
            p.check(
                &Principal::Secret("new".into()),
                Access::Lane(Lane::RaftAppend)
            )
            .is_ok()
        );
    }

    #[test]
    fn policies_read_from_text() {
        let p = AccessPolicy::parse(
            "# ops may do anything; the app may not delete\n\
             default deny\n\
             allow secret:ops everything\n\
             deny secret:app method:Fs.delete   # no deletes\n\
             allow secret:app protocol:Fs\n\
             allow node lane:raft-append\n\
             allow user:client.peerwire lane:7\n",
        )
        .unwrap();
        let app = Principal::Secret("app".into());
        let m = |method| Access::Method {
            protocol: "Fs",
            method,
        };
        assert!(p.check(&app, m("stat")).is_ok());
        assert!(p.check(&app, m("delete")).is_err());
        assert!(
            p.check(&Principal::Secret("ops".into()), m("delete"))
                .is_ok()
        );
        assert!(
            p.check(&Principal::Node(2), Access::Lane(Lane::RaftAppend))
                .is_ok()
        );
        assert!(
            p.check(
                &Principal::User("client.peerwire".into()),
                Access::Lane(Lane::Pull)
            )
            .is_ok()
        );
        assert!(
            p.check(&ANON, Access::Lane(Lane::Rpc)).is_err(),
            "default deny"
        );
        for (text, line) in [
            ("allow", 1),
            ("\nallow somebody route:x", 2),
            ("allow anyone lane:no-such-lane", 1),
            ("permit anyone everything", 1),
            ("default maybe", 1),
            ("allow anyone method:nodot", 1),
        ] {
            assert_eq!(
                AccessPolicy::parse(text).unwrap_err().line,
                line,
                "{text:?}"
            );
        }
    }

    #[test]
    fn deny_by_default_admits_only_what_a_rule_allows() {
        let p = AccessPolicy::deny_by_default()
            .allow(Who::AnyNode, Target::Everything)
            .allow(Who::Authenticated, Target::Protocol("Kv".into()));
        assert!(
            p.check(&Principal::Node(3), Access::Lane(Lane::RaftAppend))
                .is_ok()
        );
        let kv_get = Access::Method {
            protocol: "Kv",
            method: "get",
        };
        assert!(p.check(&Principal::Secret("s".into()), kv_get).is_ok());
        let denied = p.check(&ANON, kv_get).unwrap_err();
        assert_eq!(denied.rule, "default Deny");
        assert!(!p.is_open() && AccessPolicy::default().is_open());
    }
}
