#[peerwire::protocol]
trait Fs {
    fn stat(&self, path: String) -> Result<u64, peerwire::HandlerError>;
}

fn main() {}
