//! The connection the sandbox bridge and the MCP Redis tools send through,
//! which survives a Redis restart.
//!
//! redis-rs' `ConnectionManager` learns that its connection died only from the
//! next command: after a restart, that command fails with "broken pipe" (the
//! connection's reader had already seen the server close it, or sees it now,
//! and the command is dropped unsent) and only then does the manager
//! reconnect. Here, before a command is handed to a connection, the link
//! checks that the connection is still open: its driving task (our own) has
//! not ended, and a non-blocking peek at a duplicate of its socket does not
//! read end of file. So:
//!
//! - a connection Redis has closed is replaced before anything is sent on it;
//! - a command that fails because no connection could be opened (Redis is
//!   still down) or because Redis is loading its data was never run, and is
//!   sent again, with a short backoff, for up to [`RECONNECT_WINDOW`];
//! - a command that was on the wire when the connection broke may or may not
//!   have run: it is sent once more only if the command table says doing so is
//!   safe ([`super::commands::Retry`]); INCR and the like fail instead.
//!
//! Timeouts are not retried: a server that does not answer is not restarting.

use futures::FutureExt;
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, ConnectionAddr, ErrorKind, RedisError, RedisResult, Value};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How long a command waits for Redis to come back before it fails: long
/// enough for the managed Redis pod to be replaced (its StatefulSet makes a new
/// pod, which must pass its readiness probe before its Service routes to it).
pub const RECONNECT_WINDOW: Duration = Duration::from_secs(15);

/// How long opening a connection (TCP and handshake) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// How long a reply may take.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);

/// The longest pause between attempts to reach Redis again.
const MAX_BACKOFF: Duration = Duration::from_millis(250);

