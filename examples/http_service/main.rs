//! The bank account behind an HTTP API: `cargo run --example http_service`.
//!
//! Reads `DATABASE_URL` (default: the local PostgreSQL), `DATABASE_SCHEMA`
//! (default `public`) and `BIND` (default `127.0.0.1:3000`); migrates the
//! schema, then serves until Ctrl-C or SIGTERM. `docs/operations.md` walks
//! through a `curl` session against it.

use cqrs_examples::http_service::{Service, balances_options, serve};
use cqrskit::postgres::PostgresEventStore;
use metrics_exporter_prometheus::PrometheusBuilder;
use tokio::net::TcpListener;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres:postgres@127.0.0.1:5432/postgres".to_owned());
    let schema = std::env::var("DATABASE_SCHEMA").unwrap_or_else(|_| "public".to_owned());
    let bind = std::env::var("BIND").unwrap_or_else(|_| "127.0.0.1:3000".to_owned());

    let metrics = PrometheusBuilder::new().install_recorder()?;
    let store = PostgresEventStore::connect(&url)
        .await?
        .with_schema(&schema)?;
    store.migrate().await?;
    let listener = TcpListener::bind(&bind).await?;
    println!("serving on http://{}", listener.local_addr()?);
    let service = Service::new(store, balances_options(), Some(metrics));
    serve(listener, service, shutdown()).await?;
    println!("stopped");
    Ok(())
}

/// Ctrl-C or SIGTERM (what a container runtime sends first).
async fn shutdown() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(terminate) => terminate,
                Err(_) => {
                    let _ = interrupt.await;
                    return;
                }
            };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
}
