//! Log lines leave the thread that logs them through a bounded queue; one thread of their
//! own writes them out.
//!
//! A write to stderr can block: a log file on a disk busy with fsyncs, a full pipe. The
//! thread that logs is often a runtime worker with deadlines to keep (plexusd has one per
//! core). In a 200-pod burst whose stderr was a file, plexusd's info lines stalled its
//! workers long enough that 2–4 pods missed the NRI deadline; at warn, 0–1 did. When the
//! queue is full a line is dropped and counted, and the count is written before the next
//! line that gets through. [`LogQueue::flush`] waits until every queued line is written
//! (the telemetry guard calls it on exit, so a last error is not lost).

use std::io::{self, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::time::Duration;

use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};

use crate::subscriber::LogFormat;

/// Lines waiting at most; more are dropped (and counted).
pub const CAPACITY: usize = 4096;

/// How long [`LogQueue::flush`] waits for the writer at most.
const FLUSH_WAIT: Duration = Duration::from_secs(2);

enum Message {
    Line(Vec<u8>),
    /// Answered once everything queued before it is written.
    Flush(SyncSender<()>),
}

/// The sending side; a [`MakeWriter`] for the fmt layer (one [`Line`] per event).
#[derive(Debug, Clone)]
pub struct LogQueue {
    tx: SyncSender<Message>,
    dropped: Arc<AtomicU64>,
}

impl std::fmt::Debug for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Message::Line(_) => "Line",
            Message::Flush(_) => "Flush",
        })
    }
}

impl LogQueue {
    /// A queue of `capacity` lines written to `sink` by a new thread; a note about dropped
    /// lines is written in `format`, like the lines around it.
    pub fn start(
        sink: impl Write + Send + 'static,
        capacity: usize,
        format: LogFormat,
    ) -> io::Result<LogQueue> {
        let (tx, rx) = mpsc::sync_channel(capacity);
        let dropped = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&dropped);
        std::thread::Builder::new()
            .name("plexus-log".into())
            .spawn(move || write_lines(rx, sink, &counter, format))?;
        Ok(LogQueue { tx, dropped })
    }

    /// Waits (up to 2 s) until every line queued so far is written.
    pub fn flush(&self) {
        let (done, wait) = mpsc::sync_channel(1);
        if self.tx.send(Message::Flush(done)).is_ok() {
            let _ = wait.recv_timeout(FLUSH_WAIT);
        }
    }

    /// Lines dropped so far and not yet reported.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

const DROPPED: &str = "log lines were dropped: stderr was too slow to take them";

/// The note about `lost` dropped lines, as one line in `format`.
fn note(lost: u64, format: LogFormat) -> String {
    match format {
        LogFormat::Human => format!("plexus: {lost} {DROPPED}\n"),
        LogFormat::Json => {
            let mut timestamp = String::new();
            let _ = SystemTime.format_time(&mut Writer::new(&mut timestamp));
            let line = serde_json::json!({
                "timestamp": timestamp,
                "level": "WARN",
                "fields": {"message": DROPPED, "dropped": lost},
                "target": module_path!(),
            });
            format!("{line}\n")
        }
    }
}

fn write_lines(
    rx: Receiver<Message>,
    mut sink: impl Write,
    dropped: &AtomicU64,
    format: LogFormat,
) {
    while let Ok(message) = rx.recv() {
        match message {
            Message::Line(line) => {
                let lost = dropped.swap(0, Ordering::Relaxed);
                if lost > 0 {
                    let _ = sink.write_all(note(lost, format).as_bytes());
                }
                let _ = sink.write_all(&line);
            }
            Message::Flush(done) => {
                let _ = sink.flush();
                let _ = done.send(());
            }
        }
    }
}

/// One event's bytes, queued whole when the fmt layer is done with it.
#[derive(Debug)]
pub struct Line<'a> {
    buf: Vec<u8>,
    queue: &'a LogQueue,
}

impl Write for Line<'_> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for Line<'_> {
    fn drop(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        let line = std::mem::take(&mut self.buf);
        match self.queue.tx.try_send(Message::Line(line)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                self.queue.dropped.fetch_add(1, Ordering::Relaxed);
            }
            // The writer is gone (it panicked): straight to stderr rather than lose it.
            Err(TrySendError::Disconnected(Message::Line(line))) => {
                let _ = io::stderr().write_all(&line);
            }
            Err(TrySendError::Disconnected(Message::Flush(_))) => {}
        }
    }
}

