use super::*;

fn event() -> CloudEvent {
    CloudEvent {
        id: "01a22e51-d147-7729-a68f-bb38dda96a32".into(),
        source: "/orders".into(),
        event_type: "com.example.order.placed.v1".into(),
        time: Some(Utc::now()),
        subject: Some("order/42 ünïcode".into()),
        data_content_type: JSON.into(),
        data: RawValue::from_string(r#"{"order":42,"total":"19.90"}"#.into()).expect("json"),
        extensions: BTreeMap::from([
            ("correlationid".into(), Value::String("abc".into())),
            ("streamversion".into(), Value::from(7)),
        ]),
    }
}

#[test]
fn both_modes_read_back_what_they_wrote() {
    let written = event();
    for mode in [ContentMode::Structured, ContentMode::Binary] {
        let (headers, body) = written.encode(mode).expect("encode");
        let read = CloudEvent::decode(Some(&headers), &body).expect("decode");
        assert_eq!(read.id, written.id);
        assert_eq!(read.source, written.source);
        assert_eq!(read.event_type, written.event_type);
        assert_eq!(read.subject, written.subject, "{mode:?}");
        assert_eq!(read.time.map(format_time), written.time.map(format_time));
        let data: Value = read.data_as().expect("data");
        assert_eq!(data["order"], 42);
        assert_eq!(read.extension("correlationid").as_deref(), Some("abc"));
        assert_eq!(read.extension("streamversion").as_deref(), Some("7"));
    }
}

#[test]
fn extension_names_follow_the_spec() {
    for good in ["correlationid", "a1", "x".repeat(20).as_str()] {
        assert_eq!(check_extension_name(good), Ok(()), "{good}");
    }
    for bad in [
        "",
        "CorrelationId",
        "correlation_id",
        "x".repeat(21).as_str(),
        "type",
    ] {
        assert!(check_extension_name(bad).is_err(), "{bad}");
    }
    let mut bad = event();
    bad.extensions.insert("Bad-Name".into(), Value::from(1));
    assert!(matches!(
        bad.encode(ContentMode::Binary),
        Err(CloudEventError::ExtensionName(_))
    ));
}

#[test]
fn a_message_without_the_required_attributes_is_refused_by_name() {
    let (mut headers, body) = event().encode(ContentMode::Binary).expect("encode");
    headers.insert("ce-source", "");
    assert_eq!(
        CloudEvent::decode(Some(&headers), &body).err(),
        Some(CloudEventError::Missing("source"))
    );
    assert_eq!(
        CloudEvent::decode(None, b"{}").err(),
        Some(CloudEventError::NotACloudEvent)
    );
    let mut structured = HeaderMap::new();
    structured.insert(CONTENT_TYPE, STRUCTURED_CONTENT_TYPE);
    let body = br#"{"specversion":"0.3","id":"1","source":"/x","type":"t"}"#;
    assert_eq!(
        CloudEvent::decode(Some(&structured), body).err(),
        Some(CloudEventError::SpecVersion("0.3".into()))
    );
}

#[test]
fn a_command_id_follows_the_events_identity() {
    let stream = cqrskit_core::StreamId::new("shipment", "42");
    let placed = event();
    let id = placed.command_id(&stream, "Prepare");
    assert_eq!(
        id,
        placed.clone().command_id(&stream, "Prepare"),
        "the same on every delivery"
    );
    let elsewhere = CloudEvent {
        source: "/billing".into(),
        ..event()
    };
    assert_ne!(
        id,
        elsewhere.command_id(&stream, "Prepare"),
        "the source is part of the identity"
    );
    let another = CloudEvent {
        id: "another".into(),
        ..event()
    };
    assert_ne!(id, another.command_id(&stream, "Prepare"));
    assert_ne!(id, placed.command_id(&stream, "Cancel"));
}
