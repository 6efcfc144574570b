//! Instances of a service as OS processes, by name, for the tests that
//! kill, freeze and stop them: each started from a command, waited for
//! until it prints `running`, killed (and woken first, if frozen) when the
//! set is dropped.

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};

/// Running instance processes by name.
#[derive(Default)]
pub struct Instances(BTreeMap<String, Child>);

impl Instances {
    /// Starts `command` as instance `name` and waits until it prints
    /// `running` (its standard output is piped for that, and read no
    /// further).
    ///
    /// # Panics
    ///
    /// When it cannot start, or prints anything else first.
    pub fn start(&mut self, name: &str, mut command: Command) {
        let mut child = command
            .stdout(Stdio::piped())
            .spawn()
            .expect("start an instance");
        let mut stdout = std::io::BufReader::new(child.stdout.take().expect("piped"));
        let mut line = String::new();
        std::io::BufRead::read_line(&mut stdout, &mut line).expect("read");
        assert_eq!(line.trim(), "running", "instance {name} did not start");
        self.0.insert(name.to_owned(), child);
    }

    /// Sends `which` (`-KILL`, `-STOP`, `-CONT`, `-TERM`) to instance
    /// `name`.
    ///
    /// # Panics
    ///
    /// When `kill` fails.
    pub fn signal(&self, which: &str, name: &str) {
        let status = Command::new("kill")
            .args([which, &self.0[name].id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill {which} {name}");
    }

    /// Kills instance `name` (SIGKILL) and reaps it.
    ///
    /// # Panics
    ///
    /// When it was not started.
    pub fn kill(&mut self, name: &str) {
        let mut child = self.0.remove(name).expect("started");
        let _ = child.kill();
        child.wait().expect("reaped");
    }

    /// Waits for instance `name` to exit by itself (after SIGTERM, say).
    ///
    /// # Panics
    ///
    /// When it exits unsuccessfully.
    pub fn wait_for_exit(&mut self, name: &str) {
        let status = self.0.remove(name).expect("started").wait().expect("wait");
        assert!(status.success(), "{name} left with {status}");
    }

    /// Asks instance `name` to stop (SIGTERM) and waits for it to exit.
    ///
    /// # Panics
    ///
    /// As [`wait_for_exit`](Self::wait_for_exit).
    pub fn leave(&mut self, name: &str) {
        self.signal("-TERM", name);
        self.wait_for_exit(name);
    }
}

impl Drop for Instances {
    fn drop(&mut self) {
        for child in self.0.values_mut() {
            let _ = Command::new("kill")
                .args(["-CONT", &child.id().to_string()])
                .status();
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
