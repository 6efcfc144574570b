//! The benchmark program: see the crate docs, or `docs/performance.md`.
//!
//! `cargo run --release -p cqrs-bench -- [--smoke] [--tasks N] [scenario ...]`
//!
//! `--tasks N`: the concurrent scenarios run N tasks instead of 20 (a few
//! commands at once, or many).

use cqrs_bench::{Config, SCENARIOS, WORKER_FLAG, connect, partition_worker, run};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // The `partitions` scenario runs this program again as its workers.
    if args.first().map(String::as_str) == Some(WORKER_FLAG) {
        partition_worker(&args[1..]).await?;
        return Ok(());
    }
    let smoke = args.iter().any(|arg| arg == "--smoke");
    let mut tasks = None;
    let mut only = Vec::new();
    let mut rest = args.into_iter().filter(|arg| arg != "--smoke");
    while let Some(arg) = rest.next() {
        if arg == "--tasks" {
            let count = rest.next().and_then(|count| count.parse::<usize>().ok());
            tasks = Some(
                count
                    .filter(|&count| count > 0)
                    .ok_or("--tasks takes a count above 0")?,
            );
        } else {
            only.push(arg);
        }
    }
    if let Some(unknown) = only.iter().find(|name| !SCENARIOS.contains(&name.as_str())) {
        return Err(format!(
            "unknown scenario `{unknown}`: expected one of {}",
            SCENARIOS.join(", ")
        )
        .into());
    }
    let mut config = if smoke {
        Config::smoke()
    } else {
        Config::full()
    };
    if let Some(tasks) = tasks {
        config.tasks = tasks;
    }
    let url = std::env::var("DATABASE_URL")
        .map_err(|_| "set DATABASE_URL (scripts/ensure-postgres starts a server and prints one)")?;
    let pool = connect(&url, &config).await?;
    run(&pool, &config, &only, |report| println!("{report}")).await?;
    Ok(())
}
