//! The durable spool: an append-only queue of segment files in front of the cluster.
//!
//! A document counts as accepted once its record is written and `fsync`ed. Records are read in
//! order and handed to the bulk writer with a sequence number; when the cluster confirmed a
//! record (or it went to the dead letters) the writer acknowledges it. The acknowledged
//! position only advances over a contiguous prefix, is persisted in the `ack` file (written to a
//! temporary file, synced, renamed), and segments wholly before it are deleted. After a crash the
//! spool resumes at the persisted position: records confirmed but not yet in the `ack` file are
//! sent again and land on their deterministic `_id` (a `409` on `create`), so nothing is lost
//! and nothing duplicated.
//!
//! Segment file `<id:020>.seg`: records of `[payload length: u32 LE][crc32 of payload: u32 LE]
//! [payload]`; payload = `[enqueued ms: i64 LE][event ms: i64 LE][kind: u8][id length: u16 LE]
//! [id][body JSON]`. On open the newest segment is scanned and cut at the first torn or corrupt
//! record (a crash mid-append); a corrupt record in an older segment skips the rest of that
//! segment (counted). Each process start writes to a new segment.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::config::WhenFull;
use super::document::IndexKind;

const HEADER: usize = 8;
const PAYLOAD_FIXED: usize = 8 + 8 + 1 + 2;
/// A record larger than this is refused (and can only be corruption when read).
pub const MAX_RECORD_BYTES: usize = 64 * 1024 * 1024;

/// A spool failure.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    /// A file operation failed.
    #[error("spool {path}: {source}")]
    Io {
        /// File or directory.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// A document is larger than a record may be.
    #[error("document of {bytes} bytes is larger than a spool record may be")]
    TooLarge {
        /// Encoded size.
        bytes: usize,
    },
    /// The spool lock was poisoned by a panic in another thread.
    #[error("spool lock poisoned")]
    Poisoned,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SpoolError + '_ {
    move |source| SpoolError::Io {
        path: path.to_owned(),
        source,
    }
}

/// A record as written: everything needed to send it.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordData {
    /// When it was spooled, Unix ms.
    pub enqueued_ms: i64,
    /// Event time, Unix ms.
    pub timestamp_ms: i64,
    /// Target family.
    pub kind: IndexKind,
    /// Document id.
    pub id: String,
    /// JSON source.
    pub body: Vec<u8>,
}

impl RecordData {
    fn encode(&self, out: &mut Vec<u8>) -> Result<(), SpoolError> {
        let payload_len = PAYLOAD_FIXED + self.id.len() + self.body.len();
        if payload_len > MAX_RECORD_BYTES || self.id.len() > usize::from(u16::MAX) {
            return Err(SpoolError::TooLarge { bytes: payload_len });
        }
        let start = out.len();
        out.extend_from_slice(&(payload_len as u32).to_le_bytes());
        out.extend_from_slice(&[0; 4]);
        out.extend_from_slice(&self.enqueued_ms.to_le_bytes());
        out.extend_from_slice(&self.timestamp_ms.to_le_bytes());
        out.push(self.kind.to_code());
        out.extend_from_slice(&(self.id.len() as u16).to_le_bytes());
        out.extend_from_slice(self.id.as_bytes());
        out.extend_from_slice(&self.body);
        let crc = crc32fast::hash(&out[start + HEADER..]);
        out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
        Ok(())
    }

    fn decode(payload: &[u8]) -> Option<RecordData> {
        if payload.len() < PAYLOAD_FIXED {
            return None;
        }
        let enqueued_ms = i64::from_le_bytes(payload[0..8].try_into().ok()?);
        let timestamp_ms = i64::from_le_bytes(payload[8..16].try_into().ok()?);
        let kind = IndexKind::from_code(payload[16])?;
        let id_len = usize::from(u16::from_le_bytes(payload[17..19].try_into().ok()?));
        let id = std::str::from_utf8(payload.get(19..19 + id_len)?)
            .ok()?
            .to_owned();
        let body = payload.get(19 + id_len..)?.to_vec();
        Some(RecordData {
            enqueued_ms,
            timestamp_ms,
            kind,
            id,
            body,
        })
    }

