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
    /// Scratch space for one record's plaintext or ciphertext.
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
            scratch: vec![0u8; MAX_RECORD],
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
            let n = self
                .noise
                .read_message(&record, &mut self.scratch)
                .map_err(corrupt)?;
            self.plain.extend_from_slice(&self.scratch[..n]);
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

    /// Encrypts `plain` (at most [`MAX_PLAIN`] bytes) as one record into `out`.
    fn seal(&mut self, plain: &[u8]) -> io::Result<()> {
        let n = self
            .noise
            .write_message(plain, &mut self.scratch)
            .map_err(|e| io::Error::other(format!("secret mode: encrypting: {e}")))?;
        self.out.reserve(2 + n);
        self.out.extend_from_slice(&(n as u16).to_be_bytes());
        self.out.extend_from_slice(&self.scratch[..n]);
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
        // Gather slices into records (a batch of small frames becomes one record).
        let mut plain = Vec::with_capacity(MAX_PLAIN.min(bufs.iter().map(|b| b.len()).sum()));
        for b in bufs {
            let take = b.len().min(MAX_PLAIN - plain.len());
            plain.extend_from_slice(&b[..take]);
            if plain.len() == MAX_PLAIN {
                break;
            }
        }
        if plain.is_empty() {
            return Poll::Ready(Ok(0));
        }
        this.seal(&plain)?;
        if let Poll::Ready(Err(e)) = this.poll_drain(cx) {
            return Poll::Ready(Err(e));
        }
        Poll::Ready(Ok(plain.len()))
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
