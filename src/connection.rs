//! The socket owner, a reader and a writer half ([`FrameReader`],
//! [`FrameWriter`]): a read buffer fed to the framer, and a
//! write buffer that collects replies and pushes so that one `write` carries
//! many of them. No protocol semantics here.
//!
//! **Idle connections cost little.** Neither buffer is allocated up front:
//! the read buffer is taken when the socket first becomes readable (and
//! only its touched pages cost memory), and the write buffer grows with
//! what is written and is given back after a burst much larger than the
//! writes that follow. A connection that never sent anything holds its
//! task, its session and the socket, not 128 KiB of buffers. (The read
//! buffer is not given back at idle moments: that would cost a 64 KiB
//! allocation per wake-up of a busy connection.)
//!
//! **Two transports.** Plain TCP and TLS (the `--tls-addr` port): the
//! session and the framer see the same reader and writer. Over TCP, a read
//! waits for readability first, so that an idle connection has no read
//! buffer; over TLS, rustls keeps its own buffers per connection anyway
//! (and decrypts only what it was handed), so the read buffer is reserved
//! when the first read starts.

use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

use crate::protocol::frame::{BadFrame, FrameEvent, Framer, Limits};

/// Bytes asked of the kernel per read.
const READ_CHUNK_BYTES: usize = 64 * 1024;
/// A write buffer larger than this is shrunk back after it is written.
const WRITE_KEEP_BYTES: usize = 16 * 1024;

/// A server-side TLS connection.
pub(crate) type TlsStream = tokio_rustls::server::TlsStream<TcpStream>;

/// The read side of either transport.
#[derive(Debug)]
enum ReadSide {
    Tcp(OwnedReadHalf),
    Tls(ReadHalf<TlsStream>),
}

/// How long a connection the server closes keeps reading (and throwing
/// away) the peer's input after its last reply, so that the close is a
/// FIN, not a reset (see [`FrameReader::discard_until_eof`]).
pub(crate) const LINGER: Duration = Duration::from_secs(2);
/// The most input a closing connection reads and throws away.
pub(crate) const LINGER_BYTES: usize = 16 * 1024 * 1024;

/// The write side of either transport.
#[derive(Debug)]
enum WriteSide {
    Tcp(OwnedWriteHalf),
    Tls(WriteHalf<TlsStream>),
}

/// The read half: buffer plus framer.
#[derive(Debug)]
pub(crate) struct FrameReader {
    socket: ReadSide,
    buf: BytesMut,
    framer: Framer,
    /// Frames and rejections taken so far.
    frames: u64,
}

/// The write half: bytes collected, then written in one go.
#[derive(Debug)]
pub(crate) struct FrameWriter {
    socket: WriteSide,
    /// Encoded output not yet written.
    pub(crate) buf: Vec<u8>,
}

/// Splits a connected socket into its framed halves.
pub(crate) fn split(stream: TcpStream, limits: Limits) -> (FrameReader, FrameWriter) {
    let _ = stream.set_nodelay(true);
    let (r, w) = stream.into_split();
    halves(ReadSide::Tcp(r), WriteSide::Tcp(w), limits)
}

/// Splits a TLS connection (handshake done) into its framed halves.
pub(crate) fn split_tls(stream: TlsStream, limits: Limits) -> (FrameReader, FrameWriter) {
    let _ = stream.get_ref().0.set_nodelay(true);
    let (r, w) = tokio::io::split(stream);
    halves(ReadSide::Tls(r), WriteSide::Tls(w), limits)
}

fn halves(r: ReadSide, w: WriteSide, limits: Limits) -> (FrameReader, FrameWriter) {
    (
        FrameReader {
            socket: r,
            buf: BytesMut::new(),
            framer: Framer::new(limits),
            frames: 0,
        },
        FrameWriter {
            socket: w,
            buf: Vec::new(),
        },
    )
}

