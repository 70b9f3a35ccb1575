//! OpenTelemetry traces: one server span per request, continued from the
//! client's W3C `traceparent`, with child spans for the stages that take
//! time (authentication, JWKS and introspection fetches, the replay store,
//! the upstream call). Spans leave the process as OTLP/HTTP protobuf.
//!
//! Off unless `traces.enabled`: then no tracer is installed, [`server_span`]
//! returns `None` and no span object exists on the request path; the
//! gateway's own `traceparent` handling (`forward::next_trace`) runs as
//! before. On, export never blocks or fails a request: a finished span is
//! written into a bounded batch (`otel/batch.rs`; dropped when full, the
//! count logged), and a batch thread sends it as OTLP/HTTP protobuf
//! (`otel/otlp.rs`) through a small runtime of its own. Attributes are
//! fixed names with values from fixed sets (route, service, decision,
//! reason, method): never a token, proof or secret.

use crate::config::{TraceSampler, Traces};
use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::{
    SpanBuilder, SpanContext, SpanKind, Status, TraceContextExt, Tracer as _, TracerProvider as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use std::sync::OnceLock;

mod batch;
mod otlp;

pub use stella_core::trace::{
    current, enabled, end, in_child, in_child_of, in_span, note, run_in, set, set_error,
};
use stella_core::trace::{start_child, tracer};

/// The SDK's provider, kept to flush and stop the exporter at shutdown; its
/// tracer is installed in `stella_core::trace`. Unset while traces are off.
static PROVIDER: OnceLock<SdkTracerProvider> = OnceLock::new();

/// Why the exporter could not be set up; reported at start.
#[derive(Debug, thiserror::Error)]
pub enum OtelError {
    #[error("otlp exporter: {0}")]
    Exporter(String),
    #[error("otlp exporter: {0}")]
    Target(#[from] otlp::TargetError),
}

/// Installs the tracer when `config.enabled` (and `OTEL_SDK_DISABLED` is not
/// `true`). The standard `OTEL_EXPORTER_OTLP_ENDPOINT`,
/// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, `OTEL_EXPORTER_OTLP_(TRACES_)HEADERS`,
/// `OTEL_EXPORTER_OTLP_(TRACES_)TIMEOUT`, `OTEL_SERVICE_NAME`,
/// `OTEL_TRACES_SAMPLER` (and `_ARG`) and `OTEL_BSP_*` variables take
/// precedence over the file's values when set.
pub fn init(config: &Traces) -> Result<bool, OtelError> {
    let env_set = |name: &str| std::env::var_os(name).is_some_and(|v| !v.is_empty());
    let sdk_disabled =
        std::env::var("OTEL_SDK_DISABLED").is_ok_and(|v| v.trim().eq_ignore_ascii_case("true"));
    if !config.enabled || sdk_disabled || PROVIDER.get().is_some() {
        return Ok(false);
    }
    let collector =
        otlp::Collector::new(otlp::Target::resolve(config)?).map_err(OtelError::Exporter)?;
    let processor = batch::Processor::new(batch::Settings::resolve(config), collector)
        .map_err(OtelError::Exporter)?;
    let mut resource = opentelemetry_sdk::Resource::builder();
    if !env_set("OTEL_SERVICE_NAME") {
        resource = resource.with_service_name(config.service_name.clone());
    }
    let mut provider = SdkTracerProvider::builder()
        .with_span_processor(processor)
        .with_resource(resource.build());
    if !env_set("OTEL_TRACES_SAMPLER") {
        provider = provider.with_sampler(sampler(&config.sampler));
    }
    let provider = provider.build();
    let tracer = provider.tracer("stella-gateway");
    if PROVIDER.set(provider).is_ok() {
        stella_core::trace::install(Box::new(Starter(tracer)));
    }
    Ok(true)
}

/// The SDK's tracer as `stella_core::trace` starts spans with it: the
/// SDK's span put into the context as it is (boxed once, by the context).
struct Starter(opentelemetry_sdk::trace::SdkTracer);

impl stella_core::trace::Starter for Starter {
    fn start(&self, builder: SpanBuilder, parent: &Context) -> Context {
        parent.with_span(self.0.build_with_context(builder, parent))
    }
}

/// Sends what is queued and stops the exporter; call before the process
/// exits. Bounded by the export timeout.
pub fn shutdown() {
    if let Some(provider) = PROVIDER.get() {
        let _ = provider.shutdown();
    }
}

fn sampler(choice: &TraceSampler) -> Sampler {
    let ratio = |r: f64| Sampler::TraceIdRatioBased(r);
    match *choice {
        TraceSampler::AlwaysOn => Sampler::AlwaysOn,
        TraceSampler::AlwaysOff => Sampler::AlwaysOff,
        TraceSampler::TraceIdRatio(r) => ratio(r),
        TraceSampler::ParentBasedAlwaysOn => Sampler::ParentBased(Box::new(Sampler::AlwaysOn)),
        TraceSampler::ParentBasedAlwaysOff => Sampler::ParentBased(Box::new(Sampler::AlwaysOff)),
        TraceSampler::ParentBasedTraceIdRatio(r) => Sampler::ParentBased(Box::new(ratio(r))),
    }
}

/// The request's server span, and the context its children start from.
pub struct RequestTrace {
    cx: Context,
    method: &'static str,
}

/// The method as a span name and attribute: any token other than the
/// standard methods is client input, so it becomes one fixed value (as the
/// HTTP semantic conventions say).
fn known_method(method: &str) -> &'static str {
    const KNOWN: [&str; 9] = [
        "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
    ];
    KNOWN
        .into_iter()
        .find(|known| *known == method)
        .unwrap_or("_OTHER")
}

/// The `traceparent` / `tracestate` of an incoming request.
struct Incoming<'a> {
    traceparent: Option<&'a str>,
    tracestate: Option<&'a str>,
}

