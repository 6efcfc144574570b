//! vs-cqrs-es: the same bank account written with cqrs-es 0.5 and
//! postgres-es 0.5, run beside ours and the raw baseline in the same process
//! on the same database. Both sides are set up as their getting-started
//! guides do it: ours with `PostgresEventStore::connect` (sqlx's default
//! pool) and a `CommandPipeline` without cache or snapshots; cqrs-es with
//! `default_postgress_pool` (ten connections) and `postgres_cqrs`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use cqrs_es::event_sink::EventSink;
use cqrs_es::persist::PersistedEventStore;
use cqrs_es::{Aggregate, CqrsFramework, EventStore as _};
use cqrs_examples::bank_account::{BankAccount, Deposit, OpenAccount};
use cqrskit::postgres::sqlx::postgres::PgPoolOptions;
use cqrskit::postgres::sqlx::{self, PgPool};
use cqrskit::postgres::{PostgresEventStore, StoreOptions};
use cqrskit::{CommandPipeline, PipelineOptions, SnapshotPolicy};
use postgres_es::PostgresEventRepository;
use serde::{Deserialize, Serialize};

use crate::report::{Latency, Report, per_second, quantile};
use crate::scenarios::{Sandbox, check, long_stream, raw_concurrent};
use crate::{BenchError, Config};

type Result<T> = std::result::Result<T, BenchError>;

/// The peer's account: the same rules as `cqrs_examples::bank_account`.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct PeerAccount {
    opened: bool,
    balance: u64,
}

/// The peer's events, in its default (externally tagged) JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) enum PeerEvent {
    /// The account was opened.
    AccountOpened { owner: String },
    /// Money came in.
    DepositMade { amount: u64 },
}

impl cqrs_es::DomainEvent for PeerEvent {
    fn event_type(&self) -> String {
        match self {
            PeerEvent::AccountOpened { .. } => "AccountOpened",
            PeerEvent::DepositMade { .. } => "DepositMade",
        }
        .to_owned()
    }

    fn event_version(&self) -> String {
        "1.0".to_owned()
    }
}

/// The peer's commands.
pub(crate) enum PeerCommand {
    Open { owner: String },
    Deposit { amount: u64 },
}

/// The peer's refusals.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PeerError {
    #[error("the account is already open")]
    AlreadyOpen,
    #[error("the account is not open")]
    NotOpen,
}

impl Aggregate for PeerAccount {
    const TYPE: &'static str = "account";
    type Command = PeerCommand;
    type Event = PeerEvent;
    type Error = PeerError;
    type Services = ();

    async fn handle(
        &mut self,
        command: PeerCommand,
        _: &(),
        sink: &EventSink<Self>,
    ) -> std::result::Result<(), PeerError> {
        match command {
            PeerCommand::Open { owner } => {
                if self.opened {
                    return Err(PeerError::AlreadyOpen);
                }
                sink.write(PeerEvent::AccountOpened { owner }, self).await;
            }
            PeerCommand::Deposit { amount } => {
                if !self.opened {
                    return Err(PeerError::NotOpen);
                }
                sink.write(PeerEvent::DepositMade { amount }, self).await;
            }
        }
        Ok(())
    }

    fn apply(&mut self, event: PeerEvent) {
        match event {
            PeerEvent::AccountOpened { .. } => self.opened = true,
            PeerEvent::DepositMade { amount } => self.balance += amount,
        }
    }
}

type Peer = CqrsFramework<PeerAccount, PersistedEventStore<PostgresEventRepository, PeerAccount>>;

/// Both contenders, in one sandbox schema, each with its default pool.
struct Contenders {
    sandbox: Sandbox,
    ours: CommandPipeline<BankAccount>,
    /// Ours tuned: the same store without group commit.
    ours_alone: CommandPipeline<BankAccount>,
    ours_store: PostgresEventStore,
    peer: Arc<Peer>,
    peer_store: PersistedEventStore<PostgresEventRepository, PeerAccount>,
    /// The peer's pool and tables, for more of its stores.
    peer_pool: PgPool,
    peer_tables: (String, String),
}

