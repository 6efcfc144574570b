//! Whatever a store accepts, it reads back (DESIGN invariant 6): edge input
//! is refused before anything is written, with the same typed error in every
//! store, and generated payloads that are accepted come back equal.

use std::collections::BTreeMap;

use cqrskit::limits::{MAX_AGGREGATE_ID_BYTES, MAX_DEPTH, MAX_TYPE_NAME_BYTES};
use cqrskit::{ExpectedVersion, LogFilter, Metadata, NewEvent, Position, StoreError, StreamId};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::Store;
use crate::fixtures::{event, stream};

/// Appends `events` to `stream` and expects the append refused as invalid,
/// naming `fault` (an event id, or none for the stream) and `reason_part`.
async fn must_refuse(
    store: &Store,
    stream: &StreamId,
    events: Vec<NewEvent>,
    fault: Option<Uuid>,
    reason_part: &str,
) {
    match store
        .append(stream, ExpectedVersion::NoStream, events)
        .await
    {
        Err(StoreError::InvalidEvent {
            stream: refused,
            event_id,
            reason,
        }) => {
            assert_eq!(&refused, stream);
            assert_eq!(event_id, fault, "{reason}");
            assert!(
                reason.contains(reason_part),
                "`{reason}` should say `{reason_part}`"
            );
        }
        other => panic!("expected the append refused for `{reason_part}`, got {other:?}"),
    }
}

/// NUL characters, over-long names and ids, schema version 0 and payloads
/// nested too deep are refused before anything is written, by every store
/// alike; the same values just inside the limits are stored and read back.
pub async fn edge_input_is_refused_alike_before_anything_is_written(store: Store) {
    let good = event("Ticked", r#"{"n":1}"#);
    must_refuse(&store, &stream("nul\0id"), vec![good.clone()], None, "NUL").await;
    let long_id = "i".repeat(MAX_AGGREGATE_ID_BYTES + 1);
    must_refuse(
        &store,
        &stream(&long_id),
        vec![good.clone()],
        None,
        "limit is 1024",
    )
    .await;
    let long_type = StreamId::new("t".repeat(MAX_TYPE_NAME_BYTES + 1), "a");
    must_refuse(&store, &long_type, vec![good.clone()], None, "limit is 255").await;

    let mut cases = Vec::new();
    let mut nul_type = event("Tick\0ed", "{}");
    nul_type.event_version = 1;
    cases.push((nul_type, "NUL"));
    cases.push((event("Ticked", r#"{"text":"a\u0000b"}"#), "\\u0000"));
    let mut nul_metadata = event("Ticked", "{}");
    nul_metadata.metadata = Metadata::new().with_entry("user", "a\0b");
    cases.push((nul_metadata, "metadata contains a NUL"));
    let mut version_zero = event("Ticked", "{}");
    version_zero.event_version = 0;
    cases.push((version_zero, "schema version 0"));
    let mut too_deep = event("Ticked", "{}");
    too_deep.payload = serde_json::value::to_raw_value(&nest_value(MAX_DEPTH + 1))
        .expect("serde_json writes any depth");
    cases.push((too_deep, "would not read back"));
    for (bad, reason) in cases {
        // The bad event second: the whole batch is refused, not a prefix.
        let id = bad.event_id;
        must_refuse(
            &store,
            &stream("edge"),
            vec![good.clone(), bad],
            Some(id),
            reason,
        )
        .await;
    }
    assert_eq!(
        store
            .stream_version(&stream("edge"))
            .await
            .expect("version"),
        0
    );
    let log = store
        .read_log(Position::START, &LogFilter::all(), 10)
        .await
        .expect("read the log");
    assert!(log.is_empty(), "a refused append wrote {log:?}");

    // At the limits: accepted, and read back as written.
    let at_limit = stream(&"i".repeat(MAX_AGGREGATE_ID_BYTES));
    let deepest = serde_json::to_string(&nest_value(MAX_DEPTH)).expect("serializes");
    let mut edge = event("Ticked", &deepest);
    edge.event_version = u32::try_from(i32::MAX).expect("fits");
    edge.metadata = Metadata::new().with_entry("escaped", "\\u0000 is text here");
    store
        .append(&at_limit, ExpectedVersion::NoStream, vec![edge.clone()])
        .await
        .expect("values inside the limits are stored");
    let stored = store
        .read_stream(&at_limit, 1, 10)
        .await
        .expect("read back");
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].event_version, edge.event_version);
    assert_eq!(stored[0].metadata, edge.metadata);
    let back: serde_json::Value =
        serde_json::from_str(stored[0].payload.get()).expect("the payload reads back");
    assert_eq!(back, nest_value(MAX_DEPTH));
}

fn nest_value(levels: usize) -> serde_json::Value {
    (0..levels).fold(serde_json::Value::Null, |inner, _| {
        serde_json::Value::Array(vec![inner])
    })
}

/// A payload shape with every kind of value JSON has trouble with.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
enum Tree {
    Float(f64),
    Single(f32),
    Maybe(Option<f64>),
    Int(i64),
    Huge(u128),
    Text(String),
    List(Vec<Tree>),
    Map(BTreeMap<String, Tree>),
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, cqrskit::DomainEvent)]
enum Generated {
    Recorded(Tree),
}

impl Tree {
    /// JSON levels of the payload: `{"List":[...]}` opens two.
    fn depth(&self) -> usize {
        match self {
            Tree::List(items) => 2 + items.iter().map(Tree::depth).max().unwrap_or(0),
            Tree::Map(items) => 2 + items.values().map(Tree::depth).max().unwrap_or(0),
            _ => 1,
        }
    }

    fn non_finite(&self) -> bool {
        match self {
            Tree::Float(x) | Tree::Maybe(Some(x)) => !x.is_finite(),
            Tree::Single(x) => !x.is_finite(),
            Tree::List(items) => items.iter().any(Tree::non_finite),
            Tree::Map(items) => items.values().any(Tree::non_finite),
            _ => false,
        }
    }

    fn nul(&self) -> bool {
        match self {
            Tree::Text(text) => text.contains('\0'),
            Tree::List(items) => items.iter().any(Tree::nul),
            Tree::Map(items) => items
                .iter()
                .any(|(key, value)| key.contains('\0') || value.nul()),
            _ => false,
        }
    }
}

/// A small deterministic generator (xorshift), so a failure replays exactly.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn float(&mut self) -> f64 {
        const SPECIAL: [f64; 12] = [
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            -0.0,
            f64::MIN_POSITIVE,
            5e-324,
            f64::MAX,
            1e16,
            0.1,
            1e300,
            -123.456,
            9_007_199_254_740_993.0,
        ];
        match self.below(3) {
            0 => SPECIAL[usize::try_from(self.below(12)).unwrap_or(0)],
            1 => f64::from_bits(self.next()),
            _ => (self.next() as f64) / 1e6 - 9e12,
        }
    }

    fn text(&mut self) -> String {
        const PIECES: [&str; 10] = [
            "a", "\0", "\u{1}", "\"", "\\", "\\u0000", "é", "🦀", "\u{2028}", " ",
        ];
        (0..self.below(6))
            .map(|_| PIECES[usize::try_from(self.below(10)).unwrap_or(0)])
            .collect()
    }

    fn tree(&mut self, depth_left: u32) -> Tree {
        let kinds = if depth_left == 0 { 6 } else { 9 };
        match self.below(kinds) {
            0 => Tree::Float(self.float()),
            1 => Tree::Single(self.float() as f32),
            2 => Tree::Maybe((self.below(2) == 0).then(|| self.float())),
            3 => Tree::Int(self.next() as i64),
            4 => Tree::Huge(u128::from(self.next()) << 64 | u128::from(self.next())),
            5 => Tree::Text(self.text()),
            6 | 7 => Tree::List(
                (0..self.below(3) + 1)
                    .map(|_| self.tree(depth_left - 1))
                    .collect(),
            ),
            _ => Tree::Map(
                (0..self.below(3))
                    .map(|_| (self.text(), self.tree(depth_left - 1)))
                    .collect(),
            ),
        }
    }

    /// Now and then a chain deep enough to cross the nesting limit.
    fn deep(&mut self) -> Tree {
        let levels = 55 + self.below(20);
        (0..levels).fold(self.tree(1), |inner, _| Tree::List(vec![inner]))
    }
}

