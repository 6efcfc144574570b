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
