//! Waking log readers after appends commit.
//!
//! Each store handle sends `NOTIFY` on its channel after its appends commit,
//! from a background task of its own, coalescing bursts into one notification
//! per round trip. Sending it outside the append keeps concurrent appends
//! committing in parallel. A notification can be lost (the process dies right
//! after a commit, the listener's connection drops): readers also poll, so a
//! lost one only delays them.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use sqlx::PgPool;
use tokio::sync::Notify;

/// The notifier shared by the clones of one store.
#[derive(Debug)]
pub(crate) struct Notifier {
    channel: String,
    pool: PgPool,
    pending: AtomicBool,
    started: AtomicBool,
    wake: Notify,
}

impl Notifier {
    pub(crate) fn new(pool: PgPool, channel: String) -> Arc<Self> {
        Arc::new(Self {
            channel,
            pool,
            pending: AtomicBool::new(false),
            started: AtomicBool::new(false),
            wake: Notify::new(),
        })
    }

    /// Records that events were committed; the background task notifies.
    pub(crate) fn appended(self: &Arc<Self>) {
        if self.pending.swap(true, Ordering::AcqRel) {
            return; // a notification is already on its way
        }
        if !self.started.swap(true, Ordering::AcqRel) {
            match tokio::runtime::Handle::try_current() {
                Ok(runtime) => {
                    runtime.spawn(self.clone().run());
                }
                Err(_) => {
                    self.started.store(false, Ordering::Release);
                    return;
                }
            }
        }
        self.wake.notify_one();
    }

    async fn run(self: Arc<Self>) {
        loop {
            self.wake.notified().await;
            // Appends that commit while this NOTIFY is sent set the flag
            // again, and get a notification of their own.
            while self.pending.swap(false, Ordering::AcqRel) {
                // language=SQL
                let sent = sqlx::query("SELECT pg_notify($1, '')")
                    .bind(&self.channel)
                    .execute(&self.pool)
                    .await;
                if let Err(error) = sent {
                    tracing::debug!(%error, channel = %self.channel, "cannot notify; readers will poll");
                }
            }
        }
    }
}
