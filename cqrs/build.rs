//! Renders the guides (`docs/`, linked as `guide/`) for `cqrskit::guide`:
//! a link from one guide page to another (`postgres.md`) becomes a link to
//! that page's module, so the guides read the same on GitHub and in the API
//! docs.

use std::env;
use std::fs;
use std::path::Path;

/// Each guide page and the module of `cqrskit::guide` that renders it.
const GUIDES: &[(&str, &str)] = &[
    ("getting-started.md", "getting_started"),
    ("concepts.md", "concepts"),
    ("macros.md", "macros"),
    ("testing.md", "testing"),
    ("postgres.md", "postgres"),
    ("read-models.md", "read_models"),
    ("versioning.md", "versioning"),
    ("integration.md", "integration"),
    ("scaling.md", "scaling"),
    ("operations.md", "operations"),
    ("performance.md", "performance"),
    ("comparison.md", "comparison"),
];

fn main() {
    println!("cargo:rerun-if-changed=guide");
    let out = env::var("OUT_DIR").expect("cargo sets OUT_DIR for build scripts");
    for (page, _) in GUIDES {
        let source = Path::new("guide").join(page);
        let text = fs::read_to_string(&source)
            .unwrap_or_else(|error| panic!("cannot read {}: {error}", source.display()));
        let rendered = GUIDES.iter().fold(text, |text, (other, module)| {
            text.replace(
                &format!("]({other})"),
                &format!("](../{module}/index.html)"),
            )
            .replace(
                &format!("]({other}#"),
                &format!("](../{module}/index.html#"),
            )
        });
        let target = Path::new(&out).join(page);
        fs::write(&target, rendered)
            .unwrap_or_else(|error| panic!("cannot write {}: {error}", target.display()));
    }
}
