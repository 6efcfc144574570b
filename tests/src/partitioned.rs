//! A consumer split by slice, for the tests that run its instances as OS
//! processes (`tests/tests/nats_partitions.rs`, `src/bin/partitioned_consumer.rs`):
//! accounts' messages published as the relay would, and a handler that
//! records which instance handled each message, in handling order.

use cqrskit::StreamId;
use cqrskit::nats::async_nats::jetstream::Context;
use cqrskit::nats::{CloudEvent, ContentMode, Handler, route_tokens};
use cqrskit::postgres::sqlx::{self, PgConnection, PgPool};
use cqrskit::{BoxError, async_trait};

/// The account streams' ids.
pub fn account(n: u64) -> String {
    format!("acc-{n}")
}

/// Creates the table the handler writes (in `schema`).
///
/// # Panics
///
/// When the database refuses.
pub async fn create_table(pool: &PgPool, schema: &str) {
    sqlx::query(&format!(
        "CREATE TABLE {schema}.partition_handled (n bigserial PRIMARY KEY, \
         account text NOT NULL, version bigint NOT NULL, owner text NOT NULL)"
    ))
    .execute(pool)
    .await
    .expect("create the table");
}

/// What was handled, in handling order: account, version, instance.
///
/// # Panics
///
/// When the database refuses.
pub async fn handled(pool: &PgPool, schema: &str) -> Vec<(String, i64, String)> {
    sqlx::query_as(&format!(
        "SELECT account, version, owner FROM {schema}.partition_handled ORDER BY n"
    ))
    .fetch_all(pool)
    .await
    .expect("handled rows")
}

/// Publishes version `version` of account `n` as the relay would: on
/// `<prefix>.account.moved.<slice>.<route>`, a CloudEvent whose subject is
/// the stream, its id the JetStream message id; tried again until stored
/// (at most 90 s).
///
/// # Panics
///
/// When JetStream refuses.
pub async fn publish(jetstream: &Context, prefix: &str, n: u64, version: u64) {
    let id = account(n);
    let slice = StreamId::new("account", &id).slice();
    let mut extensions = std::collections::BTreeMap::new();
    extensions.insert("streamversion".to_owned(), serde_json::Value::from(version));
    let event = CloudEvent {
        id: format!("{id}-v{version}"),
        source: "/ledger".to_owned(),
        event_type: "ledger.moved.v1".to_owned(),
        time: None,
        subject: Some(format!("account/{id}")),
        data_content_type: "application/json".to_owned(),
        data: serde_json::value::to_raw_value(&serde_json::json!({})).expect("data"),
        extensions,
    };
    let (mut headers, body) = event.encode(ContentMode::Binary).expect("encode");
    // Published again after a lost answer, it is stored once.
    headers.insert("Nats-Msg-Id", event.id.as_str());
    let subject = format!("{prefix}.account.moved.{slice}.{}", route_tokens(slice));
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(90);
    loop {
        let stored = match jetstream
            .publish_with_headers(subject.clone(), headers.clone(), body.clone())
            .await
        {
            Ok(acknowledgement) => acknowledgement.await.map(drop).map_err(BoxError::from),
            Err(error) => Err(error.into()),
        };
        match stored {
            Ok(()) => return,
            // A cluster without quorum: wait for it.
            Err(error) => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "{} not stored within 90 s: {error}",
                    event.id
                );
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
        }
    }
}

/// Records each message it handles, with the instance that handled it.
pub struct RecordHandler {
    /// The table written.
    pub table: String,
    /// The instance.
    pub owner: String,
}

#[async_trait]
impl Handler<PgConnection> for RecordHandler {
    async fn handle(&self, event: &CloudEvent, tx: &mut PgConnection) -> Result<(), BoxError> {
        let account = event
            .subject
            .as_deref()
            .and_then(|subject| subject.strip_prefix("account/"))
            .ok_or("no account")?;
        let version: i64 = event
            .extension("streamversion")
            .and_then(|version| version.parse().ok())
            .ok_or("no stream version")?;
        sqlx::query(&format!(
            "INSERT INTO {} (account, version, owner) VALUES ($1, $2, $3)",
            self.table
        ))
        .bind(account)
        .bind(version)
        .bind(&self.owner)
        .execute(tx)
        .await?;
        Ok(())
    }
}

/// Creates a stream capturing `<prefix>.>` with `replicas` replicas; its
/// name.
///
/// # Panics
///
/// When JetStream refuses.
pub async fn create_stream(jetstream: &Context, prefix: &str, replicas: usize) -> String {
    let stream = prefix.to_ascii_uppercase();
    jetstream
        .create_stream(cqrskit::nats::async_nats::jetstream::stream::Config {
            name: stream.clone(),
            subjects: vec![format!("{prefix}.>")],
            num_replicas: replicas,
            ..Default::default()
        })
        .await
        .expect("a stream");
    stream
}

/// Checks the handled rows: versions `1..=versions` of accounts
/// `0..accounts`, each once, each account's in version order.
///
/// # Panics
///
/// When a message was handled twice, not at all, or out of its account's
/// order, naming them.
pub fn assert_once_in_order(rows: &[(String, i64, String)], accounts: u64, versions: u64) {
    let mut seen = std::collections::HashSet::new();
    let twice: Vec<_> = rows
        .iter()
        .filter(|(account, version, _)| !seen.insert((account.clone(), *version)))
        .collect();
    assert!(twice.is_empty(), "handled twice: {twice:?}");
    let mut last = std::collections::BTreeMap::new();
    let mut out_of_order = Vec::new();
    for (account, version, owner) in rows {
        let previous = last.insert(account.clone(), *version).unwrap_or(0);
        if *version != previous + 1 {
            out_of_order.push(format!("{account} v{version} after v{previous} ({owner})"));
        }
    }
    assert!(out_of_order.is_empty(), "out of order: {out_of_order:?}");
    let versions = i64::try_from(versions).expect("small");
    let short: Vec<String> = (0..accounts)
        .map(account)
        .filter(|id| last.get(id) != Some(&versions))
        .collect();
    assert!(short.is_empty(), "not every version handled: {short:?}");
}

/// A split consumer running in a task of its own until the sender is used
/// or dropped; the task ends with what `run` returned.
pub type RunningSplit = (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<Result<(), cqrskit::nats::Error>>,
);

/// Starts `split` in a task of its own (see [`RunningSplit`]).
pub fn spawn_split<H>(
    split: std::sync::Arc<cqrskit::nats::PartitionedConsumer<cqrskit::postgres::PostgresInbox, H>>,
) -> RunningSplit
where
    H: Handler<PgConnection>,
{
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        split
            .run(async move {
                let _ = stopped.await;
            })
            .await
    });
    (stop, task)
}
