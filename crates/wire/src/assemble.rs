//! Messages larger than one frame (version 3): how a receiver puts them back together.
//!
//! The layout and the rules are in [`crate::fragment`]. The [`FrameDecoder`](crate::FrameDecoder)
//! drives an [`Assembler`]: a first frame opens a message (in one of two classes, calls and
//! one-ways or replies), each continuation's body is appended to it, and the last part turns it
//! into an ordinary [`Frame`]. The message's buffer is reserved at its declared length, which
//! was checked against the limit first, so the payload is never copied from one buffer to a
//! larger one, and a reader can receive parts straight into it ([`Assembler::direct`]).

use bytes::{Buf, Bytes, BytesMut};

use crate::WireError;
use crate::fragment::{MORE, REPLY};
use crate::frame::{Frame, OneWay, Request, Response};
use crate::header::{FrameKind, Header};

/// A message the decoder refused because its declared length exceeds the receiver's limit
/// ([`Limits::max_payload`](crate::Limits::max_payload)). Its parts are read and dropped; the
/// connection goes on. The receiver answers a refused request with a failure, drops a refused
/// one-way message, and fails the call whose reply was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// The kind of the message's first frame: Request, Response or OneWay.
    pub kind: FrameKind,
    /// The message's id (the request id for requests and responses).
    pub id: u64,
    /// The route of a request or one-way message (empty for a response).
    pub route: Bytes,
    /// The payload length the sender declared.
    pub len: u64,
    /// The limit it exceeds.
    pub limit: u64,
}

/// What a first frame carries besides its payload.
#[derive(Debug)]
pub(crate) enum Head {
    Request {
        deadline_ms: u32,
        route: Bytes,
        context: Bytes,
    },
    Response,
    OneWay {
        route: Bytes,
    },
}

impl Head {
    fn class(&self) -> usize {
        match self {
            Self::Request { .. } | Self::OneWay { .. } => CALLS,
            Self::Response => REPLIES,
        }
    }

    fn kind(&self) -> FrameKind {
        match self {
            Self::Request { .. } => FrameKind::Request,
            Self::Response => FrameKind::Response,
            Self::OneWay { .. } => FrameKind::OneWay,
        }
    }
}

/// Requests and one-way messages of the sender.
const CALLS: usize = 0;
/// Responses to our requests.
const REPLIES: usize = 1;

/// A message in parts.
#[derive(Debug)]
struct Open {
    id: u64,
    head: Head,
    len: u64,
    received: u64,
    /// `None` when the message was refused: its parts are dropped.
    buf: Option<BytesMut>,
}

/// The continuation whose body is being read.
#[derive(Debug, Clone, Copy)]
struct Part {
    class: usize,
    remaining: usize,
    last: bool,
}

/// What feeding buffered bytes to a part did.
#[derive(Debug)]
pub(crate) enum Step {
    /// The part needs more bytes than were buffered.
    NeedMore,
    /// The part is complete and the message is not (or was refused).
    PartDone,
    /// The message is complete.
    Complete(Frame),
}

/// The receiving side's messages in parts, one per class at most.
#[derive(Debug, Default)]
pub(crate) struct Assembler {
    open: [Option<Open>; 2],
    part: Option<Part>,
    /// Per class, a handle on the buffer of the last message put together. Once its receiver
    /// drops that message, the next message of the class reuses the buffer instead of
    /// allocating and faulting in fresh pages (64 MiB is 16,384 page faults, ~20 ms; `peerwire-
    /// bench rpc --payload 67108864` at 1 in flight). It never holds more than the last message
    /// of its class, so a connection's bound stays two messages.
    spare: [BytesMut; 2],
}

impl Assembler {
    /// Opens a message from its first frame: `first` is the part of the payload the first
    /// frame carried. Returns the refusal when `len` exceeds `limit`.
    pub(crate) fn begin(
        &mut self,
        id: u64,
        head: Head,
        len: u64,
        first: Bytes,
        limit: u64,
    ) -> Result<Option<Refused>, WireError> {
        let kind = head.kind();
        if id == 0 {
            return Err(WireError::ZeroId(kind));
        }
        let class = head.class();
        if let Some(open) = &self.open[class] {
            return Err(WireError::MessageOpen {
                kind,
                id,
                open: open.id,
            });
        }
        // More parts follow, each at least one byte long.
        if first.len() as u64 >= len {
            return Err(WireError::PartLength {
                id,
                len,
                received: 0,
                part: first.len() as u64,
            });
        }
        let refused = (len > limit).then(|| Refused {
            kind,
            id,
            route: match &head {
                Head::Request { route, .. } | Head::OneWay { route } => route.clone(),
                Head::Response => Bytes::new(),
            },
            len,
            limit,
        });
        let buf = refused.is_none().then(|| {
            // Bounded by the limit just checked. Reuses the last message's buffer if its
            // receiver has dropped it; a new reservation is only address space until the parts
            // arrive.
            let mut buf = std::mem::take(&mut self.spare[class]);
            buf.clear();
            buf.reserve(len as usize);
            buf.extend_from_slice(&first);
            buf
        });
        self.open[class] = Some(Open {
            id,
            head,
            len,
            received: first.len() as u64,
            buf,
        });
        Ok(refused)
    }

