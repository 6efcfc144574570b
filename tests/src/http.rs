//! HTTP for the tests of the HTTP service example: requests made with
//! `curl`, as the guide's session makes them.

use std::process::Command;

use serde_json::Value;

/// `curl` with `method` on `url` (a JSON `body` when given): the status and
/// the body, as JSON when it is.
pub fn curl(method: &str, url: &str, body: Option<&str>) -> (u16, Value) {
    let mut command = Command::new("curl");
    command.args(["-s", "-w", "\n%{http_code}", "-X", method, url]);
    if let Some(body) = body {
        command.args(["-H", "content-type: application/json", "-d", body]);
    }
    let output = command.output().expect("curl runs");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').expect("a status line");
    let status = status.trim().parse().expect("a status code");
    let body = serde_json::from_str(body).unwrap_or_else(|_| Value::String(body.to_owned()));
    (status, body)
}
