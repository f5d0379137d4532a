//! The apalis backend of the lifecycle queues (`shared`, `node-<id>`): apalis-core's
//! `Persisted` driven by draas' own persistence over apalis-redis' key layout
//! (`store::deliveries`), so that a job costs what an apalis job costs. apalis' fetch also
//! begins the operation of each job it takes (lease, generation check, `running`), and
//! apalis' acknowledgement also ends it (observed state, outcome, lease release): the two
//! round trips a draas job added to apalis' own are gone.
//!
//! What a handler gets is a [`Delivery`]: the job and what beginning it found (`None` for the
//! kinds the worker begins itself: a start chooses its port from what the host has free).
//! What it returns is a [`Closing`]: the operation to end with the acknowledgement, if any.
//!
//! A worker takes no more jobs than it has free slots (`capacity` less the jobs taken and not
//! yet acknowledged), so no begun job waits in a buffer while its lease runs down. A handler
//! rings the [`Bell`] as it returns, so its acknowledgement (and so its operation's end)
//! goes out at once rather than at the worker's next poll.
//!
//! apalis-redis' own behaviour is kept where draas relies on it: registration refused while a
//! worker of that name is alive, heartbeats that hand a silent worker's jobs to the others,
//! retries of a failed delivery `attempt` seconds on (25 at most), and shutdown giving back
//! the jobs taken and not run (their operations back to `queued`, their leases released).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use apalis_core::backend::codec::Codec;
use apalis_core::backend::finalize::Durable;
use apalis_core::backend::persistence::{Persisted, Persistence, State, TaskEvent, TaskPersistLayer};
use apalis_core::backend::{Backend, BackendConfig, WireFormatBackend};
use apalis_core::task::Task;
use apalis_core::task::builder::TaskBuilder;
use apalis_core::task::task_id::TaskId;
use apalis_core::worker::context::WorkerContext;
use futures::FutureExt;
use futures::future::BoxFuture;
use futures::task::AtomicWaker;

use super::InstanceJob;
use crate::domain::ids::{InstanceId, OperationId};
use crate::store::deliveries::{Ack, GiveBack, Holder, Taken};
use crate::store::operations::Begun;
use crate::store::{Store, StoreError};

/// A job as a handler receives it.
#[derive(Debug)]
pub struct Delivery {
    /// The job (`None`: it does not decode; the handler drops it).
    pub job: Option<InstanceJob>,
    begun: Mutex<Option<Begun>>,
}

impl Delivery {
    /// What beginning the operation found when the job was taken, once (`None`: it was not
    /// begun there).
    pub fn take_begun(&self) -> Option<Begun> {
        self.begun.lock().unwrap_or_else(PoisonError::into_inner).take()
    }

    fn from_taken(taken: Taken) -> Self {
        Self { job: taken.job, begun: Mutex::new(taken.begun) }
    }

    /// The operation, instance and lease of a job begun and not yet run.
    fn begun_lease(&self) -> Option<(OperationId, InstanceId, String)> {
        let begun = self.begun.lock().unwrap_or_else(PoisonError::into_inner);
        match (&*begun, &self.job) {
            (Some(Begun::Ready(r)), Some(job)) => {
                Some((job.operation_id.clone(), job.instance_id.clone(), r.lease.value().to_owned()))
            }
            _ => None,
        }
    }
}

/// What a handler hands the acknowledgement: the operation to end with it (its id, its
/// instance and the arguments of `finish`: `Operations::finish_args`), or nothing (the
/// handler settled it, or it was not its to settle).
#[derive(Debug, Clone, Default)]
pub struct Closing(pub Option<(OperationId, InstanceId, Vec<String>)>);

/// Rung by a handler as it returns: wakes its worker to send the acknowledgement.
#[derive(Debug, Clone, Default)]
pub struct Bell(Arc<AtomicWaker>);

impl Bell {
    pub fn ring(&self) {
        self.0.wake();
    }
}

/// The codec of values that stay in memory: deliveries and closings are handed over as they
/// are.
#[derive(Debug, Clone, Copy, Default)]
pub struct InMemory;

impl<T: Clone> Codec<T> for InMemory {
    type Error = std::convert::Infallible;
    type Compact = T;

