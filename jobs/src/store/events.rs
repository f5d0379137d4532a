//! Notifications between the processes of one deployment, over Redis pub/sub on one channel
//! (`{prefix}:events`). The scripts publish them as part of the state transitions they make:
//! a job pushed (`w|<queue>`), an operation ended (`o|<id>`), an instance's generation bumped
//! (`g|<id>|<generation>`), a lease released (`l|<id>`).
//!
//! They only hasten things: an idle worker fetches at once instead of at its next poll, a
//! `?wait` answers as the operation ends, a start waiting for `/health` steps aside for a newer
//! operation, a job waiting for a lease takes it as it is freed. Pub/sub delivers at most once
//! and nothing while disconnected, so every waiter also polls, more slowly.

use std::time::Duration;

use futures::StreamExt;
use tokio::sync::broadcast;

use crate::domain::ids::InstanceId;

/// One notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A job was pushed into this queue (its short name, e.g. `shared`).
    Wake(String),
    /// This operation ended.
    OperationEnded(String),
    /// This instance's generation became this.
    Generation { instance: String, generation: u64 },
    /// The lease on this instance was released.
    LeaseReleased(String),
}

impl Event {
    fn parse(payload: &str) -> Option<Self> {
        let (kind, rest) = payload.split_once('|')?;
        Some(match kind {
            "w" => Self::Wake(rest.to_owned()),
            "o" => Self::OperationEnded(rest.to_owned()),
            "l" => Self::LeaseReleased(rest.to_owned()),
            "g" => {
                let (instance, generation) = rest.split_once('|')?;
                Self::Generation { instance: instance.to_owned(), generation: generation.parse().ok()? }
            }
            _ => return None,
        })
    }
}

/// The message a generation bump publishes.
pub(crate) fn generation_message(id: &InstanceId, generation: u64) -> String {
    format!("g|{id}|{generation}")
}

/// This process's subscription, shared by every listener in it.
pub struct Events {
    tx: broadcast::Sender<Event>,
}

/// How long to wait before subscribing again after the connection dropped.
const RESUBSCRIBE: Duration = Duration::from_millis(500);

impl Events {
    /// Subscribe on `client` to `channel` in the background (outside a Tokio runtime nothing is
    /// subscribed and listeners rely on their polls).
    pub(super) fn start(client: redis::Client, channel: String) -> Self {
        let (tx, _) = broadcast::channel(1024);
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(listen(client, channel, tx.downgrade()));
        }
        Self { tx }
    }

    /// A receiver of every notification from now on. A receiver that lags behind gets
    /// `Lagged`: it should then look at the store, as if it had been told.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.tx.subscribe()
    }
}

/// Forward the channel's messages until the store that owns `tx` is gone.
async fn listen(client: redis::Client, channel: String, tx: broadcast::WeakSender<Event>) {
    while tx.strong_count() > 0 {
        match client.get_async_pubsub().await {
            Ok(mut pubsub) => {
                if let Err(e) = pubsub.subscribe(&channel).await {
                    tracing::debug!(error = %e, "events: subscribe failed");
                } else {
                    let mut messages = pubsub.into_on_message();
                    while let Some(msg) = messages.next().await {
                        let Some(tx) = tx.upgrade() else { return };
                        if let Some(event) = msg.get_payload::<String>().ok().as_deref().and_then(Event::parse) {
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
        assert_eq!(Event::parse("w|shared"), Some(Event::Wake("shared".into())));
        assert_eq!(Event::parse("o|01abc"), Some(Event::OperationEnded("01abc".into())));
        assert_eq!(Event::parse("g|01abc|7"), Some(Event::Generation { instance: "01abc".into(), generation: 7 }));
        assert_eq!(Event::parse("l|01abc"), Some(Event::LeaseReleased("01abc".into())));
        assert_eq!(Event::parse("g|01abc|x"), None);
        assert_eq!(Event::parse("zzz"), None);
    }
}
