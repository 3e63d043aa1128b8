//! `examples/worker.rs`'s own tests, run by `cargo test`: the example is built as a binary (the
//! chaos and recovery tests spawn it), so its test module is compiled here as well.
#[allow(dead_code)]
#[path = "../examples/worker.rs"]
mod worker;