    /// Returns the bytes this record takes on disk.
    pub fn disk_bytes(&self) -> u64 {
        (HEADER + PAYLOAD_FIXED + self.id.len() + self.body.len()) as u64
    }
}

/// A record handed to the writer; acknowledge it by `seq`.
#[derive(Debug, Clone, PartialEq)]
pub struct SpooledRecord {
    /// Sequence number within this process.
    pub seq: u64,
    /// The record.
    pub data: RecordData,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Position {
    segment: u64,
    offset: u64,
}

#[derive(Debug)]
struct Pending {
    end: Position,
    done: bool,
    enqueued_ms: i64,
}

/// Outcome of [`Spool::append`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Append {
    /// Written and synced.
    Accepted,
    /// No room (`block`, or `drop_oldest` with only in-flight records left): try again later.
    Full,
}

/// The spool. Not thread-safe by itself: the sink keeps it behind a mutex.
#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    max_bytes: u64,
    segment_bytes: u64,
    when_full: WhenFull,
    segments: BTreeMap<u64, u64>,
    active: Option<(u64, File)>,
    read: Position,
    ack: Position,
    pending: BTreeMap<u64, Pending>,
    next_seq: u64,
    corrupt_skips: u64,
    dropped_total: u64,
}

fn segment_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:020}.seg"))
}

/// Reads one record at the file's current position: `Ok(None)` at a clean end, `Err(())` for a
/// torn or corrupt record.
fn read_record(reader: &mut impl Read) -> Result<Option<(RecordData, u64)>, ()> {
    let mut header = [0u8; HEADER];
    let mut filled = 0;
    while filled < HEADER {
        match reader.read(&mut header[filled..]) {
            Ok(0) if filled == 0 => return Ok(None),
            Ok(0) => return Err(()),
            Ok(n) => filled += n,
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return Err(()),
        }
    }
    let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
    let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    if !(PAYLOAD_FIXED..=MAX_RECORD_BYTES).contains(&len) {
        return Err(());
    }
    let mut payload = vec![0u8; len];
    reader.read_exact(&mut payload).map_err(|_| ())?;
    if crc32fast::hash(&payload) != crc {
        return Err(());
    }
    let data = RecordData::decode(&payload).ok_or(())?;
    Ok(Some((data, (HEADER + len) as u64)))
}

impl Spool {
    /// Opens (creating if needed) the spool in `dir`, repairs a torn tail and resumes at the
    /// persisted acknowledged position.
    ///
    /// # Errors
    /// When the directory or a file cannot be read or written.
    pub fn open(
        dir: &Path,
        max_bytes: u64,
        segment_bytes: u64,
        when_full: WhenFull,
    ) -> Result<Self, SpoolError> {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let mut segments = BTreeMap::new();
        for entry in std::fs::read_dir(dir).map_err(io(dir))? {
            let entry = entry.map_err(io(dir))?;
            let name = entry.file_name();
            let Some(id) = name
                .to_str()
                .and_then(|n| n.strip_suffix(".seg"))
                .and_then(|n| n.parse::<u64>().ok())
            else {
                continue;
            };
            let len = entry.metadata().map_err(io(&entry.path()))?.len();
            segments.insert(id, len);
        }
        let first = segments.keys().next().copied().unwrap_or(0);
        let mut ack = read_ack(dir).unwrap_or(Position {
            segment: first,
            offset: 0,
        });
        if !segments.contains_key(&ack.segment) {
            // The acked segment is gone (fully confirmed and deleted): start at the next one.
            let next = segments.range(ack.segment..).next().map(|(id, _)| *id);
            ack = Position {
                segment: next.unwrap_or(ack.segment),
                offset: 0,
            };
        }
        let old: Vec<u64> = segments.range(..ack.segment).map(|(id, _)| *id).collect();
        for id in old {
            let path = segment_path(dir, id);
            std::fs::remove_file(&path).map_err(io(&path))?;
            segments.remove(&id);
        }
        // Cut the newest segment at the first torn or corrupt record.
        if let Some((&last, &len)) = segments.iter().next_back() {
            let path = segment_path(dir, last);
            let file = File::open(&path).map_err(io(&path))?;
            let mut reader = BufReader::new(file);
            let mut valid = 0u64;
            while let Ok(Some((_, size))) = read_record(&mut reader) {
                valid += size;
            }
            if valid < len {
                tracing::warn!(
                    segment = %path.display(), kept_bytes = valid, cut_bytes = len - valid,
                    "spool segment has a torn or corrupt tail; cutting it"
                );
                let file = OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .map_err(io(&path))?;
                file.set_len(valid).map_err(io(&path))?;
                file.sync_all().map_err(io(&path))?;
                segments.insert(last, valid);
            }
        }
        if let Some(&len) = segments.get(&ack.segment) {
            ack.offset = ack.offset.min(len);
        }
        Ok(Self {
            dir: dir.to_owned(),
            max_bytes,
            segment_bytes,
            when_full,
            segments,
            active: None,
            read: ack,
            ack,
            pending: BTreeMap::new(),
            next_seq: 0,
            corrupt_skips: 0,
            dropped_total: 0,
        })
    }

