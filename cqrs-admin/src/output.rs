//! Tables for people, JSON for scripts.

use serde_json::Value;

/// Columns aligned under their headers; each row as many cells as headers.
pub(crate) fn table(headers: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = headers
        .iter()
        .map(|header| header.chars().count())
        .collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        println!("{}", padded.join("  ").trim_end());
    };
    line(headers.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}

/// `items` as one JSON array (each through `json`), or as a table under
/// `headers` (each through `row`).
pub(crate) fn listing<T>(
    items: &[T],
    as_json: bool,
    headers: &[&str],
    json_of: impl Fn(&T) -> Value,
    row: impl Fn(&T) -> Vec<String>,
) {
    if as_json {
        json(&Value::Array(items.iter().map(json_of).collect()));
    } else {
        let rows: Vec<Vec<String>> = items.iter().map(row).collect();
        table(headers, &rows);
    }
}

/// `value` as one line of JSON.
pub(crate) fn json(value: &Value) {
    println!("{value}");
}

/// A command's confirmation: a sentence, or `{"done": "..."}`.
pub(crate) fn done(as_json: bool, message: &str) {
    if as_json {
        json(&serde_json::json!({ "done": message }));
    } else {
        println!("{message}");
    }
}

/// An optional value for a table cell.
pub(crate) fn cell<T: std::fmt::Display>(value: Option<T>) -> String {
    value.map_or_else(|| "-".to_owned(), |value| value.to_string())
}

/// More rows of a table whose header went out already (a followed log):
/// cells separated, not aligned, since the widths ahead are unknown.
pub(crate) fn rows(headers: &[&str], rows: &[Vec<String>]) {
    for row in rows {
        debug_assert_eq!(row.len(), headers.len());
        println!("{}", row.join("  "));
    }
}
