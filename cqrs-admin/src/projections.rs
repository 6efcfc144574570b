//! Projections: their state, their dead letters, and requests to their
//! runners (rebuild, replay) followed until done.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use cqrskit::postgres::admin::{Admin, ProjectionInfo, ProjectionState};
use cqrskit::postgres::{DeadLetter, Request};
use serde_json::{Value, json};

use crate::Wait;
use crate::events::event_json;
use crate::failure::Failure;
use crate::output::{self, cell};

/// How often a followed request is looked at.
const FOLLOW_EVERY: Duration = Duration::from_millis(200);

fn state(info: &ProjectionInfo) -> &'static str {
    info.state().as_str()
}

fn info_json(info: &ProjectionInfo) -> Value {
    json!({
        "name": info.name,
        "state": state(info),
        "checkpoint": info.checkpoint.to_string(),
        "lag_events": info.lag_events,
        "lag_seconds": info.lag_seconds,
        "owner": info.owner,
        "lease_expires_at": info.lease_expires_at,
        "stopped_at": info.stopped_at,
        "stop_reason": info.stop_reason,
        "open_dead_letters": info.open_dead_letters,
        "requested": info.requested.map(Request::as_str),
        "request_error": info.request_error,
        "request_failures": info.request_failures,
        "updated_at": info.updated_at,
    })
}

/// A request waiting, with its failed attempts if the runner has failed at
/// it (the error itself is in `--json`, and `rebuild` prints it).
fn requested(info: &ProjectionInfo, request: Request) -> String {
    match info.request_failures {
        0 => request.as_str().to_owned(),
        failures => format!("{} (failed {failures}x)", request.as_str()),
    }
}

/// One line of the listing: a projection, a partitioned projection as a
/// whole, or one of its partitions (indented below it).
enum Line<'a> {
    Projection(&'a ProjectionInfo),
    Partitioned(Partitioned<'a>),
    Partition(&'a ProjectionInfo),
}

/// A partitioned projection, from its partitions' rows.
struct Partitioned<'a> {
    name: &'a str,
    partitions: Vec<&'a ProjectionInfo>,
}

impl Partitioned<'_> {
    /// The worst of its partitions' states: one stopped partition stops
    /// its streams, one lapsed has nobody applying its slices.
    fn state(&self) -> ProjectionState {
        self.partitions
            .iter()
            .map(|partition| partition.state())
            .max()
            .unwrap_or(ProjectionState::Idle)
    }

    fn lag_events(&self) -> u64 {
        self.partitions
            .iter()
            .map(|partition| partition.lag_events)
            .sum()
    }

    fn lag_seconds(&self) -> Option<f64> {
        self.partitions
            .iter()
            .filter_map(|partition| partition.lag_seconds)
            .reduce(f64::max)
    }

    fn open_dead_letters(&self) -> u64 {
        self.partitions
            .iter()
            .map(|partition| partition.open_dead_letters)
            .sum()
    }

    /// The runners holding its partitions now.
    fn owners(&self) -> Vec<&str> {
        let mut owners: Vec<&str> = self
            .partitions
            .iter()
            .filter(|partition| partition.running)
            .filter_map(|partition| partition.owner.as_deref())
            .collect();
        owners.sort_unstable();
        owners.dedup();
        owners
    }

    fn json(&self) -> Value {
        json!({
            "name": self.name,
            "state": self.state().as_str(),
            "lag_events": self.lag_events(),
            "lag_seconds": self.lag_seconds(),
            "owners": self.owners(),
            "open_dead_letters": self.open_dead_letters(),
            "partitions": self.partitions.iter().map(|partition| info_json(partition)).collect::<Vec<_>>(),
        })
    }
}

/// The listing's lines: each partitioned projection once, its partitions
/// after it.
fn lines(infos: &[ProjectionInfo]) -> Vec<Line<'_>> {
    let mut lines = Vec::new();
    let mut index = 0;
    while index < infos.len() {
        let Some((name, _)) = infos[index].partition() else {
            lines.push(Line::Projection(&infos[index]));
            index += 1;
            continue;
        };
        let partitions: Vec<&ProjectionInfo> = infos[index..]
            .iter()
            .take_while(|info| info.partition().is_some_and(|(of, _)| of == name))
            .collect();
        index += partitions.len();
        lines.push(Line::Partitioned(Partitioned {
            name,
            partitions: partitions.clone(),
        }));
        lines.extend(partitions.into_iter().map(Line::Partition));
    }
    lines
}

