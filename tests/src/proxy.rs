//! A fault-injecting TCP proxy between a test and PostgreSQL.
//!
//! [`FaultProxy`] listens on a free port of 127.0.0.1 and forwards every
//! connection to the database; a test connects through
//! [`database_url`](FaultProxy::database_url) and switches the proxy, at any
//! time, into one of the [`Mode`]s: pass everything, lose the answer to one
//! statement after the database carried it out, hold all traffic (a
//! partition), close new connections, or close every connection.
//!
//! # How the proxy finds "the answer to the statement"
//!
//! A byte pattern searched in the raw client→server chunks is not enough, for
//! two reasons that both bite with sqlx:
//!
//! - sqlx prepares a statement in a round trip of its own (`Parse`,
//!   `Describe`, `Sync`) before it runs it (`Bind`, `Execute`, `Close`,
//!   `Sync`). The SQL text travels in the `Parse` only: dropping the reply to
//!   the chunk that holds it drops the reply to the *preparation*, and the
//!   statement never runs.
//! - A statement already prepared on the connection is run with `Bind` and
//!   `Execute` only, which name the statement (`sqlx_s_7`) but carry no SQL
//!   text; the name depends on what ran before on that connection.
//!
//! So the proxy reads the PostgreSQL wire protocol as it passes (it forwards
//! every byte unchanged; TLS is disabled in the URLs it gives, see below).
//! Per connection it remembers the SQL text of every named statement parsed
//! on it. A `Bind` *matches* when the text of the statement it binds, or the
//! `Bind` message itself (its parameter values), contains the pattern; an
//! `Execute` of a matching portal marks the batch, and the `Sync` that ends
//! the batch fires the fault. A simple `Query` message containing the pattern
//! fires too. Firing therefore happens when the statement is really run,
//! whether it was prepared just before, long before, or not at all.
//!
//! Each `Sync`, simple `Query` and function call (and the startup message)
//! is answered by exactly one `ReadyForQuery`, so the proxy numbers the
//! requests it forwards and counts the `ReadyForQuery` messages coming back.
//! Once fired, it forwards the server's replies up to the one for the firing
//! `Sync`, then swallows that reply *whole*, up to and including its
//! `ReadyForQuery`, and only then closes both sockets of the connection.
//! PostgreSQL sends that `ReadyForQuery` after the implicit transaction of
//! the batch committed (or after an explicit `COMMIT` ran), so when the
//! client's connection breaks, the statement has been carried out and
//! committed: exactly "the server's answer to the commit was lost". (Cutting
//! at the first reply bytes instead could hit a backend that has not
//! committed yet, which would then roll back when it notices the closed
//! socket.) Whatever the reply says is swallowed: an error reply too.
//!
//! The URLs the proxy gives disable TLS (`sslmode=disable`): the proxy cannot
//! read encrypted traffic. A client that negotiates TLS anyway gets a
//! connection that is forwarded but never faulted by
//! [`Mode::DropReplyAfter`].

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

use crate::postgres::database_url;

/// How much one read of a socket takes at most.
const CHUNK: usize = 16 * 1024;

/// The request codes of the untyped messages a client may send first.
const SSL_REQUEST: u32 = 80_877_103;
const GSSENC_REQUEST: u32 = 80_877_104;
const CANCEL_REQUEST: u32 = 80_877_102;

/// What the proxy does to the traffic, switched with
/// [`FaultProxy::set_mode`] and [`FaultProxy::drop_reply_after`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Mode {
    /// Forward everything both ways.
    #[default]
    Pass,
    /// Armed: the first statement run on any connection whose SQL text (or
    /// `Bind` message) contains this byte pattern is carried out by the
    /// database, but its whole reply is swallowed and both sockets of that
    /// connection are closed (see the module docs for how the statement and
    /// its reply are found). Fires once: the proxy then switches to the mode
    /// given to [`FaultProxy::drop_reply_after`] (`Pass` when armed with
    /// [`FaultProxy::set_mode`]) and counts the drop in
    /// [`FaultProxy::fired`]. Everything else passes meanwhile.
    DropReplyAfter(Vec<u8>),
    /// A partition: nothing is forwarded in either direction and nothing is
    /// closed. Connections (open and new) hang until the mode changes; what
    /// was held is then forwarded, as TCP would once a partition heals.
    Blackhole,
    /// New connections are accepted and closed at once; open ones keep
    /// working.
    RefuseNew,
    /// The database is gone: open connections are closed at once (what they
    /// had in flight is unanswered) and new ones are closed on arrival.
    Down,
}

