//! NATS for the tests: the shared server (`NATS_URL`, which `scripts/test`
//! makes sure answers), private servers the fault tests may stop and start
//! again, and the bank account's public events.
//!
//! A test that cannot reach NATS fails: tests that need it never skip.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use cqrs_examples::bank_account::AccountEvent;
use cqrskit::nats::async_nats::{self, jetstream};
use cqrskit::nats::{Outgoing, Publication};
use cqrskit::postgres::sqlx::PgConnection;
use cqrskit::{BoxError, EventEnvelope};

/// The shared server's URL: `NATS_URL`, or the local default.
pub fn nats_url() -> String {
    std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned())
}

/// A client of the server at `url`.
///
/// # Panics
///
/// When the server cannot be reached, saying how to get one.
pub async fn connect(url: &str) -> async_nats::Client {
    async_nats::connect(url).await.unwrap_or_else(|error| {
        panic!(
            "NATS is not reachable at {url}: {error}\n\
             run `scripts/test`, which starts it, or set NATS_URL"
        )
    })
}

/// A JetStream context on the shared server.
pub async fn jetstream() -> jetstream::Context {
    jetstream::new(connect(&nats_url()).await)
}

/// A name no other test uses: subject prefixes and stream names.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}{}", uuid::Uuid::now_v7().simple())
}

/// The next item of `stream` (a JetStream listing, a pull).
pub async fn next<S: futures_core::Stream + Unpin>(stream: &mut S) -> Option<S::Item> {
    std::future::poll_fn(|context| std::pin::Pin::new(&mut *stream).poll_next(context)).await
}

/// A free port on 127.0.0.1.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}

/// The nats-server binary the tests start: `NATS_SERVER` (2.10 or later,
/// from `scripts/ensure-nats-server`), else one on PATH or Debian's.
fn server_binary() -> String {
    std::env::var("NATS_SERVER").unwrap_or_else(|_| {
        if std::path::Path::new("/usr/sbin/nats-server").exists() {
            "/usr/sbin/nats-server".to_owned()
        } else {
            "nats-server".to_owned()
        }
    })
}

