#[peerwire::protocol]
trait Fs {
    async fn rename(&self, from: String, to: String) -> Result<bool, peerwire::HandlerError>;
}

fn main() {}