/// What the proxy's tasks share with its handle.
#[derive(Debug, Default)]
struct Shared {
    mode: Mode,
    /// The mode to switch to once an armed drop fired.
    after_drop: Mode,
    fired: u64,
    accepted: u64,
    refused: u64,
}

type State = Arc<watch::Sender<Shared>>;

/// A TCP proxy on 127.0.0.1 in front of a database, injecting faults on
/// demand. Dropping it stops its tasks and closes every connection.
#[derive(Debug)]
pub struct FaultProxy {
    addr: SocketAddr,
    target: SocketAddr,
    state: State,
    accept: JoinHandle<()>,
}

impl FaultProxy {
    /// A proxy listening on a free port of 127.0.0.1, forwarding to `target`,
    /// in [`Mode::Pass`].
    ///
    /// # Errors
    ///
    /// When no port can be bound.
    pub async fn start(target: SocketAddr) -> std::io::Result<Self> {
        let listener = TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0)).await?;
        let addr = listener.local_addr()?;
        let state: State = Arc::new(watch::Sender::new(Shared::default()));
        let accept = tokio::spawn(accept_loop(listener, target, state.clone()));
        Ok(Self {
            addr,
            target,
            state,
            accept,
        })
    }

    /// A proxy in front of the test database (the host and port of
    /// [`database_url`]).
    ///
    /// # Panics
    ///
    /// When the URL names no TCP host, or no port can be bound.
    pub async fn to_test_database() -> Self {
        let url = database_url();
        let options: sqlx::postgres::PgConnectOptions =
            url.parse().expect("DATABASE_URL is a valid PostgreSQL URL");
        let host = options.get_host().to_owned();
        assert!(
            !host.starts_with('/'),
            "the proxy needs a TCP host in DATABASE_URL, not the socket {host}"
        );
        let target = tokio::net::lookup_host((host.as_str(), options.get_port()))
            .await
            .ok()
            .and_then(|mut addresses| addresses.next())
            .unwrap_or_else(|| panic!("cannot resolve the database host {host}"));
        Self::start(target).await.expect("bind the proxy")
    }

    /// The address the proxy listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The address it forwards to.
    pub fn target(&self) -> SocketAddr {
        self.target
    }

    /// A URL of database `database` through the proxy: [`database_url`]'s
    /// user and password and parameters, the proxy's address, TLS disabled.
    pub fn url(&self, database: &str) -> String {
        through_proxy(&database_url(), self.addr, Some(database))
    }

    /// [`database_url`] through the proxy (same database), TLS disabled.
    pub fn database_url(&self) -> String {
        through_proxy(&database_url(), self.addr, None)
    }

    /// Switches to `mode`. A [`Mode::DropReplyAfter`] set this way switches
    /// back to [`Mode::Pass`] once it fired.
    pub fn set_mode(&self, mode: Mode) {
        self.state.send_modify(|shared| {
            shared.mode = mode;
            shared.after_drop = Mode::Pass;
        });
    }

    /// Arms [`Mode::DropReplyAfter`] with `pattern`; once the reply is
    /// dropped, the proxy switches to `then` before it closes the connection,
    /// so the client, seeing the connection break, already meets `then`
    /// (say [`Mode::Down`], so that its retries cannot reach the database).
    pub fn drop_reply_after(&self, pattern: impl Into<Vec<u8>>, then: Mode) {
        let pattern = pattern.into();
        assert!(
            !pattern.is_empty(),
            "an empty pattern would match everything"
        );
        self.state.send_modify(|shared| {
            shared.mode = Mode::DropReplyAfter(pattern);
            shared.after_drop = then;
        });
    }

    /// The current mode.
    pub fn mode(&self) -> Mode {
        self.state.borrow().mode.clone()
    }

    /// How many replies were dropped so far.
    pub fn fired(&self) -> u64 {
        self.state.borrow().fired
    }

    /// How many connections the proxy accepted so far (refused ones included).
    pub fn accepted(&self) -> u64 {
        self.state.borrow().accepted
    }

    /// How many new connections it closed on arrival ([`Mode::RefuseNew`],
    /// [`Mode::Down`]).
    pub fn refused(&self) -> u64 {
        self.state.borrow().refused
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        // The accept task owns the connection tasks (a `JoinSet`): dropping it
        // aborts them, which closes their sockets.
        self.accept.abort();
    }
}

