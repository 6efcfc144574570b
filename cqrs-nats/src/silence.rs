//! Noticing a NATS server that stopped answering while its connection
//! stays open (the process frozen, or its host cut off without a reset):
//! the client notices only after its ping interval (a minute by default)
//! twice, and every request and pull meanwhile times out. After a failure
//! the consumer and the relay ask the server something it answers at once
//! when it is alive; when it does not, they have the client connect again,
//! to another server of its list if it has several.

use std::time::Duration;

use async_nats::{Client, RequestErrorKind};

/// How long a live server takes at most to answer the probe.
const PROBE_WAIT: Duration = Duration::from_secs(2);

/// Whether the server `client` talks to answers: a request on a subject
/// nobody serves comes back at once as "no responders" from a live server.
async fn answers(client: &Client) -> bool {
    let subject = format!("_CQRSKIT.PROBE.{}", uuid::Uuid::now_v7().simple());
    match tokio::time::timeout(PROBE_WAIT, client.request(subject, bytes::Bytes::new())).await {
        Err(_) => false,
        Ok(Ok(_)) => true,
        Ok(Err(error)) => error.kind() != RequestErrorKind::TimedOut,
    }
}

/// Has `client` connect again when its server does not answer; `who`
/// names the caller in the log. Whether it asked for a new connection.
pub(crate) async fn reconnect_if_silent(client: &Client, who: &str) -> bool {
    if answers(client).await {
        return false;
    }
    tracing::warn!(who, "the NATS server does not answer; connecting again");
    if let Err(error) = client.force_reconnect().await {
        tracing::warn!(who, %error, "cannot connect again; the client tries by itself");
    }
    true
}
