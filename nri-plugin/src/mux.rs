//! The NRI connection multiplexer ("trunk"): several logical byte streams over one unix
//! socket, as `pkg/net/multiplex/mux.go` of containerd/nri defines it.
//!
//! Every frame is `[conn id u32 BE][payload length u32 BE][payload]`. Conn 1 carries the
//! Plugin service (the runtime calls us), conn 2 the Runtime service (we call the
//! runtime). A frame payload is an arbitrary slice of that conn's byte stream, so the
//! reader hands each conn a stream of chunks and the ttrpc layer deframes on top. Frames
//! for conns nobody opened are dropped; zero-length frames are accepted. One writer task
//! owns the socket's write half, so frames never interleave, and it never emits a payload
//! above [`MAX_FRAME_PAYLOAD`] bytes because containerd reads through a 4096-byte bufio
//! buffer and fails with ENOMEM on larger frames. This module knows nothing of ttrpc.

use std::collections::HashMap;
use std::io;

use bytes::{BufMut, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Length of the frame header.
pub const HEADER_LEN: usize = 8;
/// The largest payload this side puts in one frame.
pub const MAX_FRAME_PAYLOAD: usize = 4096;
/// Conn carrying the Plugin service: the runtime is the ttrpc client, we serve.
pub const PLUGIN_SERVICE_CONN: u32 = 1;
/// Conn carrying the Runtime service: we are the ttrpc client.
pub const RUNTIME_SERVICE_CONN: u32 = 2;

/// Largest frame payload accepted from the peer (Go's writer limit, `maxPayloadSize`).
const MAX_READ_PAYLOAD: usize = 1 << 24;

/// Frames queued per conn before the trunk reader waits for the consumer.
const CONN_QUEUE: usize = 256;

/// Appends `data` for `conn` to `out` as frames of at most [`MAX_FRAME_PAYLOAD`] bytes.
/// Empty data produces no frame.
pub fn encode_frames(conn: u32, data: &[u8], out: &mut BytesMut) {
    for chunk in data.chunks(MAX_FRAME_PAYLOAD) {
        out.reserve(HEADER_LEN + chunk.len());
        out.put_u32(conn);
        // A chunk is at most MAX_FRAME_PAYLOAD bytes, so it fits in u32.
        out.put_u32(chunk.len() as u32);
        out.put_slice(chunk);
    }
}

/// The receiving end of one logical conn: chunks of its byte stream in order.
#[derive(Debug)]
pub struct ConnReader {
    rx: mpsc::Receiver<Bytes>,
}

impl ConnReader {
    /// The next chunk of this conn's stream; `None` once the trunk has closed.
    pub async fn recv(&mut self) -> Option<Bytes> {
        self.rx.recv().await
    }
}

/// The sending end of one logical conn. Cheap to clone.
#[derive(Debug, Clone)]
pub struct ConnWriter {
    conn: u32,
    tx: mpsc::Sender<(u32, Bytes)>,
}

impl ConnWriter {
    /// Queues `data` for the writer task; errors once the trunk has closed.
    pub async fn send(&self, data: Bytes) -> io::Result<()> {
        self.tx
            .send((self.conn, data))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "mux trunk closed"))
    }
}

/// A running multiplexer over one trunk socket. Dropping it closes the trunk.
#[derive(Debug)]
pub struct Mux {
    tx: mpsc::Sender<(u32, Bytes)>,
    closed: CancellationToken,
    reader: JoinHandle<()>,
}