    fn encode(&self, val: &T) -> Result<T, Self::Error> {
        Ok(val.clone())
    }

    fn decode(&self, val: &T) -> Result<T, Self::Error> {
        Ok(val.clone())
    }
}

/// How a lifecycle queue is served.
#[derive(Debug, Clone)]
pub struct Serving {
    /// The queue's short name (`shared`, `node-<id>`).
    pub queue: String,
    /// What `begin` needs of the worker.
    pub holder: Holder,
    /// Jobs run at once (the worker's concurrency).
    pub capacity: usize,
    /// apalis' heartbeat, and how many a worker may miss before its jobs go to others.
    pub heartbeat: Duration,
    pub missed_heartbeats: u32,
}

impl Serving {
    fn orphaned(&self) -> Duration {
        self.heartbeat * self.missed_heartbeats.max(1)
    }
}

/// draas' persistence of a lifecycle queue (see the module's opening).
#[derive(Clone)]
pub struct Lifecycle {
    store: Store,
    serving: Arc<Serving>,
    /// Jobs taken and not yet acknowledged.
    outstanding: Arc<AtomicUsize>,
}

impl Persistence for Lifecycle {
    type Compact = Arc<Delivery>;
    type Response = Closing;
    type Error = StoreError;

    async fn register(&mut self, worker: &WorkerContext) -> Result<(), StoreError> {
        let s = &self.serving;
        let back = self.store.deliveries().register(&s.queue, worker.name(), s.orphaned()).await?;
        if back > 0 {
            tracing::info!(queue = %s.queue, jobs = back, "jobs a dead worker of this name left were put back");
        }
        self.outstanding.store(0, Ordering::Relaxed);
        Ok(())
    }

    async fn heartbeat(&mut self, worker: &WorkerContext) -> Result<(), StoreError> {
        let s = &self.serving;
        let moved = self.store.deliveries().heartbeat(&s.queue, worker.name(), s.orphaned()).await?;
        if moved > 0 {
            tracing::info!(queue = %s.queue, jobs = moved, "jobs of a silent worker were handed back to the queue");
        }
        Ok(())
    }

    async fn fetch_next(&mut self, worker: &WorkerContext) -> Result<Vec<Task<Arc<Delivery>>>, StoreError> {
        let s = &self.serving;
        let free = s.capacity.saturating_sub(self.outstanding.load(Ordering::Relaxed));
        if free == 0 {
            return Ok(Vec::new());
        }
        let taken = self.store.deliveries().take(&s.queue, worker.name(), free, &s.holder).await?;
        self.outstanding.fetch_add(taken.len(), Ordering::Relaxed);
        Ok(taken
            .into_iter()
            .map(|t| {
                let (id, attempts) = (TaskId::from_string(t.task_id.clone()), t.attempts as usize);
                TaskBuilder::new(Arc::new(Delivery::from_taken(t))).task_id(id).attempt(attempts).build()
            })
            .collect())
    }

    async fn reenqueue_abandoned(
        &mut self,
        tasks: Vec<Task<Arc<Delivery>>>,
        worker: &WorkerContext,
    ) -> Result<u64, StoreError> {
        let jobs: Vec<GiveBack> = tasks
            .iter()
            .filter_map(|t| Some(GiveBack { task_id: t.task_id()?.to_string(), begun: t.args.begun_lease() }))
            .collect();
        let back = self.store.deliveries().give_back(&self.serving.queue, worker.name(), &jobs).await?;
        release(&self.outstanding, tasks.len());
        Ok(back)
    }

    async fn handle_events(
        &mut self,
        events: Vec<TaskEvent<Closing>>,
        worker: &WorkerContext,
    ) -> Result<(), StoreError> {
        let acks: Vec<Ack> = events
            .into_iter()
            .filter_map(|e| match e {
                TaskEvent::Complete(r) => Some(r),
                _ => None,
            })
            .map(|r| {
                let result =
                    serde_json::to_string(&r.result.as_ref().map(|_| ()).map_err(String::as_str)).unwrap_or_default();
                Ack {
                    task_id: r.task_id.to_string(),
                    status: r.status.to_string(),
                    attempt: r.attempt,
                    result,
                    finish: r.result.ok().and_then(|c| c.0),
                }
            })
            .collect();
        if acks.is_empty() {
            return Ok(());
        }
        self.store.deliveries().ack(&self.serving.queue, worker.name(), &acks).await?;
        release(&self.outstanding, acks.len());
        Ok(())
    }

