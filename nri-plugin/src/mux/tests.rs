use super::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

fn frame(conn: u32, payload: &[u8]) -> Vec<u8> {
    let mut v = conn.to_be_bytes().to_vec();
    v.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    v.extend_from_slice(payload);
    v
}

/// Reads whole frames from the peer end until `want` payload bytes of `conn` arrived.
async fn read_frames_from(peer: &mut DuplexStream, want: usize) -> Vec<(u32, Vec<u8>)> {
    let mut frames = Vec::new();
    let mut got = 0;
    while got < want {
        let mut h = [0u8; HEADER_LEN];
        peer.read_exact(&mut h).await.expect("frame header");
        let conn = u32::from_be_bytes(h[..4].try_into().unwrap());
        let len = u32::from_be_bytes(h[4..].try_into().unwrap()) as usize;
        let mut p = vec![0u8; len];
        peer.read_exact(&mut p).await.expect("frame payload");
        got += len;
        frames.push((conn, p));
    }
    frames
}

async fn collect(reader: &mut ConnReader, want: usize) -> Vec<u8> {
    let mut out = Vec::new();
    while out.len() < want {
        let chunk = tokio::time::timeout(std::time::Duration::from_secs(5), reader.recv())
            .await
            .expect("chunk in time")
            .expect("conn open");
        out.extend_from_slice(&chunk);
    }
    out
}

#[test]
fn encode_frames_chunks_at_4096() {
    let data: Vec<u8> = (0..10_000u32).map(|i| i as u8).collect();
    let mut out = BytesMut::new();
    encode_frames(2, &data, &mut out);
    // 4096 + 4096 + 1808, each with an 8-byte header.
    assert_eq!(out.len(), 10_000 + 3 * HEADER_LEN);
    assert_eq!(&out[..8], &[0, 0, 0, 2, 0, 0, 0x10, 0]);
    assert_eq!(&out[8 + 4096..8 + 4096 + 8], &[0, 0, 0, 2, 0, 0, 0x10, 0]);
    assert_eq!(
        &out[2 * (8 + 4096)..2 * (8 + 4096) + 8],
        &[0, 0, 0, 2, 0, 0, 0x07, 0x10]
    );
    let mut empty = BytesMut::new();
    encode_frames(1, &[], &mut empty);
    assert!(empty.is_empty());
}

#[tokio::test]
async fn writer_never_sends_a_frame_above_4096() {
    let (ours, mut peer) = tokio::io::duplex(1 << 20);
    let (mux, _readers) = Mux::start(ours, &[1, 2]);
    let data: Vec<u8> = (0..9000u32).map(|i| (i * 7) as u8).collect();
    mux.writer(2).send(Bytes::from(data.clone())).await.unwrap();
    mux.writer(1)
        .send(Bytes::from_static(b"hello"))
        .await
        .unwrap();
    let frames = read_frames_from(&mut peer, data.len() + 5).await;
    assert!(frames.iter().all(|(_, p)| p.len() <= MAX_FRAME_PAYLOAD));
    let conn2: Vec<u8> = frames
        .iter()
        .filter(|f| f.0 == 2)
        .flat_map(|f| f.1.clone())
        .collect();
    assert_eq!(conn2, data);
    assert_eq!(frames.last().unwrap(), &(1, b"hello".to_vec()));
}

#[tokio::test]
async fn reader_reassembles_streams_split_and_joined_arbitrarily() {
    let (ours, mut peer) = tokio::io::duplex(1 << 16);
    let (_mux, mut readers) = Mux::start(ours, &[1, 2]);
    // Interleaved frames of both conns, an empty frame and a frame for conn 7.
    let mut wire = Vec::new();
    wire.extend(frame(1, b"abc"));
    wire.extend(frame(2, b"0123456789"));
    wire.extend(frame(7, b"dropped"));
    wire.extend(frame(1, b""));
    wire.extend(frame(1, b"defgh"));
    wire.extend(frame(2, b"xyz"));
    // Write in awkward pieces: 1, 2, 3, ... bytes, splitting headers and payloads.
    let mut pos = 0;
    let mut step = 1;
    while pos < wire.len() {
        let end = (pos + step).min(wire.len());
        peer.write_all(&wire[pos..end]).await.unwrap();
        peer.flush().await.unwrap();
        pos = end;
        step = step % 5 + 1;
    }
    let mut c1 = readers.remove(&1).unwrap();
    let mut c2 = readers.remove(&2).unwrap();
    assert_eq!(collect(&mut c1, 8).await, b"abcdefgh");
    assert_eq!(collect(&mut c2, 13).await, b"0123456789xyz");
}

#[tokio::test]
async fn trunk_eof_closes_every_conn() {
    let (ours, peer) = tokio::io::duplex(1024);
    let (mux, mut readers) = Mux::start(ours, &[1, 2]);
    drop(peer);
    tokio::time::timeout(std::time::Duration::from_secs(5), mux.closed())
        .await
        .expect("mux closes on EOF");
    assert!(readers.get_mut(&1).unwrap().recv().await.is_none());
    assert!(readers.get_mut(&2).unwrap().recv().await.is_none());
}

#[tokio::test]
async fn dropping_the_mux_gives_the_peer_eof() {
    let (ours, mut peer) = tokio::io::duplex(1024);
    let (mux, _readers) = Mux::start(ours, &[1]);
    drop(mux);
    let mut buf = [0u8; 1];
    let n = tokio::time::timeout(std::time::Duration::from_secs(5), peer.read(&mut buf))
        .await
        .expect("eof in time")
        .unwrap();
    assert_eq!(n, 0);
}
