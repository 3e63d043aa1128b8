//! The in-memory broker passes the same contract suite as Redis.

#[tokio::test]
async fn the_memory_broker_passes_the_broker_contract() {
    let broker = quern_core::broker::memory::MemoryBroker::new();
    quern_core::broker::contract::run_all(&broker, "memory").await;
}
