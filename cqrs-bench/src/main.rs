//! The benchmark program: see the crate docs, or `docs/performance.md`.

use cqrs_bench::{Config, connect, run};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let smoke = std::env::args().any(|arg| arg == "--smoke");
    let config = if smoke {
        Config::smoke()
    } else {
        Config::full()
    };
    let url = std::env::var("DATABASE_URL")
        .map_err(|_| "set DATABASE_URL (scripts/ensure-postgres starts a server and prints one)")?;
    let pool = connect(&url, &config).await?;
    run(&pool, &config, |report| println!("{report}")).await?;
    Ok(())
}
