//! Delivering deadlines when they fall due: each through the route
//! registered under its name, which executes its command once in effect.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::de::DeserializeOwned;
use uuid::Uuid;

use super::{Deadline, DeadlineOptions, DeadlineStore};
use crate::{Aggregate, CommandError, CommandPipeline, StoreError};

/// What came of one delivery.
enum Delivery {
    /// Done, whatever the command's answer: recorded, never tried again.
    Done(String),
    /// Never deliverable (no route, a command that does not decode):
    /// recorded as `undeliverable: <why>` and logged, never tried again.
    Undeliverable(String),
    /// Not done (the store failed): the claim lapses and it is tried again.
    Retry(String),
}

/// Delivers a deadline's command to one kind of aggregate.
#[async_trait]
trait Route: Send + Sync {
    async fn deliver(&self, deadline: &Deadline) -> Delivery;
}

/// Decodes the command as `C` and executes it on `A`'s pipeline.
struct PipelineRoute<A: Aggregate, C> {
    pipeline: Arc<CommandPipeline<A>>,
    command: std::marker::PhantomData<fn() -> C>,
}

#[async_trait]
impl<A, C> Route for PipelineRoute<A, C>
where
    A: Aggregate,
    C: DeserializeOwned + Into<A::Command> + Send + 'static,
{
    async fn deliver(&self, deadline: &Deadline) -> Delivery {
        if deadline.stream.aggregate_type != A::TYPE {
            return Delivery::Undeliverable(format!(
                "the route `{}` goes to `{}`, the deadline to `{}`",
                deadline.name,
                A::TYPE,
                deadline.stream.aggregate_type
            ));
        }
        let command: C = match serde_json::from_value(deadline.command.clone()) {
            Ok(command) => command,
            Err(error) => {
                return Delivery::Undeliverable(format!("the command does not decode: {error}"));
            }
        };
        let executed = self
            .pipeline
            .execute_once(
                deadline.id,
                &deadline.stream.aggregate_id,
                command,
                deadline.metadata.clone(),
            )
            .await;
        match executed {
            // Executed now, or by a runner that died before recording it.
            Ok(_) => Delivery::Done("executed".to_owned()),
            Err(CommandError::Rejected(error)) => Delivery::Done(format!("rejected: {error}")),
            // What trying again cannot fix (an event that does not decode, a
            // corrupted row): recorded, not claimed again forever.
            Err(CommandError::Store(error))
                if !error.is_transient() && !error.is_outcome_unknown() =>
            {
                Delivery::Undeliverable(format!("the store refused: {error}"))
            }
            Err(error) => Delivery::Retry(error.to_string()),
        }
    }
}

/// What one pass delivered.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Delivered {
    /// Deadlines delivered and recorded, with what came of each.
    pub done: Vec<(Uuid, String)>,
    /// Deadlines whose delivery failed and will be tried again.
    pub retrying: usize,
}

/// Delivers due deadlines from a [`DeadlineStore`] (see the module docs).
pub struct DeadlineRunner {
    store: Arc<dyn DeadlineStore>,
    routes: HashMap<String, Arc<dyn Route>>,
    /// The names it has routes for: the deadlines it claims.
    names: Vec<String>,
    owner: String,
    options: DeadlineOptions,
}

impl DeadlineRunner {
    /// A runner over `store` (whose clock decides what is due), with no
    /// routes yet, default options and a fresh owner id.
    pub fn new(store: Arc<dyn DeadlineStore>) -> Self {
        Self {
            store,
            routes: HashMap::new(),
            names: Vec::new(),
            owner: format!("deadlines-{}", Uuid::now_v7()),
            options: DeadlineOptions::default(),
        }
    }

    /// Delivers the deadlines named `name` by decoding their command as `C`
    /// and executing it on `pipeline`, once in effect (the deadline's id is
    /// the command id). A rejection is what came of the deadline, recorded
    /// as `rejected: ...`; a store failure is tried again later.
    pub fn route<A, C>(mut self, name: impl Into<String>, pipeline: Arc<CommandPipeline<A>>) -> Self
    where
        A: Aggregate,
        C: DeserializeOwned + Into<A::Command> + Send + 'static,
    {
        let name = name.into();
        if !self.names.contains(&name) {
            self.names.push(name.clone());
        }
        self.routes.insert(
            name,
            Arc::new(PipelineRoute::<A, C> {
                pipeline,
                command: std::marker::PhantomData,
            }),
        );
        self
    }