/// Waits until a server answers at `url`.
async fn until_it_answers(url: &str, binary: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        if async_nats::connect(url).await.is_ok() {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{binary} did not answer at {url} within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A nats-server of the test's own, on a free port with a store directory
/// of its own, killed when dropped; optionally one node of a cluster.
pub struct PrivateNats {
    port: u16,
    store: std::path::PathBuf,
    /// The node's name, cluster port, cluster name and its peers' cluster
    /// ports, when it belongs to a cluster.
    cluster: Option<(String, u16, String, Vec<u16>)>,
    /// A configuration file given to the server, if any.
    config: Option<std::path::PathBuf>,
    child: Option<Child>,
}

impl PrivateNats {
    /// Starts one and waits until it answers.
    ///
    /// # Panics
    ///
    /// When the binary (`NATS_SERVER`, `nats-server` on PATH or Debian's
    /// /usr/sbin/nats-server) is missing or the server does not answer.
    pub async fn start() -> Self {
        let mut server = Self::new(None);
        server.resume().await;
        server
    }

    /// Starts one reading `config` (nats-server's configuration format:
    /// `jetstream { sync_interval: always }`, say; the command line sets
    /// the address, port and store) and waits until it answers.
    ///
    /// # Panics
    ///
    /// As [`start`](Self::start).
    pub async fn start_with(config: &str) -> Self {
        let mut server = Self::new(None);
        let file = server.store.join("server.conf");
        std::fs::write(&file, config).expect("write the configuration");
        server.config = Some(file);
        server.resume().await;
        server
    }

    fn new(cluster: Option<(String, u16, String, Vec<u16>)>) -> Self {
        let store = std::env::temp_dir().join(unique("cqrskit-nats-"));
        std::fs::create_dir_all(&store).expect("a store directory");
        Self {
            port: free_port(),
            store,
            cluster,
            config: None,
            child: None,
        }
    }

    /// Its URL.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Its server name in a cluster (`n0`, `n1`, ...); empty alone.
    pub fn name(&self) -> &str {
        self.cluster.as_ref().map_or("", |(name, ..)| name.as_str())
    }

    /// Kills it with SIGKILL, as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Whether it runs.
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Sends it a signal (`-STOP`, `-CONT`).
    ///
    /// # Panics
    ///
    /// When it does not run or `kill` fails.
    pub fn signal(&self, which: &str) {
        let pid = self.child.as_ref().expect("running").id();
        let status = Command::new("kill")
            .args([which, &pid.to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill {which} {pid}");
    }

    /// Starts it again on the same port with the same store, and waits
    /// until it answers.
    ///
    /// # Panics
    ///
    /// As [`start`](Self::start).
    pub async fn resume(&mut self) {
        let binary = server_binary();
        let mut command = Command::new(&binary);
        if let Some(config) = &self.config {
            command.arg("-c").arg(config);
        }
        command
            .args([
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-js",
                "-sd",
            ])
            .arg(&self.store);
        if let Some((name, cluster_port, cluster_name, peers)) = &self.cluster {
            let routes: Vec<String> = peers
                .iter()
                .map(|port| format!("nats://127.0.0.1:{port}"))
                .collect();
            command.args([
                "-n",
                name,
                "--cluster_name",
                cluster_name,
                "--cluster",
                &format!("nats://127.0.0.1:{cluster_port}"),
                "--routes",
                &routes.join(","),
            ]);
        }
        let child = command
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|error| panic!("start {binary}: {error} (scripts/test installs it)"));
        self.child = Some(child);
        until_it_answers(&self.url(), &binary).await;
    }
}

impl Drop for PrivateNats {
    fn drop(&mut self) {
        if self.child.is_some() {
            // A frozen server dies only once it runs again.
            let _ = Command::new("kill")
                .args([
                    "-CONT",
                    &self.child.as_ref().map_or(0, Child::id).to_string(),
                ])
                .status();
        }
        self.kill();
        let _ = std::fs::remove_dir_all(&self.store);
    }
}

/// Three private nats-servers routed as one JetStream cluster (`n0`, `n1`,
/// `n2`), on free ports, killed when dropped: what production runs for
/// replicated streams (R3).
pub struct NatsCluster {
    /// The nodes, by index; a node's [`name`](PrivateNats::name) is `n<index>`.
    pub nodes: Vec<PrivateNats>,
}

impl NatsCluster {
    /// Starts the three nodes and waits until JetStream answers as one
    /// cluster (a meta leader elected: an R3 stream can be created).
    ///
    /// # Panics
    ///
    /// When a node does not start or the cluster does not form in 30 s.
    pub async fn start() -> Self {
        let cluster_name = unique("cqrskit-");
        let cluster_ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let mut nodes: Vec<PrivateNats> = (0..3)
            .map(|index| {
                let peers = cluster_ports
                    .iter()
                    .enumerate()
                    .filter(|(other, _)| *other != index)
                    .map(|(_, port)| *port)
                    .collect();
                PrivateNats::new(Some((
                    format!("n{index}"),
                    cluster_ports[index],
                    cluster_name.clone(),
                    peers,
                )))
            })
            .collect();
        for node in &mut nodes {
            node.resume().await;
        }
        let cluster = Self { nodes };
        let jetstream = jetstream::new(cluster.client().await);
        let probe = unique("PROBE");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let created = jetstream
                .create_stream(jetstream::stream::Config {
                    name: probe.clone(),
                    subjects: vec![format!("{probe}.>")],
                    num_replicas: 3,
                    ..Default::default()
                })
                .await;
            if created.is_ok() {
                let _ = jetstream.delete_stream(&probe).await;
                return cluster;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the cluster did not form within 30 s: {created:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// A client that knows every node: it connects to any and fails over
    /// to the others.
    ///
    /// # Panics
    ///
    /// When no node answers.
    pub async fn client(&self) -> async_nats::Client {
        async_nats::connect(self.addresses())
            .await
            .expect("a node of the cluster answers")
    }

    /// Every node's address.
    fn addresses(&self) -> Vec<async_nats::ServerAddr> {
        self.nodes
            .iter()
            .map(|node| node.url().parse().expect("a server address"))
            .collect()
    }

    /// A client for the test's own observations: as [`client`](Self::client),
    /// but it pings its server every 500 ms, so that it leaves a frozen
    /// node within a second and a half instead of the client's default two
    /// minutes (the code under test gets the defaults).
    ///
    /// # Panics
    ///
    /// When no node answers.
    pub async fn watcher_client(&self) -> async_nats::Client {
        async_nats::ConnectOptions::new()
            .ping_interval(Duration::from_millis(500))
            .connect(self.addresses())
            .await
            .expect("a node of the cluster answers")
    }

    /// The index of the node leading `stream`'s replicas now.
    ///
    /// # Panics
    ///
    /// When no leader is known within 30 s.
    pub async fn leader_of(&self, jetstream: &jetstream::Context, stream: &str) -> usize {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(mut found) = jetstream.get_stream(stream).await {
                if let Ok(info) = found.info().await {
                    let leader = info
                        .cluster
                        .as_ref()
                        .and_then(|cluster| cluster.leader.clone());
                    if let Some(index) = leader
                        .and_then(|name| self.nodes.iter().position(|node| node.name() == name))
                    {
                        return index;
                    }
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no leader of {stream} within 30 s"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// The bank account's published language: an opened account and a
/// withdrawal leave the service as `bank.account.opened.v1` and
/// `bank.money.withdrawn.v1`; deposits stay inside.
pub struct PublicAccountEvents;

impl Publication for PublicAccountEvents {
    type Event = AccountEvent;

    // Deposits are never read from the log.
    fn event_types(&self) -> &'static [&'static str] {
        &["AccountOpened", "WithdrawalMade"]
    }

    fn publish(&self, event: &EventEnvelope<AccountEvent>) -> Result<Option<Outgoing>, BoxError> {
        let outgoing = match &event.payload {
            AccountEvent::AccountOpened(opened) => Outgoing::new(
                "bank.account.opened.v1",
                &serde_json::json!({ "account": event.stream.aggregate_id, "holder": opened.owner }),
            )?
            .with_subject_token("opened"),
            AccountEvent::WithdrawalMade(withdrawal) => Outgoing::new(
                "bank.money.withdrawn.v1",
                &serde_json::json!({ "account": event.stream.aggregate_id, "cents": withdrawal.amount }),
            )?
            .with_subject_token("withdrawn"),
            AccountEvent::DepositMade(_) => return Ok(None),
        };
        Ok(Some(outgoing))
    }
}

/// A consumer's handler for the bank's public events: each withdrawal is
/// recorded as a row of `<schema>.withdrawals_seen` (no key: a message
/// handled twice shows as two rows). A withdrawal of 13 cents fails while
/// `refuse_13` is set (from the start).
pub struct RecordWithdrawals {
    /// The schema-qualified table.
    pub table: String,
    /// Whether 13 cents are refused.
    pub refuse_13: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl RecordWithdrawals {
    /// The handler for `schema`, creating its table when missing.
    ///
    /// # Panics
    ///
    /// When the database refuses.
    pub async fn create(pool: &sqlx::PgPool, schema: &str) -> Self {
        let table = format!("\"{schema}\".withdrawals_seen");
        sqlx::query(&format!(
            "CREATE TABLE IF NOT EXISTS {table} (event_id text NOT NULL, account text NOT NULL, cents bigint NOT NULL)"
        ))
        .execute(pool)
        .await
        .expect("create withdrawals_seen");
        Self {
            table,
            refuse_13: std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true)),
        }
    }
}

#[cqrskit::async_trait]
impl cqrskit::nats::Handler<PgConnection> for RecordWithdrawals {
    async fn handle(
        &self,
        event: &cqrskit::nats::CloudEvent,
        transaction: &mut sqlx::PgConnection,
    ) -> Result<(), BoxError> {
        if event.event_type != "bank.money.withdrawn.v1" {
            return Ok(());
        }
        #[derive(serde::Deserialize)]
        struct Withdrawn {
            account: String,
            cents: i64,
        }
        let withdrawn: Withdrawn = event.data_as()?;
        if withdrawn.cents == 13 && self.refuse_13.load(std::sync::atomic::Ordering::SeqCst) {
            return Err("13 cents: refused by the test's handler".into());
        }
        sqlx::query(&format!(
            "INSERT INTO {} (event_id, account, cents) VALUES ($1, $2, $3)",
            self.table
        ))
        .bind(&event.id)
        .bind(&withdrawn.account)
        .bind(withdrawn.cents)
        .execute(transaction)
        .await?;
        Ok(())
    }
}

/// The stream a relay of the bank's events under subject prefix `prefix`
/// publishes into.
pub fn stream_of(prefix: &str) -> String {
    cqrskit::nats::RelayOptions::new(prefix, "/bank")
        .get_stream()
        .map(|stream| stream.get_name().to_owned())
        .unwrap_or_default()
}

/// Relays the public account events of `store` to the end of its log, in
/// `mode`, under a fresh subject prefix, then lets the relay's lease go;
/// returns the prefix.
///
/// # Panics
///
/// When the relay fails.
pub async fn relay_to_the_end(
    store: &cqrskit::postgres::PostgresEventStore,
    jetstream: &jetstream::Context,
    mode: cqrskit::nats::ContentMode,
) -> String {
    let prefix = unique("bank");
    let options = cqrskit::nats::RelayOptions::new(&prefix, "/bank").mode(mode);
    let relay = cqrskit::nats::Relay::new(
        format!("relay_{prefix}"),
        jetstream.clone(),
        PublicAccountEvents,
        options,
    );
    let runner =
        cqrskit::postgres::ProjectionRunner::new(store.clone(), std::sync::Arc::new(relay));
    assert!(runner.acquire_lease().await.expect("lease"));
    cqrskit::postgres::testing::caught_up(&runner).await;
    runner.release_lease().await.expect("release");
    prefix
}

/// A stream of its own capturing one subject of its own; returns both.
///
/// # Panics
///
/// When JetStream refuses.
pub async fn plain_stream(jetstream: &jetstream::Context, name: &str) -> (String, String) {
    let (stream, subject) = (unique(&name.to_ascii_uppercase()), unique(name));
    jetstream
        .create_stream(jetstream::stream::Config {
            name: stream.clone(),
            subjects: vec![subject.clone()],
            ..Default::default()
        })
        .await
        .expect("a stream");
    (stream, subject)
}

/// Opens an account with 100 and withdraws each of `amounts`, then relays
/// the public events into a fresh stream; returns its name.
///
/// # Panics
///
/// When a command or the relay fails.
pub async fn relayed(
    store: &cqrskit::postgres::PostgresEventStore,
    jetstream: &jetstream::Context,
    amounts: &[u64],
) -> String {
    stream_of(&relayed_under(store, jetstream, amounts).await)
}

/// As [`relayed`]; returns the relay's subject prefix.
///
/// # Panics
///
/// When a command or the relay fails.
pub async fn relayed_under(
    store: &cqrskit::postgres::PostgresEventStore,
    jetstream: &jetstream::Context,
    amounts: &[u64],
) -> String {
    use cqrs_examples::bank_account::{BankAccount, OpenAccount, Withdraw};
    let accounts =
        cqrskit::CommandPipeline::<BankAccount>::new(std::sync::Arc::new(store.clone()), ());
    let owner = "Ada".to_owned();
    accounts
        .execute("acc", OpenAccount { owner })
        .await
        .expect("open");
    accounts
        .execute("acc", cqrs_examples::bank_account::Deposit { amount: 100 })
        .await
        .expect("deposit");
    for &amount in amounts {
        accounts
            .execute("acc", Withdraw { amount })
            .await
            .expect("withdraw");
    }
    relay_to_the_end(store, jetstream, cqrskit::nats::ContentMode::Structured).await
}
