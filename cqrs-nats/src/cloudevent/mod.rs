//! CloudEvents 1.0 on NATS messages: an integration event's attributes and
//! data, written in structured mode (the JSON event format as the body) or
//! binary mode (the attributes as `ce-` headers, the data alone as the body),
//! and read back from either.

use std::collections::BTreeMap;

use async_nats::HeaderMap;
use bytes::Bytes;
use chrono::{DateTime, SecondsFormat, Utc};
use cqrskit_core::Metadata;
use serde_json::Value;
use serde_json::value::RawValue;

/// The CloudEvents version this crate writes and reads.
pub const SPEC_VERSION: &str = "1.0";

/// The media type of a structured-mode message: the JSON event format.
pub const STRUCTURED_CONTENT_TYPE: &str = "application/cloudevents+json";

/// The media type of the data this crate writes.
pub const JSON: &str = "application/json";

/// The prefix of a binary-mode attribute header.
const HEADER_PREFIX: &str = "ce-";

/// The header that carries a structured message's media type, and a binary
/// message's `datacontenttype`.
const CONTENT_TYPE: &str = "content-type";

/// How a message carries its CloudEvent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ContentMode {
    /// The whole event as one JSON object in the body, with
    /// `content-type: application/cloudevents+json`: the JSON event format,
    /// which every CloudEvents reader of NATS understands.
    #[default]
    Structured,
    /// Each attribute in a header of its own (`ce-id`, `ce-type`, ...), the
    /// data's media type in `content-type`, the data alone as the body, as
    /// the HTTP binding does: a subscriber can route or filter on an
    /// attribute without parsing the body. Needs NATS 2.2 or later.
    Binary,
}

/// Why a message is not a CloudEvent this crate can read, or an event
/// cannot be written as one.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum CloudEventError {
    /// The message has neither a structured content type nor a
    /// `ce-specversion` header.
    #[error(
        "not a CloudEvent: no `content-type: {STRUCTURED_CONTENT_TYPE}` and no `ce-specversion` header"
    )]
    NotACloudEvent,
    /// A required attribute is missing or empty.
    #[error("the required attribute `{0}` is missing or empty")]
    Missing(&'static str),
    /// Another CloudEvents version.
    #[error("specversion `{0}` is not supported (only {SPEC_VERSION})")]
    SpecVersion(String),
    /// `time` is not an RFC 3339 timestamp.
    #[error("`time` is not an RFC 3339 timestamp: `{0}`")]
    Time(String),
    /// An extension attribute's name breaks the spec's naming rule.
    #[error(
        "extension attribute name `{0}` must be 1 to 20 characters of a-z and 0-9 and not a context attribute"
    )]
    ExtensionName(String),
    /// An attribute of the wrong JSON type, or data that is not JSON.
    #[error("{0}")]
    Malformed(String),
}

/// One CloudEvent: its context attributes and its JSON data.
#[derive(Clone, Debug)]
pub struct CloudEvent {
    /// `id`: unique within `source` (this crate writes the event id).
    pub id: String,
    /// `source`: a URI reference naming the producing context (`/orders`).
    pub source: String,
    /// `type`: what happened, in the publisher's public vocabulary
    /// (`com.example.order.placed.v1`).
    pub event_type: String,
    /// `time`: when it happened (this crate writes when it was recorded).
    pub time: Option<DateTime<Utc>>,
    /// `subject`: what it happened to, within `source`
    /// (`<aggregate type>/<aggregate id>`).
    pub subject: Option<String>,
    /// `datacontenttype` (`application/json`).
    pub data_content_type: String,
    /// `data`, as JSON text.
    pub data: Box<RawValue>,
    /// Extension attributes, by name: a string, an integer or a boolean.
    pub extensions: BTreeMap<String, Value>,
}

