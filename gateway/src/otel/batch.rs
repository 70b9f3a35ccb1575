//! The batch span processor: a finished span is written into the pending
//! request body as it ends, and one thread (`stella-otlp-batch`) sends
//! what is pending every `OTEL_BSP_SCHEDULE_DELAY`, or as soon as a batch
//! is full.
//!
//! Why not the SDK's `BatchSpanProcessor` (docs/performance.md, "Traces
//! on"): it moves each span through a channel into a vector that the
//! exporter then reads, so a span's data is copied twice and kept until
//! the batch leaves, and the queue's hand-off and its thread's wake-ups
//! cost more than the span's encoding. Here the span's bytes are the only
//! thing kept: its data is freed where it ends.
//!
//! The same settings as the SDK's: `OTEL_BSP_MAX_QUEUE_SIZE` spans pending
//! at most (more are dropped, counted, and the count logged),
//! `OTEL_BSP_MAX_EXPORT_BATCH_SIZE` spans per request,
//! `OTEL_BSP_SCHEDULE_DELAY` milliseconds between sends. Only sampled spans
//! are exported.

use super::otlp::{body_in_place, encode_body, encode_resource, encode_span, headroom, same_scope};
use crate::config::Traces;
use hyper::body::Bytes;
use opentelemetry::{Context, InstrumentationScope};
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{Span, SpanData, SpanProcessor};
use opentelemetry_sdk::Resource;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// Where request bodies go: the collector, or a test's recorder.
pub(super) trait Post: Send + Sync + 'static {
    /// Sends one body holding `spans` spans; the error says why it did not
    /// get through (after any retries).
    fn post(&self, body: Bytes, spans: usize) -> Result<(), String>;
}

/// The processor's limits.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Settings {
    pub max_queue: usize,
    pub max_batch: usize,
    pub delay: Duration,
}

impl Settings {
    /// The `OTEL_BSP_*` variables when set (values that are not numbers
    /// ignored), else the file's `traces.max_queue_size` and the
    /// specification's defaults (512 spans a batch, 5 s).
    pub fn resolve(config: &Traces) -> Settings {
        Settings::from_lookup(config, |name| std::env::var(name).ok())
    }

    fn from_lookup(config: &Traces, lookup: impl Fn(&str) -> Option<String>) -> Settings {
        let number = |name: &str| lookup(name).and_then(|v| v.trim().parse::<u64>().ok());
        let max_queue = number("OTEL_BSP_MAX_QUEUE_SIZE")
            .map_or(config.max_queue_size, |n| n as usize)
            .max(1);
        let max_batch = number("OTEL_BSP_MAX_EXPORT_BATCH_SIZE")
            .map_or(512, |n| n as usize)
            .clamp(1, max_queue);
        let delay = Duration::from_millis(number("OTEL_BSP_SCHEDULE_DELAY").unwrap_or(5_000));
        Settings {
            max_queue,
            max_batch,
            delay,
        }
    }
}

/// The spans of one instrumentation scope waiting to be sent.
struct ScopeSpans {
    scope: InstrumentationScope,
    /// `headroom` unused bytes, then `ScopeSpans.spans` members, each with
    /// its key and length: the headroom takes what precedes the spans in
    /// the request body, so a batch of one scope is sent without copying.
    bytes: Vec<u8>,
    headroom: usize,
    /// Where each span ends in `bytes`: batches are cut there.
    ends: Vec<usize>,
}

/// Bytes reserved for a new scope's spans: about a full batch of the
/// gateway's spans (300 to 400 bytes each), so the buffer does not grow
/// (and copy itself) while a batch fills.
fn initial_capacity(max_batch: usize) -> usize {
    max_batch.min(4096) * 400
}

#[derive(Default)]
struct Pending {
    scopes: Vec<ScopeSpans>,
    spans: usize,
    /// Emptied buffers handed back by the batch thread, kept for their
    /// capacity.
    spare: Vec<ScopeSpans>,
    /// Callers of `force_flush` waiting for what is pending to be sent.
    flushes: Vec<mpsc::SyncSender<()>>,
    stopping: bool,
}

struct Shared {
    pending: Mutex<Pending>,
    wake: Condvar,
    settings: Settings,
    /// `resource` and `schema_url` of `ResourceSpans`, already encoded.
    resource: Mutex<Arc<(Vec<u8>, Vec<u8>)>>,
    dropped: AtomicU64,
}

