//! Enqueueing: jobs appended to the stream now, or put in the delayed set until due.

use crate::error::StorageError;
use crate::keys::{QueueKeys, queues_key};
use crate::scripts;

use super::{Storage, script_cmd};

impl Storage {
    /// Records `queue` in the set of known queues, once per process.
    fn register_pipe(&self, pipe: &mut redis::Pipeline, queue: &str) {
        let mut seen = self.registered.lock().expect("poisoned");
        if !seen.contains(queue) {
            seen.insert(queue.to_owned());
            pipe.cmd("SADD")
                .arg(queues_key(&self.config.prefix))
                .arg(queue)
                .ignore();
        }
    }

    /// Appends envelopes to the queue's stream in one round trip; returns their entry ids, in
    /// order (a job whose envelope carries no id is `<queue>/<entry id>`:
    /// [`JobId::for_entry`](quern_core::JobId::for_entry)).
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
            let register = !self.registered.lock().expect("poisoned").contains(&keys.queue);
            // The set's key is built only when the queue still has to be recorded.
            let set = register.then(|| queues_key(&self.config.prefix));
            let reg = set.as_deref().map(|set| (set, keys.queue.as_str()));
            let ids = pusher
                .push(&keys.stream, envelopes, reg)
                .await
                .map_err(StorageError::redis("enqueueing"))?;
            if register {
                self.registered
                    .lock()
                    .expect("poisoned")
                    .insert(keys.queue.clone());
            }
            return Ok(ids);
        }
        let mut pipe = redis::pipe();
        self.register_pipe(&mut pipe, &keys.queue);
        for env in envelopes {
            pipe.cmd("XADD").arg(&keys.stream).arg("*").arg("e").arg(env);
        }
        pipe.query_async(&mut self.conn())
            .await
            .map_err(StorageError::redis("enqueueing"))
    }

    /// Puts envelopes in the delayed set, each due at its time (ms since epoch), in one round
    /// trip. Those that carry an id are indexed by it, so they are found while they wait.
    pub async fn schedule(&self, keys: &QueueKeys, jobs: &[(u64, String)]) -> Result<(), StorageError> {
        if jobs.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        self.register_pipe(&mut pipe, &keys.queue);
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
        self.exec_scripts(&pipe, "scheduling").await
    }
}
