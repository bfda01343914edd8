//! Connections per remote address: a cap on how many one address may hold open, and the
//! addresses exempt from every connection cap (a node's own members, a monitoring host).

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// The per-address cap and its exemptions, with the live counts.
#[derive(Debug)]
pub(crate) struct AddressCaps {
    per_address: usize,
    exempt: HashSet<IpAddr>,
    open: Mutex<HashMap<IpAddr, usize>>,
}

/// What admitting a connection from an address decided.
#[derive(Debug)]
pub(crate) enum Admitted {
    /// Exempt from every cap.
    Exempt,
    /// Counted against its address until the permit drops.
    Counted(AddressPermit),
}

/// One open connection's place in its address's count.
#[derive(Debug)]
pub(crate) struct AddressPermit {
    caps: Arc<AddressCaps>,
    ip: IpAddr,
}

impl Drop for AddressPermit {
    fn drop(&mut self) {
        let mut open = self.caps.open.lock().expect("address counts poisoned");
        if let Some(n) = open.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

impl AddressCaps {
    pub(crate) fn new(per_address: usize, exempt: impl IntoIterator<Item = IpAddr>) -> Self {
        Self {
            per_address,
            exempt: exempt.into_iter().collect(),
            open: Mutex::new(HashMap::new()),
        }
    }

    /// Admits a connection from `ip`, or `None` if its address holds its cap already.
    pub(crate) fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<Admitted> {
        if self.exempt.contains(&ip) {
            return Some(Admitted::Exempt);
        }
        let mut open = self.open.lock().expect("address counts poisoned");
        let n = open.entry(ip).or_insert(0);
        if *n >= self.per_address {
            return None;
        }
        *n += 1;
        Some(Admitted::Counted(AddressPermit {
            caps: self.clone(),
            ip,
        }))
    }

    /// The cap.
    pub(crate) fn per_address(&self) -> usize {
        self.per_address
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_holds_its_cap_and_exempt_ones_any_number() {
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let ops: IpAddr = "10.0.0.9".parse().unwrap();
        let caps = Arc::new(AddressCaps::new(2, [ops]));
        let first = caps.admit(a).unwrap();
        let _second = caps.admit(a).unwrap();
        assert!(caps.admit(a).is_none(), "a third from one address");
        assert!(caps.admit(b).is_some(), "another address has its own count");
        assert!((0..10).all(|_| matches!(caps.admit(ops), Some(Admitted::Exempt))));
        drop(first);
        assert!(
            caps.admit(a).is_some(),
            "a closed connection frees its place"
        );
    }
}
