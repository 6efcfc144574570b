//! Containment of one JSON value in another, as PostgreSQL's `jsonb @>`
//! decides it, so that a query by field answers the same in every store.

use serde_json::Value;

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
        (Value::Number(a), Value::Number(b)) => a == b || a.as_f64() == b.as_f64(),
        (Value::Array(_) | Value::Object(_), _) | (_, Value::Array(_) | Value::Object(_)) => false,
        (a, b) => a == b,
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
    }
}
