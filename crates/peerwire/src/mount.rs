//! The mount API: how services share a server's one port.
//!
//! A service implements [`Service`] and is mounted on a [`ServerBuilder`] at a
//! [`MountPoint`] — a lane kind and a group. Every connection's hello names the mount point it
//! wants; the server core hands the connection to the service mounted there and knows nothing
//! else about it. A hello for a lane nothing is mounted on is refused with
//! `GoAwayReason::UnsupportedLane` (the caller gets `HandshakeError::UnsupportedLane`), one for
//! a group the lane's service does not host with `GoAwayReason::UnknownGroup`
//! (`HandshakeError::UnknownGroup`).
//!
//! peerwire's own services mount the same way: the raft transport (four lanes per group), the
//! data-stream server, the RpcEnv; they implement [`Mountable`] so one call mounts all their
//! parts. The typed protocols and plain routes are the server core's own service at
//! `MountPoint::lane(Lane::Rpc)`.
//!
//! ```no_run
//! use std::sync::Arc;
//! use bytes::Bytes;
//! use peerwire::mount::{MountPoint, ReplySlot, Service};
//! use peerwire::wire::{Lane, Request};
//! use peerwire::{Connection, Server, ServerConfig};
//!
//! /// A service of our own: answers every request with its payload reversed.
//! struct Reverse;
//!
//! impl Service for Reverse {
//!     fn on_request(&self, conn: &Connection, request: Request, slot: ReplySlot) {
//!         let mut bytes = request.payload.to_vec();
//!         bytes.reverse();
//!         conn.reply(slot, request.id, Bytes::from(bytes));
//!     }
//! }
//!
//! # async fn demo() -> Result<(), peerwire::Error> {
//! let server = Server::builder(ServerConfig::default())
//!     .mount(MountPoint::lane(Lane::user(1)), Arc::new(Reverse))
//!     .bind("127.0.0.1:0".parse().unwrap())
//!     .await?;
//! # Ok(()) }
//! ```
//!
//! [`ServerBuilder`]: crate::ServerBuilder

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use peerwire_wire::{GoAwayReason, Hello};

use crate::config::Identity;
pub use crate::connection::{MountPoint, Refusal, ReplySlot, ServeNothing, Service};

/// Something that mounts one or more services at once (the raft transport's lanes, a
/// data-stream server, an RpcEnv), for [`ServerBuilder::mount_all`].
///
/// [`ServerBuilder::mount_all`]: crate::ServerBuilder::mount_all
pub trait Mountable {
    /// The services to mount and where.
    fn mounts(&self) -> Vec<(MountPoint, Arc<dyn Service>)>;

    /// The identity the services were built with, which must be the server's (`None`: any).
    fn identity(&self) -> Option<Identity> {
        None
    }

    /// What to run once the server listens, with its address (an RpcEnv learns the address
    /// its endpoint refs carry). Default: nothing.
    fn on_bound(&self) -> Option<Box<dyn FnOnce(SocketAddr) + Send>> {
        None
    }
}

/// Most groups one refusal lists.
const GROUPS_LISTED: usize = 8;

/// The services mounted on one server, by mount point.
#[derive(Debug, Default)]
pub(crate) struct Mounts {
    services: BTreeMap<MountPoint, Arc<dyn Service>>,
}

impl Mounts {
    /// Mounts `service` at `at`; `Err` names a mount point that is taken.
    pub(crate) fn insert(
        &mut self,
        at: MountPoint,
        service: Arc<dyn Service>,
    ) -> Result<(), MountPoint> {
        match self.services.entry(at) {
            std::collections::btree_map::Entry::Occupied(_) => Err(at),
            std::collections::btree_map::Entry::Vacant(slot) => {
                slot.insert(service);
                Ok(())
            }
        }
    }

    /// Whether anything is mounted at `at`.
    pub(crate) fn contains(&self, at: MountPoint) -> bool {
        self.services.contains_key(&at)
    }