/// The context attributes the spec defines, which no extension may reuse.
const CONTEXT_ATTRIBUTES: &[&str] = &[
    "specversion",
    "id",
    "source",
    "type",
    "time",
    "subject",
    "datacontenttype",
    "dataschema",
    "data",
    "data_base64",
];

/// Checks an extension attribute's name against the spec's rule: lower-case
/// a-z and 0-9 only, at most 20 characters, and not a context attribute.
///
/// # Errors
///
/// [`CloudEventError::ExtensionName`].
pub fn check_extension_name(name: &str) -> Result<(), CloudEventError> {
    let valid = (1..=20).contains(&name.len())
        && name
            .bytes()
            .all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit())
        && !CONTEXT_ATTRIBUTES.contains(&name);
    if valid {
        Ok(())
    } else {
        Err(CloudEventError::ExtensionName(name.to_owned()))
    }
}

impl CloudEvent {
    /// Metadata for commands a handler executes because of this event: its
    /// correlation id carried over, its id as causation id (when they are
    /// UUIDs, as the relay writes them).
    pub fn command_metadata(&self) -> Metadata {
        let uuid = |text: Option<String>| text.and_then(|text| uuid::Uuid::parse_str(&text).ok());
        let mut metadata = Metadata::new();
        metadata.correlation_id = uuid(self.extension("correlationid"));
        metadata.causation_id = uuid(Some(self.id.clone()));
        metadata
    }

    /// The id of the command a handler of this event sends to `stream`
    /// (`command_type` as [`Command::command_type`](cqrskit_core::Command::command_type)
    /// names it), derived from the event's `source` and `id`: give it to
    /// [`execute_once`](cqrskit_core::CommandPipeline::execute_once), and a
    /// message delivered again (after a crash before its acknowledgement)
    /// issues its command once.
    pub fn command_id(&self, stream: &cqrskit_core::StreamId, command_type: &str) -> uuid::Uuid {
        cqrskit_core::command_id::for_message(&self.source, &self.id, stream, command_type)
    }

    /// Writes the event as a NATS message body with its headers.
    ///
    /// # Errors
    ///
    /// [`CloudEventError::ExtensionName`] for an extension the spec does not
    /// allow, [`CloudEventError::Missing`] for an empty required attribute,
    /// [`CloudEventError::Malformed`] for an extension that is not a string,
    /// an integer or a boolean.
    pub fn encode(&self, mode: ContentMode) -> Result<(HeaderMap, Bytes), CloudEventError> {
        self.check()?;
        let mut headers = HeaderMap::new();
        match mode {
            ContentMode::Structured => {
                headers.insert(CONTENT_TYPE, STRUCTURED_CONTENT_TYPE);
                let body = serde_json::to_vec(&self.structured())
                    .map_err(|error| CloudEventError::Malformed(error.to_string()))?;
                Ok((headers, Bytes::from(body)))
            }
            ContentMode::Binary => {
                let mut attribute = |name: &str, value: &str| {
                    headers.insert(
                        format!("{HEADER_PREFIX}{name}").as_str(),
                        percent_encode(value).as_str(),
                    );
                };
                attribute("specversion", SPEC_VERSION);
                attribute("id", &self.id);
                attribute("source", &self.source);
                attribute("type", &self.event_type);
                if let Some(time) = self.time {
                    attribute("time", &format_time(time));
                }
                if let Some(subject) = &self.subject {
                    attribute("subject", subject);
                }
                for (name, value) in &self.extensions {
                    attribute(name, &extension_text(value));
                }
                headers.insert(CONTENT_TYPE, self.data_content_type.as_str());
                Ok((headers, Bytes::copy_from_slice(self.data.get().as_bytes())))
            }
        }
    }

