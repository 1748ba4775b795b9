//! Watches shared by the controllers of one process: one list+watch per kind, however many
//! controllers need its events or its cache (each extra watch would cost the API an encode
//! and this process a decode of every change).

use cirrus_client::{Api, Client, ClientError};
use cirrus_crds::Resource;
use futures::StreamExt;

use crate::reflector::{Store, Writer};
use crate::watcher::{self, Event};

/// A cache of every `K` plus the stream of its events (to drive triggers).
pub fn cached<K: Resource>(
    client: &Client,
) -> (
    Store<K>,
    impl futures::Stream<Item = Result<Event<K>, ClientError>> + Send + 'static,
) {
    let mut writer = Writer::<K>::new();
    let store = writer.as_reader();
    let events =
        watcher::watcher(Api::<K>::all(client.clone()), Default::default()).map(move |event| {
            if let Ok(event) = &event {
                writer.apply(event);
            }
            event
        });
    (store, events)
}

/// One watch of every `K`, fanned out to `N` consumers that each see every event. The
/// fan-out task ends when every consumer is gone (noticed at the next event).
pub fn shared_watch<K: Resource, const N: usize>(
    client: &Client,
) -> [futures::stream::BoxStream<'static, Result<Event<K>, ClientError>>; N] {
    let mut source = watcher::watcher(Api::<K>::all(client.clone()), Default::default()).boxed();
    let mut senders = Vec::with_capacity(N);
    let receivers = std::array::from_fn(|_| {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<Event<K>>();
        senders.push(tx);
        futures::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|event| (Ok(event), rx))
        })
        .boxed()
    });
    tokio::spawn(async move {
        while let Some(event) = source.next().await {
            match event {
                Ok(event) => {
                    senders.retain(|tx| tx.send(event.clone()).is_ok());
                    if senders.is_empty() {
                        return;
                    }
                }
                Err(err) => tracing::warn!(kind = K::KIND, error = %err, "watch failed"),
            }
        }
    });
    receivers
}
