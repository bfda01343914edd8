//! The raft loop: one task that owns the raft-rs `RawNode`. It ticks, takes messages from the
//! transport and requests from the API, and handles each `Ready` in raft-rs's asynchronous
//! order: send what may go before persisting, put entries and hard state in the log cache and
//! hand them to the log writer (`log_writer`, durable later, several `Ready`s per fsync),
//! apply committed entries, answer waiters, advance; when the writer reports, tell raft and
//! send what waited for the write. Then it snapshots and compacts about every N applied
//! entries (at points staggered by node id, `snapshot_policy`).

use std::sync::Arc;
use std::time::Duration;

use protobuf::Message as _;
use raft::eraftpb::{ConfChange, ConfChangeType, Entry, EntryType, HardState, Message, Snapshot};
use raft::{RawNode, StateRole};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::shared::{ConfContext, Role, Shared, View};
use super::snapshot_policy::SnapshotPolicy;
use super::waiters::{ProposalReply, Proposals, ReadReply, Reads};
use crate::command::{Command, Op, ProposalId};
use crate::error::KvError;
use crate::log_store::{Batch, LogStore, LogStoreError};
use crate::metrics::names;
use crate::state::KvState;
use crate::storage::KvStorage;
use peerwire_raft::{SnapshotStatus, Transport};

use super::inputs::Inputs;
use super::log_writer::{self, Persisted, WriteJob};
use super::put_trace::{EventKind, PutTrace, PutTraceReport, Stamps};

/// What the API asks of the raft loop.
#[derive(Debug)]
pub(crate) enum Request {
    /// Replicate an operation (only a leader accepts); the instant is when the request reached
    /// the node; the context (caller, trace) goes into the entry's own `context` field.
    Propose(
        Op,
        ProposalReply,
        std::time::Instant,
        peerwire::context::Context,
    ),
    /// Change the membership (only a leader accepts).
    ConfChange(ConfChange, ProposalReply),
    /// Confirm a read index for a linearizable read.
    Read(ReadReply),
    /// Hand over the put trace and start a new one.
    TakeTrace(tokio::sync::oneshot::Sender<PutTraceReport>),
}

/// What the transport hands the raft loop.
#[derive(Debug)]
pub(crate) enum PeerInput {
    /// A raft message.
    Message(Message),
    /// A peer could not be reached.
    Unreachable(u64),
    /// How sending a snapshot ended.
    Snapshot(u64, SnapshotStatus),
}

/// Everything the loop owns.
pub(crate) struct RaftLoop {
    pub(crate) node: RawNode<KvStorage>,
    pub(crate) storage: KvStorage,
    pub(crate) store: Arc<LogStore>,
    pub(crate) transport: Transport<Message, Inputs>,
    pub(crate) blobs: crate::blobs::Blobs,
    pub(crate) shared: Arc<Shared>,
    pub(crate) tick: Duration,
    pub(crate) snapshots: SnapshotPolicy,
    pub(crate) proposals: Proposals,
    pub(crate) reads: Reads,
    pub(crate) next_seq: u64,
    pub(crate) last_leader: u64,
    pub(crate) ticks: u64,
    pub(crate) snapshot_task: Option<SnapshotTask>,
    /// `Ready`s handed to the log writer and not yet reported durable.
    pub(crate) unpersisted: usize,
    /// Where applied puts' time went, and the slow events beside them.
    pub(crate) trace: PutTrace,
}

/// Reports of the log writer.
type WriterReports = mpsc::UnboundedReceiver<Result<Persisted, LogStoreError>>;

/// Ticks after which an unconfirmed read is handed to raft again (raft drops reads while a new
/// leader has not committed in its term, and while no leader is known).
const READ_RETRY_TICKS: u64 = 2;

/// What a background snapshot saved: the snapshot and the compaction mark, or `None` if a newer
/// snapshot was stored first; and when its phases ran.
type Saved = Result<(Option<(Snapshot, u64)>, SnapshotPhases), LogStoreError>;

