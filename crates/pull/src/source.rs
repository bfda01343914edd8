//! What a stream's bytes come from, and a source made ready to serve: a buffer or a file with
//! its length, per-chunk CRC32Cs and whole CRC32C computed once at registration; or a
//! producer of chunks read once, in order.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use futures::{Stream, StreamExt};
use tokio::sync::{Mutex, Notify};

/// The bytes of a stream to register.
pub struct Source(pub(crate) Kind);

/// A producer's chunks.
pub type ChunkStream = Pin<Box<dyn Stream<Item = io::Result<Bytes>> + Send>>;

pub(crate) enum Kind {
    Bytes(Bytes),
    File(std::fs::File),
    Producer(ChunkStream),
    /// Made ready by a manager (`StreamManager::prepare`).
    Ready(Arc<Prepared>),
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Kind::Bytes(b) => write!(f, "Source::Bytes({} bytes)", b.len()),
            Kind::File(_) => f.write_str("Source::File"),
            Kind::Producer(_) => f.write_str("Source::Producer"),
            Kind::Ready(_) => f.write_str("Source::Ready"),
        }
    }
}

impl Source {
    /// A buffer in memory, served in chunks without copying.
    pub fn bytes(data: impl Into<Bytes>) -> Self {
        Self(Kind::Bytes(data.into()))
    }

    /// An open file, served from its start to its length at registration, with `sendfile`
    /// on plaintext TCP.
    pub fn file(file: std::fs::File) -> Self {
        Self(Kind::File(file))
    }

    /// A producer of chunks, read once and in order as the reader fetches them (Spark's
    /// `OneForOneStreamManager` over an iterator of buffers). Items longer than the manager's
    /// chunk size are split; shorter ones are chunks of their own. Length and CRC32C are not
    /// known up front; each chunk's CRC32C is.
    pub fn producer(chunks: impl Stream<Item = io::Result<Bytes>> + Send + 'static) -> Self {
        Self(Kind::Producer(Box::pin(chunks)))
    }
}

/// A source ready to serve.
pub(crate) enum Prepared {
    Bytes {
        data: Bytes,
        sums: Sums,
    },
    File {
        file: Arc<std::fs::File>,
        len: u64,
        sums: Sums,
    },
    Producer(Producer),
}

/// CRC32Cs of a buffer or file: per chunk, and of the whole.
pub(crate) struct Sums {
    pub(crate) chunks: Vec<u32>,
    pub(crate) whole: u32,
    /// The chunk size they were computed for.
    pub(crate) chunk_size: usize,
}

impl Prepared {
    /// Makes `source` ready with chunks of `chunk_size` bytes (files are read once here, on
    /// a blocking thread, for their checksums).
    pub(crate) async fn new(source: Source, chunk_size: usize) -> io::Result<Arc<Self>> {
        Ok(Arc::new(match source.0 {
            Kind::Ready(ready) => {
                let made_for = match &*ready {
                    Self::Bytes { sums, .. } | Self::File { sums, .. } => sums.chunk_size,
                    Self::Producer(_) => chunk_size,
                };
                if made_for != chunk_size {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        format!(
                            "a source prepared for {made_for}-byte chunks, registered with a manager of {chunk_size}-byte chunks"
                        ),
                    ));
                }
                return Ok(ready);
            }
            Kind::Bytes(data) => {
                let sums = sums_of(&data, chunk_size);
                Self::Bytes { data, sums }
            }
            Kind::File(file) => {
                let file = Arc::new(file);
                let f = file.clone();
                let (len, sums) = tokio::task::spawn_blocking(move || file_sums(&f, chunk_size))
                    .await
                    .map_err(io::Error::other)??;
                Self::File { file, len, sums }
            }
            Kind::Producer(stream) => Self::Producer(Producer::new(stream)),
        }))
    }

    /// Length, whole CRC32C, and whether chunks may be fetched in any order.
    pub(crate) fn describe(&self) -> (Option<u64>, Option<u32>, bool) {
        match self {
            Self::Bytes { data, sums } => (Some(data.len() as u64), Some(sums.whole), true),
            Self::File { len, sums, .. } => (Some(*len), Some(sums.whole), true),
            Self::Producer(_) => (None, None, false),
        }
    }
}

