//! How a relay names, shapes and sends its messages, and the stream it
//! publishes into.

use std::time::Duration;

use async_nats::jetstream;

use crate::cloudevent::ContentMode;

/// The JetStream stream a relay publishes into, created by the relay's
/// setup when missing.
///
/// Built like every options type: a constructor for what has no default,
/// then setters named after the setting (`get_*` reads one).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamSpec {
    pub(crate) name: String,
    pub(crate) duplicate_window: Duration,
    pub(crate) replicas: Option<usize>,
}

impl StreamSpec {
    /// The stream `name` (`ORDERS`), stored in files, with a 2-minute
    /// duplicate window, and 3 replicas when the server the relay talks to
    /// is part of a cluster (1 on a single server).
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            duplicate_window: Duration::from_secs(120),
            replicas: None,
        }
    }

    /// How long JetStream remembers message ids to drop duplicates: the
    /// longest a relay may be down between publishing and checkpointing
    /// without a consumer seeing a copy. Default 2 minutes (JetStream's).
    #[must_use]
    pub fn duplicate_window(mut self, duplicate_window: Duration) -> Self {
        self.duplicate_window = duplicate_window;
        self
    }

    /// Copies of each message (by default 3 in a cluster, 1 on a single
    /// server). An acknowledgement from a stream of 3 replicas survives
    /// the loss of one machine; on one server it survives a crash of the
    /// server process but not of the machine unless the server syncs each
    /// write (`sync_interval: always`), because the relay's checkpoint has
    /// moved past what JetStream acknowledged.
    #[must_use]
    pub fn replicas(mut self, replicas: usize) -> Self {
        self.replicas = Some(replicas);
        self
    }

    /// The stream's name.
    pub fn get_name(&self) -> &str {
        &self.name
    }

    /// How long JetStream remembers message ids.
    pub fn get_duplicate_window(&self) -> Duration {
        self.duplicate_window
    }

    /// Copies of each message, when set (`None`: 3 in a cluster, 1 on a
    /// single server).
    pub fn get_replicas(&self) -> Option<usize> {
        self.replicas
    }

    /// The stream's configuration, capturing `subjects`, for a server that
    /// is part of a cluster or not.
    pub(crate) fn config(&self, subjects: &str, clustered: bool) -> jetstream::stream::Config {
        let replicas = self.replicas.unwrap_or(if clustered { 3 } else { 1 });
        jetstream::stream::Config {
            name: self.name.clone(),
            subjects: vec![subjects.to_owned()],
            duplicate_window: self.duplicate_window,
            num_replicas: replicas.max(1),
            storage: jetstream::stream::StorageType::File,
            ..Default::default()
        }
    }
}

/// How a relay names, shapes and sends its messages.
///
/// Built like every options type: a constructor for what has no default,
/// then setters named after the setting (`get_*` reads one).
#[derive(Clone, Debug)]
pub struct RelayOptions {
    pub(crate) subject_prefix: String,
    pub(crate) source: String,
    pub(crate) mode: ContentMode,
    pub(crate) stream: Option<StreamSpec>,
}

impl RelayOptions {
    /// Options publishing under `subject_prefix` (the first token(s) of
    /// every subject: messages go to
    /// `<subject_prefix>.<aggregate type>.<token>.<slice>.<route>`, the token being
    /// the [`Outgoing::subject_token`](crate::Outgoing::subject_token) or
    /// the stored event type, and the slice the event's stream's,
    /// [`StreamId::slice`](cqrskit_core::StreamId::slice)) as `source`
    /// (the CloudEvents `source`: a URI reference naming this service,
    /// `/orders`, `urn:example:orders`): structured, into a stream named
    /// after the prefix (upper-cased, `.` as `_`).
    pub fn new(subject_prefix: impl Into<String>, source: impl Into<String>) -> Self {
        let subject_prefix = subject_prefix.into();
        let name = subject_prefix
            .to_ascii_uppercase()
            .replace(['.', ' ', '*', '>'], "_");
        Self {
            subject_prefix,
            source: source.into(),
            mode: ContentMode::Structured,
            stream: Some(StreamSpec::new(name)),
        }
    }

    /// Structured (default) or binary CloudEvents.
    #[must_use]
    pub fn mode(mut self, mode: ContentMode) -> Self {
        self.mode = mode;
        self
    }

    /// The stream to create when missing (at setup, and again when it was
    /// deleted under a running relay), or `None` when it is managed
    /// elsewhere: one stream must then capture `<subject_prefix>.>`, or the
    /// relay stops with an error naming the subjects. Either way the relay
    /// must be the stream's only publisher (see the module docs).
    #[must_use]
    pub fn stream(mut self, stream: Option<StreamSpec>) -> Self {
        self.stream = stream;
        self
    }

    /// The first token(s) of every subject.
    pub fn get_subject_prefix(&self) -> &str {
        &self.subject_prefix
    }

    /// The CloudEvents `source`.
    pub fn get_source(&self) -> &str {
        &self.source
    }

    /// Structured or binary CloudEvents.
    pub fn get_mode(&self) -> ContentMode {
        self.mode
    }

    /// The stream created when missing, if any.
    pub fn get_stream(&self) -> Option<&StreamSpec> {
        self.stream.as_ref()
    }
}