/// When a background snapshot's phases ended, for the put trace.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SnapshotPhases {
    started: std::time::Instant,
    encoded: std::time::Instant,
    written: std::time::Instant,
    compacted: std::time::Instant,
    bytes: u64,
    entries_compacted: u64,
}
/// A background snapshot.
type SnapshotTask = tokio::task::JoinHandle<Saved>;
/// How a background snapshot ended.
type SnapshotOutcome = Result<Saved, tokio::task::JoinError>;

/// Most inputs taken before handling a `Ready`: bounds the batch (and one fsync's size).
const MAX_INPUTS_PER_READY: usize = 4096;

/// Log entries a compaction drops per redb transaction: a few milliseconds of the log
/// writer's time at most, where one transaction for a whole snapshot interval held every
/// write up for hundreds.
const COMPACT_PER_TRANSACTION: u64 = 4096;

impl RaftLoop {
    /// Runs until `stop` or a storage failure.
    pub(crate) async fn run(
        mut self,
        mut peers: mpsc::Receiver<PeerInput>,
        mut requests: mpsc::Receiver<Request>,
        stop: CancellationToken,
    ) {
        let mut ticker = tokio::time::interval(self.tick);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut ticks: u64 = 0;
        let (writes, jobs) = mpsc::channel(log_writer::WRITE_QUEUE);
        let (reports_tx, mut reports) = mpsc::unbounded_channel();
        let writer = tokio::spawn(log_writer::run(self.store.clone(), jobs, reports_tx));
        // What recovery found (term, commit, snapshot) is visible at once, not after the
        // first step.
        self.publish();
        loop {
            tokio::select! {
                biased;
                _ = stop.cancelled() => break,
                _ = ticker.tick() => {
                    self.node.tick();
                    ticks += 1;
                    self.ticks = ticks;
                    for ctx in self.reads.due_again(ticks, READ_RETRY_TICKS) {
                        self.node.read_index(ctx.to_be_bytes().to_vec());
                    }
                    if ticks.is_multiple_of(50) {
                        self.proposals.prune();
                        self.reads.prune();
                    }
                }
                Some(input) = peers.recv() => self.on_peer(input),
                Some(req) = requests.recv() => self.on_request(req),
                report = reports.recv() => {
                    if let Err(e) = self.on_persisted(report) {
                        self.storage_failed(&e);
                        break;
                    }
                }
                done = async { self.snapshot_task.as_mut().expect("guarded by the condition").await },
                    if self.snapshot_task.is_some() =>
                {
                    self.snapshot_task = None;
                    if let Err(e) = self.snapshot_done(done) {
                        self.storage_failed(&e);
                        break;
                    }
                }
            }
            let mut taken = 0;
            while taken < MAX_INPUTS_PER_READY {
                if let Ok(input) = peers.try_recv() {
                    self.on_peer(input);
                } else if let Ok(req) = requests.try_recv() {
                    self.on_request(req);
                } else {
                    break;
                }
                taken += 1;
            }
            self.proposals
                .committed(self.node.raft.raft_log.committed, std::time::Instant::now());
            if let Err(e) = self.on_ready(&writes, &mut reports).await {
                self.storage_failed(&e);
                break;
            }
            self.publish();
            // The loop shares its thread with the node's service handlers and connections:
            // let the replies it just released go out before it takes the next batch (else,
            // with inputs always ready, it runs on until tokio's budget stops it).
            tokio::task::yield_now().await;
        }
        self.fail_all(KvError::Stopping);
        drop(writes);
        let _ = writer.await;
    }

    /// The log writer made `Ready`s durable: tell raft and send what waited for it.
    fn on_persisted(
        &mut self,
        report: Option<Result<Persisted, LogStoreError>>,
    ) -> Result<(), LogStoreError> {
        let done = report.ok_or_else(|| LogStoreError::Io("the log writer stopped".into()))??;
        self.proposals.durable(done.last_index, done.finished);
        metrics::histogram!(names::LOG_WRITE_SECONDS)
            .record((done.finished - done.started).as_secs_f64());
        metrics::histogram!(names::LOG_WRITE_READIES).record(done.jobs as f64);
        self.trace.event(
            EventKind::LogWrite,
            done.started,
            done.finished,
            done.jobs as u64,
        );
        self.unpersisted -= done.jobs;
        self.node.on_persist_ready(done.number);
        self.transport.send(done.messages);
        Ok(())
    }