/// Every projection; a partitioned one as a whole, then each partition.
pub(crate) async fn list(admin: &Admin, as_json: bool) -> Result<(), Failure> {
    let infos = admin.projections().await?;
    let lines = lines(&infos);
    if as_json {
        let values: Vec<Value> = lines
            .iter()
            .filter_map(|line| match line {
                Line::Projection(info) => Some(info_json(info)),
                Line::Partitioned(partitioned) => Some(partitioned.json()),
                Line::Partition(_) => None,
            })
            .collect();
        output::json(&Value::Array(values));
        return Ok(());
    }
    let rows: Vec<Vec<String>> = lines
        .iter()
        .map(|line| match line {
            Line::Projection(info) => row(info, info.name.clone()),
            Line::Partition(info) => row(info, format!("  {}", info.name)),
            Line::Partitioned(partitioned) => {
                let owners = partitioned.owners();
                vec![
                    partitioned.name.to_owned(),
                    partitioned.state().as_str().to_owned(),
                    format!("{} partitions", partitioned.partitions.len()),
                    partitioned.lag_events().to_string(),
                    cell(
                        partitioned
                            .lag_seconds()
                            .map(|seconds| format!("{seconds:.1}s")),
                    ),
                    match owners.as_slice() {
                        [] => "-".to_owned(),
                        [one] => (*one).to_owned(),
                        many => format!("{} runners", many.len()),
                    },
                    "-".to_owned(),
                    partitioned.open_dead_letters().to_string(),
                    "-".to_owned(),
                ]
            }
        })
        .collect();
    output::table(
        &[
            "PROJECTION",
            "STATE",
            "CHECKPOINT",
            "LAG",
            "BEHIND",
            "OWNER",
            "LEASE UNTIL",
            "DEAD LETTERS",
            "REQUESTED",
        ],
        &rows,
    );
    for info in &infos {
        if let Some(reason) = &info.stop_reason {
            println!("{} stopped: {reason}", info.name);
        }
        if info.state() == ProjectionState::Lapsed {
            println!(
                "{}: the lease of {} ran out without being given up (killed or frozen); another runner takes it at its next try",
                info.name,
                info.owner.as_deref().unwrap_or("its runner")
            );
        }
    }
    Ok(())
}

/// A table row of one projection's or partition's row.
fn row(info: &ProjectionInfo, name: String) -> Vec<String> {
    vec![
        name,
        state(info).to_owned(),
        info.checkpoint.to_string(),
        info.lag_events.to_string(),
        cell(info.lag_seconds.map(|seconds| format!("{seconds:.1}s"))),
        cell(info.owner.clone()),
        cell(info.lease_expires_at.map(|at| at.to_rfc3339())),
        info.open_dead_letters.to_string(),
        cell(info.requested.map(|request| requested(info, request))),
    ]
}

fn letter_json(letter: &DeadLetter) -> Value {
    json!({
        "id": letter.id,
        "projection": letter.projection,
        "event_id": letter.event_id,
        "position": letter.position.to_string(),
        "stream": letter.stream.to_string(),
        "version": letter.version,
        "event_type": letter.event_type,
        "error": letter.error,
        "attempts": letter.attempts,
        "parked_at": letter.parked_at,
        "resolved_at": letter.resolved_at,
        "status": status(letter),
    })
}

fn status(letter: &DeadLetter) -> &'static str {
    match (letter.resolved_at, letter.skipped) {
        (None, _) => "open",
        (Some(_), true) => "skipped",
        (Some(_), false) => "replayed",
    }
}

/// `projection`'s dead letters.
pub(crate) async fn dead_letters(
    admin: &Admin,
    as_json: bool,
    projection: &str,
    all: bool,
) -> Result<(), Failure> {
    let letters = admin.dead_letters(projection, all).await?;
    output::listing(
        &letters,
        as_json,
        &[
            "ID",
            "STATUS",
            "STREAM",
            "VERSION",
            "TYPE",
            "ATTEMPTS",
            "PARKED AT",
            "ERROR",
        ],
        letter_json,
        |letter| {
            vec![
                letter.id.to_string(),
                status(letter).to_owned(),
                letter.stream.to_string(),
                letter.version.to_string(),
                letter.event_type.clone(),
                letter.attempts.to_string(),
                letter.parked_at.to_rfc3339(),
                letter.error.clone(),
            ]
        },
    );
    Ok(())
}

/// One dead letter with its event.
pub(crate) async fn dead_letter(admin: &Admin, as_json: bool, id: i64) -> Result<(), Failure> {
    let (letter, event) = admin.dead_letter(id).await?;
    let mut value = letter_json(&letter);
    value["event"] = event.as_ref().map_or(Value::Null, event_json);
    if as_json {
        output::json(&value);
    } else {
        println!(
            "{}",
            serde_json::to_string_pretty(&value).unwrap_or_default()
        );
    }
    Ok(())
}

/// Closes a dead letter as skipped.
pub(crate) async fn skip(admin: &Admin, as_json: bool, id: i64) -> Result<(), Failure> {
    let letter = admin.skip_dead_letter(id).await?;
    if as_json {
        output::json(&letter_json(&letter));
    } else {
        println!(
            "dead letter {id} ({} of {}) is skipped: {} goes on without it",
            letter.event_type, letter.stream, letter.projection
        );
    }
    Ok(())
}