/// Generated payloads (non-finite floats, NUL characters, huge integers,
/// odd strings, deep nesting): every event is either refused at write time
/// for the reason an independent check predicts, or stored and read back
/// equal to what was written.
pub async fn whatever_is_accepted_reads_back_equal(store: Store) {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let (mut stored, mut refused) = (0, 0);
    for case in 0..300 {
        let tree = if case % 10 == 9 {
            rng.deep()
        } else {
            rng.tree(4)
        };
        let event = Generated::Recorded(tree.clone());
        let new_event = match NewEvent::from_event(&event, Metadata::new()) {
            Err(error) => {
                let reason = error.to_string();
                let expected = tree.non_finite() || tree.depth() > MAX_DEPTH;
                assert!(expected, "case {case}: {tree:?} refused: {reason}");
                assert!(
                    reason.contains("non-finite") || reason.contains("nested deeper"),
                    "case {case}: {reason}"
                );
                refused += 1;
                continue;
            }
            Ok(new_event) => new_event,
        };
        assert!(
            !tree.non_finite() && tree.depth() <= MAX_DEPTH,
            "case {case}: {tree:?} should not encode"
        );
        let id = format!("generated-{case}");
        match store
            .append(&stream(&id), ExpectedVersion::NoStream, vec![new_event])
            .await
        {
            Err(StoreError::InvalidEvent { reason, .. }) => {
                assert!(tree.nul(), "case {case}: {tree:?} refused: {reason}");
                refused += 1;
                continue;
            }
            Err(other) => panic!("case {case}: {tree:?}: {other}"),
            Ok(_) => assert!(!tree.nul(), "case {case}: a NUL was accepted"),
        }
        let back = store.read_stream(&stream(&id), 1, 2).await.expect("read");
        assert_eq!(back.len(), 1);
        let decoded = back[0]
            .decode_ref::<Generated>()
            .unwrap_or_else(|error| panic!("case {case}: stored but unreadable: {error}"));
        assert_eq!(decoded.payload, event, "case {case} changed on the way");
        stored += 1;
    }
    assert!(
        stored > 100 && refused > 30,
        "stored {stored}, refused {refused}"
    );
}