/// `url` with the proxy's address as host and port, `database` (when given)
/// as database, and `sslmode=disable` in place of any `sslmode`.
fn through_proxy(url: &str, addr: SocketAddr, database: Option<&str>) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("postgres", url));
    let (location, query) = rest.split_once('?').unwrap_or((rest, ""));
    let (authority, path) = location.split_once('/').unwrap_or((location, ""));
    let userinfo = authority
        .rsplit_once('@')
        .map_or(String::new(), |(userinfo, _)| format!("{userinfo}@"));
    let database = database.unwrap_or(path);
    let mut parameters: Vec<&str> = query
        .split('&')
        .filter(|parameter| !parameter.is_empty() && !parameter.starts_with("sslmode="))
        .collect();
    parameters.push("sslmode=disable");
    format!(
        "{scheme}://{userinfo}{addr}/{database}?{}",
        parameters.join("&")
    )
}

async fn accept_loop(listener: TcpListener, target: SocketAddr, state: State) {
    let mut connections = JoinSet::new();
    loop {
        let client = match listener.accept().await {
            Ok((client, _)) => client,
            Err(_) => {
                // Out of file descriptors, say: try again shortly.
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let mut refuse = false;
        state.send_modify(|shared| {
            shared.accepted += 1;
            refuse = matches!(shared.mode, Mode::RefuseNew | Mode::Down);
            if refuse {
                shared.refused += 1;
            }
        });
        if refuse {
            drop(client);
        } else {
            connections.spawn(serve(client, target, state.clone()));
        }
        while connections.try_join_next().is_some() {}
    }
}

/// What the two directions of one connection share.
#[derive(Debug, Default)]
struct Connection {
    /// One-byte answers to `SSLRequest`/`GSSENCRequest` the server still owes.
    raw_answers: usize,
    /// Encrypted or unreadable: forwarded, no longer read.
    opaque: bool,
    /// The number of the reply to swallow, and the mode to switch to once it
    /// was.
    swallow: Option<(u64, Mode)>,
}

fn lock(connection: &Mutex<Connection>) -> std::sync::MutexGuard<'_, Connection> {
    connection.lock().unwrap_or_else(PoisonError::into_inner)
}

async fn serve(mut client: TcpStream, target: SocketAddr, state: State) {
    let Ok(mut server) = TcpStream::connect(target).await else {
        return; // dropping `client` closes it
    };
    // Best effort: small messages should not wait for Nagle.
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let connection = Mutex::new(Connection::default());
    let (client_read, client_write) = client.split();
    let (server_read, server_write) = server.split();
    let mut down = state.subscribe();
    tokio::select! {
        () = client_to_server(client_read, server_write, &connection, &state) => {}
        () = server_to_client(server_read, client_write, &connection, &state) => {}
        _ = down.wait_for(|shared| shared.mode == Mode::Down) => {}
    }
    // Returning drops both streams: both sockets close.
}

/// Waits while the proxy is blackholed. False when the connection must close.
async fn gate(mode: &mut watch::Receiver<Shared>) -> bool {
    match mode.wait_for(|shared| shared.mode != Mode::Blackhole).await {
        Ok(shared) => shared.mode != Mode::Down,
        Err(_) => false,
    }
}

async fn client_to_server(
    mut from: impl AsyncRead + Unpin,
    mut to: impl AsyncWrite + Unpin,
    connection: &Mutex<Connection>,
    state: &State,
) {
    let mut mode = state.subscribe();
    let mut reader = ClientReader::default();
    let mut buffer = vec![0; CHUNK];
    loop {
        let read = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(read) => read,
        };
        if !gate(&mut mode).await {
            return;
        }
        let chunk = &buffer[..read];
        let pattern = match &state.borrow().mode {
            Mode::DropReplyAfter(pattern) => Some(pattern.clone()),
            _ => None,
        };
        // Decided before the chunk is forwarded, so the reply cannot come
        // back before the server side knows to swallow it.
        if let Some(request) = reader.read(chunk, pattern.as_deref(), connection) {
            state.send_if_modified(|shared| {
                if !matches!(shared.mode, Mode::DropReplyAfter(_)) {
                    return false; // disarmed meanwhile
                }
                shared.mode = Mode::Pass;
                let then = std::mem::take(&mut shared.after_drop);
                lock(connection).swallow = Some((request, then));
                true
            });
        }
        if to.write_all(chunk).await.is_err() {
            return;
        }
    }
}

