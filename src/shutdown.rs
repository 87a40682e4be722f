//! How `sluice serve` stops, and the promise that it always does.
//!
//! - [`Signals`]: SIGINT and SIGTERM are taken by a thread of their own
//!   (`sigwait`), not by a task of the async runtime, so that a signal is
//!   seen even when every runtime thread is stuck in the store. The first
//!   signal starts a graceful stop ([`Signals::received`] completes); a
//!   second one ends the process at once.
//! - [`Deadline`]: armed when a stop begins (a signal, or a store that
//!   failed a write), it ends the process with status 1 if the graceful
//!   stop has not finished within the grace period (`--shutdown-timeout`).
//!   A stop that hangs on the disk (sled's flush never returns after some
//!   I/O errors) so still ends, and a supervisor can restart the broker.
//!
//! Ending the process early is safe for the data: every confirmed message
//! is already durable, and the next start recovers as after a crash.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

/// The default grace period of a stop (`--shutdown-timeout`).
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);

/// Exits the process now with `code`, running no destructors and no
/// `atexit` handlers (a handler or a destructor could be what hangs).
fn exit_now(code: i32) -> ! {
    // SAFETY: `_exit` has no preconditions; it ends the process.
    unsafe { libc::_exit(code) }
}

/// Ends the process with status 1 unless it has exited by itself within
/// the grace period of the stop that armed it.
#[derive(Debug, Clone, Default)]
pub struct Deadline {
    armed: Arc<AtomicBool>,
    /// Never ends the process (a broker inside a test process).
    disabled: bool,
}

impl Deadline {
    /// A deadline not armed yet.
    pub fn new() -> Deadline {
        Deadline::default()
    }

    /// A deadline that arming never ends the process with (for a broker
    /// run inside another program, such as a test).
    pub fn disabled() -> Deadline {
        Deadline {
            disabled: true,
            ..Deadline::default()
        }
    }

    /// Starts the countdown (only the first call does; later ones are
    /// ignored): after `grace`, the process logs `why` and exits with
    /// status 1. A thread of its own does the waiting, so a blocked
    /// runtime cannot hold it up.
    pub(crate) fn arm(&self, grace: Duration, why: &'static str) {
        if self.armed.swap(true, Ordering::SeqCst) || self.disabled {
            return;
        }
        let spawned = std::thread::Builder::new()
            .name("sluice-deadline".into())
            .spawn(move || {
                std::thread::sleep(grace);
                tracing::error!(
                    grace_ms = grace.as_millis() as u64,
                    "{why}: the stop did not finish within the grace period (--shutdown-timeout); \
                     exiting now with status 1 (every confirmed message is on disk)"
                );
                exit_now(1);
            });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "could not start the shutdown deadline; exiting now");
            exit_now(1);
        }
    }
}

/// SIGINT and SIGTERM, taken by a thread of their own.
#[derive(Debug)]
pub struct Signals {
    received: watch::Receiver<bool>,
}

impl Signals {
    /// Blocks SIGINT and SIGTERM in the calling thread, and so in every
    /// thread it starts afterwards, and starts the thread that waits for
    /// them. Call it first thing in `main`, before any other thread
    /// exists (a thread started earlier would still take the signals and
    /// die of them).
    ///
    /// The first signal arms `deadline` with `grace` and makes
    /// [`Signals::received`] complete; the second ends the process with
    /// status 1 at once.
    pub fn install(deadline: Deadline, grace: Duration) -> std::io::Result<Signals> {
        let set = signal_set();
        // SAFETY: `set` is an initialised sigset_t; a null old-set pointer
        // is allowed.
        let rc = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
        if rc != 0 {
            return Err(std::io::Error::from_raw_os_error(rc));
        }
        let (tx, received) = watch::channel(false);
        std::thread::Builder::new()
            .name("sluice-signals".into())
            .spawn(move || {
                let mut first = true;
                loop {
                    let mut sig: libc::c_int = 0;
                    // SAFETY: `set` is initialised and `sig` is writable.
                    let rc = unsafe { libc::sigwait(&set, &mut sig) };
                    if rc != 0 {
                        continue;
                    }
                    let name = if sig == libc::SIGINT {
                        "SIGINT"
                    } else {
                        "SIGTERM"
                    };
                    if !first {
                        tracing::warn!("{name} again while stopping: exiting now with status 1");
                        exit_now(1);
                    }
                    first = false;
                    tracing::info!(
                        grace_ms = grace.as_millis() as u64,
                        "{name} received: stopping (a second signal ends the process at once)"
                    );
                    deadline.arm(grace, "stopping on a signal");
                    tx.send_replace(true);
                }
            })?;
        Ok(Signals { received })
    }

    /// Completes once the first signal has arrived.
    pub async fn received(mut self) {
        // The sender lives in a thread that never ends.
        let _ = self.received.wait_for(|r| *r).await;
    }
}

fn signal_set() -> libc::sigset_t {
    let mut set = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
    // SAFETY: sigemptyset initialises the set; sigaddset only adds valid
    // signal numbers to an initialised set.
    unsafe {
        libc::sigemptyset(set.as_mut_ptr());
        libc::sigaddset(set.as_mut_ptr(), libc::SIGINT);
        libc::sigaddset(set.as_mut_ptr(), libc::SIGTERM);
        set.assume_init()
    }
}
