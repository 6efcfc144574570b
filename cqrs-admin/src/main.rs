//! `cqrs-admin`: operating a cqrskit event store on PostgreSQL from a shell.
//!
//! Human tables by default, `--json` for scripts. Exit codes: 0 done, 1
//! failed (the database, or a refusal), 2 a usage mistake, 3 not found (a
//! projection, dead letter or stream), 4 timed out waiting for a runner, 5
//! the schema lacks migrations this build ships (`schema`).

mod consumer_partitions;
mod consumers;
mod events;
mod failure;
mod output;
mod projections;
mod schema;

use chrono::{DateTime, Utc};
use clap::{Parser, Subcommand};
use cqrskit::postgres::PostgresEventStore;
use cqrskit::postgres::admin::Admin;

use crate::failure::Failure;

/// Operate a cqrskit event store on PostgreSQL: projections, dead letters,
/// rebuilds, streams and the log.
#[derive(Debug, Parser)]
#[command(name = "cqrs-admin", version)]
struct Cli {
    /// The database, as a PostgreSQL URL.
    #[arg(long, env = "DATABASE_URL", global = true, hide_env_values = true)]
    database_url: Option<String>,
    /// The schema the store's tables live in.
    #[arg(long, env = "CQRS_SCHEMA", default_value = "public", global = true)]
    schema: String,
    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    json: bool,
    /// NATS, for the lag of consumers (`consumers`): how many messages
    /// JetStream has not delivered to each yet.
    #[arg(long, env = "NATS_URL", global = true)]
    nats_url: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create or upgrade the store's tables in the schema.
    Migrate,
    /// The schema's migrations: applied, pending (what `migrate` would
    /// apply), or applied by a newer version; exit 5 unless every one this
    /// build ships is applied as shipped.
    Schema,
    /// The events of one stream, oldest first.
    Stream {
        /// The aggregate type (`account`, `order`, ...).
        aggregate_type: String,
        /// The aggregate's id.
        id: String,
        /// Only the events up to this version: the stream as it was then.
        #[arg(long, conflicts_with = "at_time")]
        at_version: Option<u64>,
        /// Only the events recorded up to this time (RFC 3339).
        #[arg(long)]
        at_time: Option<DateTime<Utc>>,
    },
    /// The global log, in log order.
    Log {
        /// Start after this position (`<transaction>:<sequence>`, as printed).
        #[arg(long)]
        from: Option<cqrskit::Position>,
        /// Only these event types (comma-separated).
        #[arg(long, value_delimiter = ',')]
        types: Vec<String>,
        /// At most this many events (per read when following).
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// Keep printing events as they are appended, until interrupted.
        #[arg(long)]
        follow: bool,
    },
    /// Every projection: checkpoint, lag, lease, dead letters, requests.
    Projections,
    /// Let a projection stopped at a poison event go on (its runner retries
    /// that event).
    Resume {
        /// The projection.
        projection: String,
    },
    /// A projection's parked events.
    DeadLetters {
        /// The projection.
        projection: String,
        #[command(subcommand)]
        action: Option<DeadLetterAction>,
    },
    /// Clear a projection's read model and replay the log, by its running
    /// runner; shows progress until done.
    Rebuild {
        /// The projection.
        projection: String,
        #[command(flatten)]
        wait: Wait,
    },
    /// Withdraw a rebuild or replay requested of a projection that its
    /// runner has not begun.
    Withdraw {
        /// The projection.
        projection: String,
    },
    /// The oldest append still in flight: what a projection waits for when
    /// its lag does not shrink.
    OldestTransaction,
    /// Every message consumer: messages processed, dead letters open and
    /// closed, replays asked.
    Consumers,
    /// A split consumer's partitions (a NATS `PartitionedConsumer`): who
    /// reads each.
    ConsumerPartitions {
        /// The consumer (its durable name).
        consumer: String,
        #[command(subcommand)]
        action: Option<ConsumerPartitionAction>,
    },
    /// A consumer's dead letters (the messages it gave up on).
    ConsumerDeadLetters {
        /// The consumer (a NATS consumer's durable name).
        consumer: String,
        #[command(subcommand)]
        action: Option<ConsumerDeadLetterAction>,
    },
}

#[derive(Debug, Subcommand)]
enum ConsumerPartitionAction {
    /// List them.
    List,
    /// Forget the split, so that the consumer can be split another way
    /// (refused while an instance runs: stop them all first).
    Reset,
}

#[derive(Debug, Subcommand)]
enum ConsumerDeadLetterAction {
    /// List them (the open ones unless `--all`).
    List {
        /// Closed ones too (replayed or skipped).
        #[arg(long)]
        all: bool,
    },
    /// One dead letter with its message (headers and body).
    Show {
        /// The message's source.
        source: String,
        /// The message's id.
        id: String,
    },
    /// Have the running consumer handle it again (after a fix was deployed).
    Replay {
        /// The message's source.
        source: String,
        /// The message's id.
        id: String,
        #[command(flatten)]
        wait: Wait,
    },
    /// Give up on it: closed as skipped, never handled.
    Skip {
        /// The message's source.
        source: String,
        /// The message's id.
        id: String,
    },
}

