//! [`DiskSpace`]: the free-space watermark of the data directory. Checked
//! every 100 ms; while the file system has less than `--disk-free-limit`
//! bytes free, publishes that would write to the store are held (the
//! session shows `NOTICE blocked disk`), as RabbitMQ's disk alarm blocks
//! publishers, so the store does not run into `ENOSPC`. Consumers, acks and
//! everything else go on.

use std::path::PathBuf;
use std::time::Duration;

use tokio::sync::watch;

/// How often the free space is read: a `statvfs` costs about a
/// microsecond, and at 100 ms a publisher writing 100 MB/s gets 10 MB past
/// the limit at most before it is held.
const CHECK_EVERY: Duration = Duration::from_millis(100);

/// The watermark and its current state.
#[derive(Debug)]
pub struct DiskSpace {
    dir: PathBuf,
    limit: u64,
    low: watch::Sender<bool>,
}

impl DiskSpace {
    /// A watermark of `limit` free bytes on the file system of `dir`
    /// (`0` turns it off).
    pub fn new(dir: PathBuf, limit: u64) -> DiskSpace {
        DiskSpace {
            dir,
            limit,
            low: watch::channel(false).0,
        }
    }

    /// True while free space is under the limit.
    pub fn low(&self) -> bool {
        *self.low.borrow()
    }

    /// Waits until free space is back over the limit.
    pub async fn wait_room(&self) {
        let mut rx = self.low.subscribe();
        // The sender lives as long as `self`; an error cannot happen here.
        let _ = rx.wait_for(|low| !low).await;
    }

    /// Reads the free space now and updates the state; logs changes.
    pub fn check(&self) {
        if self.limit == 0 {
            return;
        }
        let free = match free_bytes(&self.dir) {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!(error = %e, dir = %self.dir.display(), "could not read free disk space");
                return;
            }
        };
        let low = free < self.limit;
        if low != self.low() {
            if low {
                tracing::warn!(
                    free,
                    limit = self.limit,
                    "disk space low: publishes that write to the store are held until space is freed"
                );
            } else {
                tracing::warn!(
                    free,
                    limit = self.limit,
                    "disk space back: publishes resume"
                );
            }
            self.low.send_replace(low);
        }
    }

    /// Checks every 100 ms, forever (run as a task).
    pub async fn run(self: std::sync::Arc<Self>) {
        if self.limit == 0 {
            return;
        }
        let mut tick = tokio::time::interval(CHECK_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let me = self.clone();
            // statvfs is a quick syscall, but it is file-system I/O.
            if tokio::task::spawn_blocking(move || me.check())
                .await
                .is_err()
            {
                return;
            }
        }
    }
}

/// Bytes available to an unprivileged user on the file system of `dir`.
pub fn free_bytes(dir: &std::path::Path) -> std::io::Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::other("data directory path contains a NUL byte"))?;
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `path` is a valid NUL-terminated string and `st` points to
    // writable memory of the right type; statvfs fills it on success.
    let rc = unsafe { libc::statvfs(path.as_ptr(), st.as_mut_ptr()) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: statvfs returned 0, so it initialised `st`.
    let st = unsafe { st.assume_init() };
    #[allow(clippy::unnecessary_cast)] // the field types differ by platform
    Ok((st.f_bavail as u64).saturating_mul(st.f_frsize as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_bytes_of_a_real_directory() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(free_bytes(dir.path()).expect("statvfs") > 0);
        assert!(free_bytes(&dir.path().join("missing")).is_err());
    }

    #[test]
    fn a_limit_over_the_free_space_is_low_and_zero_is_off() {
        let dir = tempfile::tempdir().expect("tempdir");
        let all = DiskSpace::new(dir.path().to_path_buf(), u64::MAX);
        all.check();
        assert!(all.low());
        let off = DiskSpace::new(dir.path().to_path_buf(), 0);
        off.check();
        assert!(!off.low());
        let one = DiskSpace::new(dir.path().to_path_buf(), 1);
        one.check();
        assert!(!one.low());
    }
}