    /// The raft log failed: nothing more can be made durable, so the node refuses requests.
    fn storage_failed(&mut self, e: &LogStoreError) {
        tracing::error!(node = self.shared.id, error = %e, "raft storage failed; the node stops serving");
        self.fail_all(KvError::Storage(e.to_string()));
        self.shared.set_failed(e.to_string());
    }

    fn fail_all(&mut self, err: KvError) {
        let failed = self.proposals.fail_all(&err);
        if failed > 0 {
            metrics::counter!(names::PROPOSALS_FAILED, "reason" => err.code()).increment(failed);
        }
        self.reads.fail_all(&err);
    }

    fn on_peer(&mut self, input: PeerInput) {
        match input {
            PeerInput::Message(m) => {
                if let Err(e) = self.node.step(m) {
                    tracing::debug!(node = self.shared.id, error = %e, "raft refused a message");
                }
            }
            PeerInput::Unreachable(id) => self.node.report_unreachable(id),
            PeerInput::Snapshot(id, status) => self.node.report_snapshot(
                id,
                match status {
                    SnapshotStatus::Finish => raft::SnapshotStatus::Finish,
                    SnapshotStatus::Failure => raft::SnapshotStatus::Failure,
                },
            ),
        }
    }

    fn leader(&self) -> Option<u64> {
        match self.node.raft.leader_id {
            0 => None,
            id => Some(id),
        }
    }

    fn not_leader(&self) -> KvError {
        match self.leader() {
            Some(leader) => KvError::NotLeader {
                node: self.shared.id,
                leader: Some(leader),
            },
            None => KvError::NoLeader(format!(
                "no leader known in term {} (an election is running or a quorum is missing)",
                self.node.raft.term
            )),
        }
    }

    fn next_id(&mut self) -> ProposalId {
        self.next_seq += 1;
        ProposalId {
            node: self.shared.id,
            seq: self.next_seq,
        }
    }

