//! The bank account behind an HTTP API: `cargo run --example http_service`.
//!
//! Reads `DATABASE_URL` (default: the local PostgreSQL), `DATABASE_SCHEMA`
//! (default `public`), `BIND` (default `127.0.0.1:3000`) and `RUST_LOG`
//! (default `info`); migrates the schema, then serves until Ctrl-C or
//! SIGTERM. `docs/operations.md` walks through a `curl` session against it.

use cqrs_examples::bank_account::balances::balances_options;
use cqrs_examples::http_service::host;
use cqrskit::{host::shutdown_signal, postgres::PostgresEventStore};
use metrics_exporter_prometheus::PrometheusBuilder;
use tokio::net::TcpListener;

/// The local PostgreSQL `scripts/ensure-postgres` brings up.
const LOCAL: &str = "postgres://postgres:postgres@127.0.0.1:5432/postgres";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    cqrs_examples::logging();
    let env = |name: &str, default: &str| std::env::var(name).unwrap_or(default.to_owned());
    let store = PostgresEventStore::connect(&env("DATABASE_URL", LOCAL))
        .await?
        .with_schema(&env("DATABASE_SCHEMA", "public"))?;
    let listener = TcpListener::bind(env("BIND", "127.0.0.1:3000")).await?;
    println!("serving on http://{}", listener.local_addr()?);
    let metrics = PrometheusBuilder::new().install_recorder()?;
    host(store, listener, balances_options(), Some(metrics))
        .run(shutdown_signal())
        .await?;
    Ok(())
}
