//! The log file: its records, written through and spilled, and read back
//! in blocks.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::{Entry, Inner, Stream, CONTINUES, FILE_BLOCK, RECORD_HEADER};

pub(super) fn to_micros(t: SystemTime) -> SystemTime {
    let us = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_micros() as u64;
    SystemTime::UNIX_EPOCH + Duration::from_micros(us)
}

pub(super) fn header(tag: u8, time: SystemTime, len: usize) -> [u8; RECORD_HEADER] {
    let micros = time
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_micros() as u64;
    let mut h = [0u8; RECORD_HEADER];
    h[0] = tag;
    h[1..9].copy_from_slice(&micros.to_le_bytes());
    h[9..13].copy_from_slice(&(len as u32).to_le_bytes());
    h
}

/// Writes one record at the end of the file; on failure, cuts the file back
/// to its last whole record.
pub(super) fn write_record(
    g: &mut Inner,
    tag: u8,
    time: SystemTime,
    data: &[u8],
) -> std::io::Result<u64> {
    let f = g.file.as_ref().expect("the file is open");
    // One write per record keeps a torn record detectable at the tail only.
    let mut rec = Vec::with_capacity(RECORD_HEADER + data.len());
    rec.extend_from_slice(&header(tag, time, data.len()));
    rec.extend_from_slice(data);
    if let Err(e) = f.write_all_at(&rec, g.file_len) {
        let _ = f.set_len(g.file_len);
        return Err(e);
    }
    let pos = g.file_len;
    g.file_len += rec.len() as u64;
    g.covered += data.len() as u64;
    Ok(pos)
}

/// A persistent log's append: one record in its file (created now if need be).
pub(super) fn write_through(
    g: &mut Inner,
    path: &Path,
    stream: Stream,
    time: SystemTime,
    data: &[u8],
    joins: bool,
) -> Option<u64> {
    if g.failed.is_some() || g.covered != g.total {
        return None;
    }
    if g.file.is_none() {
        match OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .mode(0o600)
            .custom_flags(libc::O_CLOEXEC)
            .open(path)
        {
            Ok(f) => {
                g.file = Some(Arc::new(f));
                g.created = true;
            }
            Err(e) => {
                g.failed = Some(format!("create {}: {e}", path.display()));
                return None;
            }
        }
    }
    let tag = stream.tag() | if joins { CONTINUES } else { 0 };
    let offset = g.total;
    match write_record(g, tag, time, data) {
        Ok(pos) => {
            if !joins {
                g.note_chunk(offset, pos);
            }
            Some(pos)
        }
        Err(e) => {
            g.failed = Some(format!("write {}: {e}", path.display()));
            None
        }
    }
}

/// A private log's spill: the chunk as one record in the temporary file.
pub(super) fn spill_one(g: &mut Inner, e: &Entry) -> std::io::Result<()> {
    if g.file.is_none() {
        g.file = Some(Arc::new(tempfile::tempfile()?));
    }
    let pos = write_record(g, e.stream.tag(), e.time, &e.data)?;
    g.note_chunk(e.offset, pos);
    Ok(())
}

pub(super) struct Blocks<'a> {
    file: &'a File,
    buf: Vec<u8>,
    start: u64,
    /// The last record's bytes were read on their own: the next header
    /// is read without a block of what follows it.
    pub(super) after_big: bool,
}

impl<'a> Blocks<'a> {
    pub(super) fn new(file: &'a File, after_big: bool) -> Blocks<'a> {
        Blocks {
            file,
            buf: Vec::new(),
            start: 0,
            after_big,
        }
    }

    /// Skips a record's `len` bytes ending at `end`: whether the file has them.
    pub(super) fn skip(&mut self, end: u64, len: u64) -> bool {
        if len as usize >= FILE_BLOCK / 2 {
            self.after_big = true;
        }
        self.has(end)
    }

    /// Whether the file reaches `end` (reads what it must to tell).
    pub(super) fn has(&mut self, end: u64) -> bool {
        if end <= self.start + self.buf.len() as u64 && end >= self.start {
            return true;
        }
        let mut b = [0u8; 1];
        end == 0 || self.file.read_at(&mut b, end - 1).is_ok_and(|n| n == 1)
    }

    /// `len` bytes from `pos` in a buffer of their own (what chunks share);
    /// `None` at the file's end. Large ones are read straight into it.
    pub(super) fn read_shared(&mut self, pos: u64, len: u64) -> Option<Arc<[u8]>> {
        let len = len as usize;
        // Collected from a sized iterator: allocated once, in place.
        let mut data: Arc<[u8]> = std::iter::repeat_n(0u8, len).collect();
        let out = Arc::get_mut(&mut data).expect("not shared yet");
        let cached_end = self.start + self.buf.len() as u64;
        if len < FILE_BLOCK / 2 {
            return self.read_at(pos, out).then_some(data);
        }
        // What the buffer holds of it, then the rest straight from the file.
        let mut done = 0;
        if pos >= self.start && pos < cached_end {
            let from = (pos - self.start) as usize;
            done = (self.buf.len() - from).min(len);
            out[..done].copy_from_slice(&self.buf[from..from + done]);
        }
        self.after_big = true;
        self.file
            .read_exact_at(&mut out[done..], pos + done as u64)
            .is_ok()
            .then_some(data)
    }

    /// Fills `out` from `pos`; false at the file's end.
    pub(super) fn read_at(&mut self, pos: u64, out: &mut [u8]) -> bool {
        let end = pos + out.len() as u64;
        if pos < self.start || end > self.start + self.buf.len() as u64 {
            // After a large record the next one is likely large too: read
            // its header alone rather than a block that would be read again.
            let block = match std::mem::take(&mut self.after_big) {
                true => out.len().max(RECORD_HEADER),
                false => FILE_BLOCK.max(out.len()),
            };
            self.buf.resize(block, 0);
            let mut n = 0;
            while n < block {
                match self.file.read_at(&mut self.buf[n..], pos + n as u64) {
                    Ok(0) => break,
                    Ok(k) => n += k,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(_) => break,
                }
            }
            self.buf.truncate(n);
            self.start = pos;
            if n < out.len() {
                return false;
            }
        }
        let from = (pos - self.start) as usize;
        out.copy_from_slice(&self.buf[from..from + out.len()]);
        true
    }
}
