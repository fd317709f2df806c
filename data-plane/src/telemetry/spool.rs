//! The usage spool: an on-disk, size-capped queue of numbered `UsageBatch`es, written
//! (and fsynced) before a batch is ever sent, deleted once the control plane acknowledged
//! it. A gateway killed with SIGKILL loses nothing that reached the spool; after a
//! restart the rest is sent again (ingest is idempotent on event ids).
//!
//! Layout: segment files `<first seq, 20 digits>.spool` in one directory, each a run of
//! records `u32 little-endian length ‖ UsageBatch bytes`. A torn record at the end of the
//! last segment (a crash mid-write) is cut off on open.
//!
//! Usage names keys, teams and spend: the directory is created `0700` and every segment
//! `0600`, born as an `O_EXCL` temp file in the spool directory and renamed into place, so
//! a file or symlink planted at a segment's name is replaced, never written through.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use prost::Message as _;
use tollgate_proto::telemetry::{UsageBatch, UsageEvent};

/// A segment is closed and a new one started beyond this size.
const SEGMENT_BYTES: u64 = 8 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("the spool is full ({0} bytes): batch dropped")]
    Full(u64),
    #[error("spool I/O: {0}")]
    Io(#[from] io::Error),
}

#[derive(Debug)]
struct Segment {
    path: PathBuf,
    first_seq: u64,
    last_seq: u64,
    bytes: u64,
}

#[derive(Debug)]
struct State {
    segments: VecDeque<Segment>,
    /// Append handle of the last segment, while it takes more batches.
    writer: Option<File>,
    next_seq: u64,
    bytes: u64,
}

#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    max_bytes: u64,
    gateway_id: String,
    state: Mutex<State>,
}

fn segment_path(dir: &Path, first_seq: u64) -> PathBuf {
    dir.join(format!("{first_seq:020}.spool"))
}

/// Every complete record of `bytes`, and where the complete part ends.
fn records(bytes: &[u8]) -> (Vec<UsageBatch>, usize) {
    let mut batches = Vec::new();
    let mut at = 0;
    while let Some(header) = bytes.get(at..at + 4) {
        let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
        let Some(body) = bytes.get(at + 4..at + 4 + len) else {
            break;
        };
        let Ok(batch) = UsageBatch::decode(body) else {
            break;
        };
        batches.push(batch);
        at += 4 + len;
    }
    (batches, at)
}

/// A new, empty segment at `path`, mode 0600, opened for appending: created with
/// `O_EXCL` under a temp name beside it, then renamed over `path` (the directory is
/// fsynced by the caller).
fn create_segment(path: &Path) -> io::Result<File> {
    let tmp = path.with_extension("spool.tmp");
    let mut options = OpenOptions::new();
    options.append(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let file = match options.open(&tmp) {
        // Left by a crash between create and rename: it holds nothing.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            std::fs::remove_file(&tmp)?;
            options.open(&tmp)?
        }
        other => other?,
    };
    std::fs::rename(&tmp, path)?;
    Ok(file)
}

