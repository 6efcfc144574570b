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
//!
//! The task ends once the last handle of the store is dropped, after sending
//! the notification still owed, so a store made per request does not leave a
//! task and its pool's connections behind.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::database::Database;
use tokio::sync::Notify;

use crate::schema_name::SchemaName;

/// PostgreSQL's limit on identifiers, channel names included (`NAMEDATALEN - 1`).
const MAX_CHANNEL_BYTES: usize = 63;

/// The notification channel of a schema's store: `<schema>.events`, or, when
/// that is longer than PostgreSQL accepts, the name's first characters and
/// its fingerprint, `<prefix>.<16 hex digits>.events`.
///
/// The second dot keeps a shortened channel apart from every unshortened one:
/// schema names contain no dot.
pub(crate) fn channel(schema: &SchemaName) -> String {
    const SUFFIX: &str = ".events";
    let name = schema.as_str();
    if name.len() + SUFFIX.len() <= MAX_CHANNEL_BYTES {
        return format!("{name}{SUFFIX}");
    }
    // The hash, its dot and the suffix take 24 bytes; schema names are ASCII,
    // so any byte index is a character boundary.
    let prefix = &name[..MAX_CHANNEL_BYTES - 16 - 1 - SUFFIX.len()];
    format!("{prefix}.{:016x}{SUFFIX}", schema.fingerprint())
}

/// The notifier shared by the clones of one store. Dropping it (with the last
/// clone) ends its task.
#[derive(Debug)]
pub(crate) struct Notifier {
    channel: String,
    pool: Database,
    interval: Duration,
    started: AtomicBool,
    state: Arc<State>,
}

/// What the notifier and its task share. The task holds only this, not the
/// notifier, so the notifier can be dropped while the task waits.
#[derive(Debug)]
struct State {
    pending: AtomicBool,
    closed: AtomicBool,
    wake: Notify,
}

impl Notifier {
    pub(crate) fn new(pool: Database, channel: String, interval: Duration) -> Arc<Self> {
        Arc::new(Self {
            channel,
            pool,
            interval,
            started: AtomicBool::new(false),
            state: Arc::new(State {
                pending: AtomicBool::new(false),
                closed: AtomicBool::new(false),
                wake: Notify::new(),
            }),
        })
    }

    /// Records that events were committed; the background task notifies.
    pub(crate) fn appended(&self) {
        if self.state.pending.swap(true, Ordering::AcqRel) {
            return; // a notification is already on its way
        }
        if !self.started.swap(true, Ordering::AcqRel) {
            match tokio::runtime::Handle::try_current() {
                Ok(runtime) => {
                    runtime.spawn(run(
                        self.state.clone(),
                        self.pool.clone(),
                        self.channel.clone(),
                        self.interval,
                    ));
                }
                Err(_) => {
                    self.started.store(false, Ordering::Release);
                    return;
                }
            }
        }
        self.state.wake.notify_one();
    }
}

impl Drop for Notifier {
    fn drop(&mut self) {
        self.state.closed.store(true, Ordering::Release);
        // Stores a permit when the task is busy, so it cannot miss this.
        self.state.wake.notify_one();
    }
}

async fn notify(database: &Database, channel: &str) -> Result<(), sqlx::Error> {
    let mut session = database.session().await?;
    // language=SQL
    database
        .query("SELECT pg_notify($1, '')")
        .bind(channel)
        .execute(&mut *session)
        .await?;
    session.finish().await
}

/// Sends the notifications owed until the notifier is dropped. Holds a clone
/// of the pool until then, and no longer.
async fn run(state: Arc<State>, pool: Database, channel: String, interval: Duration) {
    loop {
        // Appends that commit while this NOTIFY is sent, or during the
        // interval after it, set the flag again and share the next one.
        while state.pending.swap(false, Ordering::AcqRel) {
            let sent = notify(&pool, &channel).await;
            if let Err(error) = sent {
                tracing::debug!(%error, %channel, "cannot notify; readers will poll");
            }
            if !interval.is_zero() {
                tokio::time::sleep(interval).await;
            }
        }
        // Checked after the flag: the last appends happen before the drop
        // that sets `closed`, so their notification has been sent by now.
        if state.closed.load(Ordering::Acquire) {
            return;
        }
        state.wake.notified().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema(name: &str) -> SchemaName {
        SchemaName::new(name).expect("valid schema name")
    }

    #[test]
    fn a_channel_that_fits_is_the_schema_and_events() {
        assert_eq!(channel(&SchemaName::default()), "public.events");
        let longest_kept = "s".repeat(MAX_CHANNEL_BYTES - ".events".len());
        assert_eq!(
            channel(&schema(&longest_kept)),
            format!("{longest_kept}.events")
        );
    }

    #[test]
    fn the_channel_of_a_63_character_schema_fits_postgres_identifiers() {
        let name = "a".repeat(63);
        let long = channel(&schema(&name));
        assert!(
            long.len() <= MAX_CHANNEL_BYTES,
            "{long} is {} bytes",
            long.len()
        );
        assert!(
            long.starts_with("aaaa") && long.ends_with(".events"),
            "{long}"
        );
        // Stable: the same name gives the same channel in every process.
        assert_eq!(long, channel(&schema(&name)));
        let just_too_long = "b".repeat(MAX_CHANNEL_BYTES - ".events".len() + 1);
        assert!(channel(&schema(&just_too_long)).len() <= MAX_CHANNEL_BYTES);
    }

    #[test]
    fn long_schemas_differing_only_at_the_end_get_different_channels() {
        let common = "x".repeat(62);
        let first = channel(&schema(&format!("{common}1")));
        let second = channel(&schema(&format!("{common}2")));
        assert_ne!(first, second);
    }
}
