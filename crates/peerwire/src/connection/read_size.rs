//! How much room the frame reader offers the socket on each read: an adaptive size, as Netty's
//! `AdaptiveRecvByteBufAllocator` sizes its receive buffers.
//!
//! A connection that carries a call now and then reads a few hundred bytes at a time and needs
//! a small buffer (a server with 10,000 such connections must not hold 64 KiB for each); a
//! connection that streams batches of replies fills whatever it is offered and reads best in
//! large chunks. So the offer starts small, doubles whenever a read fills it, and halves after
//! two reads in a row that used less than half of it. Frames larger than the offer do not wait
//! for it to grow: the decoder reserves room for the whole frame once it has the header.
//!
//! Pure: no I/O; the reader reports what each read returned.

/// The smallest offer: one small call or heartbeat.
pub(crate) const MIN_READ: usize = 512;

/// The first offer on a new connection: a handshake and a few small calls.
pub(crate) const INITIAL_READ: usize = 2048;

/// The read-size policy of one connection.
#[derive(Debug, Clone)]
pub(crate) struct ReadSize {
    current: usize,
    max: usize,
    /// A read used less than half of the offer last time too.
    shrink_pending: bool,
}

impl ReadSize {
    /// A policy whose offers never exceed `max` (the configured read buffer; at least
    /// [`MIN_READ`]).
    pub(crate) fn new(max: usize) -> Self {
        let max = max.max(MIN_READ);
        Self {
            current: INITIAL_READ.clamp(MIN_READ, max),
            max,
            shrink_pending: false,
        }
    }

    /// The room to offer the next read.
    pub(crate) fn next(&self) -> usize {
        self.current
    }

    /// A read offered `offered` bytes of room and returned `read` bytes.
    pub(crate) fn record(&mut self, offered: usize, read: usize) {
        if read >= offered.min(self.current) {
            self.current = (self.current * 2).min(self.max);
            self.shrink_pending = false;
        } else if read < self.current / 2 {
            if self.shrink_pending {
                self.current = (self.current / 2).max(MIN_READ);
                self.shrink_pending = false;
            } else {
                self.shrink_pending = true;
            }
        } else {
            self.shrink_pending = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_small_and_doubles_on_full_reads_up_to_the_maximum() {
        let mut size = ReadSize::new(64 * 1024);
        assert_eq!(size.next(), INITIAL_READ);
        let mut offers = Vec::new();
        for _ in 0..8 {
            let offer = size.next();
            offers.push(offer);
            size.record(offer, offer);
        }
        assert_eq!(
            offers,
            [2048, 4096, 8192, 16384, 32768, 65536, 65536, 65536]
        );
    }

    #[test]
    fn halves_after_two_small_reads_in_a_row_down_to_the_minimum() {
        let mut size = ReadSize::new(64 * 1024);
        for _ in 0..5 {
            size.record(size.next(), size.next());
        }
        assert_eq!(size.next(), 64 * 1024);
        // One small read is not a trend.
        size.record(64 * 1024, 100);
        assert_eq!(size.next(), 64 * 1024);
        // A middling read breaks the run.
        size.record(64 * 1024, 40 * 1024);
        size.record(64 * 1024, 100);
        assert_eq!(size.next(), 64 * 1024);
        size.record(64 * 1024, 100);
        assert_eq!(size.next(), 32 * 1024);
        for _ in 0..40 {
            size.record(size.next(), 10);
        }
        assert_eq!(size.next(), MIN_READ);
    }

    #[test]
    fn a_read_that_fills_a_larger_room_than_offered_counts_as_full() {
        // The decoder reserved room for a big frame; a read that fills our offer (but not all
        // the room) still says the peer has more to send.
        let mut size = ReadSize::new(1 << 20);
        size.record(512 * 1024, INITIAL_READ);
        assert_eq!(size.next(), 2 * INITIAL_READ);
    }

    #[test]
    fn tiny_maximums_are_respected() {
        let size = ReadSize::new(100);
        assert_eq!(size.next(), MIN_READ);
        let mut size = ReadSize::new(1024);
        assert_eq!(size.next(), 1024);
        size.record(1024, 1024);
        assert_eq!(size.next(), 1024);
    }
}
