//! A stream whose bytes travel in Noise transport messages after the handshake: each record is
//! a u16 big-endian length and a ciphertext of at most 65,535 bytes (plaintext up to 65,519
//! bytes and a 16-byte tag), so every byte is encrypted and authenticated, and a record
//! replayed, reordered, dropped or altered fails the next decryption (the nonce is the
//! record's count).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Largest Noise message.
pub(crate) const MAX_RECORD: usize = 65_535;
/// Bytes of the authentication tag on each record.
const TAG: usize = 16;
/// Largest plaintext in one record.
const MAX_PLAIN: usize = MAX_RECORD - TAG;

/// An encrypted stream over `I`.
pub(crate) struct SecretStream<I> {
    io: I,
    noise: snow::TransportState,
    /// Bytes read, not yet a whole record.
    raw: BytesMut,
    /// Decrypted bytes not yet read.
    plain: BytesMut,
    /// Encrypted records not yet written.
    out: BytesMut,
    /// Where small slices are gathered into one record's plaintext.
    scratch: Vec<u8>,
}

impl<I> SecretStream<I> {
    pub(crate) fn new(io: I, noise: snow::TransportState, already_read: BytesMut) -> Self {
        Self {
            io,
            noise,
            raw: already_read,
            plain: BytesMut::new(),
            out: BytesMut::new(),
            scratch: Vec::with_capacity(MAX_PLAIN),
        }
    }
}

fn corrupt(e: impl std::fmt::Display) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("secret mode: a record failed to decrypt ({e}): replayed, altered or out of order"),
    )
}

impl<I: AsyncRead + Unpin> SecretStream<I> {
    /// Decrypts every whole record in `raw` into `plain`.
    fn decrypt_buffered(&mut self) -> io::Result<()> {
        while self.raw.len() >= 2 {
            let len = usize::from(u16::from_be_bytes([self.raw[0], self.raw[1]]));
            if self.raw.len() < 2 + len {
                break;
            }
            if len < TAG {
                return Err(corrupt(format!("a record of {len} bytes")));
            }
            self.raw.advance(2);
            let record = self.raw.split_to(len);
            // Straight into the tail of `plain`: no copy after decryption.
            let start = self.plain.len();
            self.plain.resize(start + len - TAG, 0);
            let n = self
                .noise
                .read_message(&record, &mut self.plain[start..])
                .map_err(corrupt)?;
            self.plain.truncate(start + n);
        }
        Ok(())
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for SecretStream<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if !this.plain.is_empty() {
                let n = this.plain.len().min(buf.remaining());
                buf.put_slice(&this.plain[..n]);
                this.plain.advance(n);
                return Poll::Ready(Ok(()));
            }
            this.decrypt_buffered()?;
            if !this.plain.is_empty() {
                continue;
            }
            this.raw.reserve(MAX_RECORD + 2);
            let before = this.raw.len();
            let n = ready!(tokio_util::io::poll_read_buf(
                Pin::new(&mut this.io),
                cx,
                &mut this.raw
            ))?;
            if n == 0 {
                if before == 0 {
                    return Poll::Ready(Ok(()));
                }
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "secret mode: the stream ended inside a record",
                )));
            }
        }
    }
}

impl<I: AsyncWrite + Unpin> SecretStream<I> {
    /// Writes pending records; ready once all are written.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.out.is_empty() {
            let n = ready!(Pin::new(&mut self.io).poll_write(cx, &self.out))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.out.advance(n);
        }
        Poll::Ready(Ok(()))
    }

    /// Encrypts `plain` (at most [`MAX_PLAIN`] bytes) as one record into `out`, straight
    /// into its tail.
    fn seal(&mut self, plain: &[u8]) -> io::Result<()> {
        let start = self.out.len();
        let len = plain.len() + TAG;
        self.out.resize(start + 2 + len, 0);
        let n = self
            .noise
            .write_message(plain, &mut self.out[start + 2..])
            .map_err(|e| io::Error::other(format!("secret mode: encrypting: {e}")))?;
        self.out[start..start + 2].copy_from_slice(&(n as u16).to_be_bytes());
        self.out.truncate(start + 2 + n);
        Ok(())
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for SecretStream<I> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        // Bounded memory: a new record only once the previous ones are written.
        ready!(this.poll_drain(cx))?;
        let n = buf.len().min(MAX_PLAIN);
        this.seal(&buf[..n])?;
        // Start writing; what does not go now goes on the next write or flush.
        if let Poll::Ready(Err(e)) = this.poll_drain(cx) {
            return Poll::Ready(Err(e));
        }
        Poll::Ready(Ok(n))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        // A large first slice is sealed as it is; small ones are gathered into one record (a
        // batch of small frames becomes one record).
        if let Some(first) = bufs.iter().find(|b| !b.is_empty())
            && first.len() >= MAX_PLAIN / 2
        {
            let n = first.len().min(MAX_PLAIN);
            this.seal(&first[..n])?;
            if let Poll::Ready(Err(e)) = this.poll_drain(cx) {
                return Poll::Ready(Err(e));
            }
            return Poll::Ready(Ok(n));
        }
        let mut plain = std::mem::take(&mut this.scratch);
        plain.clear();
        for b in bufs {
            let take = b.len().min(MAX_PLAIN - plain.len());
            plain.extend_from_slice(&b[..take]);
            if plain.len() == MAX_PLAIN {
                break;
            }
        }
        let n = plain.len();
        let sealed = if n == 0 { Ok(()) } else { this.seal(&plain) };
        this.scratch = plain;
        sealed?;
        if n > 0
            && let Poll::Ready(Err(e)) = this.poll_drain(cx)
        {
            return Poll::Ready(Err(e));
        }
        Poll::Ready(Ok(n))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.io).poll_shutdown(cx)
    }
}
