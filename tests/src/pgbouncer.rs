//! A private PgBouncer per test, in transaction pooling mode, in front of the
//! test database.
//!
//! [`PgBouncer::start`] writes a config to a fresh temporary directory, starts
//! the `pgbouncer` binary on a free port of 127.0.0.1, waits until it accepts
//! connections and returns a handle whose [`url`](PgBouncer::url) goes through
//! it. Dropping the handle kills that process (and only that one); the shared
//! PostgreSQL server is never touched. The pool is deliberately small
//! (`default_pool_size = 4`): clients share server connections, which is what
//! exposes protocol state (prepared statements, `LISTEN`) that a transaction
//! pooler does not keep.
//!
//! The binary is `PGBOUNCER`, else `pgbouncer` on `PATH`, else Debian's
//! `/usr/sbin/pgbouncer`. `scripts/ensure-pgbouncer` (run by `scripts/test`)
//! installs it. A test that needs it fails, saying so, when it is missing:
//! such tests never skip.
//!
//! PgBouncer refuses to run as root: when the tests run as root, it is started
//! with `-u postgres` (or `-u nobody` on a machine without that user), and its
//! directory is handed to that user.

use std::fs;
use std::io::ErrorKind;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::postgres::database_url;

/// How long PgBouncer gets to start listening.
const START_TIMEOUT: Duration = Duration::from_secs(15);

/// How many free ports are tried: another process may take the port found
/// free between the probe and PgBouncer's bind.
const START_ATTEMPTS: usize = 3;

/// A running private PgBouncer in transaction pooling mode. Killed on drop.
#[derive(Debug)]
pub struct PgBouncer {
    child: Child,
    port: u16,
    dir: PathBuf,
    /// The user part of the URL clients connect with (percent-encoded as in
    /// `DATABASE_URL`).
    userinfo: String,
}

/// The parts of `DATABASE_URL` the pooler needs.
#[derive(Debug)]
struct Upstream {
    /// `user[:password]`, percent-encoded as written.
    userinfo: String,
    user: String,
    password: String,
    host: String,
    port: u16,
}

