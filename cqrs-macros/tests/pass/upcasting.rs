//! Schema evolution on read: a payload stored under an older schema version
//! goes through the variant's upcaster before it is decoded; stored rows are
//! never rewritten.

use cqrskit::{DomainEvent, PayloadError};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

#[derive(Debug, PartialEq, Serialize, Deserialize, DomainEvent)]
enum AccountEvent {
    /// Version 1 stored `{"amount": <whole euros>}`; version 2 counts cents
    /// and names the currency.
    #[event(version = 2, upcast = deposit_from_v1)]
    Deposited { cents: u64, currency: String },
    /// Version 2 only added a field with a serde default: no upcaster needed.
    #[event(version = 2)]
    Withdrawn {
        cents: u64,
        #[serde(default)]
        note: String,
    },
}

fn deposit_from_v1(version: u32, payload: Value) -> Result<Value, String> {
    match version {
        1 => {
            let euros = payload["amount"].as_u64().ok_or("v1 deposit without a whole amount")?;
            Ok(json!({ "cents": euros * 100, "currency": "EUR" }))
        }
        other => Err(format!("no upcaster from version {other}")),
    }
}

fn raw(value: Value) -> Box<cqrskit::__private::serde_json::value::RawValue> {
    serde_json::value::to_raw_value(&value).unwrap()
}

fn main() {
    let old = raw(json!({ "amount": 12 }));
    assert_eq!(
        AccountEvent::decode("Deposited", 1, old.get()).unwrap(),
        AccountEvent::Deposited { cents: 1200, currency: "EUR".into() }
    );
    let current = raw(json!({ "cents": 7, "currency": "USD" }));
    assert_eq!(
        AccountEvent::decode("Deposited", 2, current.get()).unwrap(),
        AccountEvent::Deposited { cents: 7, currency: "USD".into() }
    );
    let broken = raw(json!({ "amount": "twelve" }));
    let error = AccountEvent::decode("Deposited", 1, broken.get()).unwrap_err();
    assert!(matches!(error, PayloadError::Upcast { event_version: 1, .. }), "{error}");
    assert!(error.to_string().contains("v1 deposit without a whole amount"), "{error}");

    let old_withdrawal = raw(json!({ "cents": 3 }));
    assert_eq!(
        AccountEvent::decode("Withdrawn", 1, old_withdrawal.get()).unwrap(),
        AccountEvent::Withdrawn { cents: 3, note: String::new() }
    );
}