    /// Reads a CloudEvent from a NATS message, in whichever mode it came.
    ///
    /// # Errors
    ///
    /// [`CloudEventError`] naming what is missing or malformed.
    pub fn decode(headers: Option<&HeaderMap>, body: &[u8]) -> Result<Self, CloudEventError> {
        // Header names compare without case: other producers may write
        // `Ce-Id` or `Content-Type`.
        let header = |name: &str| {
            headers?
                .iter()
                .find(|(key, _)| AsRef::<str>::as_ref(key).eq_ignore_ascii_case(name))
                .and_then(|(_, values)| values.first())
                .map(|value| value.as_str().to_owned())
        };
        if header(CONTENT_TYPE).is_some_and(|value| value.starts_with("application/cloudevents")) {
            return Self::from_json(body);
        }
        let Some(spec) = header("ce-specversion") else {
            return Err(CloudEventError::NotACloudEvent);
        };
        let attribute = |name: &'static str| -> Result<Option<String>, CloudEventError> {
            header(&format!("{HEADER_PREFIX}{name}"))
                .map(|value| percent_decode(&value))
                .transpose()
        };
        let required = |name: &'static str| {
            attribute(name)?
                .filter(|value| !value.is_empty())
                .ok_or(CloudEventError::Missing(name))
        };
        let spec = percent_decode(&spec)?;
        if spec != SPEC_VERSION {
            return Err(CloudEventError::SpecVersion(spec));
        }
        let time = attribute("time")?
            .map(|time| parse_time(&time))
            .transpose()?;
        let data = std::str::from_utf8(body).map_err(|error| {
            CloudEventError::Malformed(format!("the data is not UTF-8: {error}"))
        })?;
        let data = RawValue::from_string(data.to_owned()).map_err(|error| {
            CloudEventError::Malformed(format!("the data is not JSON: {error}"))
        })?;
        let mut extensions = BTreeMap::new();
        for (name, values) in headers.into_iter().flat_map(|headers| headers.iter()) {
            let name = name.to_string().to_ascii_lowercase();
            let Some(extension) = name.strip_prefix(HEADER_PREFIX) else {
                continue;
            };
            if CONTEXT_ATTRIBUTES.contains(&extension) {
                continue;
            }
            check_extension_name(extension)?;
            if let Some(value) = values.first() {
                let text = percent_decode(value.as_str())?;
                extensions.insert(extension.to_owned(), Value::String(text));
            }
        }
        Ok(Self {
            id: required("id")?,
            source: required("source")?,
            event_type: required("type")?,
            time,
            subject: attribute("subject")?,
            data_content_type: header(CONTENT_TYPE).unwrap_or_else(|| JSON.to_owned()),
            data,
            extensions,
        })
    }

    /// An extension attribute as text, whatever mode it came in (binary mode
    /// carries every attribute as text).
    pub fn extension(&self, name: &str) -> Option<String> {
        self.extensions.get(name).map(extension_text)
    }

    /// The data, deserialized.
    ///
    /// # Errors
    ///
    /// When the data does not deserialize into `T`.
    pub fn data_as<T: serde::de::DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_str(self.data.get())
    }

    fn check(&self) -> Result<(), CloudEventError> {
        for (name, value) in [
            ("id", &self.id),
            ("source", &self.source),
            ("type", &self.event_type),
        ] {
            if value.is_empty() {
                return Err(CloudEventError::Missing(name));
            }
        }
        for (name, value) in &self.extensions {
            check_extension_name(name)?;
            if !(value.is_string() || value.is_i64() || value.is_u64() || value.is_boolean()) {
                return Err(CloudEventError::Malformed(format!(
                    "extension `{name}` must be a string, an integer or a boolean, not {value}"
                )));
            }
        }
        Ok(())
    }

    /// The JSON event format's object, the data written as it is (its
    /// text is the publisher's: numbers and key order stay exactly).
    fn structured(&self) -> Structured<'_> {
        Structured {
            specversion: SPEC_VERSION,
            id: &self.id,
            source: &self.source,
            event_type: &self.event_type,
            time: self.time.map(format_time),
            subject: self.subject.as_deref(),
            datacontenttype: &self.data_content_type,
            extensions: &self.extensions,
            data: &self.data,
        }
    }

    fn from_json(body: &[u8]) -> Result<Self, CloudEventError> {
        let Value::Object(mut object) = serde_json::from_slice(body).map_err(|error| {
            CloudEventError::Malformed(format!("the body is not JSON: {error}"))
        })?
        else {
            return Err(CloudEventError::Malformed(
                "the body is not a JSON object".into(),
            ));
        };
        let mut take = |name: &'static str| -> Result<Option<String>, CloudEventError> {
            match object.remove(name) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(text)) => Ok(Some(text)),
                Some(other) => Err(CloudEventError::Malformed(format!(
                    "`{name}` must be a string, not {other}"
                ))),
            }
        };
        let spec = take("specversion")?.ok_or(CloudEventError::Missing("specversion"))?;
        if spec != SPEC_VERSION {
            return Err(CloudEventError::SpecVersion(spec));
        }
        let required = |value: Option<String>, name: &'static str| {
            value
                .filter(|value| !value.is_empty())
                .ok_or(CloudEventError::Missing(name))
        };
        let id = required(take("id")?, "id")?;
        let source = required(take("source")?, "source")?;
        let event_type = required(take("type")?, "type")?;
        let time = take("time")?.map(|time| parse_time(&time)).transpose()?;
        let subject = take("subject")?;
        let data_content_type = take("datacontenttype")?.unwrap_or_else(|| JSON.to_owned());
        take("dataschema")?;
        let data = object.remove("data").unwrap_or(Value::Null);
        let data = serde_json::value::to_raw_value(&data)
            .map_err(|error| CloudEventError::Malformed(error.to_string()))?;
        let mut extensions = BTreeMap::new();
        for (name, value) in object {
            check_extension_name(&name)?;
            extensions.insert(name, value);
        }
        Ok(Self {
            id,
            source,
            event_type,
            time,
            subject,
            data_content_type,
            data,
            extensions,
        })
    }
}