fn sums_of(data: &[u8], chunk_size: usize) -> Sums {
    let mut chunks = Vec::with_capacity(data.len().div_ceil(chunk_size).max(1));
    let mut whole = 0;
    if data.is_empty() {
        chunks.push(0);
    }
    for chunk in data.chunks(chunk_size) {
        chunks.push(crc32c::crc32c(chunk));
        whole = crc32c::crc32c_append(whole, chunk);
    }
    Sums {
        chunks,
        whole,
        chunk_size,
    }
}

/// Reads `file` once from its start to its end for its checksums; returns its length.
fn file_sums(file: &std::fs::File, chunk_size: usize) -> io::Result<(u64, Sums)> {
    use std::os::unix::fs::FileExt;
    let len = file.metadata()?.len();
    let mut buf = vec![
        0u8;
        chunk_size
            .min(usize::try_from(len).unwrap_or(usize::MAX))
            .max(1)
    ];
    let mut chunks = Vec::new();
    let mut whole = 0;
    let mut offset = 0u64;
    while offset < len {
        let want = (len - offset).min(chunk_size as u64) as usize;
        file.read_exact_at(&mut buf[..want], offset)?;
        chunks.push(crc32c::crc32c(&buf[..want]));
        whole = crc32c::crc32c_append(whole, &buf[..want]);
        offset += want as u64;
    }
    if chunks.is_empty() {
        chunks.push(0);
    }
    Ok((
        len,
        Sums {
            chunks,
            whole,
            chunk_size,
        },
    ))
}

/// A producer read in order: the next chunk index, the stream, and what is left of an item
/// longer than a chunk.
pub(crate) struct Producer {
    state: Mutex<ProducerState>,
    /// The index the next fetch must ask for, readable without the lock.
    next: AtomicU64,
    /// Woken whenever `next` moves or the producer ends.
    moved: Notify,
}

struct ProducerState {
    stream: ChunkStream,
    rest: Bytes,
    /// The index of the last chunk, once the producer ended.
    ended: Option<u64>,
    /// Why the producer failed, if it did: every later fetch fails with it.
    failed: Option<String>,
}

impl ProducerState {
    /// The producer's next item that is not empty.
    async fn next_item(&mut self) -> Option<io::Result<Bytes>> {
        loop {
            match self.stream.next().await {
                Some(Ok(item)) if item.is_empty() => continue,
                other => return other,
            }
        }
    }

    /// Where a fetch past the producer's current state ends, if it does.
    fn finished(&self) -> Option<Produced> {
        if let Some(why) = &self.failed {
            return Some(Produced::Failed(why.clone()));
        }
        self.ended.map(|last| Produced::PastEnd { last })
    }
}

/// One chunk of a producer, or why not.
pub(crate) enum Produced {
    Chunk {
        data: Bytes,
        last: bool,
    },
    /// Asked for a chunk already handed out.
    Gone {
        next: u64,
    },
    /// Past the end of a producer that ended at `last`.
    PastEnd {
        last: u64,
    },
    Failed(String),
}

impl Producer {
    fn new(stream: ChunkStream) -> Self {
        Self {
            state: Mutex::new(ProducerState {
                stream,
                rest: Bytes::new(),
                ended: None,
                failed: None,
            }),
            next: AtomicU64::new(0),
            moved: Notify::new(),
        }
    }