impl Contenders {
    /// With `one_commit_each`, `ours` writes without group commit too (a
    /// tuned row).
    async fn new(pool: &PgPool, one_commit_each: bool) -> Result<Self> {
        let sandbox = Sandbox::new(pool).await?;
        let options = (*pool.connect_options()).clone();
        // Exactly what `PostgresEventStore::connect(url)` builds.
        let ours_store = PostgresEventStore::connect_with(options.clone())
            .await?
            .with_schema(sandbox.schema())?;
        let alone = ours_store
            .clone()
            .with_options(StoreOptions::default().group_commit(None));
        let ours = if one_commit_each {
            CommandPipeline::<BankAccount>::new(Arc::new(alone.clone()), ())
        } else {
            CommandPipeline::<BankAccount>::new(Arc::new(ours_store.clone()), ())
        };
        let ours_alone = CommandPipeline::<BankAccount>::new(Arc::new(alone), ());
        // What postgres-es's `default_postgress_pool(url)` builds.
        let peer_pool = PgPoolOptions::new()
            .max_connections(10)
            .connect_with(options)
            .await?;
        let (events, snapshots) = (
            sandbox.table("peer_events"),
            sandbox.table("peer_snapshots"),
        );
        for ddl in [
            format!(
                "CREATE TABLE {events} (aggregate_type text NOT NULL, aggregate_id text NOT NULL,
                     sequence bigint CHECK (sequence >= 0) NOT NULL, event_type text NOT NULL,
                     event_version text NOT NULL, payload json NOT NULL, metadata json NOT NULL,
                     PRIMARY KEY (aggregate_type, aggregate_id, sequence))"
            ),
            format!(
                "CREATE TABLE {snapshots} (aggregate_type text NOT NULL, aggregate_id text NOT NULL,
                     last_sequence bigint CHECK (last_sequence >= 0) NOT NULL,
                     current_snapshot bigint CHECK (current_snapshot >= 0) NOT NULL,
                     payload json NOT NULL, PRIMARY KEY (aggregate_type, aggregate_id, last_sequence))"
            ),
        ] {
            sqlx::query(&ddl).execute(pool).await?;
        }
        let repository =
            || PostgresEventRepository::new(peer_pool.clone()).with_tables(&events, &snapshots);
        let peer = Arc::new(CqrsFramework::new(
            PersistedEventStore::new_event_store(repository()),
            vec![],
            (),
        ));
        let peer_store = PersistedEventStore::new_event_store(repository());
        Ok(Self {
            sandbox,
            ours,
            ours_alone,
            ours_store,
            peer,
            peer_store,
            peer_pool,
            peer_tables: (events, snapshots),
        })
    }

    /// A repository over the peer's tables, as `postgres_snapshot_cqrs`
    /// builds one.
    fn peer_repository(&self) -> PostgresEventRepository {
        let (events, snapshots) = &self.peer_tables;
        PostgresEventRepository::new(self.peer_pool.clone()).with_tables(events, snapshots)
    }

    async fn peer_balance(&self, id: &str) -> Result<u64> {
        let context = self
            .peer_store
            .load_aggregate(id)
            .await
            .map_err(|error| BenchError::Command(error.to_string()))?;
        Ok(context.aggregate.balance)
    }

    async fn ours_open(&self, id: &str) -> Result<()> {
        let owner = "bench".to_owned();
        self.ours.execute(id, OpenAccount { owner }).await?;
        Ok(())
    }

    async fn peer_open(&self, id: &str) -> Result<()> {
        let owner = "bench".to_owned();
        self.peer_execute(id, PeerCommand::Open { owner }).await
    }

    async fn peer_execute(&self, id: &str, command: PeerCommand) -> Result<()> {
        self.peer
            .execute(id, command)
            .await
            .map_err(|error| BenchError::Command(error.to_string()))
    }
}

/// Runs the peer scenarios.
pub(crate) async fn vs_cqrs_es(pool: &PgPool, config: &Config) -> Result<Vec<Report>> {
    let [load, snapshot_load] = long_stream_load(pool, config).await?;
    let [concurrent, concurrent_alone] = concurrent(pool, config).await?;
    Ok(vec![
        sequential(
            pool,
            "vs-cqrs-es-seq-command",
            1,
            config.seq_commands,
            false,
        )
        .await?,
        sequential(
            pool,
            "vs-cqrs-es-short-streams",
            config.short_streams,
            10,
            false,
        )
        .await?,
        sequential(
            pool,
            "vs-cqrs-es-short-streams-one-commit-each",
            config.short_streams,
            10,
            true,
        )
        .await?,
        concurrent,
        concurrent_alone,
        load,
        snapshot_load,
    ])
}

/// Aggregates each side opens, and deposits into each, before the
/// sequential scenarios' clocks start.
const WARM_UP_STREAMS: usize = 10;
const WARM_UP_DEPOSITS: usize = 4;

