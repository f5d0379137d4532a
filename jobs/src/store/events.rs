//! Notifications between the processes of one deployment, over Redis pub/sub on one channel
//! (`{prefix}:events`). The scripts publish them as part of the state transitions they make:
//! a job pushed into an idle queue (`w|<queue>`), an operation ended (`o|<id>`), an instance's
//! generation bumped (`g|<id>|<generation>`), a lease released (`l|<id>`), and an operation
//! ended together with its instance's lease (`e|<op>|<instance>`, one message for the two).
//!
//! They only hasten things: an idle worker fetches at once instead of at its next poll, a
//! `?wait` answers as the operation ends, a start waiting for `/health` steps aside for a newer
//! operation, a job waiting for a lease takes it as it is freed. Pub/sub delivers at most once
//! and nothing while disconnected, so every waiter also polls, more slowly.
//!
//! A process holds one subscription. Every notification goes to the broadcast
//! ([`Events::subscribe`]); one about an operation or an instance also goes to those waiting
//! on that one thing ([`Events::watch`]), so a waiter is woken by what it waits for and by
//! nothing else, however many operations run beside it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::{broadcast, watch};

use crate::domain::ids::InstanceId;

/// One notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A job was pushed into this queue (its short name, e.g. `shared`), which had none due.
    Wake(String),
    /// This operation ended.
    OperationEnded(String),
    /// This instance's generation became this.
    Generation { instance: String, generation: u64 },
    /// The lease on this instance was released.
    LeaseReleased(String),
}

impl Event {
    /// The events of one message (`e|…` carries two).
    fn parse(payload: &str) -> Vec<Self> {
        let Some((kind, rest)) = payload.split_once('|') else { return Vec::new() };
        match kind {
            "w" => vec![Self::Wake(rest.to_owned())],
            "o" => vec![Self::OperationEnded(rest.to_owned())],
            "l" => vec![Self::LeaseReleased(rest.to_owned())],
            "e" => match rest.split_once('|') {
                Some((op, instance)) => {
                    vec![Self::OperationEnded(op.to_owned()), Self::LeaseReleased(instance.to_owned())]
                }
                None => Vec::new(),
            },
            "g" => rest
                .split_once('|')
                .and_then(|(instance, g)| {
                    Some(Self::Generation { instance: instance.to_owned(), generation: g.parse().ok()? })
                })
                .into_iter()
                .collect(),
            _ => Vec::new(),
        }
    }

    /// The one thing this event is about, and the generation it announces (if it does).
    fn topic(&self) -> Option<(Topic, Option<u64>)> {
        match self {
            Self::Wake(_) => None,
            Self::OperationEnded(op) => Some((Topic::Operation(op.clone()), None)),
            Self::LeaseReleased(id) => Some((Topic::Lease(id.clone()), None)),
            Self::Generation { instance, generation } => Some((Topic::Generation(instance.clone()), Some(*generation))),
        }
    }
}

/// One thing a waiter can wait for (ids as text, as notifications carry them). The value a
/// waiter sees counts the events, except for a generation, where it is the newest announced.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Topic {
    /// An operation's end.
    Operation(String),
    /// An instance's lease being released.
    Lease(String),
    /// An instance's generation moving on; the value seen is the newest announced.
    Generation(String),
}

/// The message a generation bump publishes.
pub(crate) fn generation_message(id: &InstanceId, generation: u64) -> String {
    format!("g|{id}|{generation}")
}

/// Waiters by topic. An entry lives while someone holds a receiver of it.
#[derive(Default)]
struct Waiters {
    topics: Mutex<HashMap<Topic, watch::Sender<u64>>>,
}

impl Waiters {
    fn watch(&self, topic: Topic) -> watch::Receiver<u64> {
        let mut topics = self.topics.lock().unwrap_or_else(PoisonError::into_inner);
        // Forget topics nobody waits for any more, now and then (amortised over the inserts).
        if topics.len() >= 64 && topics.len().is_power_of_two() {
            topics.retain(|_, tx| tx.receiver_count() > 0);
        }
        match topics.get(&topic) {
            Some(tx) if tx.receiver_count() > 0 => tx.subscribe(),
            _ => {
                let (tx, rx) = watch::channel(0);
                topics.insert(topic, tx);
                rx
            }
        }
    }

    fn deliver(&self, event: &Event) {
        let Some((topic, generation)) = event.topic() else { return };
        let mut topics = self.topics.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(tx) = topics.get(&topic) else { return };
        if tx.receiver_count() == 0 {
            topics.remove(&topic);
            return;
        }
        tx.send_modify(|seen| *seen = generation.map_or(seen.saturating_add(1), |g| (*seen).max(g)));
    }
}

