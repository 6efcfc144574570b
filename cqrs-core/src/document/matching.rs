//! Containment of one JSON value in another, as PostgreSQL's `jsonb @>`
//! decides it, so that a query by field answers the same in every store.

use serde_json::{Number, Value};

/// Whether `document` contains `pattern`: an object contains another when
/// it holds each of its keys with a value that contains the pattern's; an
/// array contains another when each of the pattern's elements is contained
/// in one of its elements (order and count do not matter); scalars contain
/// equal scalars (numbers by value, `1` and `1.0` alike). The rules of
/// PostgreSQL's `jsonb @>` for an object pattern.
pub fn contains(document: &Value, pattern: &Value) -> bool {
    match (document, pattern) {
        (Value::Object(document), Value::Object(pattern)) => pattern.iter().all(|(key, wanted)| {
            document
                .get(key)
                .is_some_and(|value| contains(value, wanted))
        }),
        (Value::Array(document), Value::Array(pattern)) => pattern
            .iter()
            .all(|wanted| document.iter().any(|value| contains(value, wanted))),
        (Value::Number(a), Value::Number(b)) => same_number(a, b),
        (Value::Array(_) | Value::Object(_), _) | (_, Value::Array(_) | Value::Object(_)) => false,
        (a, b) => a == b,
    }
}

/// Whether two JSON numbers are equal as PostgreSQL's `numeric` compares
/// them: exactly (`1` and `1.0` alike, but not two integers past 2^53 that
/// one `f64` holds).
fn same_number(a: &Number, b: &Number) -> bool {
    if let (Some(a), Some(b)) = (a.as_i64(), b.as_i64()) {
        return a == b;
    }
    if let (Some(a), Some(b)) = (a.as_u64(), b.as_u64()) {
        return a == b;
    }
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => x == y && exact_in_f64(a) && exact_in_f64(b),
        _ => false,
    }
}

/// Whether `n` is a float, or an integer an `f64` holds exactly.
fn exact_in_f64(n: &Number) -> bool {
    const EXACT: u64 = 1 << 53;
    match (n.as_i64(), n.as_u64()) {
        (Some(i), _) => i.unsigned_abs() <= EXACT,
        (None, Some(u)) => u <= EXACT,
        (None, None) => true,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::contains;

    #[test]
    fn containment_follows_jsonb() {
        let doc = json!({
            "customer": {"id": "c-1", "tier": "gold"},
            "status": "paid",
            "total": 1200,
            "skus": ["a", "b"],
            "lines": [{"sku": "a", "qty": 2}, {"sku": "b", "qty": 1}]
        });
        assert!(contains(&doc, &json!({})));
        assert!(contains(&doc, &json!({"status": "paid"})));
        assert!(contains(&doc, &json!({"customer": {"id": "c-1"}})));
        assert!(contains(&doc, &json!({"total": 1200.0})));
        assert!(contains(&doc, &json!({"skus": ["b"]})));
        assert!(contains(&doc, &json!({"lines": [{"sku": "b"}]})));
        assert!(!contains(&doc, &json!({"status": "shipped"})));
        assert!(!contains(&doc, &json!({"customer": {"id": "c-2"}})));
        assert!(!contains(&doc, &json!({"missing": null})));
        assert!(!contains(&doc, &json!({"skus": ["c"]})));
        assert!(!contains(&doc, &json!({"lines": [{"sku": "a", "qty": 1}]})));
        assert!(!contains(&doc, &json!({"total": "1200"})));
        assert!(!contains(&doc, &json!({"customer": "c-1"})));
        // Large integers compare exactly, as numeric does.
        let big = json!({"id": 9_007_199_254_740_992_u64});
        assert!(contains(&big, &json!({"id": 9_007_199_254_740_992_u64})));
        assert!(!contains(&big, &json!({"id": 9_007_199_254_740_993_u64})));
        assert!(!contains(
            &json!({"id": 9_007_199_254_740_993_u64}),
            &json!({"id": 9_007_199_254_740_992.0})
        ));
        assert!(contains(&json!({"n": -3}), &json!({"n": -3.0})));
    }
}
