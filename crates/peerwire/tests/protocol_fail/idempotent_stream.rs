#[peerwire::protocol(name = "Log", version = 1)]
pub trait Log {
    /// A streaming method cannot be retried.
    #[idempotent]
    async fn tail(
        &self,
        from: u64,
    ) -> Result<peerwire::service::ItemStream<String>, peerwire::HandlerError>;
}

fn main() {}