    /// Returns the bytes not yet acknowledged.
    pub fn used_bytes(&self) -> u64 {
        let total: u64 = self
            .segments
            .range(self.ack.segment..)
            .map(|(_, l)| *l)
            .sum();
        total.saturating_sub(self.ack.offset)
    }

    /// Returns how many unsent records `drop_oldest` dropped since open.
    pub fn dropped_total(&self) -> u64 {
        self.dropped_total
    }

    /// Returns true when every record has been handed out.
    pub fn fully_read(&self) -> bool {
        self.end_position().is_none_or(|end| self.read >= end)
    }

    fn end_position(&self) -> Option<Position> {
        self.segments
            .iter()
            .next_back()
            .map(|(&segment, &offset)| Position { segment, offset })
    }

    /// Appends `records`, synced to disk before it returns [`Append::Accepted`].
    ///
    /// # Errors
    /// When writing or syncing fails, or a record is too large.
    pub fn append(&mut self, records: &[RecordData]) -> Result<Append, SpoolError> {
        let mut buf = Vec::new();
        let mut ends = Vec::with_capacity(records.len());
        for record in records {
            record.encode(&mut buf)?;
            ends.push(buf.len());
        }
        let needed = buf.len() as u64;
        let used = self.used_bytes();
        if used > 0 && used + needed > self.max_bytes {
            if self.when_full == WhenFull::Block {
                return Ok(Append::Full);
            }
            // Bytes of dropped records are freed once the records in flight before them are
            // confirmed; count them as free now so only as many as needed are dropped.
            let mut freed = 0;
            while (used - freed) + needed > self.max_bytes && !self.fully_read() {
                let Some(record) = self.next_records(1, u64::MAX, true)?.pop() else {
                    break;
                };
                freed += record.data.disk_bytes();
                self.dropped_total += 1;
            }
            if (used - freed) + needed > self.max_bytes {
                return Ok(Append::Full);
            }
        }
        let mut start = 0;
        for end in ends {
            self.write_chunk(&buf[start..end])?;
            start = end;
        }
        if let Some((id, file)) = &self.active {
            file.sync_data()
                .map_err(io(&segment_path(&self.dir, *id)))?;
        }
        Ok(Append::Accepted)
    }

    fn write_chunk(&mut self, chunk: &[u8]) -> Result<(), SpoolError> {
        let roll = match &self.active {
            None => true,
            Some((id, _)) => self.segments.get(id).copied().unwrap_or(0) >= self.segment_bytes,
        };
        if roll {
            if let Some((id, file)) = self.active.take() {
                file.sync_all().map_err(io(&segment_path(&self.dir, id)))?;
            }
            let id = self.segments.keys().next_back().map_or(0, |id| id + 1);
            let path = segment_path(&self.dir, id);
            let file = OpenOptions::new()
                .create_new(true)
                .append(true)
                .open(&path)
                .map_err(io(&path))?;
            sync_dir(&self.dir)?;
            self.segments.insert(id, 0);
            if self.segments.len() == 1 {
                self.ack = Position {
                    segment: id,
                    offset: 0,
                };
                self.read = self.ack;
            }
            self.active = Some((id, file));
        }
        if let Some((id, file)) = &mut self.active {
            file.write_all(chunk)
                .map_err(io(&segment_path(&self.dir, *id)))?;
            *self.segments.entry(*id).or_insert(0) += chunk.len() as u64;
        }
        Ok(())
    }

