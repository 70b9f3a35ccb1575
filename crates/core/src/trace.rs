//! Span helpers on the OpenTelemetry API only: the domain crates put their
//! work (key fetches, introspection, the replay store) into the request's
//! trace through these, without knowing about the exporter. The gateway
//! shell builds the SDK tracer and the OTLP exporter and hands a
//! [`Starter`] to [`install`]; until then (traces off) every helper is a
//! cheap no-op and no span object exists.

use opentelemetry::context::FutureExt as _;
use opentelemetry::trace::{SpanBuilder, SpanKind, Status, TraceContextExt};
use opentelemetry::{Context, KeyValue};
use std::future::Future;
use std::sync::OnceLock;

/// Starts spans: the gateway's SDK tracer behind one object-safe call.
///
/// Not the API's `global::BoxedTracer`: its spans are boxed once by the
/// tracer and again by the `Context` holding them, so every attribute set
/// and every end went through two dynamic calls (about 2k instructions a
/// request with three spans, docs/performance.md). A starter puts the
/// SDK's span into the context directly: one box, one dynamic call.
pub trait Starter: Send + Sync {
    /// `parent` with a new span from `builder` as its active span.
    fn start(&self, builder: SpanBuilder, parent: &Context) -> Context;
}

/// The installed starter; unset while traces are off.
static TRACER: OnceLock<Box<dyn Starter>> = OnceLock::new();

/// Installs the process's span starter; `false` if one was installed
/// already.
pub fn install(starter: Box<dyn Starter>) -> bool {
    TRACER.set(starter).is_ok()
}

/// The installed starter, if traces are on.
pub fn tracer() -> Option<&'static dyn Starter> {
    TRACER.get().map(|t| &**t)
}

/// A child span `name` of `parent`, started now; end it with [`end`].
pub fn start_child(parent: &Context, name: &'static str, kind: SpanKind) -> Context {
    match tracer() {
        Some(tracer) => tracer.start(SpanBuilder::from_name(name).with_kind(kind), parent),
        None => parent.clone(),
    }
}

/// [`start_child`] with `attributes` set at the start: one step, where
/// setting them one by one afterwards locks and dispatches per attribute.
pub fn start_child_with(
    parent: &Context,
    name: &'static str,
    kind: SpanKind,
    attributes: Vec<KeyValue>,
) -> Context {
    match tracer() {
        Some(tracer) => tracer.start(
            SpanBuilder::from_name(name)
                .with_kind(kind)
                .with_attributes(attributes),
            parent,
        ),
        None => parent.clone(),
    }
}

/// Sets an attribute on a span's context.
pub fn set(cx: &Context, attribute: KeyValue) {
    cx.span().set_attribute(attribute);
}

/// Marks a span failed, with a fixed reason code.
pub fn set_error(cx: &Context, reason: &'static str) {
    cx.span().set_status(Status::error(reason));
}

/// Ends a child span.
pub fn end(cx: &Context) {
    cx.span().end();
}

/// Whether traces are on (a tracer is installed).
pub fn enabled() -> bool {
    TRACER.get().is_some()
}

/// Runs `fut` with `cx` current, so stages below add children to its span;
/// just runs `fut` when there is no span.
pub async fn run_in<F: Future>(cx: Option<&Context>, fut: F) -> F::Output {
    match cx {
        None => fut.await,
        Some(cx) => fut.with_context(cx.clone()).await,
    }
}

/// [`run_in`], then ends the span.
pub async fn in_span<F: Future>(cx: Option<Context>, fut: F) -> F::Output {
    let out = run_in(cx.as_ref(), fut).await;
    if let Some(cx) = cx {
        cx.span().end();
    }
    out
}

/// The current context when a request span is current (traces on, inside a
/// traced stage); `None` otherwise, cheaply.
pub fn current() -> Option<Context> {
    tracer()?;
    let cx = Context::current();
    cx.has_active_span().then_some(cx)
}

/// Runs `fut` in a child span `name` of the current request span; just
/// runs it when there is none (traces off, or a background task).
pub async fn in_child<F: Future>(name: &'static str, fut: F) -> F::Output {
    in_child_of(current(), name, fut).await
}

/// Like [`in_child`], under `parent` (captured before a task was spawned).
pub async fn in_child_of<F: Future>(
    parent: Option<Context>,
    name: &'static str,
    fut: F,
) -> F::Output {
    in_span(
        parent.map(|p| start_child(&p, name, SpanKind::Internal)),
        fut,
    )
    .await
}

/// Sets an attribute on the current request span, if there is one; `value`
/// is not computed otherwise.
pub fn note(attribute: impl FnOnce() -> KeyValue) {
    if let Some(cx) = current() {
        cx.span().set_attribute(attribute());
    }
}
