//! The writer's messages in parts (protocol version 3): which frames travel in parts, which
//! wait, and what goes into each write.
//!
//! A request, response or one-way message whose body is larger than one part is sent as a
//! first frame and continuations ([`peerwire_wire::fragment`]). Each write carries every small
//! frame that is ready plus **one part** of the call (or one-way message) in parts and one part
//! of the reply in parts, so a small call waits for one part at most, never for a whole large
//! message. The receiver holds at most one message of each class open, so further large calls
//! (and further large replies) wait their turn in order. One-way messages keep their order:
//! while one is in parts, later one-way messages, small or not, wait behind it.

use std::collections::VecDeque;

use peerwire_wire::Frame;
use peerwire_wire::fragment::Fragments;
use tokio::sync::OwnedSemaphorePermit;

use super::batch::Batch;
use super::outgoing::Outgoing;

/// Payload bytes per part while other frames share the connection: 64 KiB (~30 µs of a write
/// on loopback), so a small call waits little behind a part; messages over it go in parts. A
/// connection that carries large messages alone splits only those over `message_part` (512 KiB
/// by default), in parts of that size: fewer writes. Measured with `peerwire-bench mixed` (1 KiB
/// calls beside 64 MiB calls on one connection): 256 KiB parts throughout put the small calls'
/// p99 at ~5.6x their idle p99, 1 MiB parts at ~16x, 64 KiB parts at ~3x.
const MIXED_PART: usize = 64 * 1024;

/// Writes without a small frame after which a connection counts as carrying large messages
/// alone again.
const MIXED_ROUNDS: u32 = 32;

/// What the writer must settle once an entry it handed over is written.
#[derive(Debug)]
pub(super) enum Done {
    /// A one-way or control frame: take it off the queue counters (`len` encoded bytes).
    Queued { len: usize },
    /// A request: nothing to settle.
    Call,
    /// A reply: its call's in-flight slot, released now.
    Reply(#[allow(dead_code)] OwnedSemaphorePermit),
}

/// A message being written in parts.
#[derive(Debug)]
struct Sending {
    parts: Fragments,
    done: Done,
    oneway: bool,
}

/// One class's message in parts and the entries waiting for it.
#[derive(Debug, Default)]
struct Lane {
    sending: Option<Sending>,
    waiting: VecDeque<Outgoing>,
}

/// The writer's state for messages in parts.
#[derive(Debug)]
pub(super) struct Parts {
    /// Payload bytes per part; `None` when the connection runs below version 3.
    part: Option<usize>,
    calls: Lane,
    replies: Lane,
    /// One-way messages in `calls` (sending or waiting): later ones wait too.
    oneways: usize,
    /// The id given to the next one-way message sent in parts.
    next_oneway_id: u64,
    /// Writes since a small frame went out beside the parts.
    since_small: u32,
}

impl Parts {
    /// Parts of `part` payload bytes; `None` sends every message in one frame.
    pub(super) fn new(part: Option<usize>) -> Self {
        Self {
            part,
            calls: Lane::default(),
            replies: Lane::default(),
            oneways: 0,
            next_oneway_id: 0,
            since_small: MIXED_ROUNDS,
        }
    }

    /// The part size now (and the size over which a message goes in parts): small while small
    /// frames share the connection, the configured size while large messages go alone; `None`
    /// below version 3.
    fn part_size(&self) -> Option<usize> {
        let part = self.part?;
        Some(if self.since_small < MIXED_ROUNDS {
            part.min(MIXED_PART)
        } else {
            part
        })
    }

    /// Whether a message is in parts or waiting: the writer must come back without waiting
    /// for new entries.
    pub(super) fn busy(&self) -> bool {
        self.calls.sending.is_some()
            || self.replies.sending.is_some()
            || !self.calls.waiting.is_empty()
            || !self.replies.waiting.is_empty()
    }

