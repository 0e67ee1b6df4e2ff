//! What one client may cost the server: how many connections at once, and for how long each
//! phase of a connection may hold its thread.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use super::IO_TIMEOUT;

/// The server's limits (see [`super::HttpsServer::spawn_with`]). Every phase of a connection
/// has an absolute deadline, so that a client sending or reading one byte at a time (slowloris)
/// holds its thread no longer than the deadline, however short each of its pauses is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerLimits {
    /// Connections served at once (each has its own thread). A connection accepted while this
    /// many are open is closed at once, before TLS. Default 256.
    pub max_connections: usize,
    /// The largest request body; a larger declared `Content-Length` gets 413 unread.
    pub max_body: usize,
    /// The longest wait for any single read or write. Default [`IO_TIMEOUT`].
    pub io_timeout: Duration,
    /// The TLS handshake, then each request from its first byte to the last byte of its body,
    /// then writing each response, must each complete within this. A request that does not
    /// gets 408 and the connection is closed. Default 10 s.
    pub request_deadline: Duration,
    /// How long a connection may wait for the first byte of its next request (after the
    /// handshake, and between keep-alive requests) before it is closed. Default [`IO_TIMEOUT`].
    pub idle_timeout: Duration,
}

impl ServerLimits {
    /// The defaults, with `max_body`.
    pub fn new(max_body: usize) -> Self {
        Self {
            max_connections: 256,
            max_body,
            io_timeout: IO_TIMEOUT,
            request_deadline: Duration::from_secs(10),
            idle_timeout: IO_TIMEOUT,
        }
    }
}

/// A TCP stream whose reads and writes fail with [`io::ErrorKind::TimedOut`] once a deadline
/// has passed: each call waits at most the time left (and at most the I/O timeout).
pub(super) struct DeadlineStream {
    pub(super) tcp: TcpStream,
    deadline: Instant,
    io_timeout: Duration,
}

impl DeadlineStream {
    pub(super) fn new(tcp: TcpStream, io_timeout: Duration) -> Self {
        Self {
            tcp,
            deadline: Instant::now() + io_timeout,
            io_timeout,
        }
    }

    /// Sets the deadline to `within` from now.
    pub(super) fn deadline_in(&mut self, within: Duration) {
        self.deadline = Instant::now() + within;
    }

    /// The timeout for the next call, or `TimedOut` if the deadline has passed.
    fn wait(&self) -> io::Result<Duration> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "deadline passed"));
        }
        Ok(left.min(self.io_timeout))
    }
}

impl Read for DeadlineStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.tcp.set_read_timeout(Some(self.wait()?))?;
        self.tcp.read(buf)
    }
}

impl Write for DeadlineStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.tcp.set_write_timeout(Some(self.wait()?))?;
        self.tcp.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.tcp.flush()
    }
}
