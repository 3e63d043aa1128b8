//! A [`Producer`] as a job's resource, for jobs that enqueue follow-up jobs.

use quern_core::{Extensions, JobError, Outcome, Resource, ResourceContext};

use crate::producer::Producer;

/// A job that declares `type Resources = Producer;` gets its worker's producer: the one added
/// with `Worker::extension(Producer::new(storage))` (a `quern::testing::Namespace` adds its
/// own). A worker without one refuses to start and says so.
///
/// ```
/// # use quern_core::{Job, JobContext, JobError};
/// # use quern_redis::Producer;
/// # #[derive(serde::Serialize, serde::Deserialize)] struct SendReceipt { order: u64 }
/// # impl Job for SendReceipt { const NAME: &'static str = "send_receipt"; type Resources = ();
/// #   async fn run(self, _: &JobContext, _: &mut ()) -> Result<(), JobError> { Ok(()) } }
/// #[derive(serde::Serialize, serde::Deserialize)]
/// struct PlaceOrder { order: u64 }
///
/// impl Job for PlaceOrder {
///     const NAME: &'static str = "place_order";
///     type Resources = Producer;
///
///     async fn run(self, _: &JobContext, producer: &mut Producer) -> Result<(), JobError> {
///         producer.enqueue(&SendReceipt { order: self.order }).await?;
///         Ok(())
///     }
/// }
/// ```
impl Resource for Producer {
    async fn acquire(cx: ResourceContext<'_>) -> Result<Self, JobError> {
        match cx.extensions.get::<Producer>() {
            Some(producer) => Ok(producer.clone()),
            None => Err(JobError::permanent(MISSING)),
        }
    }

    async fn release(self, _: Outcome) {}

    fn check(extensions: &Extensions) -> Result<(), String> {
        match extensions.get::<Producer>() {
            Some(_) => Ok(()),
            None => Err(MISSING.to_owned()),
        }
    }
}

const MISSING: &str = "it declares a `Producer` resource and the worker has none: add one with \
                       `Worker::extension(Producer::new(storage))`";