impl Spool {
    /// Opens (or creates) the spool in `dir`, recovering what an earlier process left.
    pub fn open(dir: &Path, max_bytes: u64, gateway_id: &str) -> io::Result<Self> {
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder.create(dir)?;
        let entries: Vec<PathBuf> = std::fs::read_dir(dir)?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .collect();
        // Temp files of a segment that was never renamed into place hold no batch.
        for tmp in entries
            .iter()
            .filter(|p| p.extension().is_some_and(|e| e == "tmp"))
        {
            let _ = std::fs::remove_file(tmp);
        }
        let mut paths: Vec<PathBuf> = entries
            .into_iter()
            .filter(|p| p.extension().is_some_and(|e| e == "spool"))
            .collect();
        paths.sort();
        let mut segments = VecDeque::new();
        let mut bytes_total = 0;
        let mut next_seq = 1;
        for path in paths {
            let mut bytes = Vec::new();
            File::open(&path)?.read_to_end(&mut bytes)?;
            let (batches, complete) = records(&bytes);
            if complete < bytes.len() {
                tracing::warn!(path = %path.display(), torn = bytes.len() - complete, "cutting a torn record off the usage spool");
                OpenOptions::new()
                    .write(true)
                    .open(&path)?
                    .set_len(complete as u64)?;
            }
            let (Some(first), Some(last)) = (batches.first(), batches.last()) else {
                std::fs::remove_file(&path)?;
                continue;
            };
            // Saturating: the file may be damaged, and its numbers must not panic us.
            next_seq = next_seq.max(last.seq.saturating_add(1));
            bytes_total += complete as u64;
            segments.push_back(Segment {
                path,
                first_seq: first.seq,
                last_seq: last.seq,
                bytes: complete as u64,
            });
        }
        let spool = Self {
            dir: dir.to_owned(),
            max_bytes,
            gateway_id: gateway_id.to_owned(),
            state: Mutex::new(State {
                segments,
                writer: None,
                next_seq,
                bytes: bytes_total,
            }),
        };
        spool.report();
        Ok(spool)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn report(&self) {
        let state = self.lock();
        metrics::gauge!("tollgate_telemetry_spool_bytes").set(state.bytes as f64);
        let pending = state
            .segments
            .iter()
            .map(|s| s.last_seq.saturating_sub(s.first_seq).saturating_add(1))
            .fold(0, u64::saturating_add);
        metrics::gauge!("tollgate_telemetry_spool_batches").set(pending as f64);
    }

    /// Appends `events` as the next batch and makes it durable; its sequence number.
    pub fn append(&self, events: Vec<UsageEvent>) -> Result<u64, SpoolError> {
        let mut state = self.lock();
        let seq = state.next_seq;
        let batch = UsageBatch {
            seq,
            gateway_id: self.gateway_id.clone(),
            events,
        };
        let body = batch.encode_to_vec();
        let record_len = 4 + body.len() as u64;
        if state.bytes + record_len > self.max_bytes {
            return Err(SpoolError::Full(state.bytes));
        }
        let rotate = state
            .segments
            .back()
            .is_none_or(|s| s.bytes >= SEGMENT_BYTES)
            || state.writer.is_none();
        if rotate {
            let path = segment_path(&self.dir, seq);
            let file = create_segment(&path)?;
            state.writer = Some(file);
            state.segments.push_back(Segment {
                path,
                first_seq: seq,
                last_seq: seq,
                bytes: 0,
            });
            // The new file's name must survive a crash too.
            File::open(&self.dir)?.sync_all()?;
        }
        let mut record = Vec::with_capacity(record_len as usize);
        record.extend_from_slice(&u32::try_from(body.len()).unwrap_or(u32::MAX).to_le_bytes());
        record.extend_from_slice(&body);
        if let Some(writer) = state.writer.as_mut() {
            writer.write_all(&record)?;
            writer.sync_data()?;
        }
        if let Some(segment) = state.segments.back_mut() {
            segment.last_seq = seq;
            segment.bytes += record_len;
        }
        state.bytes += record_len;
        state.next_seq = seq.saturating_add(1);
        drop(state);
        self.report();
        Ok(seq)
    }

    /// Everything up to `committed` is stored by the control plane: delete whole
    /// segments it covers.
    pub fn acked(&self, committed: u64) -> io::Result<()> {
        let mut state = self.lock();
        while state
            .segments
            .front()
            .is_some_and(|s| s.last_seq <= committed)
        {
            let last = state.segments.len() == 1;
            if let Some(segment) = state.segments.pop_front() {
                if last {
                    // It was also the one being written: the next append starts a new one.
                    state.writer = None;
                }
                std::fs::remove_file(&segment.path)?;
                state.bytes -= segment.bytes;
            }
        }
        drop(state);
        self.report();
        Ok(())
    }

    /// Up to `max` batches with a sequence number above `after`, oldest first.
    pub fn read_after(&self, after: u64, max: usize) -> io::Result<Vec<UsageBatch>> {
        let paths: Vec<PathBuf> = self
            .lock()
            .segments
            .iter()
            .filter(|s| s.last_seq > after)
            .map(|s| s.path.clone())
            .collect();
        let mut out = Vec::new();
        for path in paths {
            let mut bytes = Vec::new();
            match File::open(&path) {
                Ok(mut file) => file.read_to_end(&mut bytes)?,
                // Acknowledged and deleted meanwhile.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            let (batches, _) = records(&bytes);
            out.extend(batches.into_iter().filter(|b| b.seq > after));
            if out.len() >= max {
                out.truncate(max);
                break;
            }
        }
        Ok(out)
    }

    /// Bytes on disk, not yet acknowledged.
    pub fn bytes(&self) -> u64 {
        self.lock().bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(id: &str) -> UsageEvent {
        UsageEvent {
            event_id: id.into(),
            cost_micros: 7,
            ..Default::default()
        }
    }

    #[test]
    fn batches_survive_a_reopen_and_leave_once_acknowledged() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path(), 1 << 20, "gw").unwrap();
        assert_eq!(spool.append(vec![event("a"), event("b")]).unwrap(), 1);
        assert_eq!(spool.append(vec![event("c")]).unwrap(), 2);
        drop(spool);

        let spool = Spool::open(dir.path(), 1 << 20, "gw").unwrap();
        let pending = spool.read_after(0, 10).unwrap();
        assert_eq!(pending.iter().map(|b| b.seq).collect::<Vec<_>>(), [1, 2]);
        assert_eq!(pending[0].events.len(), 2);
        assert_eq!(
            spool.append(vec![event("d")]).unwrap(),
            3,
            "numbering goes on"
        );
        assert_eq!(spool.read_after(2, 10).unwrap()[0].events[0].event_id, "d");

        spool.acked(3).unwrap();
        assert_eq!(spool.bytes(), 0);
        assert!(spool.read_after(0, 10).unwrap().is_empty());
        assert_eq!(spool.append(vec![event("e")]).unwrap(), 4);
        assert_eq!(spool.read_after(0, 10).unwrap().len(), 1);
    }

    #[cfg(unix)]
    #[test]
    fn segments_are_private_and_never_written_through_a_planted_link() {
        use std::os::unix::fs::PermissionsExt;
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("spool");
        let spool = Spool::open(&dir, 1 << 20, "gw").unwrap();
        // Someone plants a link where the next segment will be, and a stale temp file.
        let victim = root.path().join("victim");
        std::fs::write(&victim, b"untouched").unwrap();
        std::os::unix::fs::symlink(&victim, segment_path(&dir, 1)).unwrap();
        std::fs::write(segment_path(&dir, 1).with_extension("spool.tmp"), b"x").unwrap();

        spool.append(vec![event("a")]).unwrap();
        let mode = |p: &Path| std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        let segment = segment_path(&dir, 1);
        assert!(
            !std::fs::symlink_metadata(&segment)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert_eq!(mode(&segment), 0o600);
        assert_eq!(std::fs::read(&victim).unwrap(), b"untouched");
        assert_eq!(spool.read_after(0, 10).unwrap()[0].events[0].event_id, "a");
    }

    #[test]
    fn a_torn_tail_is_cut_and_the_rest_kept() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path(), 1 << 20, "gw").unwrap();
        spool.append(vec![event("a")]).unwrap();
        drop(spool);
        let path = segment_path(dir.path(), 1);
        let mut file = OpenOptions::new().append(true).open(&path).unwrap();
        file.write_all(&[200, 0, 0, 0, 1, 2, 3]).unwrap();
        drop(file);
        let spool = Spool::open(dir.path(), 1 << 20, "gw").unwrap();
        assert_eq!(spool.read_after(0, 10).unwrap().len(), 1);
        assert_eq!(spool.append(vec![event("b")]).unwrap(), 2);
        assert_eq!(spool.read_after(0, 10).unwrap().len(), 2);
    }