async fn server_to_client(
    mut from: impl AsyncRead + Unpin,
    mut to: impl AsyncWrite + Unpin,
    connection: &Mutex<Connection>,
    state: &State,
) {
    let mut mode = state.subscribe();
    let mut reader = ServerReader::default();
    let mut buffer = vec![0; CHUNK];
    loop {
        let read = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(read) => read,
        };
        if !gate(&mut mode).await {
            return;
        }
        let chunk = &buffer[..read];
        let cut = reader.read(chunk, connection);
        if to.write_all(&chunk[..cut.forward]).await.is_err() {
            return;
        }
        if let Some(then) = cut.dropped {
            // Switch first: when the client sees its connection break, the
            // next mode is already in force.
            state.send_modify(|shared| {
                shared.fired += 1;
                shared.mode = then;
            });
            return;
        }
    }
}

/// Splits a byte stream into protocol messages: `[tag] length(4) body`,
/// the length counting itself but not the tag. Untyped messages (the startup
/// phase) have no tag.
#[derive(Debug, Default)]
struct Framer {
    buffer: Vec<u8>,
    start: usize,
}

/// One message, borrowed from the framer.
struct Frame<'a> {
    tag: Option<u8>,
    body: &'a [u8],
    /// Bytes buffered after this message: the message ends this many bytes
    /// before the end of the last chunk pushed.
    after: usize,
}

impl Framer {
    fn push(&mut self, bytes: &[u8]) {
        self.buffer.drain(..self.start);
        self.start = 0;
        self.buffer.extend_from_slice(bytes);
    }

    /// The next complete message; `Err` when the bytes are no protocol
    /// message.
    fn next(&mut self, tagged: bool) -> Option<Result<Frame<'_>, ()>> {
        let rest = &self.buffer[self.start..];
        let length_at = usize::from(tagged);
        let length = rest.get(length_at..length_at + 4)?;
        let length = u32::from_be_bytes(length.try_into().ok()?) as usize;
        if !(4..=1 << 30).contains(&length) {
            return Some(Err(()));
        }
        let end = length_at + length;
        if rest.len() < end {
            return None;
        }
        self.start += end;
        let rest = &self.buffer[self.start - end..];
        Some(Ok(Frame {
            tag: tagged.then(|| rest[0]),
            body: &rest[length_at + 4..end],
            after: self.buffer.len() - self.start,
        }))
    }

    /// The next byte, outside any message.
    fn next_byte(&mut self) -> Option<u8> {
        let byte = *self.buffer.get(self.start)?;
        self.start += 1;
        Some(byte)
    }
}