    /// Hands out up to `max_docs` records (and about `max_bytes`, at least one) in order.
    ///
    /// # Errors
    /// When a segment cannot be opened or read.
    pub fn next_batch(
        &mut self,
        max_docs: usize,
        max_bytes: u64,
    ) -> Result<Vec<SpooledRecord>, SpoolError> {
        self.next_records(max_docs, max_bytes, false)
    }

    fn next_records(
        &mut self,
        max_docs: usize,
        max_bytes: u64,
        drop: bool,
    ) -> Result<Vec<SpooledRecord>, SpoolError> {
        let mut out = Vec::new();
        let mut bytes = 0u64;
        while out.len() < max_docs && bytes < max_bytes {
            // Past the end of the segment, or the segment is gone (never the case once
            // `advance_ack` keeps the reader at or past the acknowledged position): read on
            // from the next one, if any.
            let segment_len = match self.segments.get(&self.read.segment) {
                Some(&len) if self.read.offset < len => len,
                _ => match self.segments.range(self.read.segment + 1..).next() {
                    Some((&next, _)) => {
                        self.read = Position {
                            segment: next,
                            offset: 0,
                        };
                        continue;
                    }
                    None => break,
                },
            };
            let path = segment_path(&self.dir, self.read.segment);
            let mut file = File::open(&path).map_err(io(&path))?;
            file.seek(SeekFrom::Start(self.read.offset))
                .map_err(io(&path))?;
            let mut reader = BufReader::new(file.take(segment_len - self.read.offset));
            loop {
                if out.len() >= max_docs || bytes >= max_bytes {
                    break;
                }
                match read_record(&mut reader) {
                    Ok(Some((data, size))) => {
                        self.read.offset += size;
                        bytes += size;
                        let seq = self.next_seq;
                        self.next_seq += 1;
                        self.pending.insert(
                            seq,
                            Pending {
                                end: self.read,
                                done: drop,
                                enqueued_ms: data.enqueued_ms,
                            },
                        );
                        out.push(SpooledRecord { seq, data });
                    }
                    Ok(None) => break,
                    Err(()) => {
                        self.corrupt_skips += 1;
                        tracing::warn!(
                            segment = %path.display(), offset = self.read.offset,
                            skips_total = self.corrupt_skips,
                            "corrupt spool record; skipping the rest of the segment"
                        );
                        self.read.offset = segment_len;
                        break;
                    }
                }
            }
        }
        if drop {
            self.advance_ack()?;
        }
        Ok(out)
    }

    /// Marks records confirmed (or dead-lettered) and persists the new position.
    ///
    /// # Errors
    /// When the `ack` file cannot be written or a segment cannot be deleted.
    pub fn acknowledge(&mut self, seqs: &[u64]) -> Result<(), SpoolError> {
        for seq in seqs {
            if let Some(p) = self.pending.get_mut(seq) {
                p.done = true;
            }
        }
        self.advance_ack()
    }

    /// Makes every handed-out, unacknowledged record readable again (after the writer gave
    /// them up, e.g. on a shutdown deadline); they keep their place at the front.
    pub fn rewind(&mut self) {
        self.pending.clear();
        self.read = self.ack;
    }

