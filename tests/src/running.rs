//! A projection runner running on a task of the test until the test stops
//! it: the shape most runner tests share.

use std::sync::Arc;

use cqrskit::Projector;
use cqrskit::postgres::{Error, ProjectionRunner};
use sqlx::PgConnection;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A runner's `run`, on a task of its own.
pub struct Running {
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<(), Error>>,
}

impl Running {
    /// Starts `runner.run(...)` until [`stop`](Self::stop).
    pub fn start<P>(runner: &Arc<ProjectionRunner<P>>) -> Self
    where
        P: Projector<PgConnection> + ?Sized + 'static,
    {
        let (stop, stopped) = oneshot::channel::<()>();
        let runner = runner.clone();
        let task = tokio::spawn(async move {
            runner
                .run(async move {
                    let _ = stopped.await;
                })
                .await
        });
        Self { stop, task }
    }

    /// Stops the runner and returns how its `run` ended.
    ///
    /// # Panics
    ///
    /// When its task panicked.
    pub async fn stop(self) -> Result<(), Error> {
        let _ = self.stop.send(());
        self.task.await.expect("the runner's task panicked")
    }
}
