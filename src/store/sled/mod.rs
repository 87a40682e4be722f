//! [`SledStore`]: the [`TopologyStore`](crate::store::TopologyStore) and
//! the [`MessageStore`](crate::store::MessageStore) on one sled 0.34
//! database, one tree per concern (`topology.rs` and `message.rs` implement
//! each; this file opens the database and syncs it: one engine, so one
//! [`Durable::sync`] covers both).
//!
//! Trees: `exchanges` (name → def), `queues` (name → def), `bindings`
//! (encoded def → empty), `users` (name →
//! [`UserRecord`](crate::store::UserRecord)), `schemas` (the schema
//! registry's records, see [`crate::schema`]), `messages` and `meta`
//! (`clean` flag, commit counter). The `messages` tree holds four key
//! spaces so that one publish is one atomic `Batch` (sled batches are per
//! tree):
//!
//! - `m` ‖ queue id (u64 BE) ‖ seq (u64 BE) → metadata (17-byte key);
//! - `b` ‖ body id (u64 BE) ‖ chunk (u32 BE) → body bytes (13-byte key);
//! - `d` ‖ queue id (u64 BE) ‖ message id (its UTF-8 bytes, any length) →
//!   de-duplication record (its `expires_at`), written in the same batch as
//!   the message it guards;
//! - `o` ‖ queue id (u64 BE) ‖ group name (its bytes) → a stream consumer
//!   group's committed offset.
//!
//! Bodies are cut into 64 KiB chunks so that none reaches sled's blob files
//! (values over ~128 KiB), which sled never fsyncs.
//!
//! Recovery scans the `m` space once, reading each record in place
//! ([`view_meta`](crate::store::codec::view_meta)): it keeps a summary per
//! queue, the reference count and length of each body stored apart, and
//! nothing per message, so a backlog of millions recovers in bounded
//! memory. Copies are read later, a window at a time, with a range scan
//! ([`MessageStore::load`](crate::store::MessageStore::load)).
//!
//! Durability: sled's `flush` ends in `sync_file_range`, which is not a
//! barrier against power loss, so [`Durable::sync`] follows it with
//! `fdatasync` of sled's `db` file (see `shared/reference/reliability.md` §2).

mod message;
mod topology;

use std::fs::File;
use std::path::Path;

use super::{Durable, StoreError};

/// Bodies are stored in chunks of at most this many bytes.
pub(crate) const BODY_CHUNK_BYTES: usize = 64 * 1024;

/// sled's page cache size: its default (1 GiB) is far too large for a
/// broker, and sled's real use is a few times this on a large tree. 32 MiB
/// measured as fast as 64 MiB on the queue benchmarks, and took the peak RSS
/// of a 10M-message backlog from 510 to 461 MiB.
pub const DEFAULT_CACHE_BYTES: u64 = 32 * 1024 * 1024;

/// How long [`SledStore::open`] waits for the directory lock.
///
/// sled 0.34 releases its `flock` only when its background threads exit,
/// which can be a few milliseconds after the last `Db` handle is dropped
/// (spacejam/sled#1234, #1289): a restart in the same process would
/// otherwise fail at random. A second live broker on the same directory
/// still fails, once this wait is over.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