    /// Chunk `index`: waits until the chunks before it were handed out (a reader keeps a
    /// window of fetches in flight, which may reach the server in any order).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe while waiting for earlier chunks; cancelled while reading the producer,
    /// the item being read is lost (the stream is released with its reader anyway).
    pub(crate) async fn chunk(&self, index: u64, chunk_size: usize) -> Produced {
        loop {
            let moved = self.moved.notified();
            let next = self.next.load(Ordering::Acquire);
            if index < next {
                return Produced::Gone { next };
            }
            if index == next {
                break;
            }
            if let Some(done) = self.state.lock().await.finished() {
                return done;
            }
            moved.await;
        }
        let mut state = self.state.lock().await;
        if let Some(done) = state.finished() {
            return done;
        }
        let mut data = if state.rest.is_empty() {
            match state.next_item().await {
                Some(Ok(item)) => item,
                Some(Err(e)) => return self.fail(&mut state, e),
                // An empty stream: one empty, last chunk.
                None => Bytes::new(),
            }
        } else {
            std::mem::take(&mut state.rest)
        };
        if data.len() > chunk_size {
            state.rest = data.split_off(chunk_size);
        }
        // The end is known only by looking one item ahead.
        let last = if state.rest.is_empty() {
            match state.next_item().await {
                Some(Ok(item)) => {
                    state.rest = item;
                    false
                }
                Some(Err(e)) => return self.fail(&mut state, e),
                None => true,
            }
        } else {
            false
        };
        if last {
            state.ended = Some(index);
        }
        self.next.store(index + 1, Ordering::Release);
        self.moved.notify_waiters();
        Produced::Chunk { data, last }
    }

    fn fail(&self, state: &mut ProducerState, e: io::Error) -> Produced {
        let why = e.to_string();
        state.failed = Some(why.clone());
        self.moved.notify_waiters();
        Produced::Failed(why)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn producer(items: Vec<&'static [u8]>) -> Producer {
        Producer::new(Box::pin(futures::stream::iter(
            items.into_iter().map(|i| Ok(Bytes::from_static(i))),
        )))
    }

    #[tokio::test]
    async fn long_items_split_and_the_last_chunk_is_marked() {
        let p = producer(vec![b"abcdefgh", b"", b"ij"]);
        let mut got = Vec::new();
        for i in 0.. {
            match p.chunk(i, 3).await {
                Produced::Chunk { data, last } => {
                    got.push((data, last));
                    if last {
                        break;
                    }
                }
                _ => panic!("chunk {i}"),
            }
        }
        let want: Vec<(Bytes, bool)> =
            [("abc", false), ("def", false), ("gh", false), ("ij", true)]
                .into_iter()
                .map(|(d, l)| (Bytes::from_static(d.as_bytes()), l))
                .collect();
        assert_eq!(got, want);
        assert!(matches!(p.chunk(4, 3).await, Produced::PastEnd { last: 3 }));
        assert!(matches!(p.chunk(1, 3).await, Produced::Gone { next: 4 }));
    }

    #[tokio::test]
    async fn a_later_chunk_waits_for_the_earlier_one() {
        let p = Arc::new(producer(vec![b"a", b"b"]));
        let later = tokio::spawn({
            let p = p.clone();
            async move {
                match p.chunk(1, 8).await {
                    Produced::Chunk { data, last } => (data, last),
                    _ => panic!("chunk 1"),
                }
            }
        });
        tokio::task::yield_now().await;
        assert!(matches!(
            p.chunk(0, 8).await,
            Produced::Chunk { last: false, .. }
        ));
        assert_eq!(later.await.unwrap(), (Bytes::from_static(b"b"), true));
    }

    #[test]
    fn sums_cover_each_chunk_and_the_whole() {
        let data = b"hello pull streams";
        let s = sums_of(data, 5);
        assert_eq!(s.chunks.len(), 4);
        assert_eq!(s.chunks[0], crc32c::crc32c(b"hello"));
        assert_eq!(s.whole, crc32c::crc32c(data));
        assert_eq!(sums_of(b"", 5).chunks, [0]);
    }
}
