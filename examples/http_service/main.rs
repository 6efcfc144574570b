//! The bank account behind an HTTP API: `cargo run --example http_service`.
//!
//! Reads `DATABASE_URL` (default: the local PostgreSQL), `DATABASE_SCHEMA`
//! (default `public`), `BIND` (default `127.0.0.1:3000`) and `RUST_LOG`
//! (default `info`); migrates the schema, then serves until Ctrl-C or
//! SIGTERM. `docs/operations.md` walks through a `curl` session against it.

use cqrs_examples::http_service::{balances_options, host};
use cqrskit::host::shutdown_signal;
use cqrskit::postgres::PostgresEventStore;
use metrics_exporter_prometheus::PrometheusBuilder;
use tokio::net::TcpListener;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    cqrs_examples::logging();
    let env = |name: &str, default: &str| std::env::var(name).unwrap_or(default.to_owned());
    let url = env(
        "DATABASE_URL",
        "postgres://postgres:postgres@127.0.0.1:5432/postgres",
    );
    let store = PostgresEventStore::connect(&url)
        .await?
        .with_schema(&env("DATABASE_SCHEMA", "public"))?;
    let listener = TcpListener::bind(env("BIND", "127.0.0.1:3000")).await?;
    println!("serving on http://{}", listener.local_addr()?);
    let metrics = PrometheusBuilder::new().install_recorder()?;
    host(store, listener, balances_options(), Some(metrics))
        .run(shutdown_signal())
        .await?;
    println!("stopped");
    Ok(())
}
