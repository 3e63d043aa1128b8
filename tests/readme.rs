//! The README's "Add Quern" lists every crate a user's code needs: each crate named in the
//! README's Rust examples and in the quickstart (an application as a user writes one) is one of
//! its `[dependencies]`. It would have caught the quickstart's use of Quern's internal
//! test-support crate, and a README that never said to add `serde` and `tokio`.

use std::collections::BTreeSet;

const README: &str = include_str!("../README.md");
const QUICKSTART: &str = include_str!("../examples/quickstart/main.rs");

/// The dependency names of the first `toml` block after the "## Add Quern" heading.
fn readme_dependencies() -> BTreeSet<String> {
    let section = README
        .split_once("## Add Quern")
        .expect("the README has an \"## Add Quern\" section")
        .1;
    let block = section
        .split_once("```toml")
        .and_then(|(_, rest)| rest.split_once("```"))
        .expect("a toml block in \"## Add Quern\"")
        .0;
    block
        .lines()
        .filter_map(|line| line.split_once('=').map(|(name, _)| name.trim()))
        .filter(|name| !name.is_empty() && !name.starts_with('#') && !name.starts_with('['))
        .map(str::to_owned)
        .collect()
}

/// The Rust code blocks of the README, hidden lines included.
fn readme_rust_blocks() -> Vec<&'static str> {
    let mut blocks = Vec::new();
    let mut rest = README;
    while let Some((_, after)) = rest.split_once("```rust") {
        let (block, tail) = after.split_once("```").expect("a closed code block");
        blocks.push(block.split_once('\n').map_or("", |(_, code)| code));
        rest = tail;
    }
    assert!(!blocks.is_empty(), "the README has Rust examples");
    blocks
}

/// The crates `code` names: lowercase path roots (`serde::`, `#[tokio::main]`, `use quern::…`)
/// that are not the language's own, a primitive type, or a module the code declares.
fn crates_named(code: &str) -> BTreeSet<String> {
    const OWN: &[&str] = &[
        "std", "core", "alloc", "crate", "self", "super", "u8", "u16", "u32", "u64", "u128", "usize", "i8",
        "i16", "i32", "i64", "i128", "isize", "f32", "f64", "str", "bool", "char",
    ];
    let modules: BTreeSet<&str> = code
        .lines()
        .filter_map(|l| {
            l.trim_start()
                .strip_prefix("mod ")
                .or_else(|| l.trim_start().strip_prefix("pub mod "))
        })
        .map(|rest| rest.trim_end_matches([';', '{', ' ']))
        .collect();
    let bytes = code.as_bytes();
    let ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let mut found = BTreeSet::new();
    let mut i = 0;
    while i < bytes.len() {
        if !ident(bytes[i])
            || (i > 0 && (ident(bytes[i - 1]) || bytes[i - 1] == b':' || bytes[i - 1] == b'.'))
        {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && ident(bytes[i]) {
            i += 1;
        }
        let word = &code[start..i];
        let path = code[i..].starts_with("::");
        if path
            && word.starts_with(|c: char| c.is_ascii_lowercase())
            && !OWN.contains(&word)
            && !modules.contains(word)
        {
            found.insert(word.replace('_', "-"));
        }
    }
    found
}

#[test]
fn every_crate_the_examples_name_is_in_the_readmes_dependencies() {
    let deps = readme_dependencies();
    assert!(
        ["quern", "serde", "tokio"].iter().all(|d| deps.contains(*d)),
        "{deps:?}"
    );
    let mut named: Vec<(String, &str)> = crates_named(QUICKSTART)
        .into_iter()
        .map(|c| (c, "examples/quickstart/main.rs"))
        .collect();
    for block in readme_rust_blocks() {
        named.extend(crates_named(block).into_iter().map(|c| (c, "README.md")));
    }
    let missing: Vec<_> = named.iter().filter(|(c, _)| !deps.contains(c)).collect();
    assert!(
        missing.is_empty(),
        "crates used but not in the README's \"Add Quern\" dependencies {deps:?}: {missing:?}"
    );
}

#[test]
fn the_scan_finds_crates_and_skips_the_rest() {
    let code = "use serde::Serialize;\n#[tokio::main]\nmod local;\nfn f() { local::x(); std::mem::drop(u64::MAX); \
                test_support::RedisServer::start(); a.b::<T>(); Duration::from_secs(1); }";
    assert_eq!(
        crates_named(code).into_iter().collect::<Vec<_>>(),
        ["serde", "test-support", "tokio"]
    );
}
