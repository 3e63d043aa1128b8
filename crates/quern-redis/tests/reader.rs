//! The worker's claiming connection: authentication, database selection, error codes and
//! reconnection, against a private `redis-server`.

use std::time::Duration;

use quern_core::Job;
use quern_redis::{Producer, RedisConfig, Storage};
use test_support::RedisServer;

#[derive(serde::Serialize, serde::Deserialize)]
struct Ping {
    n: u64,
}

impl Job for Ping {
    const NAME: &'static str = "ping";
    type Resources = ();
    async fn run(self, _: &quern_core::JobContext, _: &mut ()) -> Result<(), quern_core::JobError> {
        Ok(())
    }
}

async fn admin(url: &str, args: &[&str]) {
    let mut con = redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    let _: redis::Value = cmd.query_async(&mut con).await.unwrap();
}

const BLOCK: Duration = Duration::from_millis(50);

/// `n` jobs enqueued in bulk at `url`, the consumer group made, and a reader to claim them.
async fn queue_of(url: &str, n: u64) -> (Storage, quern_redis::QueueKeys, Vec<Ping>, quern_redis::Reader) {
    let storage = Storage::connect(RedisConfig::new(url).prefix("rd"))
        .await
        .unwrap();
    let keys = storage.keys("default");
    let jobs: Vec<Ping> = (0..n).map(|n| Ping { n }).collect();
    Producer::new(storage.clone()).enqueue_many(&jobs).await.unwrap();
    storage.ensure_group(&keys).await.unwrap();
    let reader = storage.reader(BLOCK).await.unwrap();
    (storage, keys, jobs, reader)
}

#[tokio::test]
async fn the_reader_authenticates_selects_the_database_and_reads() {
    let server = RedisServer::start();
    let port = server.port();
    // Set after start: the readiness check pings without a password.
    admin(
        &server.url(),
        &["ACL", "SETUSER", "quern", "on", ">w0rker-pw", "~*", "&*", "+@all"],
    )
    .await;
    admin(&server.url(), &["CONFIG", "SET", "requirepass", "s3cret"]).await;

    for url in [
        format!("redis://:s3cret@127.0.0.1:{port}/3"),
        format!("redis://quern:w0rker-pw@127.0.0.1:{port}/5"),
    ] {
        let (storage, keys, jobs, mut reader) = queue_of(&url, 300).await;
        let mut got = Vec::new();
        while got.len() < 300 {
            let batch = storage.read(&mut reader, &keys, "c1", 128, BLOCK).await.unwrap();
            assert!(!batch.is_empty(), "jobs are there to read ({url})");
            got.extend(batch);
        }
        for (i, d) in got.iter().enumerate() {
            let env = quern_core::envelope::decode_envelope(&d.envelope).unwrap();
            assert_eq!(env.payload.get(), format!("{{\"n\":{i}}}"));
            assert_eq!((d.lease_expiries, d.foreign_fields.as_deref()), (0, None));
        }
        // Nothing more: the block time passes and an empty batch comes back.
        assert!(
            storage
                .read(&mut reader, &keys, "c1", 128, BLOCK)
                .await
                .unwrap()
                .is_empty()
        );

        // Every connection dropped by the server: the reader and the bulk connection reconnect,
        // authenticate and select the database again.
        let admin_url = format!("redis://:s3cret@127.0.0.1:{port}");
        admin(&admin_url, &["CLIENT", "KILL", "TYPE", "normal"]).await;
        // Both notice the closed connection before using it: the first calls succeed.
        Producer::new(storage.clone())
            .enqueue_many(&jobs[..2])
            .await
            .unwrap();
        let again = storage.read(&mut reader, &keys, "c1", 128, BLOCK).await.unwrap();
        assert_eq!(
            again.len(),
            2,
            "reconnected with the same credentials and database"
        );
    }
    // The jobs went to the databases named in the URLs, not to database 0.
    let db = |n: u32| format!("redis://:s3cret@127.0.0.1:{port}/{n}");
    let mut con = redis::Client::open(db(0))
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let n: u64 = redis::cmd("DBSIZE").query_async(&mut con).await.unwrap();
    assert_eq!(n, 0);

    let wrong = format!("redis://:not-it@127.0.0.1:{port}/0");
    // A wrong password fails at connect (the shared connection) or, at the latest, when the
    // reader is made; either way the error says so without showing it.
    let err = match Storage::connect(RedisConfig::new(&wrong)).await {
        Err(e) => e,
        Ok(storage) => storage.reader(BLOCK).await.unwrap_err(),
    };
    let chain = format!("{} {err:?}", quern_core::ErrorChain::of(&err));
    assert!(!chain.contains("not-it"), "the password is not shown: {chain}");
    assert!(chain.contains("cannot connect to Redis"), "{chain}");
}

#[tokio::test]
async fn a_missing_group_is_nogroup_and_a_restart_is_survived() {
    let mut server = RedisServer::start();
    let storage = Storage::connect(RedisConfig::new(server.url()).prefix("rd"))
        .await
        .unwrap();
    let keys = storage.keys("default");
    Producer::new(storage.clone())
        .enqueue(&Ping { n: 1 })
        .await
        .unwrap();
    let mut reader = storage.reader(BLOCK).await.unwrap();
    let err = storage
        .read(&mut reader, &keys, "c1", 10, BLOCK)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("NOGROUP"), "{err}");
    assert!(err.is_retryable());

    // The same reader goes on after an error reply...
    storage.ensure_group(&keys).await.unwrap();
    assert_eq!(
        storage
            .read(&mut reader, &keys, "c1", 10, BLOCK)
            .await
            .unwrap()
            .len(),
        1
    );

    // ...and after the server went away and came back (the next read reconnects).
    server.restart();
    let mut recovered = false;
    for _ in 0..100 {
        match storage.read(&mut reader, &keys, "c1", 10, BLOCK).await {
            Ok(_) => {
                recovered = true;
                break;
            }
            Err(e) => {
                assert!(e.is_retryable(), "{e}");
                if e.code() == Some("NOGROUP") {
                    // The shared connection may itself still be reconnecting: retried next turn.
                    if let Err(e) = storage.ensure_group(&keys).await {
                        assert!(e.is_retryable(), "{e}");
                    }
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    assert!(recovered, "the reader reconnected after the restart");
}

#[tokio::test]
async fn a_unix_socket_works_like_tcp() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("redis.sock");
    let socket_arg = socket.display().to_string();
    let _server = RedisServer::start_with(&["--unixsocket", &socket_arg, "--unixsocketperm", "700"]);
    let (storage, keys, _, mut reader) = queue_of(&format!("unix://{}", socket.display()), 50).await;
    let got = storage.read(&mut reader, &keys, "c1", 100, BLOCK).await.unwrap();
    assert_eq!(got.len(), 50);
    assert_eq!(storage.stats(&keys).await.unwrap().running, 50);
}