/// `streams` aggregates, one after another, each opened and then given
/// `commands - 1` deposits, one command at a time; with `one_commit_each`,
/// ours without group commit.
async fn sequential(
    pool: &PgPool,
    scenario: &'static str,
    streams: usize,
    commands: usize,
    one_commit_each: bool,
) -> Result<Report> {
    let contenders = Contenders::new(pool, one_commit_each).await?;
    let total = streams * commands;
    let deposits = commands.saturating_sub(1);
    // Warm-up, not timed: each side's pool has opened its connections and
    // prepared its statements (and PostgreSQL settled on their plans)
    // before the first timed command, so the tail measures commands, not
    // start-up.
    for warm in 0..WARM_UP_STREAMS {
        let id = format!("warm-{warm}");
        contenders.ours_open(&id).await?;
        contenders.peer_open(&id).await?;
        for _ in 0..WARM_UP_DEPOSITS {
            contenders.ours.execute(&id, Deposit { amount: 1 }).await?;
            contenders
                .peer_execute(&id, PeerCommand::Deposit { amount: 1 })
                .await?;
        }
    }

    // Each command is timed, for the latency percentiles of both sides.
    let mut ours_latency = Vec::with_capacity(total);
    let started = Instant::now();
    for stream in 0..streams {
        let id = format!("acc-{stream}");
        let command = Instant::now();
        contenders.ours_open(&id).await?;
        ours_latency.push(command.elapsed());
        for _ in 0..deposits {
            let command = Instant::now();
            contenders.ours.execute(&id, Deposit { amount: 1 }).await?;
            ours_latency.push(command.elapsed());
        }
    }
    let ours = per_second(total, started.elapsed());

    let mut peer_latency = Vec::with_capacity(total);
    let started = Instant::now();
    for stream in 0..streams {
        let id = format!("acc-{stream}");
        let command = Instant::now();
        contenders.peer_open(&id).await?;
        peer_latency.push(command.elapsed());
        for _ in 0..deposits {
            let command = Instant::now();
            contenders
                .peer_execute(&id, PeerCommand::Deposit { amount: 1 })
                .await?;
            peer_latency.push(command.elapsed());
        }
    }
    let peer = per_second(total, started.elapsed());

    let mut baseline_latency = Vec::with_capacity(total);
    let started = Instant::now();
    for stream in 0..streams {
        for version in 1..=commands {
            baseline_latency.push(
                contenders
                    .sandbox
                    .raw_insert(&format!("acc-{stream}"), version as i64)
                    .await?,
            );
        }
    }
    let baseline = per_second(total, started.elapsed());

    for stream in [0, streams - 1] {
        let id = format!("acc-{stream}");
        let ours = contenders.ours.load(&id).await?.state.balance;
        let theirs = contenders.peer_balance(&id).await?;
        check(
            ours == deposits as u64 && theirs == deposits as u64,
            format!("{scenario}: balances {ours} and {theirs}, expected {deposits}"),
        )?;
    }
    contenders.sandbox.drop().await?;
    Ok(Report::new(scenario, ours, baseline, "ops/s")
        .with_latency(Latency {
            p50: quantile(&mut ours_latency, 0.5),
            p99: quantile(&mut ours_latency, 0.99),
            baseline_p50: quantile(&mut baseline_latency, 0.5),
            baseline_p99: quantile(&mut baseline_latency, 0.99),
        })
        .with_peer(peer)
        .with_peer_latency((
            quantile(&mut peer_latency, 0.5),
            quantile(&mut peer_latency, 0.99),
        )))
}

