//! The reflector: a local cache of one kind, fed by a watcher.
//!
//! A single [`Writer`] (not cloneable: one source of truth per cache) applies watcher events;
//! any number of [`Store`] handles read it. Reconcilers read the latest object from the store
//! rather than the event that woke them, so they always act on the newest state and a deleted
//! object is simply absent.
//!
//! # Guarantees
//! - After a [`Event::Restarted`] the store holds exactly the listed objects.
//! - [`Store::wait_until_ready`] returns once the first list has been applied, so a reader
//!   never mistakes an empty, not-yet-filled cache for "nothing exists".

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use cirrus_crds::Resource;
use futures::{Stream, StreamExt};
use tokio::sync::watch;

use super::object_ref::ObjectRef;
use super::watcher::Event;

type Map<K> = Arc<RwLock<HashMap<ObjectRef, Arc<K>>>>;

/// The only writer of a cache.
#[derive(Debug)]
pub struct Writer<K> {
    map: Map<K>,
    ready: watch::Sender<bool>,
}

/// A read-only, cloneable view of a cache.
#[derive(Debug)]
pub struct Store<K> {
    map: Map<K>,
    ready: watch::Receiver<bool>,
}

impl<K> Clone for Store<K> {
    fn clone(&self) -> Self {
        Self {
            map: self.map.clone(),
            ready: self.ready.clone(),
        }
    }
}

impl<K: Resource> Default for Writer<K> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K: Resource> Writer<K> {
    /// An empty, not-ready cache.
    pub fn new() -> Self {
        Self {
            map: Arc::default(),
            ready: watch::Sender::new(false),
        }
    }

    /// A reader of this cache.
    pub fn as_reader(&self) -> Store<K> {
        Store {
            map: self.map.clone(),
            ready: self.ready.subscribe(),
        }
    }

    /// Applies one watcher event.
    pub fn apply(&mut self, event: &Event<K>) {
        let mut map = self.map.write().expect("reflector lock poisoned");
        match event {
            Event::Restarted(objects) => {
                *map = objects
                    .iter()
                    .map(|o| (ObjectRef::from_obj(o), Arc::new(o.clone())))
                    .collect();
                drop(map);
                self.ready.send_replace(true);
            }
            Event::Applied(o) => {
                map.insert(ObjectRef::from_obj(o), Arc::new(o.clone()));
            }
            Event::Deleted(o) => {
                map.remove(&ObjectRef::from_obj(o));
            }
        }
    }
}

impl<K: Resource> Store<K> {
    /// The cached object, if it exists.
    pub fn get(&self, key: &ObjectRef) -> Option<Arc<K>> {
        self.map
            .read()
            .expect("reflector lock poisoned")
            .get(key)
            .cloned()
    }

    /// Every cached object, in no particular order.
    pub fn list(&self) -> Vec<Arc<K>> {
        self.map
            .read()
            .expect("reflector lock poisoned")
            .values()
            .cloned()
            .collect()
    }

    /// The keys of every cached object.
    pub fn keys(&self) -> Vec<ObjectRef> {
        self.map
            .read()
            .expect("reflector lock poisoned")
            .keys()
            .cloned()
            .collect()
    }

    /// True once the first full list has been applied.
    pub fn is_ready(&self) -> bool {
        *self.ready.borrow()
    }

    /// Waits until the first full list has been applied. Returns at once if it has been; if
    /// the writer is dropped before that, returns too (the cache will never fill).
    pub async fn wait_until_ready(&self) {
        let mut ready = self.ready.clone();
        let _ = ready.wait_for(|r| *r).await;
    }
}

/// Applies every event of `stream` to `writer` before passing it on: the store is up to date
/// with an event by the time the consumer sees it.
pub fn reflector<K, E, S>(
    mut writer: Writer<K>,
    stream: S,
) -> impl Stream<Item = Result<Event<K>, E>> + Send
where
    K: Resource,
    E: Send,
    S: Stream<Item = Result<Event<K>, E>> + Send,
{
    stream.map(move |event| {
        if let Ok(event) = &event {
            writer.apply(event);
        }
        event
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use cirrus_crds::{ObjectMeta, Server, ServerSpec};

    fn server(project: &str, name: &str) -> Server {
        Server::new(
            ObjectMeta {
                name: name.into(),
                project: Some(project.into()),
                ..Default::default()
            },
            ServerSpec::default(),
        )
    }

    #[tokio::test]
    async fn restarted_replaces_and_signals_ready() {
        let mut writer = Writer::<Server>::new();
        let store = writer.as_reader();
        assert!(!store.is_ready());
        writer.apply(&Event::Applied(server("a", "stale")));
        writer.apply(&Event::Restarted(vec![server("a", "x"), server("b", "x")]));
        assert!(store.is_ready());
        store.wait_until_ready().await;
        assert_eq!(store.list().len(), 2);
        assert!(store.get(&ObjectRef::in_project("a", "stale")).is_none());
        assert!(store.get(&ObjectRef::in_project("b", "x")).is_some());
        writer.apply(&Event::Deleted(server("b", "x")));
        assert!(store.get(&ObjectRef::in_project("b", "x")).is_none());
        assert_eq!(store.keys(), vec![ObjectRef::in_project("a", "x")]);
    }
}
