//! The benchmark at tiny sizes: every scenario runs, verifies what it wrote,
//! and reports a line of the documented shape. Speed is not judged here.

use cqrs_bench::{Config, connect, run};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_scenario_runs_and_verifies_at_smoke_size() {
    let url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres:postgres@127.0.0.1:5432/postgres".to_owned());
    let config = Config {
        worker_program: Some(env!("CARGO_BIN_EXE_cqrs-bench").into()),
        ..Config::smoke()
    };
    let pool = connect(&url, &config)
        .await
        .unwrap_or_else(|error| panic!("PostgreSQL is not reachable at {url}: {error}"));
    let reports = run(&pool, &config, &[], |_| {})
        .await
        .expect("every scenario verifies");
    let names: Vec<&str> = reports.iter().map(|report| report.scenario).collect();
    assert_eq!(
        names,
        [
            "seq-command",
            "seq-command-uncached",
            "seq-command-uncached-hand-written",
            "seq-command-uncached-no-snapshots",
            "concurrent-commands",
            "concurrent-commands-same-schema",
            "concurrent-commands-one-commit-each",
            "long-stream-load",
            "long-stream-load-hand-written",
            "long-stream-load-snapshot",
            "long-stream-command-snapshot",
            "batch-append",
            "batch-append-same-schema",
            "projection-catch-up",
            "projection-catch-up-hand-written",
            "document-catch-up",
            "vs-cqrs-es-seq-command",
            "vs-cqrs-es-short-streams",
            "vs-cqrs-es-short-streams-one-commit-each",
            "vs-cqrs-es-concurrent-commands",
            "vs-cqrs-es-concurrent-one-commit-each",
            "vs-cqrs-es-long-stream-load",
            "vs-cqrs-es-long-stream-load-snapshot",
            "relay-throughput",
            "relay-latency",
            "live-lag-quiet",
            "live-lag-busy",
            "relay-cluster-r3",
            "consumer-split",
            "relay-sync-always",
            "partitioned-catch-up-2",
            "partitioned-catch-up-4",
        ]
    );
    for report in &reports {
        assert!(report.framework > 0.0 && report.baseline > 0.0, "{report}");
        assert!(
            report
                .to_string()
                .starts_with(&format!("scenario={} framework=", report.scenario))
        );
    }
}

/// `--tasks N` is taken by the program (the concurrent scenarios then run
/// N tasks), and a count of 0 is refused with a message.
#[test]
fn the_program_takes_a_task_count_and_refuses_zero() {
    let program = env!("CARGO_BIN_EXE_cqrs-bench");
    let url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres:postgres@127.0.0.1:5432/postgres".to_owned());
    let run = |args: &[&str]| {
        std::process::Command::new(program)
            .env("DATABASE_URL", &url)
            .args(args)
            .output()
            .expect("cqrs-bench runs")
    };
    let two = run(&["--smoke", "--tasks", "2", "concurrent-commands"]);
    assert!(
        two.status.success(),
        "{}",
        String::from_utf8_lossy(&two.stderr)
    );
    assert!(String::from_utf8_lossy(&two.stdout).contains("scenario=concurrent-commands "));
    let zero = run(&["--smoke", "--tasks", "0", "concurrent-commands"]);
    assert!(!zero.status.success());
    assert!(String::from_utf8_lossy(&zero.stderr).contains("--tasks takes a count above 0"));
}
