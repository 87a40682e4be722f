//! [`Connection`]: the socket owner. A read buffer fed to the framer, and a
//! write buffer that collects replies and pushes so that one `write` carries
//! many of them. No protocol semantics here.

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

use crate::protocol::frame::{BadFrame, FrameEvent, Framer, Limits};

/// Bytes asked of the kernel per read.
const READ_CHUNK_BYTES: usize = 64 * 1024;

/// The read half: buffer plus framer.
#[derive(Debug)]
pub struct FrameReader {
    socket: OwnedReadHalf,
    buf: BytesMut,
    framer: Framer,
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
            buf: BytesMut::with_capacity(READ_CHUNK_BYTES),
            framer: Framer::new(limits),
        },
        FrameWriter {
            socket: w,
            buf: Vec::with_capacity(READ_CHUNK_BYTES),
        },
    )
}

/// Connection type alias for docs: a connection is a reader and a writer.
pub type Connection = (FrameReader, FrameWriter);

impl FrameReader {
    /// Reads more bytes; `Ok(0)` at end of stream. Cancel-safe.
    pub async fn read_more(&mut self) -> std::io::Result<usize> {
        if self.buf.capacity() - self.buf.len() < 4096 {
            self.buf.reserve(READ_CHUNK_BYTES);
        }
        self.socket.read_buf(&mut self.buf).await
    }

    /// At the end of the stream, the `BAD_FRAME` owed for a literal whose
    /// end of line never came (see [`Framer::at_end`]).
    pub fn at_end(&self) -> Option<BadFrame> {
        self.framer.at_end(&self.buf)
    }

    /// The next complete frame (or rejection) already buffered, if any.
    pub fn next_event(&mut self) -> Result<Option<FrameEvent>, BadFrame> {
        self.framer.next_event(&mut self.buf)
    }
}

impl FrameWriter {
    /// Writes everything collected so far.
    pub async fn flush(&mut self) -> std::io::Result<()> {
        if !self.buf.is_empty() {
            self.socket.write_all(&self.buf).await?;
            self.buf.clear();
            if self.buf.capacity() > 4 * READ_CHUNK_BYTES {
                self.buf.shrink_to(READ_CHUNK_BYTES);
            }
        }
        Ok(())
    }

    /// Closes the write side.
    pub async fn shutdown(&mut self) {
        let _ = self.socket.shutdown().await;
    }
}