    fn on_request(&mut self, req: Request) {
        if let Some(reason) = self.shared.refusal() {
            match req {
                Request::Propose(_, r, _, _) | Request::ConfChange(_, r) => {
                    let _ = r.send(Err(reason));
                }
                Request::Read(r) => {
                    let _ = r.send(Err(reason));
                }
                Request::TakeTrace(r) => {
                    let _ = r.send(self.trace.take(self.shared.id));
                }
            }
            return;
        }
        match req {
            Request::TakeTrace(reply) => {
                let _ = reply.send(self.trace.take(self.shared.id));
            }
            Request::Propose(op, reply, received, context) => {
                if self.node.raft.state != StateRole::Leader {
                    metrics::counter!(names::PROPOSALS_FAILED, "reason" => "not_leader")
                        .increment(1);
                    let _ = reply.send(Err(self.not_leader()));
                    return;
                }
                let id = self.next_id();
                let data = Command { id, op }.encode();
                let stamps = Stamps::proposed(received);
                match self.node.propose(context.as_bytes().to_vec(), data) {
                    Ok(()) => {
                        let index = self.node.raft.raft_log.last_index();
                        self.proposals.insert(index, id, reply, stamps);
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "proposal dropped by raft");
                        metrics::counter!(names::PROPOSALS_FAILED, "reason" => "dropped")
                            .increment(1);
                        let _ = reply.send(Err(KvError::Dropped));
                    }
                }
            }
            Request::ConfChange(mut cc, reply) => {
                if self.node.raft.state != StateRole::Leader {
                    let _ = reply.send(Err(self.not_leader()));
                    return;
                }
                let id = self.next_id();
                let mut ctx: ConfContext = match ConfContext::decode(&cc.context) {
                    Ok(c) => c,
                    Err(e) => {
                        let _ = reply.send(Err(KvError::BadMember(e)));
                        return;
                    }
                };
                ctx.id = Some(id);
                cc.context = ctx.encode().into();
                let stamps = Stamps::proposed(std::time::Instant::now());
                match self.node.propose_conf_change(vec![], cc) {
                    Ok(()) => {
                        let index = self.node.raft.raft_log.last_index();
                        self.proposals.insert(index, id, reply, stamps);
                    }
                    Err(e) => {
                        // raft-rs refuses while another change is pending.
                        let _ = reply.send(Err(KvError::BadMember(format!(
                            "raft refused the change: {e}"
                        ))));
                    }
                }
            }
            Request::Read(reply) => {
                if self.leader().is_none() {
                    let _ = reply.send(Err(self.not_leader()));
                    return;
                }
                self.next_seq += 1;
                let ctx = self.next_seq;
                self.node.read_index(ctx.to_be_bytes().to_vec());
                self.reads.insert(ctx, reply, self.ticks);
            }
        }
    }

    /// Handles one `Ready`: its entries and hard state go to the log cache at once and to the
    /// log writer (durable later, see `log_writer`); a `Ready` with a snapshot is written here
    /// after every earlier write finished.
    async fn on_ready(
        &mut self,
        writes: &mpsc::Sender<WriteJob>,
        reports: &mut WriterReports,
    ) -> Result<(), LogStoreError> {
        if !self.node.has_ready() {
            return Ok(());
        }
        let mut ready = self.node.ready();
        if !ready.snapshot().is_empty() {
            while self.unpersisted > 0 {
                let report = reports.recv().await;
                self.on_persisted(report)?;
            }
            return self.on_snapshot_ready(ready).await;
        }
        // A leader sends its appends while it writes them (raft's parallel disk write).
        self.transport.send(ready.take_messages());
        let job = WriteJob {
            number: ready.number(),
            entries: ready.take_entries(),
            hard_state: ready.hs().cloned(),
            messages: ready.take_persisted_messages(),
        };
        if let (Some(first), Some(last)) = (job.entries.first(), job.entries.last()) {
            self.proposals
                .handed(first.index, last.index, std::time::Instant::now());
        }
        self.cache(&job.entries, job.hard_state.as_ref())?;
        self.apply(ready.take_committed_entries());
        self.confirm_reads(ready.take_read_states());
        self.node.advance_append_async(ready);
        if job.entries.is_empty() && job.hard_state.is_none() && self.unpersisted == 0 {
            // Nothing to write and nothing before it in flight: durable already.
            self.node.on_persist_ready(job.number);
            self.transport.send(job.messages);
        } else {
            self.unpersisted += 1;
            writes
                .send(job)
                .await
                .map_err(|_| LogStoreError::Io("the log writer stopped".into()))?;
        }
        self.node.advance_apply();
        self.maybe_snapshot();
        Ok(())
    }

    /// Puts entries and the hard state in the log cache raft reads.
    fn cache(
        &self,
        entries: &[Entry],
        hard_state: Option<&HardState>,
    ) -> Result<(), LogStoreError> {
        let mut core = self.storage.core.wl();
        if let Err(e) = core.append(entries) {
            return Err(LogStoreError::Io(format!(
                "appending to the log cache: {e}"
            )));
        }
        if let Some(hs) = hard_state {
            core.set_hardstate(hs.clone());
        }
        Ok(())
    }

    fn confirm_reads(&mut self, states: Vec<raft::ReadState>) {
        let applied = self.shared.applied();
        for rs in states {
            if let Ok(ctx) = <[u8; 8]>::try_from(rs.request_ctx.as_slice()) {
                self.reads
                    .confirmed(u64::from_be_bytes(ctx), rs.index, applied);
            }
        }
    }

    /// A `Ready` carrying a snapshot from the leader: written (with its entries and hard state)
    /// before anything else happens, then installed.
    async fn on_snapshot_ready(&mut self, mut ready: raft::Ready) -> Result<(), LogStoreError> {
        self.transport.send(ready.take_messages());
        let snapshot = ready.snapshot().clone();
        let entries = ready.take_entries();
        let hard_state = ready.hs().cloned();
        let store = self.store.clone();
        let hs = hard_state.clone();
        let started = std::time::Instant::now();
        let (snapshot, entries) = tokio::task::spawn_blocking(move || {
            store
                .persist(&Batch {
                    snapshot: Some(&snapshot),
                    entries: &entries,
                    hard_state: hs.as_ref(),
                })
                .map(|()| (snapshot, entries))
        })
        .await
        .map_err(|e| LogStoreError::Io(format!("the persisting task failed: {e}")))??;
        self.install_snapshot(snapshot)?;
        let installed = std::time::Instant::now();
        self.trace
            .event(EventKind::SnapshotInstall, started, installed, 0);
        metrics::counter!(names::SNAPSHOTS_INSTALLED).increment(1);
        metrics::histogram!(names::SNAPSHOT_INSTALL_SECONDS)
            .record((installed - started).as_secs_f64());
        self.cache(&entries, hard_state.as_ref())?;
        self.transport.send(ready.take_persisted_messages());
        self.apply(ready.take_committed_entries());
        self.confirm_reads(ready.take_read_states());
        let mut light = self.node.advance(ready);
        if let Some(commit) = light.commit_index() {
            self.storage.core.wl().mut_hard_state().set_commit(commit);
        }
        self.transport.send(light.take_messages());
        self.apply(light.take_committed_entries());
        self.node.advance_apply();
        self.maybe_snapshot();
        Ok(())
    }

    fn install_snapshot(&mut self, snap: Snapshot) -> Result<(), LogStoreError> {
        let index = snap.get_metadata().index;
        let state = KvState::decode(&snap.data).map_err(|e| LogStoreError::Corrupt {
            what: format!("snapshot at {index} from the leader"),
            reason: e.to_string(),
        })?;
        if let Err(e) = self.storage.core.wl().apply_snapshot(snap.clone()) {
            return Err(LogStoreError::Io(format!(
                "installing snapshot {index}: {e}"
            )));
        }
        self.storage.set_snapshot(snap);
        self.sync_peers(&state);
        let mut current = self.shared.state_mut();
        *current = state;
        current.applied = index;
        drop(current);
        self.blobs.on_snapshot(index);
        let unknown = self.proposals.snapshot_applied(index);
        if unknown > 0 {
            metrics::counter!(names::PROPOSALS_FAILED, "reason" => "indeterminate")
                .increment(unknown);
        }
        self.reads.applied(index);
        tracing::info!(
            node = self.shared.id,
            index,
            "installed a snapshot from the leader"
        );
        Ok(())
    }

    /// Makes the transport's peers match the members of `state`.
    fn sync_peers(&self, state: &KvState) {
        for (&id, &addr) in &state.members {
            if id != self.shared.id {
                let _ = self.transport.add_peer(id, vec![addr]);
            }
            self.blobs.add_peer(id, addr);
        }
        for &id in &state.removed {
            self.transport.remove_peer(id);
            self.blobs.remove_peer(id);
        }
    }

    fn apply(&mut self, entries: Vec<Entry>) {
        if entries.is_empty() {
            return;
        }
        let shared = self.shared.clone();
        let mut state = shared.state_mut();
        let now = std::time::Instant::now();
        // Writes that carried a context, audited once the state's lock is released.
        let mut audited = Vec::new();
        for e in entries {
            if e.index <= state.applied {
                continue;
            }
            match e.get_entry_type() {
                EntryType::EntryNormal if e.data.is_empty() => {
                    self.settle(e.index, None, now);
                }
                EntryType::EntryNormal => match Command::decode(&e.data) {
                    Ok(cmd) => {
                        if let Op::PutBlob { blob, .. } = &cmd.op {
                            self.blobs.on_applied(blob);
                        }
                        if !e.context.is_empty() {
                            audited.push((e.index, cmd.op.key().to_owned(), e.context.clone()));
                        }
                        if let Some(released) = state.apply(cmd.op) {
                            self.blobs.on_released(released);
                        }
                        self.settle(e.index, Some(cmd.id), now);
                    }
                    Err(err) => {
                        tracing::warn!(index = e.index, error = %err, "an entry that is not a command was skipped");
                        self.settle(e.index, None, now);
                    }
                },
                EntryType::EntryConfChange => {
                    let id = self.apply_conf_change(&mut state, &e);
                    self.settle(e.index, id, now);
                }
                EntryType::EntryConfChangeV2 => {
                    tracing::warn!(
                        index = e.index,
                        "joint configuration changes are not used; skipped"
                    );
                    self.settle(e.index, None, now);
                }
            }
            state.applied = e.index;
        }
        let applied = state.applied;
        drop(state);
        for (index, key, context) in audited {
            crate::audit::applied(self.shared.id, index, &key, &context);
        }
        self.reads.applied(applied);
        self.blobs.applied(applied);
        metrics::gauge!(names::APPLIED_INDEX).set(applied as f64);
    }

    /// Settles the proposal waiting for the entry at `index` (applied at `now`), recording a
    /// successful one in the put trace.
    fn settle(&mut self, index: u64, id: Option<ProposalId>, now: std::time::Instant) {
        let (settled, dropped) = self.proposals.applied(index, id);
        if let Some(stamps) = settled {
            self.trace.applied(&stamps, now);
            metrics::counter!(names::PROPOSALS_APPLIED).increment(1);
        }
        if dropped > 0 {
            metrics::counter!(names::PROPOSALS_FAILED, "reason" => "dropped").increment(dropped);
        }
    }

    /// Applies a committed membership change; returns the proposal it carried.
    fn apply_conf_change(&mut self, state: &mut KvState, e: &Entry) -> Option<ProposalId> {
        let cc = match ConfChange::parse_from_bytes(&e.data) {
            Ok(cc) => cc,
            Err(err) => {
                tracing::warn!(index = e.index, error = %err, "undecodable configuration change skipped");
                return None;
            }
        };
        let ctx = ConfContext::decode(&cc.context).unwrap_or_default();
        if let Err(err) = self.node.apply_conf_change(&cc) {
            tracing::warn!(index = e.index, error = %err, "raft refused a committed configuration change");
            return ctx.id;
        }
        let who = cc.node_id;
        match cc.get_change_type() {
            ConfChangeType::AddNode | ConfChangeType::AddLearnerNode => {
                if let Some(addr) = ctx.addr {
                    state.add_member(who, addr);
                    if who != self.shared.id {
                        let _ = self.transport.add_peer(who, vec![addr]);
                    }
                    self.blobs.add_peer(who, addr);
                }
                tracing::info!(node = self.shared.id, added = who, "member added");
            }
            ConfChangeType::RemoveNode => {
                state.remove_member(who);
                if who == self.shared.id {
                    self.shared.set_removed();
                    self.transport.remove_all_peers();
                } else {
                    self.transport.remove_peer(who);
                }
                self.blobs.remove_peer(who);
                tracing::info!(node = self.shared.id, removed = who, "member removed");
            }
        }
        ctx.id
    }

    /// Every `snapshots.every` applied entries (or when raft needs a snapshot the stored one
    /// cannot serve), starts writing a snapshot in the background: the state is copied here,
    /// then encoded and saved on a blocking thread while the loop goes on. At most one runs.
    fn maybe_snapshot(&mut self) {
        if self.snapshot_task.is_some() {
            return;
        }
        let applied = self.shared.applied();
        let last = self.storage.snapshot_index();
        let requested = self.storage.take_snapshot_request() && applied > last;
        if !self.snapshots.due(last, applied) && !requested {
            return;
        }
        let Ok(term) = raft::Storage::term(&self.storage, applied) else {
            return;
        };
        let state = self.shared.state().clone();
        let conf = self.node.raft.prs().conf().to_conf_state();
        let compact_to = self.snapshots.compact_to(applied);
        let store = self.store.clone();
        let node = self.shared.id;
        self.snapshot_task = Some(tokio::task::spawn_blocking(move || {
            let started = std::time::Instant::now();
            let mut snap = Snapshot {
                data: state.encode().into(),
                ..Snapshot::default()
            };
            let encoded = std::time::Instant::now();
            let meta = snap.mut_metadata();
            meta.index = applied;
            meta.term = term;
            meta.set_conf_state(conf);
            let saved = store.save_snapshot(&snap)?;
            let written = std::time::Instant::now();
            let entries_compacted = if saved {
                store.compact(compact_to, COMPACT_PER_TRANSACTION)?
            } else {
                0
            };
            let phases = SnapshotPhases {
                started,
                encoded,
                written,
                compacted: std::time::Instant::now(),
                bytes: snap.data.len() as u64,
                entries_compacted,
            };
            tracing::info!(
                node,
                index = applied,
                bytes = phases.bytes,
                encode_ms = (encoded - started).as_millis() as u64,
                save_ms = (written - encoded).as_millis() as u64,
                compacted = entries_compacted,
                compact_ms = (phases.compacted - written).as_millis() as u64,
                "snapshot saved"
            );
            Ok((saved.then_some((snap, compact_to)), phases))
        }));
    }

    /// A background snapshot ended: serve it to followers and compact the log cache.
    fn snapshot_done(&mut self, result: SnapshotOutcome) -> Result<(), LogStoreError> {
        let (saved, phases) =
            result.map_err(|e| LogStoreError::Io(format!("the snapshot task failed: {e}")))??;
        let p = phases;
        metrics::histogram!(names::SNAPSHOT_ENCODE_SECONDS)
            .record((p.encoded - p.started).as_secs_f64());
        metrics::histogram!(names::SNAPSHOT_SAVE_SECONDS)
            .record((p.written - p.encoded).as_secs_f64());
        metrics::gauge!(names::SNAPSHOT_BYTES).set(p.bytes as f64);
        self.trace
            .event(EventKind::SnapshotEncode, p.started, p.encoded, p.bytes);
        self.trace
            .event(EventKind::SnapshotSave, p.encoded, p.written, p.bytes);
        if p.entries_compacted > 0 {
            self.trace.event(
                EventKind::Compact,
                p.written,
                p.compacted,
                p.entries_compacted,
            );
        }
        // `None`: a newer snapshot (from the leader) was stored meanwhile.
        let Some((snap, compact_to)) = saved else {
            return Ok(());
        };
        let index = snap.get_metadata().index;
        if index <= self.storage.snapshot_index() {
            return Ok(());
        }
        self.storage.set_snapshot(snap);
        if let Err(e) = self.storage.core.wl().compact(compact_to) {
            return Err(LogStoreError::Io(format!("compacting the log cache: {e}")));
        }
        metrics::counter!(names::SNAPSHOTS).increment(1);
        tracing::debug!(
            node = self.shared.id,
            index,
            compact_to,
            "snapshot saved, log compacted"
        );
        Ok(())
    }

    /// Publishes this node's view after a step.
    fn publish(&mut self) {
        let raft = &self.node.raft;
        let role = match raft.state {
            StateRole::Leader => Role::Leader,
            StateRole::Follower => Role::Follower,
            StateRole::Candidate => Role::Candidate,
            StateRole::PreCandidate => Role::PreCandidate,
        };
        let leader = raft.leader_id;
        if leader != self.last_leader {
            self.last_leader = leader;
            self.reads.leader_changed();
            if leader != 0 {
                metrics::counter!(names::LEADER_CHANGES).increment(1);
            }
        }
        let view = View {
            id: self.shared.id,
            leader,
            term: raft.term,
            commit: raft.raft_log.committed,
            applied: self.shared.applied(),
            role,
            pending_proposals: self.proposals.len(),
            snapshot_index: self.storage.snapshot_index(),
            refused: self.shared.refusal().is_some(),
        };
        let before = self.shared.view();
        record_view(&before, &view);
        self.shared.publish(view);
    }
}

/// Sets the view's gauges that changed since `before` (the loop publishes after every step; a
/// gauge is only touched when its value moves).
fn record_view(before: &View, now: &View) {
    if before.leader != now.leader || before.role != now.role {
        metrics::gauge!(names::HAS_LEADER).set(if now.leader != 0 { 1.0 } else { 0.0 });
        metrics::gauge!(names::IS_LEADER).set(if now.role == Role::Leader { 1.0 } else { 0.0 });
    }
    if before.term != now.term {
        metrics::gauge!(names::TERM).set(now.term as f64);
    }
    if before.commit != now.commit || before.applied != now.applied {
        metrics::gauge!(names::COMMITTED_INDEX).set(now.commit as f64);
        metrics::gauge!(names::APPLY_LAG).set(now.commit.saturating_sub(now.applied) as f64);
    }
    if before.pending_proposals != now.pending_proposals {
        metrics::gauge!(names::PROPOSALS_PENDING).set(now.pending_proposals as f64);
    }
}
