//! Every code block of the documentation is compiled, or says what else it
//! is: a page shows no Rust that is not tested.
//!
//! The guides in `docs/` are the facade's `cqrskit::guide` modules and the
//! README is a doc test of the examples crate, so rustdoc compiles every
//! Rust block in them. What it would not catch is checked here: a block
//! without a language (rustdoc compiles it as Rust on its side, but a
//! reader cannot tell), a Rust block marked `ignore`, and a page with Rust
//! blocks that no crate includes.

use std::path::{Path, PathBuf};

/// The languages a block may name besides Rust: shell sessions, SQL,
/// configuration and output.
const NOT_RUST: &[&str] = &["sh", "console", "sql", "toml", "text", "json", "yaml"];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace")
        .to_path_buf()
}

/// The language line of each block that `page` opens, with its line
/// number.
fn openers(page: &str) -> Vec<(usize, String)> {
    let mut openers = Vec::new();
    let mut inside = false;
    for (number, line) in page.lines().enumerate() {
        let Some(info) = line.trim_start().strip_prefix("```") else {
            continue;
        };
        if !inside {
            openers.push((number + 1, info.trim().to_owned()));
        }
        inside = !inside;
    }
    openers
}

/// What is wrong with a block opened with `info`, if anything.
fn fault(info: &str) -> Option<String> {
    let mut parts = info.split(',').map(str::trim);
    let language = parts.next().unwrap_or("");
    let attributes: Vec<&str> = parts.collect();
    match language {
        "" => Some("a block without a language: name one (rust, sh, sql, text...)".to_owned()),
        "rust" if attributes.contains(&"ignore") => {
            Some("a Rust block marked `ignore` is never compiled: make it compile".to_owned())
        }
        "rust" => None,
        other if NOT_RUST.contains(&other) => None,
        other => Some(format!("an unknown block language `{other}`")),
    }
}

#[test]
fn every_block_of_the_docs_and_the_readmes_is_compiled_or_named_as_something_else() {
    let root = root();
    let mut pages: Vec<PathBuf> = std::fs::read_dir(root.join("docs"))
        .expect("docs/")
        .map(|entry| entry.expect("an entry").path())
        .filter(|path| path.extension().is_some_and(|extension| extension == "md"))
        .collect();
    pages.extend([root.join("README.md"), root.join("examples/README.md")]);
    pages.sort();
    let guide = std::fs::read_to_string(root.join("cqrs/src/lib.rs")).expect("the facade");
    let mut faults = Vec::new();
    for page in &pages {
        let text = std::fs::read_to_string(page).expect("a page");
        let name = page
            .strip_prefix(&root)
            .expect("in the workspace")
            .display()
            .to_string();
        let openers = openers(&text);
        for (line, info) in &openers {
            if let Some(fault) = fault(info) {
                faults.push(format!("{name}:{line}: {fault}"));
            }
        }
        let has_rust = openers.iter().any(|(_, info)| info.starts_with("rust"));
        let file = page
            .file_name()
            .and_then(|file| file.to_str())
            .unwrap_or("");
        let compiled = match name.as_str() {
            // A doc test of the examples crate.
            "README.md" => true,
            _ if name.starts_with("docs/") => guide.contains(&format!("\"/{file}\"")),
            _ => false,
        };
        if has_rust && !compiled {
            faults.push(format!(
                "{name} shows Rust but no crate compiles it: include it in `cqrskit::guide`"
            ));
        }
    }
    assert!(faults.is_empty(), "{}", faults.join("\n"));
}

#[test]
fn the_check_finds_what_it_looks_for() {
    let page = "text\n```\nuntagged\n```\n```rust,ignore\nx\n```\n```rust,no_run\nok\n```\n```sql\nSELECT 1\n```\n";
    let faults: Vec<Option<String>> = openers(page).iter().map(|(_, info)| fault(info)).collect();
    assert!(
        faults[0]
            .as_deref()
            .is_some_and(|fault| fault.contains("without a language"))
    );
    assert!(
        faults[1]
            .as_deref()
            .is_some_and(|fault| fault.contains("ignore"))
    );
    assert_eq!(faults[2..], [None, None]);
    assert_eq!(openers(page).len(), 4, "closing fences are not openers");
}
