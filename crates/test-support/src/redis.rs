//! [`RedisServer`]: a private `redis-server` on a free port. It lives in `quern::testing`
//! (`quern_worker::testing`), where users' tests find it too; re-exported here for Quern's own.

pub use quern_worker::testing::{REDIS_SERVER_ENV, RedisServer};