/// A CloudEvent in the JSON event format, as written.
#[derive(serde::Serialize)]
struct Structured<'a> {
    specversion: &'a str,
    id: &'a str,
    source: &'a str,
    #[serde(rename = "type")]
    event_type: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    time: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    subject: Option<&'a str>,
    datacontenttype: &'a str,
    #[serde(flatten)]
    extensions: &'a BTreeMap<String, Value>,
    data: &'a RawValue,
}

/// RFC 3339 with microseconds, in UTC (`2026-11-30T21:08:54.123456Z`).
fn format_time(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Micros, true)
}

fn parse_time(text: &str) -> Result<DateTime<Utc>, CloudEventError> {
    DateTime::parse_from_rfc3339(text)
        .map(|time| time.with_timezone(&Utc))
        .map_err(|_| CloudEventError::Time(text.to_owned()))
}

/// An extension's canonical string form.
fn extension_text(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

/// Percent-encodes what a header value may not carry as it is: `%`, control
/// characters and everything outside printable ASCII (as UTF-8 bytes), as
/// the HTTP binding's header encoding does.
fn percent_encode(value: &str) -> String {
    let mut encoded = String::with_capacity(value.len());
    for byte in value.bytes() {
        if (0x20..0x7f).contains(&byte) && byte != b'%' && byte != b'"' {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

fn percent_decode(value: &str) -> Result<String, CloudEventError> {
    let bytes = value.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index] == b'%' {
            let hex = value
                .get(index + 1..index + 3)
                .and_then(|hex| u8::from_str_radix(hex, 16).ok())
                .ok_or_else(|| {
                    CloudEventError::Malformed(format!("bad percent-encoding in `{value}`"))
                })?;
            decoded.push(hex);
            index += 3;
        } else {
            decoded.push(bytes[index]);
            index += 1;
        }
    }
    String::from_utf8(decoded)
        .map_err(|_| CloudEventError::Malformed(format!("`{value}` decodes to no UTF-8 text")))
}

#[cfg(test)]
mod tests;