/// This process's subscription, shared by every listener in it.
pub struct Events {
    tx: broadcast::Sender<Event>,
    waiters: Arc<Waiters>,
}

/// How long to wait before subscribing again after the connection dropped.
const RESUBSCRIBE: Duration = Duration::from_millis(500);

impl Events {
    /// Subscribe on `client` to `channel` in the background (outside a Tokio runtime nothing is
    /// subscribed and listeners rely on their polls).
    pub(super) fn start(client: redis::Client, channel: String) -> Self {
        let (tx, _) = broadcast::channel(1024);
        let waiters = Arc::new(Waiters::default());
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(listen(client, channel, tx.downgrade(), Arc::downgrade(&waiters)));
        }
        Self { tx, waiters }
    }

    /// A receiver of every notification from now on. A receiver that lags behind gets
    /// `Lagged`: it should then look at the store, as if it had been told.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.tx.subscribe()
    }

    /// A receiver of the notifications about `topic` from now on, and of nothing else: it
    /// changes when one comes (see [`Topic`] for its value). Its sender lives as long as this
    /// subscription, so `changed` fails only once the store is gone.
    pub fn watch(&self, topic: Topic) -> watch::Receiver<u64> {
        self.waiters.watch(topic)
    }
}

/// Forward the channel's messages until the store that owns `tx` is gone.
async fn listen(
    client: redis::Client,
    channel: String,
    tx: broadcast::WeakSender<Event>,
    waiters: std::sync::Weak<Waiters>,
) {
    while tx.strong_count() > 0 {
        match client.get_async_pubsub().await {
            Ok(mut pubsub) => {
                if let Err(e) = pubsub.subscribe(&channel).await {
                    tracing::debug!(error = %e, "events: subscribe failed");
                } else {
                    let mut messages = pubsub.into_on_message();
                    while let Some(msg) = messages.next().await {
                        let (Some(tx), Some(waiters)) = (tx.upgrade(), waiters.upgrade()) else { return };
                        let Ok(payload) = msg.get_payload::<String>() else { continue };
                        for event in Event::parse(&payload) {
                            waiters.deliver(&event);
                            // No receiver right now is fine: nobody waits.
                            let _ = tx.send(event);
                        }
                    }
                }
            }
            Err(e) => tracing::debug!(error = %e, "events: cannot connect"),
        }
        tokio::time::sleep(RESUBSCRIBE).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notifications_parse_and_unknown_ones_are_ignored() {
        assert_eq!(Event::parse("w|shared"), vec![Event::Wake("shared".into())]);
        assert_eq!(Event::parse("o|01abc"), vec![Event::OperationEnded("01abc".into())]);
        assert_eq!(Event::parse("g|01abc|7"), vec![Event::Generation { instance: "01abc".into(), generation: 7 }]);
        assert_eq!(Event::parse("l|01abc"), vec![Event::LeaseReleased("01abc".into())]);
        assert_eq!(
            Event::parse("e|01op|01abc"),
            vec![Event::OperationEnded("01op".into()), Event::LeaseReleased("01abc".into())]
        );
        assert_eq!(Event::parse("g|01abc|x"), vec![]);
        assert_eq!(Event::parse("e|01op"), vec![]);
        assert_eq!(Event::parse("zzz"), vec![]);
    }

    #[tokio::test]
    async fn a_waiter_sees_its_topic_only() {
        let waiters = Waiters::default();
        let mut op = waiters.watch(Topic::Operation("a".into()));
        let mut generation = waiters.watch(Topic::Generation("i".into()));
        waiters.deliver(&Event::OperationEnded("b".into()));
        waiters.deliver(&Event::LeaseReleased("a".into()));
        assert!(!op.has_changed().unwrap());
        waiters.deliver(&Event::OperationEnded("a".into()));
        assert!(op.has_changed().unwrap());
        assert_eq!(*op.borrow_and_update(), 1);
        waiters.deliver(&Event::Generation { instance: "i".into(), generation: 5 });
        waiters.deliver(&Event::Generation { instance: "i".into(), generation: 3 });
        assert_eq!(*generation.borrow_and_update(), 5);
        // A topic nobody waits for any more is forgotten when it comes up.
        drop(op);
        waiters.deliver(&Event::OperationEnded("a".into()));
        assert!(!waiters.topics.lock().unwrap().contains_key(&Topic::Operation("a".into())));
    }
}
