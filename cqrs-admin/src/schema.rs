//! The schema against the migrations this build ships: what `migrate` would
//! apply, and whether a newer version migrated it already.

use cqrskit::postgres::{PostgresEventStore, SchemaStatus};
use serde_json::json;

use crate::failure::Failure;
use crate::output;

/// Each migration with its state: the shipped ones in order, then those a
/// newer version applied.
fn rows(status: &SchemaStatus) -> Vec<(i64, String, &'static str)> {
    let mut rows: Vec<(i64, String, &'static str)> = Vec::new();
    let groups = [
        (&status.applied, "applied"),
        (&status.pending, "pending"),
        (&status.modified, "modified"),
        (&status.failed, "failed"),
    ];
    for (names, state) in groups {
        rows.extend(
            names
                .iter()
                .map(|name| (name.version, name.description.clone(), state)),
        );
    }
    rows.sort_by_key(|row| row.0);
    rows.extend(
        status
            .newer
            .iter()
            .map(|&version| (version, "-".to_owned(), "newer")),
    );
    rows
}

/// Prints the schema's migrations; fails (exit 5) when one this build ships
/// is pending, modified or failed, so a deploy script can stop on it.
pub(crate) async fn status(store: &PostgresEventStore, as_json: bool) -> Result<(), Failure> {
    let status = store.schema_status().await.map_err(Failure::from_display)?;
    let rows = rows(&status);
    if as_json {
        let migrations: Vec<_> = rows
            .iter()
            .map(|(version, description, state)| {
                json!({ "version": version, "description": description, "state": state })
            })
            .collect();
        output::json(&json!({
            "schema": status.schema,
            "current": status.is_current(),
            "migrations": migrations,
        }));
    } else {
        let cells: Vec<Vec<String>> = rows
            .into_iter()
            .map(|(version, description, state)| {
                vec![version.to_string(), description, state.to_owned()]
            })
            .collect();
        output::table(&["VERSION", "DESCRIPTION", "STATE"], &cells);
        // What is missing goes to stderr, with the exit code, below.
        if status.is_current() {
            println!("{status}");
        }
    }
    if status.is_current() {
        Ok(())
    } else {
        Err(Failure::NotCurrent(status.to_string()))
    }
}
