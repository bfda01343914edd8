#[peerwire::protocol]
trait Fs {
    async fn stat(&self, path: String) -> u64;
}

fn main() {}