/// Many aggregates, a few commands each, from concurrent tasks: ours with
/// the defaults (group commit on), cqrs-es, then ours with one commit per
/// append (on accounts of its own, opened through it, so its state cache
/// starts as warm as the defaults' does).
async fn concurrent(pool: &PgPool, config: &Config) -> Result<[Report; 2]> {
    let contenders = Arc::new(Contenders::new(pool, false).await?);
    for account in 0..config.aggregates {
        let id = format!("acc-{account}");
        contenders.ours_open(&id).await?;
        contenders.peer_open(&id).await?;
        let owner = "bench".to_owned();
        contenders
            .ours_alone
            .execute(&format!("grp-{account}"), OpenAccount { owner })
            .await?;
    }
    let total = config.aggregates * config.commands_per_aggregate;

    // Per side (ours, cqrs-es, ours one commit each): the rate, and each
    // command's latency, for the tail under load.
    let mut rates = [0.0; 3];
    let mut latencies: [Vec<Duration>; 3] = Default::default();
    for (side, (rate, latencies)) in rates.iter_mut().zip(&mut latencies).enumerate() {
        let started = Instant::now();
        let mut tasks = Vec::new();
        for task in 0..config.tasks {
            let (contenders, config) = (contenders.clone(), config.clone());
            tasks.push(tokio::spawn(async move {
                let mut timed = Vec::new();
                for _ in 0..config.commands_per_aggregate {
                    for account in (task..config.aggregates).step_by(config.tasks) {
                        let command = Instant::now();
                        let deposit = Deposit { amount: 1 };
                        match side {
                            0 => {
                                let id = format!("acc-{account}");
                                contenders.ours.execute(&id, deposit).await?;
                            }
                            1 => {
                                let id = format!("acc-{account}");
                                contenders
                                    .peer_execute(&id, PeerCommand::Deposit { amount: 1 })
                                    .await?;
                            }
                            _ => {
                                let id = format!("grp-{account}");
                                contenders.ours_alone.execute(&id, deposit).await?;
                            }
                        }
                        timed.push(command.elapsed());
                    }
                }
                Ok::<_, BenchError>(timed)
            }));
        }
        for task in tasks {
            latencies.extend(task.await.map_err(BenchError::task)??);
        }
        *rate = per_second(total, started.elapsed());
    }
    let (baseline, mut raw) = raw_concurrent(&contenders.sandbox, config).await?;
    let (raw_p50, raw_p99) = (quantile(&mut raw, 0.5), quantile(&mut raw, 0.99));
    let [mut ours, mut theirs, mut alone] = latencies;
    let latency = |samples: &mut Vec<Duration>| Latency {
        p50: quantile(samples, 0.5),
        p99: quantile(samples, 0.99),
        baseline_p50: raw_p50,
        baseline_p99: raw_p99,
    };
    let (ours, alone) = (latency(&mut ours), latency(&mut alone));
    let theirs = (quantile(&mut theirs, 0.5), quantile(&mut theirs, 0.99));
    for account in [0, config.aggregates - 1] {
        let id = format!("acc-{account}");
        let ours = contenders.ours.load(&id).await?.state.balance;
        let theirs = contenders.peer_balance(&id).await?;
        let alone = contenders
            .ours_alone
            .load(&format!("grp-{account}"))
            .await?
            .state
            .balance;
        let expected = config.commands_per_aggregate as u64;
        check(
            ours == expected && theirs == expected && alone == expected,
            format!(
                "vs-cqrs-es concurrent: balances {ours}, {theirs} and {alone}, expected {expected}"
            ),
        )?;
    }
    let contenders = Arc::try_unwrap(contenders)
        .map_err(|_| BenchError::Task("a task still holds the contenders".into()))?;
    contenders.sandbox.drop().await?;
    Ok([
        Report::new(
            "vs-cqrs-es-concurrent-commands",
            rates[0],
            baseline,
            "ops/s",
        )
        .with_latency(ours)
        .with_peer(rates[1])
        .with_peer_latency(theirs),
        Report::new(
            "vs-cqrs-es-concurrent-one-commit-each",
            rates[2],
            baseline,
            "ops/s",
        )
        .with_latency(alone)
        .with_peer(rates[1])
        .with_peer_latency(theirs),
    ])
}