/// Opens sled, retrying while its directory lock is held (see [`LOCK_WAIT`]).
fn open_waiting_for_lock(
    config: &sled::Config,
    dir: &Path,
    wait: std::time::Duration,
) -> Result<sled::Db, StoreError> {
    let start = std::time::Instant::now();
    loop {
        match config.open() {
            Ok(db) => return Ok(db),
            // sled =0.34.7 reports the failed `flock` as ErrorKind::Other
            // with this text (config.rs, `open_file`).
            Err(sled::Error::Io(e)) if e.to_string().contains("could not acquire lock") => {
                if start.elapsed() >= wait {
                    return Err(StoreError::Locked(dir.display().to_string()));
                }
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Removes the snapshot files that sled was still writing when it was
/// stopped (`snap.<lsn>.generating`).
///
/// sled 0.34.7 writes a snapshot to `snap.<lsn>.generating`, fsyncs it and
/// only then renames it to `snap.<lsn>`. Its reader takes every `snap.*`
/// file and prefers the last in name order, which is the `.generating`
/// one, and refuses to open when that file is empty or torn
/// (spacejam/sled#1527, #1533): a kill while sled opened, or a start on a
/// full disk, left a store that no later start could open. The file is
/// incomplete by definition (the rename never happened), so the previous
/// snapshot and the log still hold everything, as NATS does for its own
/// temporary snapshots (nats-server #8101).
fn remove_incomplete_snapshots(dir: &Path) -> Result<(), StoreError> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("snap.") && name.ends_with(".generating") {
            let bytes = entry.metadata().map_or(0, |m| m.len());
            std::fs::remove_file(entry.path())?;
            tracing::warn!(
                file = %entry.path().display(),
                bytes,
                "removed an incomplete sled snapshot (left by a stop while sled was \
                 writing it); the previous snapshot and the log hold its contents"
            );
        }
    }
    Ok(())
}

impl From<sled::Error> for StoreError {
    fn from(e: sled::Error) -> Self {
        match e {
            sled::Error::Corruption { .. } => StoreError::Corrupt(e.to_string()),
            other => StoreError::Io(other.to_string()),
        }
    }
}

/// The sled-backed store.
#[derive(Debug)]
pub struct SledStore {
    db: sled::Db,
    db_file: File,
    /// The commit counter (see [`CommitMark`]), held across a whole sync.
    commits: parking_lot::Mutex<u64>,
    mark: CommitMark,
    exchanges: sled::Tree,
    queues: sled::Tree,
    bindings: sled::Tree,
    users: sled::Tree,
    schemas: sled::Tree,
    messages: sled::Tree,
    meta: sled::Tree,
}

/// The `meta` key of the commit counter, written with every sync.
const COMMIT_KEY: &str = "commit";

fn be_u64_checked(b: &[u8]) -> Result<u64, StoreError> {
    let bytes: [u8; 8] = b
        .try_into()
        .map_err(|_| StoreError::Corrupt("commit counter of wrong length".into()))?;
    Ok(u64::from_be_bytes(bytes))
}

/// A file beside sled's (`commit.mark`) holding the number of the last
/// commit whose sync succeeded, with a CRC.
///
/// sled 0.34 treats a damaged log record as the torn end of its log: it
/// drops everything after it and starts without an error. Every sync
/// writes a counter into sled and, once durable, into this file; at open,
/// a counter in sled below the file's means confirmed writes were lost,
/// and the store refuses to open. The file is written after each sync but
/// fsync'd only at a clean shutdown (an fsync per commit would double
/// their cost), so after a crash it may lag behind, never run ahead.
#[derive(Debug)]
struct CommitMark(File);

impl CommitMark {
    fn open(dir: &Path) -> Result<CommitMark, StoreError> {
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(dir.join("commit.mark"))?;
        Ok(CommitMark(f))
    }

    /// The marked commit; `None` for a new, short or damaged file.
    fn read(&self) -> Option<u64> {
        use std::os::unix::fs::FileExt;
        let mut buf = [0u8; 12];
        self.0.read_exact_at(&mut buf, 0).ok()?;
        let (n, crc) = buf.split_at(8);
        (crc32fast::hash(n).to_be_bytes() == crc)
            .then(|| u64::from_be_bytes(n.try_into().unwrap_or_default()))
    }

    fn write(&self, n: u64) {
        use std::os::unix::fs::FileExt;
        let mut buf = [0u8; 12];
        buf[..8].copy_from_slice(&n.to_be_bytes());
        buf[8..].copy_from_slice(&crc32fast::hash(&n.to_be_bytes()).to_be_bytes());
        if let Err(e) = self.0.write_all_at(&buf, 0) {
            tracing::warn!(error = %e, "could not write commit.mark");
        }
    }

    fn sync(&self) {
        if let Err(e) = self.0.sync_data() {
            tracing::warn!(error = %e, "could not sync commit.mark");
        }
    }
}

impl SledStore {
    /// Whether a running process (a broker) holds `dir`: sled's exclusive
    /// `flock` on its `db` file, tried without waiting and let go at once.
    /// `sluice user` asks first, to leave a running broker's directory
    /// alone ([`SledStore::open`] tidies snapshot files before it locks).
    pub(crate) fn in_use(dir: &Path) -> bool {
        use std::os::fd::AsRawFd;
        let Ok(db) = std::fs::File::open(dir.join("db")) else {
            return false;
        };
        // SAFETY: flock(2) on a descriptor owned here; the lock, if taken,
        // goes with the file when it is dropped.
        let rc = unsafe { libc::flock(db.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        rc != 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::WouldBlock
    }

    /// Opens (or creates) the store in `dir`.
    pub fn open(dir: &Path, cache_bytes: u64) -> Result<SledStore, StoreError> {
        Self::open_with_lock_wait(dir, cache_bytes, LOCK_WAIT)
    }

    fn open_with_lock_wait(
        dir: &Path,
        cache_bytes: u64,
        lock_wait: std::time::Duration,
    ) -> Result<SledStore, StoreError> {
        std::fs::create_dir_all(dir)?;
        remove_incomplete_snapshots(dir)?;
        let config = sled::Config::new()
            .path(dir)
            .cache_capacity(cache_bytes)
            .flush_every_ms(Some(500));
        let db = open_waiting_for_lock(&config, dir, lock_wait)?;
        match Self::finish_open(db.clone(), dir) {
            Ok(store) => Ok(store),
            Err(e) => {
                if let StoreError::Io(_) = e {
                    // Dropping the last handle flushes, which after an I/O
                    // error (a full disk) may never return; the caller is
                    // about to give up on the directory anyway.
                    std::mem::forget(db);
                }
                Err(e)
            }
        }
    }

    fn finish_open(db: sled::Db, dir: &Path) -> Result<SledStore, StoreError> {
        let db_file = File::open(dir.join("db"))?;
        let meta = db.open_tree("meta")?;
        let committed = match meta.get(COMMIT_KEY)? {
            Some(v) => be_u64_checked(&v)?,
            None => 0,
        };
        let mark = CommitMark::open(dir)?;
        if let Some(marked) = mark.read() {
            if marked > committed {
                return Err(StoreError::Corrupt(format!(
                    "writes that were confirmed are missing: the store ends at commit {committed}, \
                     but commit {marked} was made durable (a damaged or truncated file in {})",
                    dir.display()
                )));
            }
        }
        Ok(SledStore {
            commits: parking_lot::Mutex::new(committed),
            mark,
            exchanges: db.open_tree("exchanges")?,
            queues: db.open_tree("queues")?,
            bindings: db.open_tree("bindings")?,
            users: db.open_tree("users")?,
            schemas: db.open_tree("schemas")?,
            messages: db.open_tree("messages")?,
            meta,
            db,
            db_file,
        })
    }
}

/// What the log store ([`crate::store::logstore`]) needs of the sled
/// database it keeps the topology and its small state in.
impl SledStore {
    /// The database, for the log store's own trees.
    pub(crate) fn db(&self) -> &sled::Db {
        &self.db
    }

    /// Whether any message copy, body, de-duplication record or offset is
    /// still kept in sled (a data directory from before the message log).
    pub(crate) fn has_messages(&self) -> Result<bool, StoreError> {
        Ok(!self.messages.is_empty())
    }

    /// Removes every record of the `messages` tree (once the message log
    /// holds them).
    pub(crate) fn clear_messages(&self) -> Result<(), StoreError> {
        self.messages.clear()?;
        Ok(())
    }

    /// Whether the previous run shut down cleanly (the `clean` flag).
    pub(crate) fn was_clean(&self) -> Result<bool, StoreError> {
        Ok(self.meta.get("clean")?.is_some_and(|v| v.as_ref() == [1]))
    }

    /// Whether no broker has run on this store yet: a recovery writes the
    /// `clean` flag, so only a new store lacks it (`sluice user add` on a
    /// new data directory writes users, not the flag).
    pub(crate) fn never_started(&self) -> Result<bool, StoreError> {
        Ok(self.meta.get("clean")?.is_none())
    }
}

impl Durable for SledStore {
    fn sync(&self) -> Result<(), StoreError> {
        let mut commits = self.commits.lock();
        let next = *commits + 1;
        self.meta.insert(COMMIT_KEY, &next.to_be_bytes())?;
        self.db.flush()?;
        self.db_file.sync_data()?;
        *commits = next;
        self.mark.write(next);
        Ok(())
    }

    fn size_on_disk(&self) -> Option<u64> {
        self.db.size_on_disk().ok()
    }
}

#[cfg(test)]
mod tests;