/// Asks for a replay of the open dead letters and waits for it.
pub(crate) async fn replay(
    admin: &Admin,
    as_json: bool,
    projection: &str,
    wait: Wait,
) -> Result<(), Failure> {
    admin
        .request(projection, Request::ReplayDeadLetters)
        .await?;
    if !wait.no_wait {
        for row in admin.rows_of(projection).await? {
            follow(admin, &row, wait, Request::ReplayDeadLetters).await?;
        }
    }
    let open = admin.dead_letters(projection, false).await?.len();
    let message = if wait.no_wait {
        format!("replay of {projection}'s dead letters requested")
    } else {
        format!("{projection}'s dead letters replayed: {open} still open")
    };
    if as_json {
        output::json(&json!({ "done": message, "open": open }));
    } else {
        println!("{message}");
    }
    Ok(())
}

/// Asks for a rebuild and shows its progress until the projection has
/// caught up again.
pub(crate) async fn rebuild(
    admin: &Admin,
    as_json: bool,
    projection: &str,
    wait: Wait,
) -> Result<(), Failure> {
    admin.request(projection, Request::Rebuild).await?;
    if wait.no_wait {
        output::done(as_json, &format!("rebuild of {projection} requested"));
        return Ok(());
    }
    follow(admin, projection, wait, Request::Rebuild).await?;
    // Taken: the checkpoint is back at the start, and the whole log of its
    // types is to be replayed; now until the lag is gone.
    let total = admin.events_read_by(projection).await?;
    let mut progress = Progress::new(projection, !as_json, total);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(wait.timeout);
    loop {
        let info = known(admin, projection).await?;
        progress.show(&info);
        if info.lag_events == 0 {
            break;
        }
        if tokio::time::Instant::now() >= deadline {
            progress.finish();
            return Err(Failure::TimedOut(format!(
                "the rebuild of {projection} did not finish within {} s ({} events to go); its runner goes on",
                wait.timeout, info.lag_events
            )));
        }
        tokio::time::sleep(FOLLOW_EVERY).await;
    }
    progress.finish();
    output::done(as_json, &format!("{projection} is rebuilt"));
    Ok(())
}

/// Waits until the runner has taken `request` (it clears it once done),
/// saying so if no runner holds the lease.
async fn follow(
    admin: &Admin,
    projection: &str,
    wait: Wait,
    request: Request,
) -> Result<(), Failure> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(wait.timeout);
    let mut warned = false;
    loop {
        let info = known(admin, projection).await?;
        if info.requested != Some(request) {
            return Ok(());
        }
        // Recorded by the runner for this request: `request` cleared the
        // error of any earlier one.
        if let Some(error) = &info.request_error {
            return Err(Failure::Failed(format!(
                "the runner could not carry out the {} request for {projection} ({} attempts so far): {error}; \
                 it tries again at every poll until the request is withdrawn (`cqrs-admin withdraw {projection}`)",
                request.as_str(),
                info.request_failures
            )));
        }
        if !info.running && !warned {
            eprintln!("no runner holds {projection}'s lease: the request waits for one to start");
            warned = true;
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(Failure::TimedOut(format!(
                "no runner took the {} request for {projection} within {} s; it stays recorded",
                request.as_str(),
                wait.timeout
            )));
        }
        tokio::time::sleep(FOLLOW_EVERY).await;
    }
}

/// The projection's row, or "not found".
async fn known(admin: &Admin, projection: &str) -> Result<ProjectionInfo, Failure> {
    admin.projection(projection).await?.ok_or_else(|| {
        Failure::NotFound(format!(
            "no projection named `{projection}` has run in this schema"
        ))
    })
}

/// A rebuild's progress on stderr: one line redrawn on a terminal, a line
/// per tenth otherwise.
struct Progress<'a> {
    projection: &'a str,
    enabled: bool,
    terminal: bool,
    total: u64,
    last_tenth: Option<u64>,
}

impl<'a> Progress<'a> {
    fn new(projection: &'a str, enabled: bool, total: u64) -> Self {
        Self {
            projection,
            enabled,
            terminal: std::io::stderr().is_terminal(),
            total,
            last_tenth: None,
        }
    }

    fn show(&mut self, info: &ProjectionInfo) {
        if !self.enabled {
            return;
        }
        // Events appended since the total was counted are replayed too.
        self.total = self.total.max(info.lag_events);
        let done = self.total - info.lag_events.min(self.total);
        let percent = (done * 100).checked_div(self.total).unwrap_or(100);
        let bar_width = 30;
        let filled = usize::try_from(percent * bar_width / 100).unwrap_or(0);
        let line = format!(
            "rebuilding {} [{}{}] {done}/{} events ({percent}%)",
            self.projection,
            "#".repeat(filled),
            " ".repeat(usize::try_from(bar_width).unwrap_or(0) - filled),
            self.total
        );
        let mut stderr = std::io::stderr();
        if self.terminal {
            let _ = write!(stderr, "\r{line}");
            let _ = stderr.flush();
        } else if self.last_tenth != Some(percent / 10) {
            self.last_tenth = Some(percent / 10);
            let _ = writeln!(stderr, "{line}");
        }
    }

    fn finish(&self) {
        if self.enabled && self.terminal {
            eprintln!();
        }
    }
}