    /// The service a hello asks for, or the refusal: no service on its lane, or none for its
    /// group. `node_id` names this node in the message.
    pub(crate) fn find(&self, hello: &Hello, node_id: u64) -> Result<&Arc<dyn Service>, Refusal> {
        let at = MountPoint::group(hello.lane, hello.group);
        if let Some(service) = self.services.get(&at) {
            return Ok(service);
        }
        let groups: Vec<u64> = self
            .services
            .range(MountPoint::group(hello.lane, 0)..=MountPoint::group(hello.lane, u64::MAX))
            .map(|(at, _)| at.group)
            .collect();
        if groups.is_empty() {
            return Err(Refusal::new(
                GoAwayReason::UnsupportedLane,
                format!(
                    "node {node_id} mounts no service on the {} lane",
                    hello.lane
                ),
            ));
        }
        let listed: Vec<String> = groups
            .iter()
            .take(GROUPS_LISTED)
            .map(u64::to_string)
            .collect();
        let more = groups.len().saturating_sub(GROUPS_LISTED);
        Err(Refusal::new(
            GoAwayReason::UnknownGroup,
            format!(
                "node {node_id} serves the {} lane for group{} {}{}, not group {}",
                hello.lane,
                if groups.len() == 1 { "" } else { "s" },
                listed.join(", "),
                if more > 0 {
                    format!(" and {more} more")
                } else {
                    String::new()
                },
                hello.group
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Connection;
    use peerwire_wire::{Lane, Request};

    struct Nothing;
    impl Service for Nothing {
        fn on_request(&self, _conn: &Connection, _request: Request, _slot: ReplySlot) {}
    }

    fn hello(lane: Lane, group: u64) -> Hello {
        Hello {
            min_version: 1,
            max_version: 2,
            lane,
            group,
            cluster_id: 0,
            node_id: 5,
            target_node_id: 0,
            epoch: 0,
            max_frame_body: 1024,
            max_message: 1024,
        }
    }

    #[test]
    fn lookup_table() {
        let mut mounts = Mounts::default();
        let svc: Arc<dyn Service> = Arc::new(Nothing);
        for at in [
            MountPoint::lane(Lane::Rpc),
            MountPoint::group(Lane::RaftAppend, 1),
            MountPoint::group(Lane::RaftAppend, 2),
            MountPoint::lane(Lane::user(3)),
        ] {
            mounts.insert(at, svc.clone()).unwrap();
        }
        // (lane, group, the refusal's reason, or None when found)
        let cases = [
            (Lane::Rpc, 0, None),
            (Lane::Rpc, 1, Some(GoAwayReason::UnknownGroup)),
            (Lane::RaftAppend, 1, None),
            (Lane::RaftAppend, 2, None),
            (Lane::RaftAppend, 0, Some(GoAwayReason::UnknownGroup)),
            (Lane::RaftAppend, u64::MAX, Some(GoAwayReason::UnknownGroup)),
            (Lane::RaftMessage, 1, Some(GoAwayReason::UnsupportedLane)),
            (Lane::user(3), 0, None),
            (Lane::user(4), 0, Some(GoAwayReason::UnsupportedLane)),
            (Lane::DataStream, 0, Some(GoAwayReason::UnsupportedLane)),
        ];
        for (lane, group, want) in cases {
            let got = mounts.find(&hello(lane, group), 9).err().map(|r| r.reason);
            assert_eq!(got, want, "{lane} group {group}");
        }
    }

    #[test]
    fn refusals_name_the_node_and_the_groups_served() {
        let mut mounts = Mounts::default();
        for group in 1..=10 {
            mounts
                .insert(
                    MountPoint::group(Lane::DataStream, group),
                    Arc::new(Nothing),
                )
                .unwrap();
        }
        let refusal = mounts.find(&hello(Lane::DataStream, 77), 9).unwrap_err();
        assert_eq!(
            refusal.message,
            "node 9 serves the data-stream lane for groups 1, 2, 3, 4, 5, 6, 7, 8 and 2 more, not group 77"
        );
        let refusal = mounts.find(&hello(Lane::RpcEnv, 0), 9).unwrap_err();
        assert_eq!(
            refusal.message,
            "node 9 mounts no service on the rpc-env lane"
        );
    }

    #[test]
    fn a_taken_mount_point_is_refused() {
        let mut mounts = Mounts::default();
        let at = MountPoint::group(Lane::DataStream, 4);
        mounts.insert(at, Arc::new(Nothing)).unwrap();
        assert_eq!(mounts.insert(at, Arc::new(Nothing)), Err(at));
        assert!(mounts.contains(at));
    }
}