impl Shared {
    fn pending(&self) -> MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn resource(&self) -> Arc<(Vec<u8>, Vec<u8>)> {
        self.resource
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

pub(super) struct Processor {
    shared: Arc<Shared>,
    /// Told when the batch thread has sent what was pending at shutdown.
    stopped: Mutex<Option<mpsc::Receiver<()>>>,
}

impl std::fmt::Debug for Processor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Processor")
            .field("settings", &self.shared.settings)
            .finish_non_exhaustive()
    }
}

impl Processor {
    /// Starts the batch thread, which sends through `collector`.
    pub fn new(settings: Settings, collector: impl Post) -> Result<Processor, String> {
        let shared = Arc::new(Shared {
            pending: Mutex::new(Pending::default()),
            wake: Condvar::new(),
            settings,
            resource: Mutex::new(Arc::new(encode_resource(
                &Resource::builder_empty().build(),
            ))),
            dropped: AtomicU64::new(0),
        });
        let (done, stopped) = mpsc::sync_channel(1);
        let thread = shared.clone();
        std::thread::Builder::new()
            .name("stella-otlp-batch".into())
            .spawn(move || {
                run(&thread, &collector);
                let _ = done.send(());
            })
            .map_err(|e| e.to_string())?;
        Ok(Processor {
            shared,
            stopped: Mutex::new(Some(stopped)),
        })
    }
}

impl SpanProcessor for Processor {
    fn on_start(&self, _span: &mut Span, _cx: &Context) {}

