#[peerwire::protocol]
trait Fs {
    #[engine(json)]
    async fn stat(&self, path: String) -> Result<u64, peerwire::HandlerError>;
}

fn main() {}