    fn advance_ack(&mut self) -> Result<(), SpoolError> {
        let mut moved = false;
        while let Some(entry) = self.pending.first_entry() {
            if !entry.get().done {
                break;
            }
            self.ack = entry.get().end;
            entry.remove();
            moved = true;
        }
        if !moved {
            return Ok(());
        }
        // Step over fully-acknowledged segments that are not the newest.
        while let Some(&len) = self.segments.get(&self.ack.segment) {
            if self.ack.offset < len {
                break;
            }
            match self.segments.range(self.ack.segment + 1..).next() {
                Some((&next, _)) => {
                    self.ack = Position {
                        segment: next,
                        offset: 0,
                    }
                }
                None => break,
            }
        }
        // The reader may have stopped at the very end of a segment the acknowledged position
        // just stepped over, which is deleted below: it carries on from there (everything
        // before the acknowledged position has been handed out).
        if self.read < self.ack {
            self.read = self.ack;
        }
        write_ack(&self.dir, self.ack)?;
        let old: Vec<u64> = self
            .segments
            .range(..self.ack.segment)
            .map(|(id, _)| *id)
            .collect();
        for id in old {
            if self.active.as_ref().is_some_and(|(a, _)| *a == id) {
                continue;
            }
            let path = segment_path(&self.dir, id);
            std::fs::remove_file(&path).map_err(io(&path))?;
            self.segments.remove(&id);
        }
        Ok(())
    }

    /// Returns the spool time of the oldest unacknowledged record, Unix ms.
    pub fn oldest_enqueued_ms(&self) -> Option<i64> {
        if let Some((_, p)) = self.pending.iter().find(|(_, p)| !p.done) {
            return Some(p.enqueued_ms);
        }
        if self.fully_read() {
            return None;
        }
        let path = segment_path(&self.dir, self.read.segment);
        let mut file = File::open(&path).ok()?;
        file.seek(SeekFrom::Start(self.read.offset + HEADER as u64))
            .ok()?;
        let mut ms = [0u8; 8];
        file.read_exact(&mut ms).ok()?;
        Some(i64::from_le_bytes(ms))
    }
}

fn ack_path(dir: &Path) -> PathBuf {
    dir.join("ack")
}

fn read_ack(dir: &Path) -> Option<Position> {
    let bytes = std::fs::read(ack_path(dir)).ok()?;
    if bytes.len() != 20 {
        return None;
    }
    let crc = u32::from_le_bytes(bytes[16..20].try_into().ok()?);
    if crc32fast::hash(&bytes[..16]) != crc {
        return None;
    }
    Some(Position {
        segment: u64::from_le_bytes(bytes[0..8].try_into().ok()?),
        offset: u64::from_le_bytes(bytes[8..16].try_into().ok()?),
    })
}

fn write_ack(dir: &Path, position: Position) -> Result<(), SpoolError> {
    let mut bytes = Vec::with_capacity(20);
    bytes.extend_from_slice(&position.segment.to_le_bytes());
    bytes.extend_from_slice(&position.offset.to_le_bytes());
    let crc = crc32fast::hash(&bytes);
    bytes.extend_from_slice(&crc.to_le_bytes());
    let tmp = dir.join("ack.tmp");
    let mut file = File::create(&tmp).map_err(io(&tmp))?;
    file.write_all(&bytes).map_err(io(&tmp))?;
    file.sync_all().map_err(io(&tmp))?;
    let path = ack_path(dir);
    std::fs::rename(&tmp, &path).map_err(io(&path))?;
    sync_dir(dir)
}

