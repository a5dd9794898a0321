//! Child processes that end with this process, however it ends.
//!
//! With no Redis configured, the runner starts its own, and stops it when it
//! is dropped. A runner killed with SIGKILL (the OOM killer, `kill -9`) runs
//! no drop, and the server would outlive it, holding its port and memory.
//! Linux's `PR_SET_PDEATHSIG` has the kernel signal a child when its parent
//! dies; precisely, when the *thread* that forked it ends. So such children
//! are forked on one thread that lives as long as the process: forked on a
//! blocking-pool thread, which ends after ten idle seconds, the server would
//! be killed under a runner still using it.

use std::io;
use std::process::{Child, Command};
use std::sync::{Mutex, OnceLock, mpsc};

/// A command to spawn, and where to send the child.
type Request = (Command, mpsc::Sender<io::Result<Child>>);

/// The thread children are forked on (`None` if it could not be started).
fn spawner() -> Option<&'static Mutex<mpsc::Sender<Request>>> {
    static SPAWNER: OnceLock<Option<Mutex<mpsc::Sender<Request>>>> = OnceLock::new();
    SPAWNER
        .get_or_init(|| {
            let (requests, received) = mpsc::channel::<Request>();
            let started = std::thread::Builder::new()
                .name("eol-spawner".into())
                .spawn(move || {
                    for (mut cmd, reply) in received {
                        let _ = reply.send(cmd.spawn());
                    }
                });
            match started {
                Ok(_) => Some(Mutex::new(requests)),
                Err(e) => {
                    tracing::warn!(error = %e, "could not start the thread that ties child processes to this one; they may outlive a killed runner");
                    None
                }
            }
        })
        .as_ref()
}

/// Spawns `cmd` so that the kernel sends it SIGTERM when this process dies,
/// even by SIGKILL.
pub(crate) fn spawn_tied(mut cmd: Command) -> io::Result<Child> {
    use std::os::unix::process::CommandExt;
    let Some(spawner) = spawner() else {
        return cmd.spawn();
    };
    let parent = std::process::id();
    // SAFETY: between fork and exec the closure only makes two
    // async-signal-safe syscalls (prctl, getppid) and compares plain data.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                return Err(io::Error::last_os_error());
            }
            // The parent may have died before the request was made.
            if u32::try_from(libc::getppid()).ok() != Some(parent) {
                return Err(io::Error::other("the runner ended while starting it"));
            }
            Ok(())
        });
    }
    let (reply, child) = mpsc::channel();
    spawner
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .send((cmd, reply))
        .map_err(|_| io::Error::other("the spawning thread ended"))?;
    child
        .recv()
        .map_err(|_| io::Error::other("the spawning thread ended"))?
}
