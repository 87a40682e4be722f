//! [`Connection`]: the socket owner. A read buffer fed to the framer, and a
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

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

use crate::protocol::frame::{BadFrame, FrameEvent, Framer, Limits};

/// Bytes asked of the kernel per read.
const READ_CHUNK_BYTES: usize = 64 * 1024;
/// A write buffer larger than this is shrunk back after it is written.
const WRITE_KEEP_BYTES: usize = 16 * 1024;

/// The read half: buffer plus framer.
#[derive(Debug)]
pub struct FrameReader {
    socket: OwnedReadHalf,
    buf: BytesMut,
    framer: Framer,
    /// Frames and rejections taken so far.
    frames: u64,
}

/// The write half: bytes collected, then written in one go.
#[derive(Debug)]
pub struct FrameWriter {
    socket: OwnedWriteHalf,
    /// Encoded output not yet written.
    pub buf: Vec<u8>,
}

/// Splits a connected socket into its framed halves.
pub fn split(stream: TcpStream, limits: Limits) -> (FrameReader, FrameWriter) {
    let _ = stream.set_nodelay(true);
    let (r, w) = stream.into_split();
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

/// Connection type alias for docs: a connection is a reader and a writer.
pub type Connection = (FrameReader, FrameWriter);

impl FrameReader {
    /// Reads more bytes; `Ok(0)` at end of stream. Cancel-safe: nothing is
    /// read until the socket is readable, and then in one non-blocking call
    /// (so the buffer is allocated only once there is something to read).
    pub async fn read_more(&mut self) -> std::io::Result<usize> {
        loop {
            self.socket.readable().await?;
            match self.try_read() {
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                done => return done,
            }
        }
    }

    /// One non-blocking read into the buffer, growing it first if it is
    /// nearly full.
    fn try_read(&mut self) -> std::io::Result<usize> {
        if self.buf.capacity() - self.buf.len() < 4096 {
            self.buf.reserve(READ_CHUNK_BYTES);
        }
        self.socket.try_read_buf(&mut self.buf)
    }

    /// Whether part of a command (a line without its end, a literal not
    /// all here, or the rest of a literal being skipped) is buffered.
    pub fn mid_frame(&self) -> bool {
        self.framer.in_frame(&self.buf)
    }

    /// At the end of the stream, the `BAD_FRAME` owed for a literal whose
    /// end of line never came (see [`Framer::at_end`]).
    pub fn at_end(&self) -> Option<BadFrame> {
        self.framer.at_end(&self.buf)
    }

    /// The next complete frame (or rejection) already buffered, if any.
    pub fn next_event(&mut self) -> Result<Option<FrameEvent>, BadFrame> {
        let event = self.framer.next_event(&mut self.buf)?;
        if event.is_some() {
            self.frames += 1;
        }
        Ok(event)
    }

    /// How many frames (and rejections) [`next_event`](Self::next_event)
    /// has returned: a change means a command finished arriving.
    pub fn frames(&self) -> u64 {
        self.frames
    }
}

impl FrameWriter {
    /// Writes everything collected so far.
    pub async fn flush(&mut self) -> std::io::Result<()> {
        if !self.buf.is_empty() {
            self.socket.write_all(&self.buf).await?;
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

    /// Closes the write side.
    pub async fn shutdown(&mut self) {
        let _ = self.socket.shutdown().await;
    }
}