    fn on_end(&self, span: SpanData) {
        if !span.span_context.is_sampled() {
            return;
        }
        let settings = &self.shared.settings;
        let mut pending = self.shared.pending();
        if pending.stopping {
            return;
        }
        if pending.spans >= settings.max_queue {
            drop(pending);
            if self.shared.dropped.fetch_add(1, Ordering::Relaxed) == 0 {
                tracing::warn!(
                    max_queue_size = settings.max_queue,
                    "trace export queue full: spans are dropped (the total is logged at shutdown)"
                );
            }
            return;
        }
        let pending = &mut *pending;
        let at = match pending
            .scopes
            .iter()
            .position(|s| same_scope(&s.scope, &span.instrumentation_scope))
        {
            Some(at) => at,
            None => {
                let resource = self.shared.resource();
                let room = headroom(&resource.0, &span.instrumentation_scope);
                let mut buffer = pending.spare.pop().unwrap_or_else(|| ScopeSpans {
                    scope: InstrumentationScope::default(),
                    bytes: Vec::with_capacity(room + initial_capacity(settings.max_batch)),
                    headroom: 0,
                    ends: Vec::new(),
                });
                buffer.scope = span.instrumentation_scope.clone();
                buffer.bytes.clear();
                buffer.bytes.resize(room, 0);
                buffer.headroom = room;
                buffer.ends.clear();
                pending.scopes.push(buffer);
                pending.scopes.len() - 1
            }
        };
        let scope = &mut pending.scopes[at];
        encode_span(&mut scope.bytes, &span);
        scope.ends.push(scope.bytes.len());
        pending.spans += 1;
        if pending.spans == settings.max_batch {
            self.shared.wake.notify_one();
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        let (tell, told) = mpsc::sync_channel(1);
        {
            let mut pending = self.shared.pending();
            if pending.stopping {
                return Err(OTelSdkError::AlreadyShutdown);
            }
            pending.flushes.push(tell);
        }
        self.shared.wake.notify_one();
        told.recv_timeout(Duration::from_secs(30))
            .map_err(|_| OTelSdkError::Timeout(Duration::from_secs(30)))
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        let Some(stopped) = self
            .stopped
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        else {
            return Err(OTelSdkError::AlreadyShutdown);
        };
        self.shared.pending().stopping = true;
        self.shared.wake.notify_one();
        let dropped = self.shared.dropped.load(Ordering::Relaxed);
        if dropped > 0 {
            tracing::warn!(
                dropped_spans = dropped,
                max_queue_size = self.shared.settings.max_queue,
                "spans were dropped because the trace export queue was full"
            );
        }
        stopped
            .recv_timeout(timeout)
            .map_err(|_| OTelSdkError::Timeout(timeout))
    }

    fn set_resource(&mut self, resource: &Resource) {
        *self
            .shared
            .resource
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Arc::new(encode_resource(resource));
    }
}

/// The batch thread: waits for a full batch, the schedule, a flush or the
/// shutdown, then sends everything pending, `max_batch` spans a request.
fn run(shared: &Shared, collector: &impl Post) {
    let settings = &shared.settings;
    let mut next = Instant::now() + settings.delay;
    loop {
        let (taken, flushes, stopping) = {
            let mut pending = shared.pending();
            loop {
                if pending.stopping || !pending.flushes.is_empty() {
                    break;
                }
                if pending.spans >= settings.max_batch {
                    break;
                }
                let now = Instant::now();
                if now >= next {
                    break;
                }
                pending = shared
                    .wake
                    .wait_timeout(pending, next - now)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0;
            }
            let mut taken = std::mem::take(&mut pending.scopes);
            pending.spans = 0;
            if let [one] = &mut taken[..] {
                if one.ends.len() > settings.max_batch {
                    // The batch grew past its size before this thread took
                    // it: the spans beyond stay pending, so that the batch
                    // leaves from its own buffer.
                    let rest = split_off(one, settings.max_batch, pending.spare.pop());
                    pending.spans = rest.ends.len();
                    pending.scopes.push(rest);
                }
            }
            (
                taken,
                std::mem::take(&mut pending.flushes),
                pending.stopping,
            )
        };
        next = Instant::now() + settings.delay;
        if !taken.is_empty() {
            let resource = shared.resource();
            let (bodies, emptied) = bodies(&resource.0, &resource.1, taken, settings.max_batch);
            for (body, spans) in bodies {
                if let Err(e) = collector.post(body, spans) {
                    tracing::warn!("{e}; the spans are dropped");
                }
            }
            shared.pending().spare.extend(emptied);
        }
        for flushed in flushes {
            let _ = flushed.try_send(());
        }
        if stopping {
            return;
        }
    }
}

/// Cuts `scope` after its first `keep` spans; the rest go into `spare`
/// (or a new buffer), behind the same headroom.
fn split_off(scope: &mut ScopeSpans, keep: usize, spare: Option<ScopeSpans>) -> ScopeSpans {
    let cut = scope.ends[keep - 1];
    let mut rest = spare.unwrap_or_else(|| ScopeSpans {
        scope: InstrumentationScope::default(),
        bytes: Vec::with_capacity(scope.headroom + initial_capacity(keep)),
        headroom: 0,
        ends: Vec::new(),
    });
    rest.scope = scope.scope.clone();
    rest.headroom = scope.headroom;
    rest.bytes.clear();
    rest.bytes.resize(scope.headroom, 0);
    rest.bytes.extend_from_slice(&scope.bytes[cut..]);
    rest.ends.clear();
    rest.ends.extend(
        scope.ends[keep..]
            .iter()
            .map(|end| end - cut + scope.headroom),
    );
    scope.bytes.truncate(cut);
    scope.ends.truncate(keep);
    rest
}

/// Request bodies of at most `max_batch` spans each, the spans in the
/// order they ended within each scope; with each, its count of spans. One
/// scope with at most `max_batch` spans (the usual batch) becomes the body
/// in its own buffer; otherwise the spans are copied into new bodies and
/// the buffers come back, emptied, for reuse.
fn bodies(
    resource: &[u8],
    schema_url: &[u8],
    mut scopes: Vec<ScopeSpans>,
    max_batch: usize,
) -> (Vec<(Bytes, usize)>, Vec<ScopeSpans>) {
    if scopes.len() == 1 && scopes[0].ends.len() <= max_batch {
        let scope = scopes.pop().expect("one scope");
        let count = scope.ends.len();
        match body_in_place(
            resource,
            schema_url,
            &scope.scope,
            scope.bytes,
            scope.headroom,
        ) {
            Ok((body, start)) => return (vec![(Bytes::from(body).slice(start..), count)], vec![]),
            Err(bytes) => scopes.push(ScopeSpans { bytes, ..scope }),
        }
    }
    let mut out = Vec::new();
    let mut parts: Vec<(&InstrumentationScope, &[u8])> = Vec::new();
    let mut count = 0;
    for scope in &scopes {
        let mut first = 0;
        while first < scope.ends.len() {
            let take = (max_batch - count).min(scope.ends.len() - first);
            let from = if first == 0 {
                scope.headroom
            } else {
                scope.ends[first - 1]
            };
            let to = scope.ends[first + take - 1];
            parts.push((&scope.scope, &scope.bytes[from..to]));
            count += take;
            first += take;
            if count == max_batch {
                out.push((
                    Bytes::from(encode_body(resource, schema_url, &parts)),
                    count,
                ));
                parts.clear();
                count = 0;
            }
        }
    }
    if count > 0 {
        out.push((
            Bytes::from(encode_body(resource, schema_url, &parts)),
            count,
        ));
    }
    (out, scopes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::TraceState;
    use opentelemetry::trace::{SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId};
    use opentelemetry::KeyValue;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::transform::common::tonic::ResourceAttributesWithSchema;
    use opentelemetry_proto::transform::trace::tonic::group_spans_by_resource_and_scope;
    use opentelemetry_sdk::trace::{SpanEvents, SpanLinks};
    use prost::Message as _;
    use std::time::UNIX_EPOCH;

    /// A body and the count of spans given with it.
    type Posted = (Vec<u8>, usize);

    /// Records what would be posted; `gate` closed holds the batch thread
    /// inside `post`, as a slow collector does.
    #[derive(Clone, Default)]
    struct Recorder {
        posted: Arc<Mutex<Vec<Posted>>>,
        gate: Arc<(Mutex<bool>, Condvar)>,
    }

    impl Recorder {
        fn open() -> Recorder {
            let r = Recorder::default();
            *r.gate.0.lock().unwrap() = true;
            r
        }

        fn set_open(&self, open: bool) {
            *self.gate.0.lock().unwrap() = open;
            self.gate.1.notify_all();
        }

        /// The names of the spans posted, body by body.
        fn bodies(&self) -> Vec<Vec<String>> {
            self.posted
                .lock()
                .unwrap()
                .iter()
                .map(|(body, count)| {
                    let request = ExportTraceServiceRequest::decode(&body[..]).expect("protobuf");
                    let names: Vec<String> = request.resource_spans[0]
                        .scope_spans
                        .iter()
                        .flat_map(|s| s.spans.iter().map(|s| s.name.clone()))
                        .collect();
                    assert_eq!(names.len(), *count, "the count given with the body");
                    names
                })
                .collect()
        }
    }

    impl Post for Recorder {
        fn post(&self, body: Bytes, spans: usize) -> Result<(), String> {
            let body = body.to_vec();
            let (open, changed) = &*self.gate;
            let mut open = open.lock().unwrap();
            while !*open {
                open = changed.wait(open).unwrap();
            }
            self.posted.lock().unwrap().push((body, spans));
            Ok(())
        }
    }

    fn span(name: String, scope: &InstrumentationScope, sampled: bool) -> SpanData {
        let flags = if sampled {
            TraceFlags::SAMPLED
        } else {
            TraceFlags::default()
        };
        SpanData {
            span_context: SpanContext::new(
                TraceId::from(0x4bf92f3577b34da6a3ce929d0e0e4736),
                SpanId::from(0x00f067aa0ba902b7),
                flags,
                false,
                TraceState::NONE,
            ),
            parent_span_id: SpanId::INVALID,
            parent_span_is_remote: false,
            span_kind: SpanKind::Server,
            name: name.into(),
            start_time: UNIX_EPOCH + Duration::from_secs(1_765_000_000),
            end_time: UNIX_EPOCH + Duration::from_secs(1_765_000_001),
            attributes: vec![KeyValue::new("stella.route", "r1")],
            dropped_attributes_count: 0,
            events: SpanEvents::default(),
            links: SpanLinks::default(),
            status: Status::Unset,
            instrumentation_scope: scope.clone(),
        }
    }

    fn scope(name: &'static str) -> InstrumentationScope {
        InstrumentationScope::builder(name).build()
    }

    fn settings(max_queue: usize, max_batch: usize, delay: Duration) -> Settings {
        Settings {
            max_queue,
            max_batch,
            delay,
        }
    }

    const HOUR: Duration = Duration::from_secs(3600);

    fn wait_for(what: &str, mut check: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !check() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn a_flushed_batch_is_the_body_opentelemetry_otlp_sent_for_the_same_spans() {
        let recorder = Recorder::open();
        let mut processor =
            Processor::new(settings(100, 100, HOUR), recorder.clone()).expect("a processor");
        let resource = Resource::builder()
            .with_service_name("gateway-under-test")
            .build();
        processor.set_resource(&resource);
        let (gateway, other) = (scope("stella-gateway"), scope("other"));
        let spans: Vec<SpanData> = (0..5)
            .map(|i| {
                span(
                    format!("s{i}"),
                    if i % 2 == 0 { &gateway } else { &other },
                    true,
                )
            })
            .collect();
        for s in &spans {
            processor.on_end(s.clone());
        }
        processor.force_flush().expect("flushed");

        let posted = recorder.posted.lock().unwrap().clone();
        assert_eq!(posted.len(), 1, "one request");
        let expected = ExportTraceServiceRequest {
            resource_spans: group_spans_by_resource_and_scope(
                spans,
                &ResourceAttributesWithSchema::from(&resource),
            ),
        }
        .encode_to_vec();
        assert_eq!(posted[0].0, expected);
        assert_eq!(posted[0].1, 5);
    }

    #[test]
    fn a_batch_of_one_scope_is_sent_from_its_own_buffer_as_prost_would_encode_it() {
        let recorder = Recorder::open();
        let mut processor =
            Processor::new(settings(100, 100, HOUR), recorder.clone()).expect("a processor");
        let resource = Resource::builder()
            .with_service_name("gateway-under-test")
            .build();
        processor.set_resource(&resource);
        let gateway = scope("stella-gateway");
        // Enough spans that every length prefix needs more than one byte.
        let spans: Vec<SpanData> = (0..60)
            .map(|i| span(format!("span number {i}"), &gateway, true))
            .collect();
        for s in &spans {
            processor.on_end(s.clone());
        }
        processor.force_flush().expect("flushed");
        let posted = recorder.posted.lock().unwrap().clone();
        let expected = ExportTraceServiceRequest {
            resource_spans: group_spans_by_resource_and_scope(
                spans,
                &ResourceAttributesWithSchema::from(&resource),
            ),
        }
        .encode_to_vec();
        assert_eq!(posted.len(), 1);
        assert_eq!(posted[0].0, expected);
        // The next batch starts in a new buffer, and is right too.
        processor.on_end(span("later".into(), &gateway, true));
        processor.force_flush().unwrap();
        assert_eq!(recorder.bodies()[1], ["later"]);
    }

    #[test]
    fn batches_are_cut_across_scopes_in_order() {
        let recorder = Recorder::open();
        let processor = Processor::new(settings(100, 2, HOUR), recorder.clone()).unwrap();
        // Held in the collector until all five have ended, so they leave
        // together and are cut.
        recorder.set_open(false);
        let (gateway, other) = (scope("stella-gateway"), scope("other"));
        for i in 0..5 {
            let scope = if i % 2 == 0 { &gateway } else { &other };
            processor.on_end(span(format!("s{i}"), scope, true));
        }
        recorder.set_open(true);
        processor.force_flush().unwrap();
        let bodies = recorder.bodies();
        assert!(bodies.iter().all(|b| b.len() <= 2), "{bodies:?}");
        let mut names = bodies.concat();
        names.sort();
        assert_eq!(names, ["s0", "s1", "s2", "s3", "s4"], "each span once");
    }

    #[test]
    fn a_full_batch_leaves_without_waiting_for_the_schedule_and_no_body_is_larger() {
        let recorder = Recorder::open();
        let processor = Processor::new(settings(100, 3, HOUR), recorder.clone()).unwrap();
        let gateway = scope("stella-gateway");
        for i in 0..7 {
            processor.on_end(span(format!("s{i}"), &gateway, true));
        }
        wait_for("a full batch", || {
            recorder.bodies().iter().map(Vec::len).sum::<usize>() >= 6
        });
        processor.force_flush().unwrap();
        let bodies = recorder.bodies();
        assert!(
            bodies.iter().all(|b| !b.is_empty() && b.len() <= 3),
            "{bodies:?}"
        );
        let names: Vec<String> = bodies.concat();
        let expected: Vec<String> = (0..7).map(|i| format!("s{i}")).collect();
        assert_eq!(names, expected, "every span once, in the order they ended");
    }

    #[test]
    fn a_batch_that_grew_past_its_size_is_cut_and_the_rest_stays_pending() {
        let recorder = Recorder::default();
        let processor = Processor::new(settings(100, 3, HOUR), recorder.clone()).unwrap();
        let gateway = scope("stella-gateway");
        for i in 0..3 {
            processor.on_end(span(format!("s{i}"), &gateway, true));
        }
        // The first batch is taken and held in the slow collector while
        // four more spans end: one more than a batch.
        wait_for("the first batch to be taken", || {
            processor.shared.pending().spans == 0
        });
        for i in 3..7 {
            processor.on_end(span(format!("s{i}"), &gateway, true));
        }
        recorder.set_open(true);
        wait_for("the second batch", || recorder.bodies().len() >= 2);
        assert_eq!(
            processor.shared.pending().spans,
            1,
            "the seventh span waits for the schedule or a flush"
        );
        processor.force_flush().unwrap();
        let bodies = recorder.bodies();
        assert_eq!(
            bodies,
            [vec!["s0", "s1", "s2"], vec!["s3", "s4", "s5"], vec!["s6"]]
        );
    }

    #[test]
    fn pending_spans_leave_on_the_schedule() {
        let recorder = Recorder::open();
        let processor = Processor::new(
            settings(100, 512, Duration::from_millis(50)),
            recorder.clone(),
        )
        .unwrap();
        processor.on_end(span("s".into(), &scope("stella-gateway"), true));
        wait_for("the scheduled send", || !recorder.bodies().is_empty());
        assert_eq!(recorder.bodies(), [["s".to_owned()]]);
    }

    #[test]
    fn an_unsampled_span_is_not_exported() {
        let recorder = Recorder::open();
        let processor = Processor::new(settings(100, 100, HOUR), recorder.clone()).unwrap();
        let gateway = scope("stella-gateway");
        processor.on_end(span("unsampled".into(), &gateway, false));
        processor.on_end(span("sampled".into(), &gateway, true));
        processor.force_flush().unwrap();
        assert_eq!(recorder.bodies(), [["sampled".to_owned()]]);
    }

    #[test]
    fn a_full_queue_drops_spans_and_counts_them() {
        let recorder = Recorder::default();
        let processor = Processor::new(settings(2, 2, HOUR), recorder.clone()).unwrap();
        let gateway = scope("stella-gateway");
        // Two spans fill a batch: the batch thread takes them and waits in
        // the slow collector. Two more fill the queue; the fifth is dropped.
        processor.on_end(span("a".into(), &gateway, true));
        processor.on_end(span("b".into(), &gateway, true));
        wait_for("the batch thread to take a and b", || {
            processor.shared.pending().spans == 0
        });
        for name in ["c", "d", "e"] {
            processor.on_end(span(name.into(), &gateway, true));
        }
        assert_eq!(processor.shared.dropped.load(Ordering::Relaxed), 1);
        recorder.set_open(true);
        processor.force_flush().unwrap();
        assert_eq!(recorder.bodies().concat(), ["a", "b", "c", "d"]);
    }

    #[test]
    fn shutdown_sends_what_is_pending_and_spans_after_it_are_ignored() {
        let recorder = Recorder::open();
        let processor = Processor::new(settings(100, 100, HOUR), recorder.clone()).unwrap();
        let gateway = scope("stella-gateway");
        processor.on_end(span("before".into(), &gateway, true));
        processor
            .shutdown_with_timeout(Duration::from_secs(10))
            .expect("shut down");
        assert_eq!(recorder.bodies(), [["before".to_owned()]]);
        processor.on_end(span("after".into(), &gateway, true));
        assert!(matches!(
            processor.shutdown_with_timeout(Duration::from_secs(1)),
            Err(OTelSdkError::AlreadyShutdown)
        ));
        assert!(matches!(
            processor.force_flush(),
            Err(OTelSdkError::AlreadyShutdown)
        ));
        assert_eq!(recorder.bodies().len(), 1);
    }

    #[test]
    fn settings_come_from_the_variables_then_the_file() {
        let config = |queue: usize| Traces {
            enabled: true,
            endpoint: None,
            service_name: "g".into(),
            sampler: crate::config::TraceSampler::AlwaysOn,
            max_queue_size: queue,
            export_timeout: Duration::from_secs(10),
        };
        let resolve = |queue: usize, vars: &[(&str, &str)]| {
            let vars: Vec<(String, String)> = vars
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            Settings::from_lookup(&config(queue), |name| {
                vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
            })
        };
        assert_eq!(
            resolve(2048, &[]),
            settings(2048, 512, Duration::from_secs(5))
        );
        assert_eq!(
            resolve(
                2048,
                &[
                    ("OTEL_BSP_MAX_QUEUE_SIZE", "100"),
                    ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "10"),
                    ("OTEL_BSP_SCHEDULE_DELAY", "250"),
                ]
            ),
            settings(100, 10, Duration::from_millis(250))
        );
        assert_eq!(
            resolve(64, &[("OTEL_BSP_SCHEDULE_DELAY", "soon")]),
            settings(64, 64, Duration::from_secs(5)),
            "a batch is never larger than the queue; a value not a number is ignored"
        );
    }
}
