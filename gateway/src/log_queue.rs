//! The queue every log line goes through on its way to stderr (the decision
//! line and every `tracing` line).
//!
//! Workers never write to stderr themselves: a slow or blocked stderr (a
//! full pipe, a stalled log shipper) must not stall requests. A line is
//! appended to one pending buffer under a short lock; one writer thread
//! takes the whole buffer and writes it with one system call. When the
//! buffer holds [`LogQueue::limit`] bytes, further lines are dropped and
//! counted (`stella_gateway_log_lines_dropped_total`), never waited for.
//!
//! The writer thread sleeps until a line arrives in an empty buffer. On a
//! quiet gateway it writes the line at once. On a busy one (the line came
//! within [`BATCH_DELAY`] of the last write) it first waits that delay, so
//! that the lines gather: one wake-up and one `write` for many lines, where
//! a queue of lines (the `tracing-appender` crate, before) woke the writer
//! and copied each line separately. A line reaches stderr at most
//! [`BATCH_DELAY`] after it is logged. docs/dependencies.md
//! (`tracing-appender`) has the measurement.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long a busy gateway's lines gather before they are written.
pub const BATCH_DELAY: Duration = Duration::from_millis(5);

/// The buffered bytes past which lines are dropped (about 55,000 decision
/// lines of ~300 bytes).
pub const DEFAULT_LIMIT: usize = 16 * 1024 * 1024;

/// After a burst the writer keeps a buffer of at most this capacity.
const KEPT_CAPACITY: usize = 256 * 1024;

type Sink = Box<dyn Write + Send>;

struct Shared {
    state: Mutex<State>,
    /// Signalled when a line lands in an empty buffer or the queue closes.
    ready: Condvar,
    dropped: AtomicU64,
    limit: usize,
    /// The sink, once the writer thread has stopped: lines logged after
    /// [`Writer::close`] are written straight to it.
    after_close: Mutex<Option<Sink>>,
}

struct State {
    pending: Vec<u8>,
    /// The writer thread waits for a line: the next one wakes it.
    sleeping: bool,
    closed: bool,
}

/// The handle the loggers write through (cheap to clone).
#[derive(Clone)]
pub struct LogQueue {
    shared: Arc<Shared>,
}

/// The writer thread; [`Writer::close`] writes out what is pending and
/// stops it.
pub struct Writer {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl LogQueue {
    /// Starts the writer thread `name` writing to `sink`; lines past
    /// `limit` pending bytes are dropped.
    pub fn start(
        sink: impl Write + Send + 'static,
        limit: usize,
        delay: Duration,
        name: &str,
    ) -> std::io::Result<(LogQueue, Writer)> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                pending: Vec::new(),
                sleeping: false,
                closed: false,
            }),
            ready: Condvar::new(),
            dropped: AtomicU64::new(0),
            limit,
            after_close: Mutex::new(None),
        });
        let thread = {
            let shared = Arc::clone(&shared);
            let sink: Sink = Box::new(sink);
            std::thread::Builder::new()
                .name(name.to_owned())
                .spawn(move || write_out(&shared, sink, delay))?
        };
        Ok((
            LogQueue {
                shared: Arc::clone(&shared),
            },
            Writer {
                shared,
                thread: Some(thread),
            },
        ))
    }

    /// Queues `line` (whole lines only: lines are never split or
    /// interleaved). Never waits for the sink.
    pub fn push(&self, line: &[u8]) {
        let shared = &*self.shared;
        let mut state = lock(&shared.state);
        if state.closed {
            // Straight to the sink once the writer has stopped; until then
            // it still takes what is pending.
            match lock(&shared.after_close).as_mut() {
                Some(sink) => {
                    let _ = sink.write_all(line);
                    let _ = sink.flush();
                }
                None => state.pending.extend_from_slice(line),
            }
            return;
        }
        if state.pending.len() + line.len() > shared.limit {
            drop(state);
            shared.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        state.pending.extend_from_slice(line);
        let wake = std::mem::take(&mut state.sleeping);
        drop(state);
        if wake {
            shared.ready.notify_one();
        }
    }

    /// Lines dropped so far because the buffer was full.
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// The bytes past which lines are dropped.
    pub fn limit(&self) -> usize {
        self.shared.limit
    }
}

