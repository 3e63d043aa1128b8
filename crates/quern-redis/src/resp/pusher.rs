//! `Pusher`: bulk `XADD` over a connection of its own.

use redis::RedisError;

use super::connection::{Raw, Target};
use super::protocol::{Replies, encode, server_error};

/// Appends jobs to streams in bulk over a connection of its own: the commands are written
/// straight into one buffer and the replies (one entry id each) read as they arrive.
/// [`Storage::push`](crate::Storage::push) uses it for batches when it is free, and the shared
/// connection otherwise.
pub(crate) struct Pusher {
    raw: Raw,
}

impl Pusher {
    pub(crate) fn new(target: Target) -> Pusher {
        Pusher {
            raw: Raw {
                target,
                io: None,
                buf: Vec::with_capacity(16 * 1024),
                out: Vec::with_capacity(256 * 1024),
            },
        }
    }

    /// `SADD <queues> <queue>` when `register` is given, then `XADD <stream> * e <envelope>` for
    /// each envelope, in one round trip; returns the entry ids, in order. Fails with the first
    /// error reply, after reading all.
    pub(crate) async fn push(
        &mut self,
        stream: &str,
        envelopes: &[String],
        register: Option<(&str, &str)>,
    ) -> Result<Vec<String>, RedisError> {
        let out = &mut self.raw.out;
        out.clear();
        let mut skip = 0;
        if let Some((set, queue)) = register {
            encode(out, ["SADD", set, queue].iter().map(|s| s.as_bytes()));
            skip = 1;
        }
        for env in envelopes {
            encode(
                out,
                [b"XADD".as_slice(), stream.as_bytes(), b"*", b"e", env.as_bytes()].into_iter(),
            );
        }
        let limit = self.raw.target.response_timeout;
        let mut replies = Replies::new(envelopes.len() + skip, skip);
        self.raw.exchange(limit, |buf| replies.parse(buf)).await?;
        match replies.error {
            None => Ok(replies.kept),
            Some(line) => Err(server_error(&line)),
        }
    }
}