    /// Starts reading the body of continuation `header` (its length already checked against
    /// the frame limit).
    pub(crate) fn begin_part(&mut self, header: &Header) -> Result<(), WireError> {
        let reply = header.flags & REPLY != 0;
        let class = if reply { REPLIES } else { CALLS };
        let open = match &self.open[class] {
            Some(open) if open.id == header.id => open,
            _ => {
                return Err(WireError::UnexpectedPart {
                    id: header.id,
                    reply,
                });
            }
        };
        let part = u64::from(header.length);
        let last = header.flags & MORE == 0;
        let after = open.received + part;
        let fits = if last {
            after == open.len
        } else {
            after < open.len
        };
        if part == 0 || !fits {
            return Err(WireError::PartLength {
                id: open.id,
                len: open.len,
                received: open.received,
                part,
            });
        }
        self.part = Some(Part {
            class,
            remaining: header.length as usize,
            last,
        });
        Ok(())
    }

    /// Whether a continuation's body is being read.
    pub(crate) fn in_part(&self) -> bool {
        self.part.is_some()
    }

    /// The id of the request being put together, if one is (a refused one counts: it was
    /// answered already, and a cancel of it is as harmless).
    pub(crate) fn open_request(&self) -> Option<u64> {
        match &self.open[CALLS] {
            Some(open) if matches!(open.head, Head::Request { .. }) => Some(open.id),
            _ => None,
        }
    }

    /// Whether any message is open.
    pub(crate) fn is_open(&self) -> bool {
        self.open.iter().any(Option::is_some)
    }

    /// Bytes of the current part not yet received (0 when no part is being read).
    pub(crate) fn part_remaining(&self) -> usize {
        self.part.map_or(0, |p| p.remaining)
    }

    /// Moves the current part's bytes from the front of `src` into its message.
    pub(crate) fn feed(&mut self, src: &mut BytesMut) -> Step {
        let Some(part) = self.part.as_mut() else {
            return Step::NeedMore;
        };
        let take = part.remaining.min(src.len());
        let open = self.open[part.class]
            .as_mut()
            .expect("a part belongs to an open message");
        if let Some(buf) = open.buf.as_mut() {
            buf.extend_from_slice(&src[..take]);
        }
        src.advance(take);
        open.received += take as u64;
        part.remaining -= take;
        self.after_progress()
    }

    /// The buffer the current part's remaining bytes go to, and how many: for a reader that
    /// receives them straight into the message instead of through its read buffer. `None` when
    /// no part is being read or its message was refused.
    pub(crate) fn direct(&mut self) -> Option<(&mut BytesMut, usize)> {
        let part = self.part?;
        if part.remaining == 0 {
            return None;
        }
        let open = self.open[part.class].as_mut()?;
        open.buf.as_mut().map(|buf| (buf, part.remaining))
    }

    /// Records `n` bytes received into the buffer [`Assembler::direct`] returned. The next
    /// [`Assembler::feed`] finishes the part if it is complete.
    pub(crate) fn filled(&mut self, n: usize) {
        if let Some(part) = self.part.as_mut() {
            let n = n.min(part.remaining);
            part.remaining -= n;
            if let Some(open) = self.open[part.class].as_mut() {
                open.received += n as u64;
            }
        }
    }

    fn after_progress(&mut self) -> Step {
        let Some(part) = self.part else {
            return Step::NeedMore;
        };
        if part.remaining > 0 {
            return Step::NeedMore;
        }
        self.part = None;
        if !part.last {
            return Step::PartDone;
        }
        let open = self.open[part.class]
            .take()
            .expect("a part belongs to an open message");
        match open.buf {
            None => Step::PartDone,
            Some(mut buf) => {
                let payload = buf.split().freeze();
                self.spare[part.class] = buf;
                Step::Complete(match open.head {
                    Head::Request {
                        deadline_ms,
                        route,
                        context,
                    } => Frame::Request(Request {
                        id: open.id,
                        deadline_ms,
                        route,
                        context,
                        payload,
                    }),
                    Head::Response => Frame::Response(Response {
                        id: open.id,
                        payload,
                    }),
                    Head::OneWay { route } => Frame::OneWay(OneWay {
                        id: open.id,
                        route,
                        payload,
                    }),
                })
            }
        }
    }
}
