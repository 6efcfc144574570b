//! What crates.io will show and docs.rs will build: every package that is not
//! `publish = false` carries the metadata a registry page needs, depends on
//! its siblings by version as well as by path, and is in the publishing order
//! of `scripts/package` (which CI runs to package and verify each one).

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// `cargo metadata` for the workspace's own packages.
fn packages() -> Vec<Value> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = Command::new(cargo)
        .args([
            "metadata",
            "--no-deps",
            "--format-version",
            "1",
            "--offline",
        ])
        .current_dir(workspace_root())
        .output()
        .expect("cargo metadata runs");
    assert!(
        output.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let metadata: Value =
        serde_json::from_slice(&output.stdout).expect("cargo metadata prints JSON");
    metadata["packages"]
        .as_array()
        .expect("a package list")
        .clone()
}

/// `publish = false` shows as an empty registry list; no key means crates.io.
fn is_published(package: &Value) -> bool {
    !matches!(&package["publish"], Value::Array(registries) if registries.is_empty())
}

fn text<'a>(package: &'a Value, key: &str) -> Option<&'a str> {
    package[key]
        .as_str()
        .filter(|value| !value.trim().is_empty())
}

/// The packages `scripts/package` lists, in its order.
fn publishing_order() -> Vec<String> {
    let script = std::fs::read_to_string(workspace_root().join("scripts/package"))
        .expect("scripts/package exists");
    let line = script
        .lines()
        .find_map(|line| line.strip_prefix("PUBLISHED=("))
        .expect("scripts/package sets PUBLISHED=(...)");
    line.trim_end_matches(')')
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

#[test]
fn every_published_package_has_what_a_registry_page_needs() {
    let mut problems = Vec::new();
    for package in packages().iter().filter(|package| is_published(package)) {
        let name = package["name"].as_str().expect("a name");
        let manifest = PathBuf::from(package["manifest_path"].as_str().expect("a manifest path"));
        let folder = manifest.parent().expect("a folder");
        for key in [
            "description",
            "license",
            "repository",
            "documentation",
            "readme",
        ] {
            if text(package, key).is_none() {
                problems.push(format!("{name}: no `{key}`"));
            }
        }
        if let Some(readme) = text(package, "readme") {
            if !folder.join(readme).is_file() {
                problems.push(format!("{name}: readme {readme} does not exist"));
            }
        }
        for license in ["LICENSE-MIT", "LICENSE-APACHE"] {
            if !folder.join(license).is_file() {
                problems.push(format!("{name}: no {license} beside its manifest"));
            }
        }
        let keywords = package["keywords"].as_array().map_or(0, Vec::len);
        if !(1..=5).contains(&keywords) {
            problems.push(format!(
                "{name}: {keywords} keywords (crates.io takes 1 to 5)"
            ));
        }
        if package["categories"].as_array().is_none_or(Vec::is_empty) {
            problems.push(format!("{name}: no categories"));
        }
        if package["metadata"]["docs"]["rs"].is_null() {
            problems.push(format!("{name}: no [package.metadata.docs.rs]"));
        }
        for dependency in package["dependencies"]
            .as_array()
            .expect("a dependency list")
        {
            // Dev-dependencies by path alone are dropped by `cargo package`;
            // normal ones must name a version the registry can resolve.
            let is_dev = dependency["kind"].as_str() == Some("dev");
            if dependency["path"].is_string() && !is_dev && dependency["req"].as_str() == Some("*")
            {
                let dependency = dependency["name"].as_str().unwrap_or("?");
                problems.push(format!(
                    "{name}: path dependency {dependency} has no version"
                ));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "packages not ready to publish:\n{}",
        problems.join("\n")
    );
}

#[test]
fn the_publishing_order_lists_every_published_package_after_its_dependencies() {
    let packages = packages();
    let published: Vec<&Value> = packages
        .iter()
        .filter(|package| is_published(package))
        .collect();
    let order = publishing_order();

    let mut listed = order.clone();
    listed.sort();
    let mut expected: Vec<String> = published
        .iter()
        .map(|package| package["name"].as_str().expect("a name").to_owned())
        .collect();
    expected.sort();
    assert_eq!(
        listed, expected,
        "scripts/package must list exactly the packages that are not `publish = false`"
    );

    for package in &published {
        let name = package["name"].as_str().expect("a name");
        let at = order
            .iter()
            .position(|listed| listed == name)
            .expect("listed");
        // Dev-dependencies (the parts' doc examples use the facade) are
        // dropped by `cargo package`, so only the others order publishing.
        let dependencies = package["dependencies"]
            .as_array()
            .expect("a dependency list");
        for dependency in dependencies
            .iter()
            .filter(|dependency| dependency["kind"].as_str() != Some("dev"))
        {
            let dependency = dependency["name"].as_str().expect("a name");
            if let Some(before) = order.iter().position(|listed| listed == dependency) {
                assert!(
                    before < at,
                    "scripts/package publishes {name} before its dependency {dependency}"
                );
            }
        }
    }
}

#[test]
fn applications_and_tests_depend_on_the_facade_not_on_its_parts() {
    let parts = ["cqrskit-core", "cqrskit-macros", "cqrskit-postgres"];
    for package in packages().iter().filter(|package| !is_published(package)) {
        let name = package["name"].as_str().expect("a name");
        for dependency in package["dependencies"]
            .as_array()
            .expect("a dependency list")
        {
            let dependency = dependency["name"].as_str().expect("a name");
            assert!(
                !parts.contains(&dependency),
                "{name} depends on {dependency}: it must use `cqrskit`, as the guide tells users to"
            );
        }
    }
}
