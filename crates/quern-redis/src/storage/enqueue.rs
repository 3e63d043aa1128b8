//! Enqueueing: jobs appended to the stream now, or put in the delayed set until due.

use crate::error::StorageError;
use crate::keys::{QueueKeys, queues_key};
use crate::scripts;

use super::{Storage, script_cmd};

impl Storage {
    /// Whether `queue` still has to be recorded in the set of known queues by this process.
    fn needs_register(&self, queue: &str) -> bool {
        !self.registered.lock().expect("poisoned").contains(queue)
    }

    /// Notes that `queue` is recorded, after the write that recorded it succeeded (a refused
    /// write, `OOM` say, records nothing, and the next one tries again).
    fn registered(&self, queue: &str) {
        self.registered.lock().expect("poisoned").insert(queue.to_owned());
    }

    /// `SADD <queues> <queue>` into `pipe` when the queue still has to be recorded; whether it did.
    fn register_pipe(&self, pipe: &mut redis::Pipeline, queue: &str) -> bool {
        let register = self.needs_register(queue);
        if register {
            pipe.cmd("SADD")
                .arg(queues_key(&self.config.prefix))
                .arg(queue)
                .ignore();
        }
        register
    }

    /// Appends envelopes to the queue's stream in one round trip; returns their entry ids, in
    /// order (a job whose envelope carries no id is `<queue>/<entry id>`:
    /// [`JobId::for_entry`](quern_core::JobId::for_entry)).
    ///
    /// All or nothing: a batch is one `MULTI`/`EXEC` transaction, so a batch Redis refuses
    /// half-way (`OOM` once `maxmemory` is reached: [`StorageError::is_out_of_memory`]) wrote
    /// no job, and a caller that tries again enqueues none twice.
    ///
    /// A batch goes over the storage's own bulk connection when it is free (the commands written
    /// straight into one buffer, the replies read as they arrive), else, like a single job,
    /// through the shared connection.
    pub async fn push(&self, keys: &QueueKeys, envelopes: &[String]) -> Result<Vec<String>, StorageError> {
        if envelopes.is_empty() {
            return Ok(Vec::new());
        }
        if envelopes.len() > 1
            && let Some(pusher) = &self.pusher
            && let Ok(mut pusher) = pusher.try_lock()
        {
            let register = self.needs_register(&keys.queue);
            // The set's key is built only when the queue still has to be recorded.
            let set = register.then(|| queues_key(&self.config.prefix));
            let reg = set.as_deref().map(|set| (set, keys.queue.as_str()));
            let ids = pusher
                .push(&keys.stream, envelopes, reg)
                .await
                .map_err(StorageError::redis("enqueueing"))?;
            if register {
                self.registered(&keys.queue);
            }
            return Ok(ids);
        }
        let mut pipe = redis::pipe();
        let register = self.register_pipe(&mut pipe, &keys.queue);
        if register || envelopes.len() > 1 {
            // One XADD alone is atomic already; more commands are made one transaction.
            pipe.atomic();
        }
        for env in envelopes {
            pipe.cmd("XADD").arg(&keys.stream).arg("*").arg("e").arg(env);
        }
        let ids = pipe
            .query_async(&mut self.conn())
            .await
            .map_err(StorageError::redis("enqueueing"))?;
        if register {
            self.registered(&keys.queue);
        }
        Ok(ids)
    }

    /// Puts envelopes in the delayed set, each due at its time (ms since epoch), in one round
    /// trip. Those that carry an id are indexed by it, so they are found while they wait.
    pub async fn schedule(&self, keys: &QueueKeys, jobs: &[(u64, String)]) -> Result<(), StorageError> {
        if jobs.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        let register = self.register_pipe(&mut pipe, &keys.queue);
        for (due, env) in jobs {
            script_cmd(
                &mut pipe,
                &scripts::SCHEDULE,
                &[&keys.scheduled, &keys.wake, &keys.jobs],
                |c| {
                    c.arg(due).arg(env);
                },
            );
        }
        self.exec_scripts(&pipe, "scheduling").await?;
        if register {
            self.registered(&keys.queue);
        }
        Ok(())
    }
}

/// What [`Storage::push_with_id`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum IdPush {
    /// Written: to the stream as this entry, or (`None`) to the delayed set.
    Written(Option<String>),
    /// A job with this id was already known; nothing was written. Where it is: `e` (in the
    /// stream), `s` (delayed), `r` (waiting for a retry), `d` (dead), `f` (finished, record kept).
    Exists(char),
    /// Another job, this one, holds the unique key; nothing was written.
    Held(String),
}

impl Storage {
    /// Writes the envelope of a job with an id of its own once: to the stream now, or to the
    /// delayed set when `due_ms` is given; nothing when a job with that id is already known in
    /// the queue, or another job holds its `unique` key (`enqueue_id.lua`), in one atomic step.
    /// `fresh`: the id was just made (a unique job without a caller's id), so nothing can know it.
    pub async fn push_with_id(
        &self,
        keys: &QueueKeys,
        id: &str,
        envelope: &str,
        due_ms: Option<u64>,
        unique: Option<&quern_core::Unique>,
        fresh: bool,
    ) -> Result<IdPush, StorageError> {
        if self.needs_register(&keys.queue) {
            redis::cmd("SADD")
                .arg(queues_key(&self.config.prefix))
                .arg(&keys.queue)
                .exec_async(&mut self.conn())
                .await
                .map_err(StorageError::redis("enqueueing"))?;
            self.registered(&keys.queue);
        }
        let due = due_ms.map(|d| d.to_string()).unwrap_or_default();
        let (lock, states, ttl) = match unique {
            Some(u) => (
                keys.unique(u.key()),
                u.states_code(),
                u.ttl_limit()
                    .map(|t| t.as_millis().to_string())
                    .unwrap_or_default(),
            ),
            None => (keys.done(id), String::new(), String::new()),
        };
        let reply: Vec<redis::Value> = scripts::ENQUEUE_ID
            .key(&keys.stream)
            .key(&keys.scheduled)
            .key(&keys.wake)
            .key(&keys.jobs)
            .key(&keys.dead_records)
            .key(keys.done(id))
            .key(lock)
            .arg(id)
            .arg(envelope)
            .arg(due)
            .arg(states)
            .arg(ttl)
            .arg(crate::keys::GROUP)
            .arg(if fresh { "1" } else { "0" })
            .invoke_async(&mut self.conn())
            .await
            .map_err(StorageError::redis("enqueueing"))?;
        let text = |v: Option<&redis::Value>| match v {
            Some(redis::Value::BulkString(b)) => String::from_utf8_lossy(b).into_owned(),
            Some(redis::Value::SimpleString(s)) => s.clone(),
            _ => String::new(),
        };
        let written = matches!(reply.first(), Some(redis::Value::Int(1)));
        let at = text(reply.get(1));
        Ok(if written {
            IdPush::Written((!at.is_empty()).then_some(at))
        } else if at == "u" {
            IdPush::Held(text(reply.get(2)))
        } else {
            IdPush::Exists(at.chars().next().unwrap_or('e'))
        })
    }
}
