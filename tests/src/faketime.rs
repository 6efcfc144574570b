//! Processes on a host clock other than the database's: libfaketime
//! preloaded with an offset. Their wall clock (`Utc::now()`) moves by the
//! offset; their monotonic clock, which timers and durations use, does not.
//!
//! A test that needs libfaketime fails when it is missing: `scripts/test`
//! installs it and exports `FAKETIME_LIB`.

use std::process::Command;

/// The library: `FAKETIME_LIB`, or Debian's.
///
/// # Panics
///
/// When neither exists, saying how to get it.
pub fn library() -> String {
    let path = std::env::var("FAKETIME_LIB")
        .unwrap_or_else(|_| "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1".to_owned());
    assert!(
        std::path::Path::new(&path).exists(),
        "libfaketime is missing at {path}: run `scripts/test`, which installs it, \
         or set FAKETIME_LIB"
    );
    path
}

/// Sets `command` to run with its wall clock moved by `offset` (`+1h`,
/// `-1h`, as libfaketime reads it).
pub fn shifted<'a>(command: &'a mut Command, offset: &str) -> &'a mut Command {
    command
        .env("LD_PRELOAD", library())
        .env("FAKETIME", offset)
        .env("FAKETIME_DONT_FAKE_MONOTONIC", "1")
        .env("FAKETIME_DONT_RESET", "1")
}