impl PgBouncer {
    /// Starts a PgBouncer of this test's own in front of `DATABASE_URL`'s
    /// server, and waits until it accepts connections.
    ///
    /// # Panics
    ///
    /// When the `pgbouncer` binary is missing (run `scripts/ensure-pgbouncer`
    /// or `scripts/test`), or when it does not start listening within 15 s;
    /// the message quotes the end of its log.
    pub fn start() -> Self {
        let binary = binary();
        let upstream = upstream(&database_url());
        let dir = fresh_dir();
        let run_as = if running_as_root() {
            Some(unprivileged_user())
        } else {
            None
        };
        let mut failures = Vec::new();
        for _ in 0..START_ATTEMPTS {
            let port = free_port();
            write_config(&dir, port, &upstream);
            if let Some(user) = &run_as {
                hand_over(&dir, user);
            }
            let mut command = Command::new(&binary);
            if let Some(user) = &run_as {
                command.arg("-u").arg(&user.name);
            }
            let child = command
                .arg(dir.join("pgbouncer.ini"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|error| panic!("cannot start {}: {error}", binary.display()));
            let mut bouncer = Self {
                child,
                port,
                dir: dir.clone(),
                userinfo: upstream.userinfo.clone(),
            };
            match bouncer.wait_until_listening() {
                Ok(()) => return bouncer,
                Err(failure) => {
                    failures.push(failure);
                    // Dropping it kills it; the directory is reused.
                    bouncer.dir = PathBuf::new();
                }
            }
        }
        panic!(
            "PgBouncer ({}) did not start listening on 127.0.0.1 in {START_ATTEMPTS} attempts \
             (config and log in {}):\n{}",
            binary.display(),
            dir.display(),
            failures.join("\n---\n")
        );
    }

    /// A URL to `database` through this PgBouncer, with `DATABASE_URL`'s user
    /// and password.
    pub fn url(&self, database: &str) -> String {
        format!(
            "postgres://{}@127.0.0.1:{}/{database}",
            self.userinfo, self.port
        )
    }

    /// The port it listens on, on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The last `lines` lines of its log.
    pub fn log_tail(&self, lines: usize) -> String {
        log_tail(&self.dir, lines)
    }

    fn wait_until_listening(&mut self) -> Result<(), String> {
        let address = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => {
                    return Err(format!(
                        "pgbouncer exited with {status} before listening on port {}; its log ends with:\n{}",
                        self.port,
                        self.log_tail(20)
                    ));
                }
                Ok(None) => {}
                Err(error) => return Err(format!("cannot watch pgbouncer: {error}")),
            }
            if TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_ok() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "pgbouncer does not accept connections on port {} after {START_TIMEOUT:?}; its log ends with:\n{}",
                    self.port,
                    self.log_tail(20)
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for PgBouncer {
    fn drop(&mut self) {
        // SIGKILL to the process this handle started, then reap it.
        let _ = self.child.kill();
        let _ = self.child.wait();
        if self.dir.as_os_str().is_empty() {
            return;
        }
        if std::thread::panicking() {
            eprintln!(
                "the test failed: PgBouncer's config and log are kept in {}",
                self.dir.display()
            );
        } else {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// The `pgbouncer` binary: `PGBOUNCER`, `pgbouncer` on `PATH`, or Debian's.
fn binary() -> PathBuf {
    const HOW: &str = "run scripts/ensure-pgbouncer (or scripts/test, which runs it), \
                       which installs Debian's pgbouncer package";
    if let Some(path) = std::env::var_os("PGBOUNCER").filter(|path| !path.is_empty()) {
        let path = PathBuf::from(path);
        assert!(
            path.is_file(),
            "PGBOUNCER={} is not a file: {HOW}",
            path.display()
        );
        return path;
    }
    let on_path = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .map(|dir| dir.join("pgbouncer"));
    on_path
        .chain([PathBuf::from("/usr/sbin/pgbouncer")])
        .find(|path| path.is_file())
        .unwrap_or_else(|| panic!("no pgbouncer binary (PGBOUNCER, PATH, /usr/sbin): {HOW}"))
}

/// User, password, host and port of `url`
/// (`postgres://user:password@host:port/database`).
fn upstream(url: &str) -> Upstream {
    let rest = url
        .split_once("://")
        .map_or(url, |(_, rest)| rest)
        .split(['/', '?'])
        .next()
        .unwrap_or_default();
    let (userinfo, hostport) = rest.rsplit_once('@').unwrap_or(("postgres", rest));
    let (user, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
    let (host, port) = match hostport.rsplit_once(':') {
        Some((host, port)) => (
            host,
            port.parse()
                .unwrap_or_else(|_| panic!("DATABASE_URL has an invalid port: {url}")),
        ),
        None => (hostport, 5432),
    };
    Upstream {
        userinfo: userinfo.to_owned(),
        user: percent_decode(user),
        password: percent_decode(password),
        host: if host.is_empty() { "127.0.0.1" } else { host }.to_owned(),
        port,
    }
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                decoded.push(byte);
                i += 3;
            }
            (byte, _) => {
                decoded.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&decoded).into_owned()
}

/// A new empty directory under the system's temporary directory.
fn fresh_dir() -> PathBuf {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.subsec_nanos());
    let dir = std::env::temp_dir().join(format!(
        "cqrs-pgbouncer-{}-{}-{nanos}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    fs::create_dir(&dir).unwrap_or_else(|error| panic!("cannot create {}: {error}", dir.display()));
    dir
}

/// A port of 127.0.0.1 nothing listens on right now.
fn free_port() -> u16 {
    let listener =
        TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind a free port on 127.0.0.1");
    listener.local_addr().expect("its address").port()
}

/// Writes `pgbouncer.ini` and its `userlist.txt` into `dir`.
fn write_config(dir: &Path, port: u16, upstream: &Upstream) {
    let quote = |text: &str| format!("\"{}\"", text.replace('"', "\"\""));
    let ini = format!(
        "\
[databases]
* = host={host} port={upstream_port}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
auth_type = trust
auth_file = {dir}/userlist.txt
pool_mode = transaction
default_pool_size = 4
max_client_conn = 200
query_wait_timeout = 30
ignore_startup_parameters = extra_float_digits,search_path,options
logfile = {dir}/pgbouncer.log
log_connections = 0
log_disconnections = 0
",
        host = upstream.host,
        upstream_port = upstream.port,
        dir = dir.display(),
    );
    // trust: clients are not asked for a password, but the user must be
    // listed; the password is what PgBouncer answers the server with, should
    // the server ask for one.
    let users = format!("{} {}\n", quote(&upstream.user), quote(&upstream.password));
    for (name, text) in [("pgbouncer.ini", ini), ("userlist.txt", users)] {
        let path = dir.join(name);
        fs::write(&path, text)
            .unwrap_or_else(|error| panic!("cannot write {}: {error}", path.display()));
    }
}

fn log_tail(dir: &Path, lines: usize) -> String {
    match fs::read_to_string(dir.join("pgbouncer.log")) {
        Ok(log) => {
            let all = log.lines().collect::<Vec<_>>();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(error) => format!("(no log: {error})"),
    }
}

fn running_as_root() -> bool {
    // /proc/self belongs to the process's effective user.
    fs::metadata("/proc/self").is_ok_and(|meta| meta.uid() == 0)
}

/// The user PgBouncer runs as when the tests run as root.
#[derive(Debug)]
struct User {
    name: String,
    uid: u32,
    gid: u32,
}

fn unprivileged_user() -> User {
    let passwd = fs::read_to_string("/etc/passwd").unwrap_or_default();
    let users = passwd
        .lines()
        .filter_map(|line| {
            let fields = line.split(':').collect::<Vec<_>>();
            Some(User {
                name: (*fields.first()?).to_owned(),
                uid: fields.get(2)?.parse().ok()?,
                gid: fields.get(3)?.parse().ok()?,
            })
        })
        .collect::<Vec<_>>();
    ["postgres", "nobody"]
        .into_iter()
        .find_map(|name| users.iter().find(|user| user.name == name && user.uid != 0))
        .map(|user| User {
            name: user.name.clone(),
            uid: user.uid,
            gid: user.gid,
        })
        .unwrap_or_else(|| {
            panic!("PgBouncer refuses to run as root and there is no `postgres` or `nobody` user")
        })
}

/// Gives `dir` and its files to `user`, who writes the log there.
fn hand_over(dir: &Path, user: &User) {
    let chown = |path: &Path| {
        std::os::unix::fs::chown(path, Some(user.uid), Some(user.gid)).unwrap_or_else(|error| {
            panic!("cannot give {} to {}: {error}", path.display(), user.name)
        });
    };
    chown(dir);
    for entry in fs::read_dir(dir).expect("list the pooler's directory") {
        match entry {
            Ok(entry) => chown(&entry.path()),
            Err(error) if error.kind() == ErrorKind::NotFound => {}
            Err(error) => panic!("cannot list {}: {error}", dir.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_upstream_comes_from_the_database_url() {
        let parsed = upstream("postgres://app:p%40ss@db.local:6000/main?sslmode=disable");
        assert_eq!(parsed.userinfo, "app:p%40ss");
        assert_eq!(
            (parsed.user.as_str(), parsed.password.as_str()),
            ("app", "p@ss")
        );
        assert_eq!((parsed.host.as_str(), parsed.port), ("db.local", 6000));
        let parsed = upstream("postgres://postgres@localhost/postgres");
        assert_eq!(
            (parsed.user.as_str(), parsed.password.as_str()),
            ("postgres", "")
        );
        assert_eq!((parsed.host.as_str(), parsed.port), ("localhost", 5432));
    }
}
