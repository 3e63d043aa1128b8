//! A connection that cannot be made says what is wrong and what to do — a URL that does not
//! parse, a password refused, a password missing, nothing listening — against a real private
//! server with a password, and never prints the password.

use quern_core::ErrorChain;
use quern_redis::{RedisConfig, Storage};
use test_support::RedisServer;

const SECRET: &str = "c0nnectS3cret";

/// The whole chain of what connecting and then one command gave.
async fn attempt(url: &str) -> String {
    let config = RedisConfig::new(url).prefix(test_support::unique_name("qt_conn"));
    let err = match Storage::connect(config).await {
        Err(e) => e,
        Ok(storage) => storage.queues().await.expect_err("a command fails"),
    };
    let text = ErrorChain::of(&err).to_string();
    assert!(!text.contains(SECRET), "no password in: {text}");
    text
}

#[tokio::test]
async fn each_connection_failure_names_its_cause() {
    let server = RedisServer::start_with_password(SECRET, &[]);
    let port = server.port();

    let wrong = attempt(&format!("redis://:wrong-{SECRET}@127.0.0.1:{port}")).await;
    assert!(wrong.contains("refused the user name or password"), "{wrong}");

    let missing = attempt(&server.url()).await;
    assert!(
        missing.contains("needs a password: put it in the URL"),
        "{missing}"
    );

    let unparsable = attempt(&format!("redis://:{SECRET}@127.0.0.1:{port}/not-a-db")).await;
    assert!(unparsable.contains("the URL does not parse"), "{unparsable}");

    // A port that was free a moment ago: nothing listens on it.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let nothing = attempt(&format!("redis://127.0.0.1:{closed}")).await;
    assert!(nothing.contains("nothing listens there"), "{nothing}");

    // And the right password works.
    let storage = Storage::connect(RedisConfig::new(server.url_with_password()))
        .await
        .expect("connects");
    storage.queues().await.expect("a command succeeds");
}