impl Mux {
    /// Starts the reader and writer tasks over `io` and opens `conns` for reading.
    pub fn start<T>(io: T, conns: &[u32]) -> (Self, HashMap<u32, ConnReader>)
    where
        T: AsyncRead + AsyncWrite + Send + 'static,
    {
        let (read_half, write_half) = tokio::io::split(io);
        let closed = CancellationToken::new();
        let mut senders = HashMap::new();
        let mut readers = HashMap::new();
        for &conn in conns {
            let (tx, rx) = mpsc::channel(CONN_QUEUE);
            senders.insert(conn, tx);
            readers.insert(conn, ConnReader { rx });
        }
        let (tx, rx) = mpsc::channel(CONN_QUEUE);
        let reader = tokio::spawn(read_loop(read_half, senders, closed.clone()));
        // The writer task ends by itself once the trunk is closed.
        tokio::spawn(write_loop(write_half, rx, closed.clone()));
        let mux = Self { tx, closed, reader };
        (mux, readers)
    }

    /// A writer for `conn`.
    pub fn writer(&self, conn: u32) -> ConnWriter {
        ConnWriter {
            conn,
            tx: self.tx.clone(),
        }
    }

    /// Resolves once the trunk has closed (EOF, I/O error or [`Mux::close`]).
    pub async fn closed(&self) {
        self.closed.cancelled().await;
    }

    /// Closes the trunk: stops both tasks and shuts the write half down.
    pub fn close(&self) {
        self.closed.cancel();
    }
}

impl Drop for Mux {
    fn drop(&mut self) {
        self.closed.cancel();
        self.reader.abort();
        // The writer is not aborted: it sees the cancellation and shuts the socket
        // down, so the peer gets a clean EOF.
    }
}

async fn read_loop<R: AsyncRead>(
    read_half: R,
    senders: HashMap<u32, mpsc::Sender<Bytes>>,
    closed: CancellationToken,
) {
    tokio::select! {
        res = read_frames(read_half, &senders) => match res {
            Ok(()) => tracing::debug!("mux trunk closed by the peer"),
            Err(err) => tracing::debug!(error = %err, "mux trunk read failed"),
        },
        () = closed.cancelled() => {}
    }
    closed.cancel();
    // Dropping the senders ends every ConnReader.
}

async fn read_frames<R: AsyncRead>(
    read_half: R,
    senders: &HashMap<u32, mpsc::Sender<Bytes>>,
) -> io::Result<()> {
    tokio::pin!(read_half);
    let mut header = [0u8; HEADER_LEN];
    loop {
        match read_half.read_exact(&mut header).await {
            Ok(_) => {}
            Err(err) if err.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(err) => return Err(err),
        }
        let conn = u32::from_be_bytes([header[0], header[1], header[2], header[3]]);
        let len = u32::from_be_bytes([header[4], header[5], header[6], header[7]]) as usize;
        if len > MAX_READ_PAYLOAD {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("mux frame of {len} bytes exceeds {MAX_READ_PAYLOAD}"),
            ));
        }
        let mut payload = vec![0u8; len];
        read_half.read_exact(&mut payload).await?;
        match senders.get(&conn) {
            Some(tx) if len > 0 => {
                // A consumer that went away is no reason to close the whole trunk.
                let _ = tx.send(Bytes::from(payload)).await;
            }
            Some(_) => {}
            None => tracing::debug!(conn, len, "dropping mux frame for an unknown conn"),
        }
    }
}

async fn write_loop<W: AsyncWrite>(
    write_half: W,
    mut rx: mpsc::Receiver<(u32, Bytes)>,
    closed: CancellationToken,
) {
    tokio::pin!(write_half);
    let mut buf = BytesMut::new();
    loop {
        let next = tokio::select! {
            next = rx.recv() => next,
            () = closed.cancelled() => None,
        };
        let Some((conn, data)) = next else { break };
        buf.clear();
        encode_frames(conn, &data, &mut buf);
        // Several queued messages could be coalesced here, but each ttrpc message is
        // one write: simple, and frames of one message stay contiguous.
        if let Err(err) = write_half.write_all(&buf).await {
            tracing::debug!(error = %err, "mux trunk write failed");
            break;
        }
        if let Err(err) = write_half.flush().await {
            tracing::debug!(error = %err, "mux trunk flush failed");
            break;
        }
    }
    closed.cancel();
    let _ = write_half.shutdown().await;
}

#[cfg(test)]
mod tests;
