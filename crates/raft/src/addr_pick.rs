//! Which of a peer's addresses to dial (etcd's `urlPicker`): stay on the address that works,
//! move to the next when it is reported unreachable. Pure.

use std::net::SocketAddr;

/// Rotates through a peer's addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddrPicker {
    addrs: Vec<SocketAddr>,
    current: usize,
}

impl AddrPicker {
    /// A picker over `addrs`, starting with the first. `None` if `addrs` is empty.
    pub fn new(addrs: Vec<SocketAddr>) -> Option<Self> {
        if addrs.is_empty() {
            return None;
        }
        Some(Self { addrs, current: 0 })
    }

    /// The address to dial now.
    pub fn pick(&self) -> SocketAddr {
        self.addrs[self.current]
    }

    /// Reports that dialing or using `addr` failed: if it is the current address, the next one
    /// becomes current (a stale report about an address already left behind changes nothing).
    pub fn unreachable(&mut self, addr: SocketAddr) {
        if self.addrs[self.current] == addr {
            self.current = (self.current + 1) % self.addrs.len();
        }
    }

    /// Replaces the addresses (a member's addresses changed); keeps the current address if it
    /// is still listed. Returns false, changing nothing, if `addrs` is empty.
    pub fn update(&mut self, addrs: Vec<SocketAddr>) -> bool {
        if addrs.is_empty() {
            return false;
        }
        let current = self.pick();
        self.current = addrs.iter().position(|a| *a == current).unwrap_or(0);
        self.addrs = addrs;
        true
    }

    /// All addresses.
    pub fn addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn rotates_on_failure_and_ignores_stale_reports() {
        let mut p = AddrPicker::new(vec![a(1), a(2), a(3)]).unwrap();
        assert_eq!(p.pick(), a(1));
        p.unreachable(a(1));
        assert_eq!(p.pick(), a(2));
        // A late report about the first address does not skip the second.
        p.unreachable(a(1));
        assert_eq!(p.pick(), a(2));
        p.unreachable(a(2));
        p.unreachable(a(3));
        assert_eq!(p.pick(), a(1), "wraps around");
    }

    #[test]
    fn update_keeps_a_working_address() {
        let mut p = AddrPicker::new(vec![a(1), a(2)]).unwrap();
        p.unreachable(a(1));
        assert!(p.update(vec![a(9), a(2)]));
        assert_eq!(p.pick(), a(2));
        assert!(p.update(vec![a(7)]));
        assert_eq!(p.pick(), a(7));
        assert!(!p.update(vec![]));
        assert_eq!(p.addrs(), [a(7)]);
        assert!(AddrPicker::new(vec![]).is_none());
    }
}
