//! The configuration of the test binaries, read from their environment.

/// The variable `name`.
///
/// # Panics
///
/// When it is not set: the test that started the binary forgot it.
pub fn var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set"))
}

/// The variable `name`, a number.
///
/// # Panics
///
/// When it is not set or not a number.
pub fn number(name: &str) -> u64 {
    var(name)
        .parse()
        .unwrap_or_else(|error| panic!("{name}: {error}"))
}

/// The store of a test's helper process: `DATABASE_URL` and `SCHEMA` from
/// the environment, a pool of `connections` whose sessions are named after
/// `owner` (their `application_name`), so the test can find them.
///
/// # Panics
///
/// When a variable is missing or the database cannot be reached.
pub async fn process_store(owner: &str, connections: u32) -> cqrskit::postgres::PostgresEventStore {
    let options: sqlx::postgres::PgConnectOptions =
        var("DATABASE_URL").parse().expect("DATABASE_URL");
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(connections)
        .connect_with(options.application_name(owner))
        .await
        .expect("connect");
    cqrskit::postgres::PostgresEventStore::from_pool(pool)
        .with_schema(&var("SCHEMA"))
        .expect("schema")
}