    #[test]
    fn a_full_spool_refuses_instead_of_growing() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path(), 200, "gw").unwrap();
        let mut refused = 0;
        for i in 0..20 {
            if matches!(
                spool.append(vec![event(&format!("event-{i}"))]),
                Err(SpoolError::Full(_))
            ) {
                refused += 1;
            }
        }
        assert!(refused > 0);
        assert!(spool.bytes() <= 200);
    }

    #[test]
    fn damaged_sequence_numbers_do_not_panic_on_open() {
        // Crash inputs of the `spool` fuzz target: records out of order, a seq of u64::MAX.
        let record = |seq: u64| {
            let body = UsageBatch {
                seq,
                ..Default::default()
            }
            .encode_to_vec();
            [&(body.len() as u32).to_le_bytes()[..], &body].concat()
        };
        for records in [[record(5), record(1)], [record(1), record(u64::MAX)]] {
            let dir = tempfile::tempdir().unwrap();
            std::fs::write(segment_path(dir.path(), 1), records.concat()).unwrap();
            let spool = Spool::open(dir.path(), 1 << 20, "gw").unwrap();
            assert_eq!(spool.read_after(0, 10).unwrap().len(), 2);
            assert!(spool.append(vec![event("a")]).unwrap() >= 2);
        }
    }
}
