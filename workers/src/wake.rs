//! Waking idle workers at once. apalis-redis only polls; every push publishes which queue has
//! work (`store::events`), and here each queue's notifications become a stream its apalis
//! worker polls on (beside its interval), so a job is fetched as soon as it is pushed.

use std::collections::HashMap;
use std::sync::Arc;

use draas_jobs::store::Store;
use draas_jobs::store::events::Event;
use futures::Stream;
use tokio::sync::Notify;

/// A stream that yields whenever queue work is announced.
pub type WakeStream = std::pin::Pin<Box<dyn Stream<Item = ()> + Send + Sync>>;

/// The wake-ups of a worker's queues.
#[derive(Clone, Default)]
pub struct Wakers {
    queues: HashMap<String, Arc<Notify>>,
}

impl Wakers {
    /// Wake-ups for `queues` (short names), fed from `store`'s notifications until the
    /// process ends.
    pub fn start(store: &Store, queues: &[String]) -> Self {
        let wakers =
            Self { queues: queues.iter().map(|q| (q.clone(), Arc::new(Notify::new()))).collect::<HashMap<_, _>>() };
        let mut events = store.events().subscribe();
        let fed = wakers.clone();
        tokio::spawn(async move {
            loop {
                match events.recv().await {
                    Ok(Event::Wake(queue)) => {
                        if let Some(n) = fed.queues.get(&queue) {
                            n.notify_one();
                        }
                    }
                    Ok(_) => {}
                    // Missed some: wake everyone; an empty fetch costs little.
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                        fed.queues.values().for_each(|n| n.notify_one());
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                }
            }
        });
        wakers
    }

    /// The stream of `queue`'s wake-ups (never yields for a queue not given to `start`).
    pub fn stream(&self, queue: &str) -> WakeStream {
        let notify = self.queues.get(queue).cloned().unwrap_or_default();
        Box::pin(futures::stream::unfold(notify, |n| async move {
            n.notified().await;
            Some(((), n))
        }))
    }
}