    async fn push_tasks(&mut self, _tasks: Vec<Task<Arc<Delivery>>>) -> Result<(), StoreError> {
        Err(StoreError::Protocol("lifecycle jobs are pushed by submitting an operation, not through a worker".into()))
    }
}

fn release(outstanding: &AtomicUsize, n: usize) {
    let _ = outstanding.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |o| Some(o.saturating_sub(n)));
}

/// The backend of a lifecycle queue (see the module's opening).
pub struct LifecycleBackend {
    /// Derefs to its `Lifecycle`: the store and how the queue is served.
    persist: Persisted<Lifecycle>,
    bell: Bell,
    unregister: Option<BoxFuture<'static, Result<(), StoreError>>>,
}

impl LifecycleBackend {
    /// Serve `serving` from `store`; handlers ring `bell` as they return.
    pub fn new(store: Store, serving: Serving, bell: Bell) -> Self {
        let lifecycle = Lifecycle { store, serving: Arc::new(serving), outstanding: Arc::new(AtomicUsize::new(0)) };
        Self { persist: Persisted::new(lifecycle), bell, unregister: None }
    }
}

impl Backend for LifecycleBackend {
    type Task = Task<Arc<Delivery>>;
    type Error = StoreError;

    fn poll_ready(&mut self, cx: &mut Context<'_>, worker: &WorkerContext) -> Poll<Result<(), StoreError>> {
        self.bell.0.register(cx.waker());
        self.persist.poll_ready(cx, worker, self.persist.serving.heartbeat)
    }

    fn poll_next(
        &mut self,
        cx: &mut Context<'_>,
        worker: &WorkerContext,
    ) -> Poll<Option<Result<Self::Task, StoreError>>> {
        self.bell.0.register(cx.waker());
        let next = self.persist.poll_next(cx, worker);
        // `Persisted` sends acknowledgements only from `poll_ready`: those of handlers that
        // returned while a fetch was under way would wait for the next wake (a poll interval)
        // once that fetch found nothing. Send them now (the worker calls `poll_ready` again
        // before it asks for the next job, so the state this leaves is one it expects).
        if next.is_pending()
            && matches!(self.persist.state(), State::Ready)
            && let Poll::Ready(Err(e)) = self.persist.poll_ready(cx, worker, self.persist.serving.heartbeat)
        {
            return Poll::Ready(Some(Err(e)));
        }
        next
    }

    fn poll_close(&mut self, cx: &mut Context<'_>, worker: &WorkerContext) -> Poll<Result<(), StoreError>> {
        if self.unregister.is_none() {
            std::task::ready!(self.persist.poll_close(cx, worker))?;
            let (store, queue, name) =
                (self.persist.store.clone(), self.persist.serving.queue.clone(), worker.name().to_owned());
            self.unregister = Some(async move { store.deliveries().unregister(&queue, &name).await }.boxed());
        }
        match &mut self.unregister {
            Some(f) => f.poll_unpin(cx),
            None => Poll::Ready(Ok(())),
        }
    }
}

impl BackendConfig for LifecycleBackend {
    type Args = Arc<Delivery>;
    type Id = TaskId;
    type Kind = Durable;
    type Config = Serving;
    type Layer = TaskPersistLayer<InMemory, Closing>;

    fn config(&self) -> &Serving {
        &self.persist.serving
    }

    fn middleware(&mut self, _worker: &mut WorkerContext) -> Self::Layer {
        let batch = self.persist.serving.capacity.max(1);
        self.persist.layer(InMemory, batch).persist_results(true).lock_tasks(false)
    }
}

impl WireFormatBackend for LifecycleBackend {
    type Codec = InMemory;
    type Compact = Arc<Delivery>;

    fn codec(&self) -> &InMemory {
        &InMemory
    }
}
