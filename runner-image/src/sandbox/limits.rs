//! How a worker process is confined before Python starts.

use std::io;
use std::path::Path;

/// Resource limits and isolation for every worker process.
#[derive(Debug, Clone)]
pub struct SandboxLimits {
    /// Address-space limit per worker (bytes).
    pub memory_bytes: u64,
    /// CPU seconds one call may use.
    pub cpu_seconds: f64,
    /// Wall-clock time one call may take before its worker is killed and replaced.
    pub wall_timeout: std::time::Duration,
    /// Largest file a worker may write (bytes); writing needs `open`, which code never gets.
    pub file_size_bytes: u64,
    /// Open file descriptors per worker.
    pub open_files: u64,
}

impl Default for SandboxLimits {
    fn default() -> Self {
        Self {
            memory_bytes: 512 * 1024 * 1024,
            cpu_seconds: 5.0,
            wall_timeout: std::time::Duration::from_secs(10),
            file_size_bytes: 1024 * 1024,
            open_files: 64,
        }
    }
}

/// The unprivileged user workers run as when the host runs as root.
pub(crate) const NOBODY: libc::uid_t = 65534;

/// What `confine` applies, decided before fork (no allocation after fork).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Confinement {
    pub memory_bytes: u64,
    pub file_size_bytes: u64,
    pub open_files: u64,
    /// Switch to `nobody` (only when started as root).
    pub drop_to_nobody: bool,
}

fn set_limit(resource: libc::__rlimit_resource_t, value: u64) -> io::Result<()> {
    let lim = libc::rlimit {
        rlim_cur: value,
        rlim_max: value,
    };
    // SAFETY: setrlimit only reads the struct we pass.
    if unsafe { libc::setrlimit(resource, &lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Runs in the child between fork and exec: only async-signal-safe calls.
pub(crate) fn confine(c: Confinement) -> io::Result<()> {
    // A fresh network namespace has only a down loopback: no network at all.
    // As root that needs nothing else; otherwise a user namespace grants it.
    // SAFETY: plain syscalls on the child's own credentials and namespaces.
    unsafe {
        if libc::unshare(libc::CLONE_NEWNET) != 0 {
            // Not fatal: the socket module is unreachable from code in any case,
            // and the host reports whether isolation took effect.
            let _ = libc::unshare(libc::CLONE_NEWUSER | libc::CLONE_NEWNET);
        }
        if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    set_limit(libc::RLIMIT_CORE, 0)?;
    set_limit(libc::RLIMIT_AS, c.memory_bytes)?;
    set_limit(libc::RLIMIT_FSIZE, c.file_size_bytes)?;
    set_limit(libc::RLIMIT_NOFILE, c.open_files)?;
    if c.drop_to_nobody {
        // SAFETY: as above; order matters (groups and gid before uid).
        unsafe {
            if libc::setgroups(0, std::ptr::null()) != 0
                || libc::setgid(NOBODY) != 0
                || libc::setuid(NOBODY) != 0
            {
                return Err(io::Error::last_os_error());
            }
        }
    }
    // No child processes. Root ignores RLIMIT_NPROC, which is why we dropped to nobody.
    set_limit(libc::RLIMIT_NPROC, 0)?;
    Ok(())
}

/// True when `nobody` can reach and run `path` (every ancestor searchable by others).
pub(crate) fn world_accessible(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let mut ok = path.metadata().is_ok_and(|m| {
        m.permissions().mode() & 0o005 == 0o005 || m.is_dir() && m.permissions().mode() & 0o001 != 0
    });
    let mut dir = path.parent();
    while let Some(d) = dir {
        ok &= d
            .metadata()
            .is_ok_and(|m| m.permissions().mode() & 0o001 != 0);
        dir = d.parent();
    }
    ok
}

/// The effective user id of this process.
pub(crate) fn euid() -> libc::uid_t {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() }
}
