//! Waking log readers after appends commit.
//!
//! Each store handle sends `NOTIFY` on its channel after its appends commit,
//! from a background task of its own. Sending it outside the append keeps
//! concurrent appends committing in parallel. The first append after a quiet
//! spell is announced at once; while appends keep coming, they are announced
//! together at most once per interval, so a busy writer does not spend a
//! statement on notifications for every command (measured: one `NOTIFY` per
//! eight commands under 20 writers without the interval). A notification can
//! be lost (the process dies right after a commit, the listener's connection
//! drops): readers also poll, so a lost one only delays them.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sqlx::PgPool;
use tokio::sync::Notify;

/// The notifier shared by the clones of one store.
#[derive(Debug)]
pub(crate) struct Notifier {
    channel: String,
    pool: PgPool,
    interval: Duration,
    pending: AtomicBool,
    started: AtomicBool,
    wake: Notify,
}

impl Notifier {
    pub(crate) fn new(pool: PgPool, channel: String, interval: Duration) -> Arc<Self> {
        Arc::new(Self {
            channel,
            pool,
            interval,
            pending: AtomicBool::new(false),
            started: AtomicBool::new(false),
            wake: Notify::new(),
        })
    }

    /// The least time between two notifications.
    pub(crate) fn interval(&self) -> Duration {
        self.interval
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
            // Appends that commit while this NOTIFY is sent, or during the
            // interval after it, set the flag again and share the next one.
            while self.pending.swap(false, Ordering::AcqRel) {
                // language=SQL
                let sent = sqlx::query("SELECT pg_notify($1, '')")
                    .bind(&self.channel)
                    .execute(&self.pool)
                    .await;
                if let Err(error) = sent {
                    tracing::debug!(%error, channel = %self.channel, "cannot notify; readers will poll");
                }
                if !self.interval.is_zero() {
                    tokio::time::sleep(self.interval).await;
                }
            }
        }
    }
}