fn sync_dir(dir: &Path) -> Result<(), SpoolError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(i: usize) -> RecordData {
        RecordData {
            enqueued_ms: 1000 + i as i64,
            timestamp_ms: 2000 + i as i64,
            kind: IndexKind::Stage,
            id: format!("id-{i}"),
            body: format!("{{\"n\":{i}}}").into_bytes(),
        }
    }

    fn open(dir: &Path) -> Spool {
        Spool::open(dir, 1 << 20, 4096, WhenFull::Block).unwrap()
    }

    fn drain(spool: &mut Spool) -> Vec<String> {
        let mut ids = Vec::new();
        loop {
            let batch = spool.next_batch(7, u64::MAX).unwrap();
            if batch.is_empty() {
                return ids;
            }
            let seqs: Vec<u64> = batch.iter().map(|r| r.seq).collect();
            ids.extend(batch.into_iter().map(|r| r.data.id));
            spool.acknowledge(&seqs).unwrap();
        }
    }

    #[test]
    fn records_round_trip_in_order_across_segments() {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = open(dir.path());
        let records: Vec<_> = (0..300).map(rec).collect();
        for chunk in records.chunks(10) {
            assert_eq!(spool.append(chunk).unwrap(), Append::Accepted);
        }
        assert!(spool.segments.len() > 1);
        assert_eq!(spool.oldest_enqueued_ms(), Some(1000));
        let first = spool.next_batch(1, u64::MAX).unwrap();
        assert_eq!(first[0].data, rec(0));
        spool.acknowledge(&[first[0].seq]).unwrap();
        let ids = drain(&mut spool);
        assert_eq!(ids.len(), 299);
        assert_eq!(ids[0], "id-1");
        assert_eq!(spool.used_bytes(), 0);
        assert_eq!(spool.oldest_enqueued_ms(), None);
        // Every old segment is gone; only the active one remains.
        assert_eq!(spool.segments.len(), 1);
    }

    #[test]
    fn a_reader_left_at_the_end_of_a_deleted_segment_moves_on_to_the_next() {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = open(dir.path());
        // Fill the first segment past its size, so the next append starts a new one.
        let mut n = 0;
        while spool.segments.get(&0).copied().unwrap_or(0) < 4096 {
            spool.append(&[rec(n)]).unwrap();
            n += 1;
        }
        // Hand out every record of it: the reader stops at its end.
        let batch = spool.next_batch(n, u64::MAX).unwrap();
        assert_eq!(batch.len(), n);
        // Newer records go to a second segment; then the first one's records are confirmed, so
        // the acknowledged position steps over it and it is deleted.
        spool.append(&[rec(1000), rec(1001)]).unwrap();
        assert_eq!(spool.segments.len(), 2);
        let seqs: Vec<u64> = batch.iter().map(|r| r.seq).collect();
        spool.acknowledge(&seqs).unwrap();
        assert!(!segment_path(dir.path(), 0).exists());
        // The reader carries on with the second segment.
        assert_eq!(drain(&mut spool), vec!["id-1000", "id-1001"]);
    }

    #[test]
    fn unacknowledged_records_come_back_after_restart_and_acked_ones_do_not() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut spool = open(dir.path());
            spool.append(&(0..20).map(rec).collect::<Vec<_>>()).unwrap();
            let batch = spool.next_batch(10, u64::MAX).unwrap();
            // Out-of-order confirmation: 5..10 confirmed, 0..5 not: nothing may be forgotten.
            let later: Vec<u64> = batch[5..].iter().map(|r| r.seq).collect();
            spool.acknowledge(&later).unwrap();
            let early: Vec<u64> = batch[..3].iter().map(|r| r.seq).collect();
            spool.acknowledge(&early).unwrap();
            // Dropped without any shutdown: a crash.
        }
        let mut spool = open(dir.path());
        let ids = drain(&mut spool);
        assert_eq!(ids.first().map(String::as_str), Some("id-3"));
        assert_eq!(ids.len(), 17);
    }

    #[test]
    fn torn_tail_is_cut_and_earlier_records_survive() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut spool = open(dir.path());
            spool.append(&(0..5).map(rec).collect::<Vec<_>>()).unwrap();
        }
        let seg = segment_path(dir.path(), 0);
        let len = std::fs::metadata(&seg).unwrap().len();
        // A crash in the middle of the last record.
        OpenOptions::new()
            .write(true)
            .open(&seg)
            .unwrap()
            .set_len(len - 3)
            .unwrap();
        let mut spool = open(dir.path());
        assert_eq!(drain(&mut spool), vec!["id-0", "id-1", "id-2", "id-3"]);
        // New appends go to a new segment and are read after the old ones.
        spool.append(&[rec(9)]).unwrap();
        assert_eq!(drain(&mut spool), vec!["id-9"]);
    }

    #[test]
    fn corrupt_record_in_tail_is_cut_by_crc() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut spool = open(dir.path());
            spool.append(&(0..3).map(rec).collect::<Vec<_>>()).unwrap();
        }
        let seg = segment_path(dir.path(), 0);
        let mut bytes = std::fs::read(&seg).unwrap();
        let last = bytes.len() - 2;
        bytes[last] ^= 0xff;
        std::fs::write(&seg, bytes).unwrap();
        let mut spool = open(dir.path());
        assert_eq!(drain(&mut spool), vec!["id-0", "id-1"]);
    }

    #[test]
    fn corrupt_record_in_an_older_segment_skips_only_that_segments_rest() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut spool = open(dir.path());
            spool.append(&(0..3).map(rec).collect::<Vec<_>>()).unwrap();
        }
        {
            // A second start writes a second segment.
            let mut spool = open(dir.path());
            spool.append(&(3..5).map(rec).collect::<Vec<_>>()).unwrap();
        }
        let seg = segment_path(dir.path(), 0);
        let mut bytes = std::fs::read(&seg).unwrap();
        let second_record = rec(0).disk_bytes() as usize + HEADER + 3;
        bytes[second_record] ^= 0xff;
        std::fs::write(&seg, bytes).unwrap();
        let mut spool = Spool::open(dir.path(), 1 << 20, 4096, WhenFull::Block).unwrap();
        assert_eq!(drain(&mut spool), vec!["id-0", "id-3", "id-4"]);
        assert_eq!(spool.corrupt_skips, 1);
    }

    #[test]
    fn corrupt_ack_file_replays_everything_rather_than_losing() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut spool = open(dir.path());
            spool.append(&(0..4).map(rec).collect::<Vec<_>>()).unwrap();
            let b = spool.next_batch(2, u64::MAX).unwrap();
            spool.acknowledge(&[b[0].seq, b[1].seq]).unwrap();
        }
        std::fs::write(ack_path(dir.path()), b"garbage").unwrap();
        let mut spool = open(dir.path());
        assert_eq!(drain(&mut spool).len(), 4);
    }

    #[test]
    fn block_refuses_when_full_and_drop_oldest_makes_room() {
        let dir = tempfile::tempdir().unwrap();
        let size = rec(0).disk_bytes();
        let mut spool = Spool::open(dir.path(), size * 4, 4096, WhenFull::Block).unwrap();
        spool.append(&(0..4).map(rec).collect::<Vec<_>>()).unwrap();
        assert_eq!(spool.append(&[rec(4)]).unwrap(), Append::Full);
        drop(spool);
        let mut spool = Spool::open(dir.path(), size * 4, 4096, WhenFull::DropOldest).unwrap();
        assert_eq!(spool.append(&[rec(4)]).unwrap(), Append::Accepted);
        assert_eq!(spool.dropped_total(), 1);
        assert_eq!(drain(&mut spool), vec!["id-1", "id-2", "id-3", "id-4"]);
    }

    #[test]
    fn drop_oldest_never_drops_in_flight_records() {
        let dir = tempfile::tempdir().unwrap();
        let size = rec(0).disk_bytes();
        let mut spool = Spool::open(dir.path(), size * 2, 4096, WhenFull::DropOldest).unwrap();
        spool.append(&(0..2).map(rec).collect::<Vec<_>>()).unwrap();
        let batch = spool.next_batch(10, u64::MAX).unwrap();
        assert_eq!(batch.len(), 2);
        assert_eq!(spool.append(&[rec(2)]).unwrap(), Append::Full);
        spool.acknowledge(&[batch[0].seq]).unwrap();
        assert_eq!(spool.append(&[rec(2)]).unwrap(), Append::Accepted);
    }

    #[test]
    fn rewind_hands_out_unacknowledged_records_again() {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = open(dir.path());
        spool.append(&(0..3).map(rec).collect::<Vec<_>>()).unwrap();
        let batch = spool.next_batch(3, u64::MAX).unwrap();
        spool.acknowledge(&[batch[0].seq]).unwrap();
        spool.rewind();
        assert_eq!(drain(&mut spool), vec!["id-1", "id-2"]);
    }
}