impl FrameReader {
    /// Reads more bytes; `Ok(0)` at end of stream. Cancel-safe: nothing is
    /// read until the socket is readable, and then in one non-blocking call
    /// (so the buffer is allocated only once there is something to read).
    /// Over TLS, `read_buf` is cancel-safe too (nothing is taken from the
    /// stream unless it completes).
    pub(crate) async fn read_more(&mut self) -> std::io::Result<usize> {
        match &mut self.socket {
            ReadSide::Tcp(socket) => loop {
                socket.readable().await?;
                make_room(&mut self.buf);
                match socket.try_read_buf(&mut self.buf) {
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                    done => return done,
                }
            },
            ReadSide::Tls(stream) => {
                make_room(&mut self.buf);
                stream.read_buf(&mut self.buf).await
            }
        }
    }

    /// Reads and throws away what the peer still sends, until it closes
    /// its side, `within` has passed or [`LINGER_BYTES`] were read. Called
    /// once the write side is shut down: a socket closed with input unread
    /// is reset (RST), which discards what the server's kernel had not sent
    /// yet and fails the peer's next write or read, so a client that was
    /// still pipelining never reads the last `ERR` and `NOTICE closing`.
    pub(crate) async fn discard_until_eof(&mut self, within: Duration) {
        let deadline = tokio::time::Instant::now() + within;
        let mut taken = 0usize;
        loop {
            self.buf.clear();
            match tokio::time::timeout_at(deadline, self.read_more()).await {
                Ok(Ok(n)) if n > 0 => {
                    taken = taken.saturating_add(n);
                    if taken >= LINGER_BYTES {
                        return;
                    }
                }
                _ => return,
            }
        }
    }

    /// Whether part of a command (a line without its end, a literal not
    /// all here, or the rest of a literal being skipped) is buffered.
    pub(crate) fn mid_frame(&self) -> bool {
        self.framer.in_frame(&self.buf)
    }

    /// At the end of the stream, the `BAD_FRAME` owed for a literal whose
    /// end of line never came (see [`Framer::at_end`]).
    pub(crate) fn at_end(&self) -> Option<BadFrame> {
        self.framer.at_end(&self.buf)
    }

    /// The next complete frame (or rejection) already buffered, if any.
    pub(crate) fn next_event(&mut self) -> Result<Option<FrameEvent>, BadFrame> {
        let event = self.framer.next_event(&mut self.buf)?;
        if event.is_some() {
            self.frames += 1;
        }
        Ok(event)
    }

    /// Bytes read and not yet taken as frames.
    pub(crate) fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// How many frames (and rejections) [`next_event`](Self::next_event)
    /// has returned: a change means a command finished arriving.
    pub(crate) fn frames(&self) -> u64 {
        self.frames
    }
}

/// Grows the read buffer if it is nearly full.
fn make_room(buf: &mut BytesMut) {
    if buf.capacity() - buf.len() < 4096 {
        buf.reserve(READ_CHUNK_BYTES);
    }
}

impl FrameWriter {
    /// Writes everything collected so far.
    pub(crate) async fn flush(&mut self) -> std::io::Result<()> {
        if !self.buf.is_empty() {
            match &mut self.socket {
                WriteSide::Tcp(s) => s.write_all(&self.buf).await?,
                // rustls encrypts into its own buffer: flush sends it.
                WriteSide::Tls(s) => {
                    s.write_all(&self.buf).await?;
                    s.flush().await?;
                }
            }
            let wrote = self.buf.len();
            self.buf.clear();
            // A buffer much larger than what was just written is given back
            // (the burst that grew it is over); one in steady use is kept,
            // so a busy connection does not regrow it on every write.
            if self.buf.capacity() > WRITE_KEEP_BYTES && wrote < self.buf.capacity() / 8 {
                self.buf = Vec::new();
            }
        }
        Ok(())
    }

    /// Closes the write side (over TLS, with a `close_notify` first).
    pub(crate) async fn shutdown(&mut self) {
        let _ = match &mut self.socket {
            WriteSide::Tcp(s) => s.shutdown().await,
            WriteSide::Tls(s) => s.shutdown().await,
        };
    }
}
