//! The report of a failed expectation on events: expected and actual side
//! by side, each differing position marked.

use std::fmt::{Debug, Write as _};

/// `what` names who produced the events (`the command`).
pub(super) fn event_diff<E: Debug + PartialEq>(what: &str, expected: &[E], actual: &[E]) -> String {
    let mut report = format!(
        "{what} produced other events than expected ({} expected, {} actual)\n",
        expected.len(),
        actual.len()
    );
    for index in 0..expected.len().max(actual.len()) {
        match (expected.get(index), actual.get(index)) {
            (Some(e), Some(a)) if e == a => {
                let _ = writeln!(report, "    [{index}] {e:?}");
            }
            (e, a) => {
                if let Some(e) = e {
                    let _ = writeln!(report, "  - [{index}] {e:?}");
                }
                if let Some(a) = a {
                    let _ = writeln!(report, "  + [{index}] {a:?}");
                }
            }
        }
    }
    report.push_str("  (- expected, + actual)");
    report
}