/// What to send: one command or a pipeline (a transaction when atomic).
#[derive(Clone, Copy)]
pub(crate) enum Request<'a> {
    /// One command.
    One(&'a redis::Cmd),
    /// Several, in one round trip.
    Many(&'a redis::Pipeline),
}

/// One open connection, whether the task driving it has ended, and a second
/// handle on its socket to see whether Redis has closed it.
#[derive(Clone)]
struct Conn {
    id: u64,
    conn: MultiplexedConnection,
    dead: Arc<AtomicBool>,
    probe: Arc<Probe>,
}

/// A duplicate of a connection's socket, only ever peeked at.
struct Probe(std::os::fd::OwnedFd);

impl Probe {
    /// Whether the peer has closed the socket: a non-blocking peek reads end
    /// of file or an error. Pending replies are left where they are.
    fn closed(&self) -> bool {
        use std::os::fd::AsRawFd;
        let mut byte = 0u8;
        // SAFETY: the descriptor is open while `self` lives, and `byte` is a
        // writable buffer of the one byte asked for.
        let n = unsafe {
            libc::recv(
                self.0.as_raw_fd(),
                (&raw mut byte).cast(),
                1,
                libc::MSG_PEEK | libc::MSG_DONTWAIT,
            )
        };
        match n {
            0 => true,
            n if n > 0 => false,
            _ => std::io::Error::last_os_error().kind() != std::io::ErrorKind::WouldBlock,
        }
    }
}

impl Conn {
    /// Known dead: its driver ended, or Redis closed the socket (the driver
    /// may not have run since: a Redis that restarted while this process was
    /// busy is seen here before a command is lost on it).
    fn closed(&self) -> bool {
        self.dead.load(Ordering::SeqCst) || self.probe.closed()
    }
}

/// A connection to one Redis, opened on demand and replaced when it dies.
pub(crate) struct Link {
    client: redis::Client,
    current: tokio::sync::Mutex<Option<Conn>>,
    next_id: AtomicU64,
    reconnects: AtomicU64,
}

impl Link {
    /// A link to `client`'s server; nothing is opened yet.
    pub(crate) fn new(client: redis::Client) -> Self {
        Self {
            client,
            current: tokio::sync::Mutex::new(None),
            next_id: AtomicU64::new(1),
            reconnects: AtomicU64::new(0),
        }
    }

    /// How many connections were opened after the first.
    pub(crate) fn reconnects(&self) -> u64 {
        self.reconnects.load(Ordering::Relaxed)
    }

    /// Sends `request`, reconnecting as the module docs describe; `retry_safe`
    /// says whether it may be sent again after it may already have run.
    pub(crate) async fn send(&self, request: Request<'_>, retry_safe: bool) -> RedisResult<Value> {
        let deadline = Instant::now() + RECONNECT_WINDOW;
        let mut backoff = Duration::from_millis(20);
        let mut resent = false;
        loop {
            let conn = match self.open().await {
                Ok(conn) => conn,
                Err(e) if never_sent(&e) && Instant::now() + backoff < deadline => {
                    tracing::debug!(error = %e, "Redis is unreachable; trying again");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    continue;
                }
                Err(e) => return Err(e),
            };
            let mut c = conn.conn.clone();
            let result = match request {
                Request::One(cmd) => cmd.query_async::<Value>(&mut c).await,
                Request::Many(pipe) => pipe.query_async::<Value>(&mut c).await,
            };
            let error = match result {
                Ok(value) => return Ok(value),
                Err(e) => e,
            };
            if is_busy_loading(&error) && Instant::now() + backoff < deadline {
                // Redis refused it unrun while it loads its data.
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
            if !error.is_connection_dropped() {
                return Err(error);
            }
            // The connection was alive when the command was handed to it, so the
            // command may have reached Redis before the connection broke.
            self.forget(conn.id).await;
            if retry_safe && !resent {
                tracing::info!(error = %error, "the Redis connection broke; sending again");
                resent = true;
                continue;
            }
            return Err(error);
        }
    }

    /// The open connection, or a new one when there is none or Redis closed it
    /// (then nothing is sent on the old one).
    async fn open(&self) -> RedisResult<Conn> {
        let mut slot = self.current.lock().await;
        if let Some(conn) = slot.as_ref()
            && !conn.closed()
        {
            return Ok(conn.clone());
        }
        *slot = None;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let conn = connect(&self.client, id).await?;
        if id > 1 {
            self.reconnects.fetch_add(1, Ordering::Relaxed);
            tracing::info!("reconnected to Redis");
        }
        *slot = Some(conn.clone());
        Ok(conn)
    }

    /// Drops connection `id` if it is still the current one.
    async fn forget(&self, id: u64) {
        let mut slot = self.current.lock().await;
        if slot.as_ref().is_some_and(|c| c.id == id) {
            *slot = None;
        }
    }
}

/// Opens a connection whose driving task marks it dead when it ends.
async fn connect(client: &redis::Client, id: u64) -> RedisResult<Conn> {
    let info = client.get_connection_info();
    let config = AsyncConnectionConfig::new().set_response_timeout(Some(RESPONSE_TIMEOUT));
    let open = async {
        // tokio's `net` feature comes with redis' `tokio-comp`.
        match info.addr() {
            ConnectionAddr::Tcp(host, port) => {
                let stream = tokio::net::TcpStream::connect((host.as_str(), *port)).await?;
                stream.set_nodelay(true)?;
                let probe = Probe(dup(&stream)?);
                let (conn, driver) =
                    MultiplexedConnection::new_with_config(info.redis_settings(), stream, config)
                        .await?;
                Ok((conn, driver.boxed(), probe))
            }
            ConnectionAddr::Unix(path) => {
                let stream = tokio::net::UnixStream::connect(path).await?;
                let probe = Probe(dup(&stream)?);
                let (conn, driver) =
                    MultiplexedConnection::new_with_config(info.redis_settings(), stream, config)
                        .await?;
                Ok((conn, driver.boxed(), probe))
            }
            other => Err(RedisError::from((
                ErrorKind::InvalidClientConfig,
                "unsupported Redis address",
                format!("{other}"),
            ))),
        }
    };
    let (conn, driver, probe) = tokio::time::timeout(CONNECT_TIMEOUT, open)
        .await
        .map_err(|_| RedisError::from(std::io::Error::from(std::io::ErrorKind::TimedOut)))??;
    let dead = Arc::new(AtomicBool::new(false));
    let flag = dead.clone();
    tokio::spawn(async move {
        let mut driver = driver;
        (&mut driver).await;
        // Marked before the driver (and the queue it reads) is dropped, so any
        // command handed over after this point is known never to have been sent.
        flag.store(true, Ordering::SeqCst);
    });
    Ok(Conn {
        id,
        conn,
        dead,
        probe: Arc::new(probe),
    })
}

/// A second descriptor of `socket`.
fn dup(socket: &impl std::os::fd::AsFd) -> std::io::Result<std::os::fd::OwnedFd> {
    socket.as_fd().try_clone_to_owned()
}

/// The error says the command cannot have been sent: no connection could be opened.
fn never_sent(e: &RedisError) -> bool {
    e.is_connection_refusal() || e.is_io_error() || e.is_timeout()
}

fn is_busy_loading(e: &RedisError) -> bool {
    e.kind() == ErrorKind::Server(redis::ServerErrorKind::BusyLoading)
}