/// The writer thread: waits for lines, lets them gather, writes them.
fn write_out(shared: &Shared, mut sink: Sink, delay: Duration) {
    let mut spare: Vec<u8> = Vec::new();
    let mut last_write: Option<Instant> = None;
    loop {
        let closed = {
            let mut state = lock(&shared.state);
            while state.pending.is_empty() && !state.closed {
                state.sleeping = true;
                state = shared.ready.wait(state).unwrap_or_else(|e| e.into_inner());
            }
            state.sleeping = false;
            // Busy (the last write was less than `delay` ago): let the
            // lines gather; closing cuts the wait short. Quiet: at once.
            let busy = last_write.is_some_and(|at| at.elapsed() < delay);
            let deadline = Instant::now() + if busy { delay } else { Duration::ZERO };
            while !state.closed {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                state = shared
                    .ready
                    .wait_timeout(state, left)
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
            std::mem::swap(&mut state.pending, &mut spare);
            state.closed
        };
        if !spare.is_empty() {
            let _ = sink.write_all(&spare);
            let _ = sink.flush();
            last_write = Some(Instant::now());
        }
        spare.clear();
        if spare.capacity() > KEPT_CAPACITY {
            spare = Vec::new();
        }
        if closed {
            // Lines pushed while the last batch was written, then the sink
            // handed over under the same lock: none is lost.
            let mut state = lock(&shared.state);
            let rest = std::mem::take(&mut state.pending);
            let _ = sink.write_all(&rest);
            let _ = sink.flush();
            *lock(&shared.after_close) = Some(sink);
            return;
        }
    }
}

impl Writer {
    /// Writes out every pending line and stops the thread; later lines go
    /// straight to the sink.
    pub fn close(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        {
            let mut state = lock(&self.shared.state);
            state.closed = true;
        }
        self.shared.ready.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// What `tracing-subscriber` writes one event through.
pub struct Line<'a>(&'a LogQueue);

impl Write for Line<'_> {
    /// `tracing-subscriber` writes each event with one `write_all` of the
    /// whole formatted line, so every `write` is a line.
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.push(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogQueue {
    type Writer = Line<'a>;

    fn make_writer(&'a self) -> Line<'a> {
        Line(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Instant;

    /// A sink the test reads back; optionally held shut until released.
    #[derive(Clone, Default)]
    struct Collect {
        bytes: Arc<Mutex<Vec<u8>>>,
        writes: Arc<AtomicU64>,
        gate: Option<Arc<Mutex<()>>>,
    }

    impl Write for Collect {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            if let Some(gate) = &self.gate {
                drop(lock(gate));
            }
            self.writes.fetch_add(1, Ordering::Relaxed);
            lock(&self.bytes).extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Collect {
        fn text(&self) -> String {
            String::from_utf8(lock(&self.bytes).clone()).unwrap()
        }
    }

    fn wait_for(what: impl Fn() -> bool) {
        let start = Instant::now();
        while !what() {
            assert!(start.elapsed() < Duration::from_secs(10), "timed out");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn lines_from_many_threads_arrive_whole_and_each_threads_in_order() {
        let sink = Collect::default();
        let (queue, writer) =
            LogQueue::start(sink.clone(), DEFAULT_LIMIT, BATCH_DELAY, "t").unwrap();
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let queue = queue.clone();
                std::thread::spawn(move || {
                    for i in 0..2000 {
                        queue.push(
                            format!("thread {t} line {i} {}\n", "x".repeat(i % 97)).as_bytes(),
                        );
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        writer.close();
        let text = sink.text();
        let mut next = [0usize; 4];
        for line in text.lines() {
            let parts: Vec<&str> = line.split(' ').collect();
            let (t, i): (usize, usize) = (parts[1].parse().unwrap(), parts[3].parse().unwrap());
            assert_eq!(i, next[t], "thread {t} out of order");
            assert_eq!(parts[4], "x".repeat(i % 97), "a line was cut or mixed");
            next[t] += 1;
        }
        assert_eq!(next, [2000; 4]);
        assert_eq!(queue.dropped(), 0);
        // Gathered: far fewer writes than lines.
        assert!(sink.writes.load(Ordering::Relaxed) < 8000);
    }

    #[test]
    fn a_blocked_sink_never_blocks_the_logger_and_lines_past_the_limit_are_counted() {
        let gate = Arc::new(Mutex::new(()));
        let held = lock(&gate);
        let sink = Collect {
            gate: Some(Arc::clone(&gate)),
            ..Collect::default()
        };
        let (queue, writer) = LogQueue::start(sink.clone(), 1000, Duration::ZERO, "t").unwrap();
        // The first line is taken by the writer, which then blocks in the
        // sink; the rest fill the buffer.
        queue.push(b"first line\n");
        wait_for(|| lock(&queue.shared.state).pending.is_empty());
        let (done, finished) = mpsc::channel();
        let pusher = {
            let queue = queue.clone();
            std::thread::spawn(move || {
                for i in 0..1000 {
                    queue.push(format!("{i:09}\n").as_bytes());
                }
                done.send(()).unwrap();
            })
        };
        finished
            .recv_timeout(Duration::from_secs(10))
            .expect("a full queue made the logger wait");
        pusher.join().unwrap();
        // 1000 bytes hold 100 ten-byte lines; the other 900 are dropped.
        assert_eq!(queue.dropped(), 900);
        drop(held);
        writer.close();
        let text = sink.text();
        assert_eq!(text.lines().count(), 101);
        assert!(text.starts_with("first line\n000000000\n"));
        assert!(text.ends_with("000000099\n"));
    }

    #[test]
    fn a_quiet_gateways_line_is_written_at_once_and_a_busy_ones_lines_gather() {
        let sink = Collect::default();
        // A long delay: a quiet line does not wait for it.
        let (queue, _writer) =
            LogQueue::start(sink.clone(), DEFAULT_LIMIT, Duration::from_secs(2), "t").unwrap();
        let start = Instant::now();
        queue.push(b"alone\n");
        wait_for(|| sink.text() == "alone\n");
        assert!(
            start.elapsed() < Duration::from_secs(1),
            "a quiet line waited"
        );
        // Right after a write: the next lines wait for the delay, together.
        queue.push(b"busy 1\n");
        queue.push(b"busy 2\n");
        std::thread::sleep(Duration::from_millis(500));
        assert_eq!(sink.text(), "alone\n", "a busy line was not held back");
        wait_for(|| sink.text() == "alone\nbusy 1\nbusy 2\n");
        assert_eq!(
            sink.writes.load(Ordering::Relaxed),
            2,
            "busy lines in one write"
        );
    }

    #[test]
    fn close_writes_what_is_pending_at_once_and_later_lines_go_straight_out() {
        let sink = Collect::default();
        let (queue, writer) =
            LogQueue::start(sink.clone(), DEFAULT_LIMIT, Duration::from_secs(600), "t").unwrap();
        queue.push(b"pending\n");
        let start = Instant::now();
        writer.close();
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "close waited for the delay"
        );
        assert_eq!(sink.text(), "pending\n");
        queue.push(b"late\n");
        assert_eq!(sink.text(), "pending\nlate\n");
    }
}
