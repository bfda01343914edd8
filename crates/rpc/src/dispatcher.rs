//! The dispatcher (Spark's `Dispatcher`): the registry of endpoints by name, and delivery of
//! messages and connection events to their inboxes.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use super::inbox::{Inbox, InboxMessage, PostError, Refused};

#[derive(Default)]
pub(crate) struct Dispatcher {
    endpoints: RwLock<HashMap<String, Arc<Inbox>>>,
}

impl Dispatcher {
    /// Registers an inbox; refuses a name already in use.
    pub(crate) fn register(&self, inbox: Arc<Inbox>) -> Result<(), Arc<Inbox>> {
        let mut endpoints = self.endpoints.write().expect("dispatcher lock poisoned");
        if endpoints.contains_key(&inbox.name) {
            return Err(inbox);
        }
        endpoints.insert(inbox.name.clone(), inbox);
        Ok(())
    }

    /// Removes `inbox` if it is still the one registered under its name.
    pub(crate) fn remove(&self, name: &str, inbox: &Arc<Inbox>) {
        let mut endpoints = self.endpoints.write().expect("dispatcher lock poisoned");
        if endpoints.get(name).is_some_and(|i| Arc::ptr_eq(i, inbox)) {
            endpoints.remove(name);
        }
    }

    pub(crate) fn get(&self, name: &str) -> Option<Arc<Inbox>> {
        self.endpoints
            .read()
            .expect("dispatcher lock poisoned")
            .get(name)
            .cloned()
    }

    pub(crate) fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// Delivers a message to the endpoint `name`.
    pub(crate) fn post(&self, name: &str, message: InboxMessage) -> Result<(), Refused> {
        match self.get(name) {
            Some(inbox) => inbox.post(message),
            None => Err(Box::new((PostError::NotFound, message))),
        }
    }

    /// Delivers an event to every endpoint (dropped where an inbox is full).
    pub(crate) fn post_to_all(&self, event: impl Fn() -> InboxMessage) {
        let inboxes: Vec<Arc<Inbox>> = self
            .endpoints
            .read()
            .expect("dispatcher lock poisoned")
            .values()
            .cloned()
            .collect();
        for inbox in inboxes {
            let _ = inbox.post(event());
        }
    }

    /// Every registered inbox.
    pub(crate) fn all(&self) -> Vec<Arc<Inbox>> {
        self.endpoints
            .read()
            .expect("dispatcher lock poisoned")
            .values()
            .cloned()
            .collect()
    }
}
