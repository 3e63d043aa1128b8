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

    /// `MULTI`, `SADD <queues> <queue>` when `register` is given, `XADD <stream> * e <envelope>`
    /// for each envelope, `EXEC`, in one round trip; returns the entry ids, in order. All or
    /// nothing: a command refused while queued (`OOM`) aborts the transaction, and the error
    /// returned is that refusal.
    pub(crate) async fn push(
        &mut self,
        stream: &str,
        envelopes: &[String],
        register: Option<(&str, &str)>,
    ) -> Result<Vec<String>, RedisError> {
        let out = &mut self.raw.out;
        out.clear();
        encode(out, [b"MULTI".as_slice()].into_iter());
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
        encode(out, [b"EXEC".as_slice()].into_iter());
        let limit = self.raw.target.response_timeout;
        let mut replies = Replies::transaction(envelopes.len() + skip, skip);
        self.raw.exchange(limit, |buf| replies.parse(buf)).await?;
        match replies.error {
            None if replies.kept.len() == envelopes.len() => Ok(replies.kept),
            None => Err(server_error(&format!(
                "ERR {} entry ids for {} jobs",
                replies.kept.len(),
                envelopes.len()
            ))),
            Some(line) => Err(server_error(&line)),
        }
    }
}
