//! `quern`: the admin commands (`stats`, `enqueue`, `dead …`, `job show`) for any Quern
//! deployment. Workers are the user's own binaries, which register their job types.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    quern_worker::cli::main(quern_worker::Registry::new()).await
}
