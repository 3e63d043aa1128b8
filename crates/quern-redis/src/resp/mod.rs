//! Quern's own RESP2 client, for the two hottest paths: claiming jobs and bulk appends.
//!
//! # Layout
//! - `protocol` — the pure parser and encoder: bytes in, replies (or "incomplete") out.
//! - `connection` — where to connect, the handshake, and one command-reply exchange.
//! - `reader` — [`Reader`], the connection a worker claims jobs on.
//! - `pusher` — `Pusher`, the bulk `XADD` writer behind [`Storage::push`](crate::Storage::push).

mod connection;
pub(crate) mod protocol;
mod pusher;
mod reader;

pub(crate) use connection::{Addr, Target};
pub(crate) use pusher::Pusher;
pub use reader::Reader;