    /// Takes `item` if it goes in parts or must wait behind a message in parts (its first
    /// frame may go into `batch` now); gives it back to be written as usual otherwise.
    pub(super) fn admit(&mut self, item: Outgoing, batch: &mut Batch) -> Option<Outgoing> {
        let Some(part) = self.part_size() else {
            return Some(item);
        };
        if let Outgoing::Queued(Frame::Cancel { id }) = &item {
            // A large call still waiting for its turn is dropped: the peer never sees it.
            let id = *id;
            self.calls
                .waiting
                .retain(|w| !matches!(w, Outgoing::Call(Frame::Request(r)) if r.id == id));
            return Some(item);
        }
        let (oneway, large, reply) = match &item {
            Outgoing::Queued(f @ Frame::OneWay(_)) => (true, in_parts(f, part), false),
            Outgoing::Call(f @ Frame::Request(_)) => (false, in_parts(f, part), false),
            Outgoing::Reply(f @ Frame::Response(_), _) => (false, in_parts(f, part), true),
            _ => return Some(item),
        };
        if oneway && self.oneways > 0 {
            // Behind an earlier one-way message: keep their order.
            self.oneways += 1;
            self.calls.waiting.push_back(item);
            return None;
        }
        if !large {
            // Only a frame that fits a small part counts as small company: messages between a
            // small part and `message_part` are bulk themselves, and splitting them would
            // queue them one by one.
            if let Outgoing::Queued(f) | Outgoing::Call(f) | Outgoing::Reply(f, _) = &item
                && body_len(f) <= MIXED_PART
            {
                self.since_small = 0;
            }
            return Some(item);
        }
        if oneway {
            self.oneways += 1;
        }
        let lane = if reply {
            &mut self.replies
        } else {
            &mut self.calls
        };
        if lane.sending.is_none() && lane.waiting.is_empty() {
            lane.sending = start(item, part, &mut self.next_oneway_id, batch);
        } else {
            lane.waiting.push_back(item);
        }
        None
    }

    /// Adds the next part of each message in parts to `batch`, and starts the next waiting
    /// message of a class whose message ended. Entries fully handed over are pushed to `done`.
    pub(super) fn pump(&mut self, batch: &mut Batch, done: &mut Vec<Done>) {
        let Some(part) = self.part_size() else {
            return;
        };
        self.since_small = self.since_small.saturating_add(1);
        for reply in [false, true] {
            let lane = if reply {
                &mut self.replies
            } else {
                &mut self.calls
            };
            if let Some(sending) = lane.sending.as_mut() {
                sending.parts.set_part(part);
                let mut next = None;
                batch.push_encoded(|dst| next = sending.parts.next_part(dst), None);
                if let Some(bytes) = next {
                    batch.push_encoded(|_| {}, Some(bytes));
                }
                if sending.parts.remaining() == 0 {
                    let sending = lane.sending.take().expect("checked above");
                    if sending.oneway {
                        self.oneways -= 1;
                    }
                    done.push(sending.done);
                }
            }
            // The next waiting entries: small one-way messages held for order go whole.
            while lane.sending.is_none() {
                let Some(item) = lane.waiting.pop_front() else {
                    break;
                };
                let (frame, oneway) = match &item {
                    Outgoing::Queued(f) => (f, matches!(f, Frame::OneWay(_))),
                    Outgoing::Call(f) | Outgoing::Reply(f, _) => (f, false),
                    other => unreachable!("only messages wait for parts, not {other:?}"),
                };
                if in_parts(frame, part) {
                    lane.sending = start(item, part, &mut self.next_oneway_id, batch);
                    continue;
                }
                if oneway {
                    self.oneways -= 1;
                }
                batch.push(frame);
                done.push(match item {
                    Outgoing::Queued(f) => Done::Queued {
                        len: f.encoded_len(),
                    },
                    Outgoing::Reply(_, slot) => Done::Reply(slot),
                    _ => Done::Call,
                });
            }
        }
    }
}

/// Whether `frame` goes in parts of `part` payload bytes: its body is larger than a part, and
/// it has a payload to split.
fn in_parts(frame: &Frame, part: usize) -> bool {
    let payload = match frame {
        Frame::Request(r) => &r.payload,
        Frame::Response(r) => &r.payload,
        Frame::OneWay(m) => &m.payload,
        _ => return false,
    };
    !payload.is_empty() && body_len(frame) > part
}

/// A frame's body length.
fn body_len(frame: &Frame) -> usize {
    frame.encoded_len() - peerwire_wire::HEADER_LEN
}

/// Writes the first frame of a large `item` into `batch` and returns its sending state.
fn start(
    item: Outgoing,
    part: usize,
    next_oneway_id: &mut u64,
    batch: &mut Batch,
) -> Option<Sending> {
    let (frame, done, oneway) = match item {
        Outgoing::Queued(Frame::OneWay(mut message)) => {
            // A one-way message in parts needs an id: any non-zero one, since the receiver
            // holds one call-class message open at a time.
            *next_oneway_id = next_oneway_id.wrapping_add(1).max(1);
            message.id = *next_oneway_id;
            let frame = Frame::OneWay(message);
            let len = frame.encoded_len();
            (frame, Done::Queued { len }, true)
        }
        Outgoing::Call(frame) => (frame, Done::Call, false),
        Outgoing::Reply(frame, slot) => (frame, Done::Reply(slot), false),
        other => unreachable!("only messages go in parts, not {other:?}"),
    };
    let mut parts = None;
    batch.push_encoded(|dst| parts = Fragments::start(&frame, part, dst), None);
    metrics::counter!("peerwire_messages_sent_in_parts_total").increment(1);
    Some(Sending {
        parts: parts.expect("a message with a payload larger than one part"),
        done,
        oneway,
    })
}