#[derive(Debug, Subcommand)]
enum DeadLetterAction {
    /// List them (the open ones unless `--all`).
    List {
        /// Closed ones too (replayed or skipped).
        #[arg(long)]
        all: bool,
    },
    /// One dead letter with its event.
    Show {
        /// The dead letter's id.
        id: i64,
    },
    /// Have the running runner try every open one again.
    Replay {
        #[command(flatten)]
        wait: Wait,
    },
    /// Give up on one: closed as skipped, never applied.
    Skip {
        /// The dead letter's id.
        id: i64,
    },
}

/// How a request to a runner is followed.
#[derive(Clone, Copy, Debug, clap::Args)]
struct Wait {
    /// Return once the request is recorded, without waiting for the runner.
    #[arg(long)]
    no_wait: bool,
    /// Give up waiting after this many seconds (the runner goes on).
    #[arg(long, default_value_t = 600)]
    timeout: u64,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => return Failure::Failed(format!("cannot start: {error}")).report(),
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(failure) => failure.report(),
    }
}

async fn run(cli: Cli) -> Result<(), Failure> {
    let url = cli.database_url.clone().ok_or_else(|| {
        Failure::Usage("no database: set DATABASE_URL or pass --database-url".to_owned())
    })?;
    let store = PostgresEventStore::connect(&url)
        .await
        .map_err(|error| Failure::Failed(format!("cannot connect to the database: {error}")))?
        .with_schema(&cli.schema)
        .map_err(|error| Failure::Usage(format!("--schema: {error}")))?;
    let admin = Admin::new(store);
    let json = cli.json;
    match cli.command {
        Command::Migrate => {
            admin
                .store()
                .migrate()
                .await
                .map_err(Failure::from_display)?;
            output::done(json, &format!("schema {} is migrated", cli.schema));
            Ok(())
        }
        Command::Schema => schema::status(admin.store(), json).await,
        Command::Stream {
            aggregate_type,
            id,
            at_version,
            at_time,
        } => events::stream(&admin, json, &aggregate_type, &id, at_version, at_time).await,
        Command::Log {
            from,
            types,
            limit,
            follow,
        } => events::log(&admin, json, from, types, limit, follow).await,
        Command::Projections => projections::list(&admin, json).await,
        Command::Resume { projection } => {
            admin.resume(&projection).await?;
            output::done(json, &format!("{projection} resumes at its next poll"));
            Ok(())
        }
        Command::DeadLetters { projection, action } => match action {
            None | Some(DeadLetterAction::List { all: false }) => {
                projections::dead_letters(&admin, json, &projection, false).await
            }
            Some(DeadLetterAction::List { all: true }) => {
                projections::dead_letters(&admin, json, &projection, true).await
            }
            Some(DeadLetterAction::Show { id }) => projections::dead_letter(&admin, json, id).await,
            Some(DeadLetterAction::Replay { wait }) => {
                projections::replay(&admin, json, &projection, wait).await
            }
            Some(DeadLetterAction::Skip { id }) => projections::skip(&admin, json, id).await,
        },
        Command::Rebuild { projection, wait } => {
            projections::rebuild(&admin, json, &projection, wait).await
        }
        Command::Withdraw { projection } => {
            let message = match admin.withdraw_request(&projection).await? {
                Some(request) => format!(
                    "the {} request for {projection} is withdrawn",
                    request.as_str()
                ),
                None => format!("nothing was requested of {projection}"),
            };
            output::done(json, &message);
            Ok(())
        }
        Command::OldestTransaction => events::oldest_transaction(&admin, json).await,
        Command::Consumers => consumers::list(&admin, json, cli.nats_url.as_deref()).await,
        Command::ConsumerPartitions { consumer, action } => match action {
            None | Some(ConsumerPartitionAction::List) => {
                consumer_partitions::list(&admin, json, &consumer).await
            }
            Some(ConsumerPartitionAction::Reset) => {
                consumer_partitions::reset(&admin, json, &consumer).await
            }
        },
        Command::ConsumerDeadLetters { consumer, action } => match action {
            None | Some(ConsumerDeadLetterAction::List { all: false }) => {
                consumers::dead_letters(&admin, json, &consumer, false).await
            }
            Some(ConsumerDeadLetterAction::List { all: true }) => {
                consumers::dead_letters(&admin, json, &consumer, true).await
            }
            Some(ConsumerDeadLetterAction::Show { source, id }) => {
                consumers::dead_letter(&admin, json, &consumer, &source, &id).await
            }
            Some(ConsumerDeadLetterAction::Replay { source, id, wait }) => {
                consumers::replay(&admin, json, &consumer, &source, &id, wait).await
            }
            Some(ConsumerDeadLetterAction::Skip { source, id }) => {
                consumers::skip(&admin, json, &consumer, &source, &id).await
            }
        },
    }
}