    /// Names this runner in its claims (default: `deadlines-<uuid>`).
    pub fn with_owner(mut self, owner: impl Into<String>) -> Self {
        self.owner = owner.into();
        self
    }

    /// Replaces the options.
    pub fn with_options(mut self, options: DeadlineOptions) -> Self {
        self.options = options;
        self
    }

    /// Delivers every deadline due now, a batch at a time. A deadline
    /// named with no route is recorded as undeliverable (so it does not
    /// come back every pass), and logged.
    ///
    /// # Errors
    ///
    /// When the store fails to claim or record.
    pub async fn deliver_due(&self) -> Result<Delivered, StoreError> {
        let mut delivered = Delivered::default();
        loop {
            let claimed = self
                .store
                .claim_due(
                    &self.owner,
                    &self.names,
                    self.options.claim,
                    self.options.batch_size.max(1),
                )
                .await?;
            if claimed.is_empty() {
                return Ok(delivered);
            }
            for deadline in claimed {
                let delivery = match self.routes.get(&deadline.name) {
                    Some(route) => route.deliver(&deadline).await,
                    None => Delivery::Undeliverable(format!(
                        "no route for deadlines named `{}`",
                        deadline.name
                    )),
                };
                let outcome = match delivery {
                    Delivery::Done(outcome) => Some(outcome),
                    Delivery::Undeliverable(why) => {
                        tracing::error!(deadline = %deadline.id, name = %deadline.name, stream = %deadline.stream, owner = %self.owner, %why, "deadline not delivered");
                        Some(format!("undeliverable: {why}"))
                    }
                    Delivery::Retry(reason) => {
                        tracing::warn!(deadline = %deadline.id, name = %deadline.name, stream = %deadline.stream, owner = %self.owner, %reason, "delivery failed; trying again after the claim");
                        delivered.retrying += 1;
                        None
                    }
                };
                if let Some(outcome) = outcome {
                    if self
                        .store
                        .complete(deadline.id, &self.owner, &outcome)
                        .await?
                    {
                        tracing::debug!(deadline = %deadline.id, name = %deadline.name, owner = %self.owner, %outcome, "deadline delivered");
                        delivered.done.push((deadline.id, outcome));
                    } else {
                        tracing::warn!(deadline = %deadline.id, name = %deadline.name, owner = %self.owner, "the claim lapsed before the delivery was recorded; the next claimant records it");
                    }
                }
            }
            if delivered.retrying > 0 {
                // What failed stays claimed; the next pass takes it again.
                return Ok(delivered);
            }
        }
    }

    /// Delivers due deadlines until `shutdown` completes, waking for the
    /// next one it knows of or at least every poll interval. Store
    /// failures are logged and tried again.
    pub async fn run(&self, shutdown: impl Future<Output = ()>) {
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            if let Err(error) = self.deliver_due().await {
                tracing::warn!(%error, "delivering deadlines failed; trying again");
            }
            let mut wait = self.options.poll_interval;
            if let Ok(Some(until)) = self.store.until_next_due().await {
                wait = wait.min(until.max(Duration::from_millis(10)));
            }
            if tokio::time::timeout(wait, shutdown.as_mut()).await.is_ok() {
                return;
            }
        }
    }
}

#[async_trait::async_trait]
impl crate::host::Hosted for DeadlineRunner {
    /// `deadlines` (one deadline runner per host serves every route).
    fn name(&self) -> &str {
        "deadlines"
    }

    async fn run(&self, shutdown: crate::host::Shutdown) -> Result<(), crate::host::BoxError> {
        DeadlineRunner::run(self, shutdown).await;
        Ok(())
    }

    /// Whether the store answers, and when the next deadline falls due.
    async fn report(&self) -> crate::host::Report {
        match self.store.until_next_due().await {
            Ok(Some(until)) if until.is_zero() => crate::host::Report::healthy("deadlines due now"),
            Ok(Some(until)) => {
                crate::host::Report::healthy(format!("next due in {:.1} s", until.as_secs_f64()))
            }
            Ok(None) => crate::host::Report::healthy("nothing scheduled"),
            Err(error) => crate::host::Report::unhealthy(format!("store unavailable: {error}")),
        }
    }
}
