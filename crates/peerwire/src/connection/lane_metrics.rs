//! A connection's byte and frame counters, labelled by the lane it carries and registered once
//! when the connection starts, so the writer and reader count through ready handles instead of
//! looking the names up on every write and read: `peerwire_bytes_written_total{lane}`,
//! `peerwire_frames_written_total{lane}`, `peerwire_bytes_read_total{lane}`,
//! `peerwire_frames_read_total{lane}` (lanes are a fixed set of at most 256 codes, so the
//! label is bounded). Bytes and frames read during a handshake, before the lane is known,
//! count under `lane="handshake"`. A frame written is one frame on the wire (a message in
//! parts is several); a frame read is one the reader hands on (a message in parts is one,
//! once whole).

use metrics::Counter;
use peerwire_wire::Lane;

/// One connection's counters.
#[derive(Clone)]
pub(crate) struct LaneCounters {
    pub(crate) bytes_written: Counter,
    pub(crate) frames_written: Counter,
    pub(crate) bytes_read: Counter,
    pub(crate) frames_read: Counter,
}

impl std::fmt::Debug for LaneCounters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LaneCounters").finish_non_exhaustive()
    }
}

impl LaneCounters {
    /// The counters of `lane`, from the recorder installed now.
    pub(crate) fn register(lane: Lane) -> Self {
        let lane = lane.to_string();
        Self {
            bytes_written: metrics::counter!("peerwire_bytes_written_total", "lane" => lane.clone()),
            frames_written: metrics::counter!("peerwire_frames_written_total", "lane" => lane.clone()),
            bytes_read: metrics::counter!("peerwire_bytes_read_total", "lane" => lane.clone()),
            frames_read: metrics::counter!("peerwire_frames_read_total", "lane" => lane),
        }
    }

    /// The counter of bytes read before a lane is known.
    pub(crate) fn handshake_reads() -> Counter {
        metrics::counter!("peerwire_bytes_read_total", "lane" => "handshake")
    }

    /// The counter of frames read before a lane is known.
    pub(crate) fn handshake_frames() -> Counter {
        metrics::counter!("peerwire_frames_read_total", "lane" => "handshake")
    }
}