/// Loading an account with a long stream, the fastest of five loads each:
/// by replaying it, then from a snapshot (each side's snapshot store, after
/// one command that takes the snapshot).
async fn long_stream_load(pool: &PgPool, config: &Config) -> Result<[Report; 2]> {
    let contenders = Contenders::new(pool, false).await?;
    long_stream(&contenders.ours_store, "long", config.long_stream).await?;
    // The peer's stream, written the way postgres-es stores it.
    sqlx::query(&format!(
        "INSERT INTO {} (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
         SELECT 'account', 'long', 1, 'AccountOpened', '1.0', '{{\"AccountOpened\":{{\"owner\":\"bench\"}}}}'::json, '{{}}'::json
         UNION ALL
         SELECT 'account', 'long', n, 'DepositMade', '1.0', '{{\"DepositMade\":{{\"amount\":1}}}}'::json, '{{}}'::json
         FROM generate_series(2, $1 + 1) AS n",
        contenders.sandbox.table("peer_events")
    ))
    .bind(config.long_stream as i64)
    .execute(pool)
    .await?;
    for table in ["events", "peer_events"] {
        sqlx::query(&format!("ANALYZE {}", contenders.sandbox.table(table)))
            .execute(pool)
            .await?;
    }

    let (mut ours, mut peer, mut baseline) = (Duration::MAX, Duration::MAX, Duration::MAX);
    for _ in 0..5 {
        let started = Instant::now();
        let balance = contenders.ours.load("long").await?.state.balance;
        ours = ours.min(started.elapsed());
        check(
            balance == config.long_stream as u64,
            "ours: long stream balance",
        )?;

        let started = Instant::now();
        let balance = contenders.peer_balance("long").await?;
        peer = peer.min(started.elapsed());
        check(
            balance == config.long_stream as u64,
            "cqrs-es: long stream balance",
        )?;

        let started = Instant::now();
        let payloads: Vec<String> = sqlx::query_scalar(&format!(
            "SELECT payload::text FROM {} WHERE aggregate_type = 'account' AND aggregate_id = 'long' ORDER BY version",
            contenders.sandbox.table("events")
        ))
        .fetch_all(pool)
        .await?;
        let values: Vec<serde_json::Value> = payloads
            .iter()
            .map(|payload| serde_json::from_str(payload))
            .collect::<std::result::Result<_, _>>()?;
        baseline = baseline.min(started.elapsed());
        check(
            values.len() == config.long_stream + 1,
            "raw long stream length",
        )?;
    }
    let ms = |duration: Duration| duration.as_secs_f64() * 1e3;
    let replay = Report::new("vs-cqrs-es-long-stream-load", ms(ours), ms(baseline), "ms")
        .with_peer(ms(peer));

    // Snapshots. cqrs-es's snapshot store takes one when a commit crosses a
    // multiple of its size (100): deposit until it has one, then make the
    // same deposits on ours, whose pipeline snapshots after every command.
    let peer_snapshots = CqrsFramework::new(
        PersistedEventStore::<_, PeerAccount>::new_snapshot_store(
            contenders.peer_repository(),
            100,
        ),
        vec![],
        (),
    );
    let peer_snapshot_store = PersistedEventStore::<_, PeerAccount>::new_snapshot_store(
        contenders.peer_repository(),
        100,
    );
    let mut deposits = 0;
    loop {
        peer_snapshots
            .execute("long", PeerCommand::Deposit { amount: 1 })
            .await
            .map_err(|error| BenchError::Command(error.to_string()))?;
        deposits += 1;
        let context = peer_snapshot_store
            .load_aggregate("long")
            .await
            .map_err(|error| BenchError::Command(error.to_string()))?;
        if context.current_snapshot.is_some() {
            break;
        }
        check(deposits <= 100, "cqrs-es took no snapshot in 100 commands")?;
    }
    let snapshotting =
        CommandPipeline::<BankAccount>::new(Arc::new(contenders.ours_store.clone()), ())
            .with_options(
                PipelineOptions::default()
                    .snapshots(SnapshotPolicy::Every(1))
                    .state_cache(0),
            );
    for _ in 0..deposits {
        snapshotting.execute("long", Deposit { amount: 1 }).await?;
    }
    let expected = (config.long_stream + deposits) as u64;
    let (mut ours, mut peer, mut baseline) = (Duration::MAX, Duration::MAX, Duration::MAX);
    for _ in 0..5 {
        let started = Instant::now();
        let balance = snapshotting.load("long").await?.state.balance;
        ours = ours.min(started.elapsed());
        check(balance == expected, "ours: balance from the snapshot")?;

        let started = Instant::now();
        let balance = peer_snapshot_store
            .load_aggregate("long")
            .await
            .map_err(|error| BenchError::Command(error.to_string()))?
            .aggregate
            .balance;
        peer = peer.min(started.elapsed());
        // cqrs-es 0.5's snapshot store applies the event of the command that
        // takes the snapshot twice (its `EventSink` applies it while handling,
        // the snapshot update applies it again), so its balance is one
        // deposit too high. A defect of the peer's, reported in the
        // performance page; its timing still counts.
        check(
            balance == expected || balance == expected + 1,
            format!(
                "cqrs-es: balance {balance} from the snapshot, expected {expected} after {deposits} deposits"
            ),
        )?;

        let started = Instant::now();
        let state: String = sqlx::query_scalar(&format!(
            "SELECT state::text FROM {} WHERE aggregate_type = 'account' AND aggregate_id = 'long'",
            contenders.sandbox.table("snapshots")
        ))
        .fetch_one(pool)
        .await?;
        let _: serde_json::Value = serde_json::from_str(&state)?;
        baseline = baseline.min(started.elapsed());
    }
    contenders.sandbox.drop().await?;
    let snapshot = Report::new(
        "vs-cqrs-es-long-stream-load-snapshot",
        ms(ours),
        ms(baseline),
        "ms",
    )
    .with_peer(ms(peer));
    Ok([replay, snapshot])
}
