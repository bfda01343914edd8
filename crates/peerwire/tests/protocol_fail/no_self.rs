#[peerwire::protocol]
trait Fs {
    async fn stat(path: String) -> Result<u64, peerwire::HandlerError>;
}

fn main() {}
