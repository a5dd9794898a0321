//! One address served version after version: a new version's runtime is
//! loaded before the old server stops, so a reload costs callers only the
//! moment between the old listener closing and the new one binding.

use crate::engine::Runtime;
use crate::serve::ServeOptions;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// How long a replacement waits for the old server to free the address.
const REBIND_WITHIN: Duration = Duration::from_secs(10);

/// A feature served on one address, replaceable by a newer version.
pub struct DevServer {
    /// The address bound first (a port 0 resolved), bound again by each version.
    address: SocketAddr,
    running: Running,
}

/// One version's server.
struct Running {
    /// Stops it; in-flight calls finish.
    stop: oneshot::Sender<()>,
    task: JoinHandle<std::io::Result<()>>,
}

impl DevServer {
    /// Serves `runtime` on `address`; fails when the address cannot be bound.
    pub async fn start(address: &str, runtime: Arc<Runtime>) -> std::io::Result<Self> {
        let listener = TcpListener::bind(address).await?;
        Ok(Self {
            address: listener.local_addr()?,
            running: spawn(listener, runtime),
        })
    }

    /// The address served.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Stops the version being served and serves `runtime` on the same
    /// address. The old server's in-flight calls finish in the background.
    pub async fn replace(&mut self, runtime: Arc<Runtime>) -> std::io::Result<()> {
        // Sending consumes the sender: a spare one stands in until the new server's.
        let _ = std::mem::replace(&mut self.running.stop, oneshot::channel().0).send(());
        // The old server closes its listener as soon as it stops accepting,
        // before its in-flight calls end: bind as soon as the address is free.
        let since = Instant::now();
        let listener = loop {
            match TcpListener::bind(self.address).await {
                Ok(listener) => break listener,
                Err(e)
                    if e.kind() == std::io::ErrorKind::AddrInUse
                        && since.elapsed() < REBIND_WITHIN =>
                {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => return Err(e),
            }
        };
        let old = std::mem::replace(&mut self.running, spawn(listener, runtime));
        tokio::spawn(async move {
            if let Ok(Err(error)) = old.task.await {
                tracing::warn!(%error, "the replaced server failed while stopping");
            }
        });
        Ok(())
    }

    /// Stops serving; returns once the in-flight calls have finished.
    pub async fn stop(self) -> std::io::Result<()> {
        let _ = self.running.stop.send(());
        match self.running.task.await {
            Ok(served) => served,
            Err(e) => Err(std::io::Error::other(e)),
        }
    }
}

/// Serves `runtime` on `listener` in a task of its own, ready at once: `eol
/// dev` runs and shows the tests itself, and serves a version whose tests fail.
fn spawn(listener: TcpListener, runtime: Arc<Runtime>) -> Running {
    let (stop, stopped) = oneshot::channel::<()>();
    let options = ServeOptions {
        drain: Duration::ZERO,
        ..ServeOptions::default()
    };
    let task = tokio::spawn(crate::serve::serve(
        runtime,
        options,
        listener,
        async move {
            // A dropped sender stops the server too.
            let _ = stopped.await;
        },
    ));
    Running { stop, task }
}