/// A NUL-terminated string at the start of `bytes`, and what follows it.
fn c_string(bytes: &[u8]) -> (&[u8], &[u8]) {
    match bytes.iter().position(|&byte| byte == 0) {
        Some(end) => (&bytes[..end], &bytes[end + 1..]),
        None => (bytes, &[]),
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}

/// What the client sends, as far as firing a drop needs it.
#[derive(Debug, Default)]
struct ClientReader {
    framer: Framer,
    started: bool,
    /// Named statements parsed on this connection: name → SQL text.
    statements: HashMap<Vec<u8>, Vec<u8>>,
    /// Bound portals: name → whether they run a matching statement.
    portals: HashMap<Vec<u8>, bool>,
    /// A matching portal was executed since the last `Sync`.
    executed: bool,
    /// Requests sent that the server answers with one `ReadyForQuery` each.
    requests: u64,
}

impl ClientReader {
    /// Reads a chunk; the number of the request whose reply is to be
    /// swallowed, when the chunk ran a matching statement.
    fn read(
        &mut self,
        chunk: &[u8],
        pattern: Option<&[u8]>,
        connection: &Mutex<Connection>,
    ) -> Option<u64> {
        if lock(connection).opaque {
            return None;
        }
        self.framer.push(chunk);
        let mut fire = None;
        loop {
            let frame = match self.framer.next(self.started) {
                None => break,
                Some(Ok(frame)) => frame,
                Some(Err(())) => {
                    lock(connection).opaque = true;
                    break;
                }
            };
            let (tag, body) = (frame.tag, frame.body.to_vec());
            if let Some(request) = self.message(tag, &body, pattern, connection) {
                fire = Some(request);
            }
        }
        fire
    }

    fn message(
        &mut self,
        tag: Option<u8>,
        body: &[u8],
        pattern: Option<&[u8]>,
        connection: &Mutex<Connection>,
    ) -> Option<u64> {
        let matches = |text: &[u8]| pattern.is_some_and(|pattern| contains(text, pattern));
        match tag {
            None => {
                let code = body
                    .get(..4)
                    .map(|code| u32::from_be_bytes(code.try_into().expect("four bytes")));
                match code {
                    Some(SSL_REQUEST | GSSENC_REQUEST) => lock(connection).raw_answers += 1,
                    Some(CANCEL_REQUEST) => {}
                    _ => {
                        // The startup message: answered by the first
                        // `ReadyForQuery`.
                        self.started = true;
                        self.requests += 1;
                    }
                }
            }
            // Parse: statement name, SQL text, parameter types.
            Some(b'P') => {
                let (name, rest) = c_string(body);
                let (text, _) = c_string(rest);
                self.statements.insert(name.to_vec(), text.to_vec());
            }
            // Bind: portal name, statement name, parameters.
            Some(b'B') => {
                let (portal, rest) = c_string(body);
                let (statement, _) = c_string(rest);
                let runs_match = self
                    .statements
                    .get(statement)
                    .is_some_and(|text| matches(text))
                    || matches(body);
                self.portals.insert(portal.to_vec(), runs_match);
            }
            // Execute: portal name, row limit.
            Some(b'E') => {
                let (portal, _) = c_string(body);
                if self.portals.get(portal) == Some(&true) {
                    self.executed = true;
                }
            }
            // Close: 'S'tatement or 'P'ortal, name.
            Some(b'C') => {
                let (name, _) = c_string(body.get(1..).unwrap_or_default());
                match body.first() {
                    Some(b'S') => {
                        self.statements.remove(name);
                    }
                    Some(b'P') => {
                        self.portals.remove(name);
                    }
                    _ => {}
                }
            }
            // Sync ends an extended-protocol batch.
            Some(b'S') => {
                self.requests += 1;
                if std::mem::take(&mut self.executed) {
                    return Some(self.requests);
                }
            }
            // A simple query.
            Some(b'Q') => {
                self.requests += 1;
                if matches(c_string(body).0) {
                    return Some(self.requests);
                }
            }
            // A function call.
            Some(b'F') => self.requests += 1,
            _ => {}
        }
        None
    }
}

/// What the server sends, as far as swallowing a reply needs it.
#[derive(Debug, Default)]
struct ServerReader {
    framer: Framer,
    /// `ReadyForQuery` messages seen: the number of replies complete.
    replies: u64,
}

/// What to do with a chunk from the server.
struct Cut {
    /// Forward this many bytes from the start of the chunk; swallow the rest.
    forward: usize,
    /// The swallowed reply is complete: switch to this mode and close.
    dropped: Option<Mode>,
}

impl ServerReader {
    fn read(&mut self, chunk: &[u8], connection: &Mutex<Connection>) -> Cut {
        let mut connection = lock(connection);
        let everything = Cut {
            forward: chunk.len(),
            dropped: None,
        };
        if connection.opaque {
            return everything;
        }
        self.framer.push(chunk);
        let swallow = connection.swallow.as_ref().map(|(request, _)| *request);
        // Inside (or right before) the reply to swallow already?
        let mut forward = match swallow {
            Some(request) if self.replies + 1 >= request => 0,
            _ => chunk.len(),
        };
        loop {
            if connection.raw_answers > 0 {
                let Some(answer) = self.framer.next_byte() else {
                    break;
                };
                connection.raw_answers -= 1;
                if matches!(answer, b'S' | b'G') {
                    // Encryption accepted: nothing more can be read.
                    connection.opaque = true;
                    return everything;
                }
                continue;
            }
            let frame = match self.framer.next(true) {
                None => break,
                Some(Ok(frame)) => frame,
                Some(Err(())) => {
                    connection.opaque = true;
                    return everything;
                }
            };
            if frame.tag != Some(b'Z') {
                continue;
            }
            self.replies += 1;
            let Some(request) = swallow else { continue };
            if self.replies + 1 == request {
                // The reply before the swallowed one ends here.
                forward = chunk.len() - frame.after;
            } else if self.replies == request {
                let then = connection.swallow.take().map(|(_, then)| then);
                return Cut {
                    forward,
                    dropped: then,
                };
            }
        }
        Cut {
            forward,
            dropped: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_keep_credentials_and_parameters_and_disable_tls() {
        let addr: SocketAddr = "127.0.0.1:4000".parse().expect("address");
        assert_eq!(
            through_proxy(
                "postgres://u:p%40ss@db.example:5432/app?sslmode=require&application_name=x",
                addr,
                None
            ),
            "postgres://u:p%40ss@127.0.0.1:4000/app?application_name=x&sslmode=disable"
        );
        assert_eq!(
            through_proxy("postgresql://db", addr, Some("other")),
            "postgresql://127.0.0.1:4000/other?sslmode=disable"
        );
    }

    fn message(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut bytes = vec![tag];
        let length = u32::try_from(body.len() + 4).expect("small");
        bytes.extend_from_slice(&length.to_be_bytes());
        bytes.extend_from_slice(body);
        bytes
    }

    fn startup() -> Vec<u8> {
        let mut body = 196_608_u32.to_be_bytes().to_vec();
        body.extend_from_slice(b"user\0postgres\0\0");
        let mut bytes = u32::try_from(body.len() + 4)
            .expect("small")
            .to_be_bytes()
            .to_vec();
        bytes.extend_from_slice(&body);
        bytes
    }

    #[test]
    fn fires_at_the_sync_after_executing_a_statement_prepared_earlier() {
        let connection = Mutex::new(Connection::default());
        let mut reader = ClientReader::default();
        let pattern = Some(&b"INSERT INTO"[..]);
        assert_eq!(reader.read(&startup(), pattern, &connection), None);
        // Preparing it does not fire.
        let mut prepare = message(b'P', b"s1\0INSERT INTO t VALUES ($1)\0\0\0");
        prepare.extend(message(b'D', b"Ss1\0"));
        prepare.extend(message(b'S', b""));
        assert_eq!(reader.read(&prepare, pattern, &connection), None);
        // Running it does, split across chunks at an awkward place.
        let mut run = message(b'B', b"\0s1\0\0\0\0\0\0\0");
        run.extend(message(b'E', b"\0\0\0\0\0"));
        run.extend(message(b'S', b""));
        let (first, second) = run.split_at(3);
        assert_eq!(reader.read(first, pattern, &connection), None);
        assert_eq!(reader.read(second, pattern, &connection), Some(3));
        // Unarmed, nothing fires.
        assert_eq!(reader.read(&run, None, &connection), None);
    }

    #[test]
    fn swallows_exactly_the_fired_reply() {
        let connection = Mutex::new(Connection {
            swallow: Some((2, Mode::Down)),
            ..Connection::default()
        });
        let mut reader = ServerReader::default();
        let mut chunk = message(b'R', &[0, 0, 0, 0]);
        chunk.extend(message(b'Z', b"I"));
        let before = chunk.len();
        chunk.extend(message(b'2', b""));
        chunk.extend(message(b'C', b"INSERT 0 1\0"));
        let cut = reader.read(&chunk, &connection);
        assert_eq!((cut.forward, cut.dropped), (before, None));
        let cut = reader.read(&message(b'Z', b"I"), &connection);
        assert_eq!((cut.forward, cut.dropped), (0, Some(Mode::Down)));
    }
}
