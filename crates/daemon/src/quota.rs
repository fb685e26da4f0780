//! What each client other than root holds (connections, queued and running tasks), up to a
//! bound per client: a place is counted and taken under one lock, so concurrent requests
//! cannot pass the bound together, and given back when it is dropped.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::tasks::lock;

pub struct PerClient {
    held: Mutex<HashMap<u32, usize>>,
    bound: usize,
}

/// One place of a client's, counted while it lives.
pub struct Place {
    of: Arc<PerClient>,
    uid: u32,
}

impl PerClient {
    pub fn new(bound: usize) -> Arc<PerClient> {
        Arc::new(PerClient {
            held: Mutex::default(),
            bound,
        })
    }

    pub fn bound(&self) -> usize {
        self.bound
    }

    /// A place for `uid`; `None` when it holds its bound already.
    pub fn take(self: &Arc<PerClient>, uid: u32) -> Option<Place> {
        let mut held = lock(&self.held);
        let count = held.entry(uid).or_default();
        if *count >= self.bound {
            return None;
        }
        *count += 1;
        Some(Place {
            of: Arc::clone(self),
            uid,
        })
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        let mut held = lock(&self.of.held);
        if let Some(count) = held.get_mut(&self.uid) {
            *count -= 1;
            if *count == 0 {
                held.remove(&self.uid);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_holds_at_most_its_bound_and_a_dropped_place_is_given_back() {
        let quota = PerClient::new(2);
        let first = quota.take(7).unwrap();
        let _second = quota.take(7).unwrap();
        assert!(quota.take(7).is_none());
        assert!(quota.take(8).is_some(), "another client has its own bound");
        drop(first);
        assert!(quota.take(7).is_some());
        assert!(
            lock(&quota.held).get(&8).is_none(),
            "a client holding nothing is forgotten"
        );
    }
}