impl Extractor for Incoming<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        match key {
            "traceparent" => self.traceparent,
            "tracestate" => self.tracestate,
            _ => None,
        }
    }

    fn keys(&self) -> Vec<&str> {
        vec!["traceparent", "tracestate"]
    }
}

/// Starts a request's server span, the child of the client's valid
/// `traceparent` (a new trace otherwise); `None` while traces are off.
pub fn server_span(
    method: &str,
    traceparent: Option<&str>,
    tracestate: Option<&str>,
) -> Option<RequestTrace> {
    let tracer = tracer()?;
    let method = known_method(method);
    let parent = TraceContextPropagator::new().extract(&Incoming {
        traceparent,
        tracestate,
    });
    // Room for the eight attributes `finish` adds: the SDK keeps this
    // vector, which would otherwise grow three times.
    let mut attributes = Vec::with_capacity(9);
    attributes.push(KeyValue::new("http.request.method", method));
    let cx = tracer.start(
        SpanBuilder::from_name(method)
            .with_kind(SpanKind::Server)
            .with_attributes(attributes),
        &parent,
    );
    Some(RequestTrace { cx, method })
}

impl RequestTrace {
    /// A child span of the server span, started now; end it with [`end`].
    pub fn child(&self, name: &'static str, kind: SpanKind) -> Context {
        start_child(&self.cx, name, kind)
    }

    /// A child span started now with `attributes` already on it (one step,
    /// not one locked update per attribute); end it with [`end`].
    pub fn child_with(
        &self,
        name: &'static str,
        kind: SpanKind,
        attributes: Vec<KeyValue>,
    ) -> Context {
        stella_core::trace::start_child_with(&self.cx, name, kind, attributes)
    }

    /// Ends the server span with what the decision log records.
    pub fn finish(self, summary: Summary) {
        let span = self.cx.span();
        // `METHOD route`, without `format!`.
        let mut name = String::with_capacity(self.method.len() + 1 + summary.route.len());
        name.push_str(self.method);
        name.push(' ');
        name.push_str(&summary.route);
        span.update_name(name);
        // The route's and the service's names are shared, not copied.
        span.set_attributes([
            KeyValue::new("http.route", summary.route.clone()),
            KeyValue::new("http.response.status_code", i64::from(summary.status)),
            KeyValue::new("stella.route", summary.route),
            KeyValue::new("stella.service", summary.service),
            KeyValue::new("stella.decision", summary.decision),
            KeyValue::new("stella.reason", summary.reason),
            KeyValue::new("stella.auth_method", summary.auth_method),
            KeyValue::new("stella.request_id", summary.request_id),
        ]);
        if summary.status >= 500 || summary.status == 0 {
            span.set_status(Status::error(summary.reason));
        }
        span.end();
    }
}

/// The facts of a finished request a server span carries.
pub struct Summary {
    /// The route's id (shared with the route table).
    pub route: std::sync::Arc<str>,
    /// The service's name (shared with its upstream pool).
    pub service: std::sync::Arc<str>,
    pub decision: &'static str,
    pub reason: &'static str,
    pub auth_method: &'static str,
    pub status: u16,
    /// Handed over: the request's last use of it.
    pub request_id: String,
}

/// The `traceparent` header value a span's context gives the next hop.
pub fn traceparent_of(cx: &Context) -> Option<String> {
    let span = cx.span();
    let sc: &SpanContext = span.span_context();
    // Hex by hand into one string: `to_string` goes through `fmt` (about
    // 1.5k instructions a request, docs/performance.md).
    sc.is_valid().then(|| {
        crate::forward::traceparent(
            &sc.trace_id().to_bytes(),
            &sc.span_id().to_bytes(),
            sc.trace_flags().to_u8(),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_other_than_the_standard_ones_are_one_value() {
        assert_eq!(known_method("GET"), "GET");
        assert_eq!(known_method("PATCH"), "PATCH");
        assert_eq!(known_method("get"), "_OTHER");
        assert_eq!(known_method("X-SECRET-ABC"), "_OTHER");
    }

    #[test]
    fn without_a_tracer_no_span_is_made() {
        // Unit tests never call `init`: traces are off.
        assert!(server_span("GET", None, None).is_none());
        assert!(current().is_none());
    }
}