impl<'a> MakeWriter<'a> for LogQueue {
    type Writer = Line<'a>;

    fn make_writer(&'a self) -> Line<'a> {
        Line {
            buf: Vec::with_capacity(256),
            queue: self,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Condvar, Mutex};

    use super::*;

    /// A sink the test reads, and can hold shut.
    #[derive(Clone, Default)]
    struct Sink {
        bytes: Arc<Mutex<Vec<u8>>>,
        gate: Arc<(Mutex<bool>, Condvar)>,
    }

    impl Sink {
        fn shut(&self) {
            *self.gate.0.lock().unwrap() = true;
        }
        fn open(&self) {
            *self.gate.0.lock().unwrap() = false;
            self.gate.1.notify_all();
        }
        fn text(&self) -> String {
            String::from_utf8(self.bytes.lock().unwrap().clone()).unwrap()
        }
    }

    impl Write for Sink {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            let (shut, opened) = &*self.gate;
            let mut held = shut.lock().unwrap();
            while *held {
                held = opened.wait(held).unwrap();
            }
            self.bytes.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn log(queue: &LogQueue, text: &str) {
        let mut line = queue.make_writer();
        // The fmt layer writes an event in pieces.
        let (a, b) = text.split_at(text.len() / 2);
        line.write_all(a.as_bytes()).unwrap();
        line.write_all(b.as_bytes()).unwrap();
        line.write_all(b"\n").unwrap();
    }

    #[test]
    fn lines_are_written_whole_in_order_and_flush_waits_for_them() {
        let sink = Sink::default();
        let queue = LogQueue::start(sink.clone(), 64, LogFormat::Human).unwrap();
        for i in 0..50 {
            log(&queue, &format!("line number {i}"));
        }
        queue.flush();
        let want: String = (0..50).map(|i| format!("line number {i}\n")).collect();
        assert_eq!(sink.text(), want);
    }

    #[test]
    fn a_stuck_sink_never_blocks_the_logging_thread_and_drops_are_reported() {
        let sink = Sink::default();
        let queue = LogQueue::start(sink.clone(), 8, LogFormat::Human).unwrap();
        sink.shut();
        let (done, logged) = mpsc::channel();
        let logger = queue.clone();
        std::thread::spawn(move || {
            for i in 0..1000 {
                log(&logger, &format!("l{i}"));
            }
            let _ = done.send(());
        });
        logged
            .recv_timeout(Duration::from_secs(30))
            .expect("logging blocked on a stuck sink");
        sink.open();
        queue.flush();
        log(&queue, "after");
        queue.flush();
        let text = sink.text();
        // The oldest line first (a note may come before it: lines dropped while the
        // writer was stuck on it are reported before the next one it writes).
        assert_eq!(
            text.lines().find(|l| l.starts_with('l')),
            Some("l0"),
            "{text}"
        );
        assert!(text.ends_with("after\n"), "{text}");
        // Every line is either written or counted in a note written in its place.
        let written = text.lines().filter(|l| l.starts_with('l')).count();
        let noted: u64 = text
            .lines()
            .filter_map(|l| l.strip_prefix("plexus: "))
            .map(|l| {
                let n = l.split(' ').next().unwrap();
                assert!(l.ends_with(DROPPED));
                n.parse::<u64>().unwrap()
            })
            .sum();
        assert!(noted > 0, "no drop was reported:\n{text}");
        // At most the queue and the line the writer held got through the stuck time.
        assert!(written <= 8 + 1 + 8 + 1, "{written} lines written:\n{text}");
        assert_eq!(written as u64 + noted, 1000, "{text}");
        assert_eq!(queue.dropped(), 0);
    }

    #[test]
    fn the_note_is_a_json_line_among_json_lines() {
        let line: serde_json::Value =
            serde_json::from_str(note(7, LogFormat::Json).trim_end()).unwrap();
        assert_eq!(line["level"], "WARN");
        assert_eq!(line["fields"]["dropped"], 7);
        assert_eq!(line["fields"]["message"], DROPPED);
        assert!(
            line["timestamp"].as_str().is_some_and(|t| t.len() > 10),
            "{line}"
        );
        assert_eq!(note(7, LogFormat::Human), format!("plexus: 7 {DROPPED}\n"));
    }
}
