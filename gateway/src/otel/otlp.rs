//! The OTLP/HTTP span exporter: a batch of the SDK's finished spans written
//! straight into an `ExportTraceServiceRequest` (protobuf) and posted to the
//! collector.
//!
//! Why not `opentelemetry-otlp`'s exporter (docs/dependencies.md, "Traces"):
//! it converts every span into the generated message types first (every
//! key and value copied into a new `String`, ids into `Vec`s) and prost
//! then computes each nested message's length again at every level; that
//! was about 24k instructions per request with three spans, more than the
//! rest of tracing together (docs/performance.md). Here each message is
//! written once, its length patched in after it (one byte reserved; the
//! body moved up in the rare case a length needs more), so a span costs
//! about what its bytes do. The bytes are prost's for the same spans
//! (`tests::the_body_is_prosts_encoding_byte_for_byte`).
//!
//! What the exporter does besides encoding follows the OTLP exporter
//! specification, as the crate did: the endpoint, headers and timeout from
//! `OTEL_EXPORTER_OTLP_*`, retries with exponential backoff on 429, 502,
//! 503, 504 and network errors (a `Retry-After` in seconds is honoured)
//! within the export timeout, and a collector's partial success logged.

use crate::config::Traces;
use http::{HeaderName, HeaderValue, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use opentelemetry::trace::{SpanKind, Status};
use opentelemetry::{Array, InstrumentationScope, KeyValue, Value};
use opentelemetry_sdk::trace::SpanData;
use opentelemetry_sdk::Resource;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Largest OTLP response body read (the collector's partial-success note).
const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// The endpoint when neither the file nor the environment names one.
const DEFAULT_ENDPOINT: &str = "http://localhost:4318/v1/traces";

/// The export deadline when neither the file nor the environment sets one.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Retries after the first attempt, and their backoff: 100 ms doubling to
/// at most 1.6 s, plus up to 100 ms of jitter (the OTLP exporter's
/// recommended policy).
const MAX_RETRIES: u32 = 3;
const FIRST_DELAY: Duration = Duration::from_millis(100);
const MAX_DELAY: Duration = Duration::from_millis(1600);
const MAX_JITTER_NANOS: u32 = 100_000_000;

/// A collector's `Retry-After` is honoured up to this.
const MAX_THROTTLE: Duration = Duration::from_secs(600);

/// Where and how spans are sent, resolved once at start.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Target {
    pub endpoint: Uri,
    /// `User-Agent` first, then `OTEL_EXPORTER_OTLP_(TRACES_)HEADERS`.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub timeout: Duration,
}

/// Why the exporter could not be set up; reported at start.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error("{variable}: invalid endpoint url {value:?}")]
    Endpoint {
        variable: &'static str,
        value: String,
    },
    #[error("{0} is not valid unicode")]
    NotUnicode(&'static str),
}

/// An environment variable's value, `None` when unset or empty.
fn env(name: &'static str) -> Result<Option<String>, TargetError> {
    match std::env::var(name) {
        Ok(v) if v.is_empty() => Ok(None),
        Ok(v) => Ok(Some(v)),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(_)) => Err(TargetError::NotUnicode(name)),
    }
}

impl Target {
    /// The target from the environment and the file, in the order the OTLP
    /// exporter specification gives: `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`
    /// as it is, else `OTEL_EXPORTER_OTLP_ENDPOINT` + `/v1/traces`, else
    /// the file's `traces.endpoint` + `/v1/traces`, else
    /// `http://localhost:4318/v1/traces`. The timeout (milliseconds)
    /// likewise: `..._TRACES_TIMEOUT`, `..._TIMEOUT`, the file's.
    pub fn resolve(config: &Traces) -> Result<Target, TargetError> {
        for name in [
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
            "OTEL_EXPORTER_OTLP_PROTOCOL",
        ] {
            if let Some(p) = env(name)?.filter(|p| p.trim() != "http/protobuf") {
                tracing::warn!(variable = name, value = %p, "only http/protobuf is sent; ignored");
            }
        }
        for name in [
            "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION",
            "OTEL_EXPORTER_OTLP_COMPRESSION",
        ] {
            if let Some(c) = env(name)?.filter(|c| !c.trim().eq_ignore_ascii_case("none")) {
                tracing::warn!(variable = name, value = %c, "spans are sent uncompressed; ignored");
            }
        }
        Target::from_lookup(config, env)
    }

    fn from_lookup(
        config: &Traces,
        lookup: impl Fn(&'static str) -> Result<Option<String>, TargetError>,
    ) -> Result<Target, TargetError> {
        let with_path = |variable: &'static str, base: &str| {
            let base = base.strip_suffix('/').unwrap_or(base);
            parse_endpoint(variable, &format!("{base}/v1/traces"))
        };
        let endpoint = if let Some(url) = lookup("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")? {
            parse_endpoint("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", &url)?
        } else if let Some(base) = lookup("OTEL_EXPORTER_OTLP_ENDPOINT")? {
            with_path("OTEL_EXPORTER_OTLP_ENDPOINT", &base)?
        } else if let Some(base) = &config.endpoint {
            with_path("traces.endpoint", base)?
        } else {
            parse_endpoint("default", DEFAULT_ENDPOINT)?
        };
        let millis = |name| -> Result<Option<Duration>, TargetError> {
            Ok(lookup(name)?
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_millis))
        };
        let timeout = match millis("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT")? {
            Some(t) => t,
            None => millis("OTEL_EXPORTER_OTLP_TIMEOUT")?.unwrap_or(config.export_timeout),
        };
        let mut headers = vec![(
            http::header::USER_AGENT,
            HeaderValue::from_static(concat!("stella-gateway/", env!("CARGO_PKG_VERSION"))),
        )];
        let listed = match lookup("OTEL_EXPORTER_OTLP_TRACES_HEADERS")? {
            Some(list) => Some(list),
            None => lookup("OTEL_EXPORTER_OTLP_HEADERS")?,
        };
        if let Some(list) = listed {
            for (name, value) in parse_headers(&list) {
                headers.retain(|(n, _)| *n != name);
                headers.push((name, value));
            }
        }
        Ok(Target {
            endpoint,
            headers,
            timeout: if timeout.is_zero() {
                DEFAULT_TIMEOUT
            } else {
                timeout
            },
        })
    }
}

fn parse_endpoint(variable: &'static str, url: &str) -> Result<Uri, TargetError> {
    let invalid = || TargetError::Endpoint {
        variable,
        value: url.to_owned(),
    };
    let uri: Uri = url.parse().map_err(|_| invalid())?;
    match (uri.scheme_str(), uri.host()) {
        (Some("http" | "https"), Some(_)) => Ok(uri),
        _ => Err(invalid()),
    }
}

/// `key=value` pairs separated by commas, each value percent-decoded (the
/// W3C Baggage form the OTLP exporter specification names). A pair whose
/// name or value is not a valid header is left out, and only its name is
/// logged: a value is often a credential.
fn parse_headers(list: &str) -> Vec<(HeaderName, HeaderValue)> {
    let mut out = Vec::new();
    for pair in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let Some((key, value)) = pair.split_once('=') else {
            tracing::warn!("OTEL_EXPORTER_OTLP_HEADERS: an entry without '=' left out");
            continue;
        };
        let key = key.trim();
        let value = percent_decode(value.trim());
        match (
            HeaderName::from_bytes(key.as_bytes()),
            HeaderValue::from_bytes(&value),
        ) {
            (Ok(name), Ok(value)) if !value.is_empty() => out.push((name, value)),
            _ => tracing::warn!(
                header = key,
                "OTEL_EXPORTER_OTLP_HEADERS: an invalid header left out"
            ),
        }
    }
    out
}

/// `%XX` sequences decoded; anything else (a `%` not followed by two hex
/// digits included) kept as it is.
fn percent_decode(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%' {
            if let (Some(h), Some(l)) = (
                bytes.get(i + 1).copied().and_then(hex),
                bytes.get(i + 2).copied().and_then(hex),
            ) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    out
}

/// The collector: where request bodies go, over hyper and rustls with the
/// ring provider (the tree's only TLS backend) and the platform roots, on
/// a one-thread runtime of its own. An export must never take a worker of
/// the proxy's.
pub(super) struct Collector {
    client: stella_authority::http::HttpClient,
    runtime: tokio::runtime::Handle,
    target: std::sync::Arc<Target>,
}

impl std::fmt::Debug for Collector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Collector")
            .field("endpoint", &self.target.endpoint.path())
            .field("timeout", &self.target.timeout)
            .finish_non_exhaustive()
    }
}

impl Collector {
    pub fn new(target: Target) -> Result<Collector, String> {
        // The platform's roots; plain http too (a collector beside the
        // gateway); connections kept, on the exporter's own runtime.
        let client = stella_authority::http::client(
            stella_authority::http::platform_roots(),
            None,
            true,
            true,
        )
        .map_err(|e| e.to_string())?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        let handle = runtime.handle().clone();
        // Lives as long as the process: the runtime is never dropped. It
        // keeps the pooled connection to the collector served between
        // exports.
        std::thread::Builder::new()
            .name("stella-otlp".into())
            .spawn(move || runtime.block_on(std::future::pending::<()>()))
            .map_err(|e| e.to_string())?;
        Ok(Collector {
            client,
            runtime: handle,
            target: std::sync::Arc::new(target),
        })
    }
}

impl super::batch::Post for Collector {
    /// Sends one request body and waits for the outcome (with retries,
    /// within the export timeout); called from the batch thread, outside
    /// any runtime.
    fn post(&self, body: Bytes, spans: usize) -> Result<(), String> {
        let client = self.client.clone();
        let target = self.target.clone();
        let sent = self
            .runtime
            .spawn(async move { send(&client, &target, body).await });
        match self.runtime.block_on(sent) {
            Ok(Ok(response)) => {
                if let Some((rejected, message)) = partial_success(&response) {
                    tracing::warn!(
                        rejected_spans = rejected,
                        message = %message,
                        "otlp collector accepted the export in part"
                    );
                }
                Ok(())
            }
            Ok(Err(failure)) => Err(format!("otlp export of {spans} spans failed: {failure}")),
            Err(e) => Err(format!("otlp export task: {e}")),
        }
    }
}

/// Why an export did not get through, after its retries.
#[derive(Debug, PartialEq)]
enum Failure {
    Status(u16, u32),
    Network(String, u32),
    TimedOut(u32),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Status(s, n) => write!(f, "HTTP {s} after {n} attempts"),
            Failure::Network(e, n) => write!(f, "{e} after {n} attempts"),
            Failure::TimedOut(n) => write!(f, "timed out after {n} attempts"),
        }
    }
}

/// Posts `body`, retrying what the OTLP specification says may be retried,
/// all within the target's timeout. The response body on success.
async fn send(
    client: &stella_authority::http::HttpClient,
    target: &Target,
    body: Bytes,
) -> Result<Bytes, Failure> {
    let deadline = tokio::time::Instant::now() + target.timeout;
    let mut delay = FIRST_DELAY;
    let mut attempts = 0;
    loop {
        attempts += 1;
        let mut request = http::Request::post(target.endpoint.clone())
            .header(http::header::CONTENT_TYPE, "application/x-protobuf")
            .body(Full::new(body.clone()))
            .expect("a request from a parsed uri and valid headers");
        for (name, value) in &target.headers {
            request.headers_mut().insert(name.clone(), value.clone());
        }
        let exchange = async {
            let response = client.request(request).await?;
            let (parts, body) = response.into_parts();
            let body = Limited::new(body, MAX_RESPONSE_BYTES)
                .collect()
                .await?
                .to_bytes();
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>((parts, body))
        };
        let (failure, throttle) = match tokio::time::timeout_at(deadline, exchange).await {
            Err(_) => return Err(Failure::TimedOut(attempts)),
            Ok(Ok((parts, body))) if parts.status.is_success() => return Ok(body),
            Ok(Ok((parts, _))) => {
                let status = parts.status.as_u16();
                if !matches!(status, 429 | 502 | 503 | 504) {
                    return Err(Failure::Status(status, attempts));
                }
                let after = matches!(status, 429 | 503)
                    .then(|| parts.headers.get(http::header::RETRY_AFTER))
                    .flatten()
                    .and_then(|v| v.to_str().ok()?.trim().parse::<u64>().ok())
                    .map(|s| Duration::from_secs(s).min(MAX_THROTTLE));
                (Failure::Status(status, attempts), after)
            }
            Ok(Err(e)) => (Failure::Network(network_error(e.as_ref()), attempts), None),
        };
        if attempts > MAX_RETRIES {
            return Err(failure);
        }
        if let Some(after) = throttle {
            delay = delay.max(after);
        }
        let wait = delay + jitter();
        if tokio::time::Instant::now() + wait >= deadline {
            return Err(failure);
        }
        tracing::debug!(
            attempt = attempts,
            delay_ms = wait.as_millis() as u64,
            "otlp export retried"
        );
        tokio::time::sleep(wait).await;
        delay = (delay * 2).min(MAX_DELAY.max(throttle.unwrap_or_default()));
    }
}

/// The innermost cause of a client error: "connection refused", not
/// "client error (Connect)".
fn network_error(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = e;
    while let Some(inner) = cause.source() {
        cause = inner;
    }
    cause.to_string()
}

fn jitter() -> Duration {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    Duration::from_nanos(u64::from(nanos % MAX_JITTER_NANOS))
}

/// `ExportTraceServiceResponse.partial_success` when it reports rejected
/// spans or a message: `(rejected_spans, error_message)`.
fn partial_success(body: &[u8]) -> Option<(i64, String)> {
    let partial =
        read_fields(body)?
            .into_iter()
            .find_map(|(field, value)| match (field, value) {
                (1, Field::Bytes(b)) => Some(b),
                _ => None,
            })?;
    let mut rejected = 0;
    let mut message = String::new();
    for (field, value) in read_fields(partial)? {
        match (field, value) {
            (1, Field::Varint(v)) => rejected = v as i64,
            (2, Field::Bytes(b)) => message = String::from_utf8_lossy(b).into_owned(),
            _ => {}
        }
    }
    (rejected > 0 || !message.is_empty()).then_some((rejected, message))
}

enum Field<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Fixed,
}

/// The fields of one protobuf message; `None` when it is not well formed.
fn read_fields(mut b: &[u8]) -> Option<Vec<(u64, Field<'_>)>> {
    fn varint(b: &mut &[u8]) -> Option<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let (&byte, rest) = b.split_first()?;
            *b = rest;
            v |= u64::from(byte & 0x7f) << shift;
            if byte < 0x80 {
                return Some(v);
            }
        }
        None
    }
    let mut out = Vec::new();
    while !b.is_empty() {
        let key = varint(&mut b)?;
        let value = match key & 7 {
            0 => Field::Varint(varint(&mut b)?),
            1 | 5 => {
                let n = if key & 7 == 1 { 8 } else { 4 };
                b = b.get(n..)?;
                Field::Fixed
            }
            2 => {
                let n = usize::try_from(varint(&mut b)?).ok()?;
                let (v, rest) = (b.get(..n)?, b.get(n..)?);
                b = rest;
                Field::Bytes(v)
            }
            _ => return None,
        };
        out.push((key >> 3, value));
    }
    Some(out)
}

/// Protobuf written into a buffer. Field numbers and wire types are the
/// OTLP messages' (opentelemetry-proto, `trace/v1/trace.proto`,
/// `common/v1/common.proto`, `resource/v1/resource.proto`); fields are
/// written in field-number order and defaults left out, as prost does.
struct Pb<'a>(&'a mut Vec<u8>);

impl Pb<'_> {
    #[inline]
    fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.0.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.0.push(v as u8);
    }

    #[inline]
    fn key(&mut self, field: u32, wire: u8) {
        self.varint(u64::from(field << 3 | u32::from(wire)));
    }

    /// A length-delimited field, written even when empty (a oneof member).
    #[inline]
    fn bytes_always(&mut self, field: u32, b: &[u8]) {
        self.key(field, 2);
        self.varint(b.len() as u64);
        self.0.extend_from_slice(b);
    }

    #[inline]
    fn bytes(&mut self, field: u32, b: &[u8]) {
        if !b.is_empty() {
            self.bytes_always(field, b);
        }
    }

    #[inline]
    fn string(&mut self, field: u32, s: &str) {
        self.bytes(field, s.as_bytes());
    }

    #[inline]
    fn uint(&mut self, field: u32, v: u64) {
        if v != 0 {
            self.key(field, 0);
            self.varint(v);
        }
    }

    #[inline]
    fn fixed64(&mut self, field: u32, v: u64) {
        if v != 0 {
            self.key(field, 1);
            self.0.extend_from_slice(&v.to_le_bytes());
        }
    }

    #[inline]
    fn fixed32(&mut self, field: u32, v: u32) {
        if v != 0 {
            self.key(field, 5);
            self.0.extend_from_slice(&v.to_le_bytes());
        }
    }

    /// A nested message: its key, then its length, known once `write` has
    /// written it. One byte is reserved for the length; a message of 128
    /// bytes or more moves up by the bytes its length needs beyond it.
    fn message(&mut self, field: u32, write: impl FnOnce(&mut Pb<'_>)) {
        self.key(field, 2);
        let at = self.0.len();
        self.0.push(0);
        write(&mut Pb(self.0));
        let len = self.0.len() - at - 1;
        if len < 0x80 {
            self.0[at] = len as u8;
            return;
        }
        let mut prefix = [0u8; 10];
        let n = {
            let mut v = len as u64;
            let mut n = 0;
            while v >= 0x80 {
                prefix[n] = (v as u8) | 0x80;
                v >>= 7;
                n += 1;
            }
            prefix[n] = v as u8;
            n + 1
        };
        let end = self.0.len();
        self.0.resize(end + n - 1, 0);
        self.0.copy_within(at + 1..end, at + n);
        self.0[at..at + n].copy_from_slice(&prefix[..n]);
    }

    fn attributes<'k>(&mut self, field: u32, attributes: impl IntoIterator<Item = &'k KeyValue>) {
        for kv in attributes {
            self.attribute(field, kv);
        }
    }

    /// One `KeyValue`. For a scalar value (every attribute the gateway
    /// sets) the lengths are known before writing, so nothing is patched:
    /// the framing, the key and the value's framing are put together on
    /// the stack and go in as one slice, the value's text as another.
    #[inline]
    fn attribute(&mut self, field: u32, kv: &KeyValue) {
        let key = kv.key.as_str().as_bytes();
        let text: &[u8];
        let mut value = Head::<16>::new();
        match &kv.value {
            Value::String(s) => {
                text = s.as_str().as_bytes();
                value.byte(1 << 3 | 2);
                value.varint(text.len() as u64);
            }
            Value::Bool(b) => {
                text = &[];
                value.byte(2 << 3);
                value.byte(u8::from(*b));
            }
            Value::I64(i) => {
                text = &[];
                value.byte(3 << 3);
                value.varint(*i as u64);
            }
            Value::F64(f) => {
                text = &[];
                value.byte(4 << 3 | 1);
                value.bytes(&f.to_le_bytes());
            }
            _ => {
                return self.message(field, |m| {
                    m.bytes(1, key);
                    m.message(2, |v| v.any_value(&kv.value));
                });
            }
        }
        let value_len = value.len + text.len();
        let key_len = if key.is_empty() {
            0
        } else {
            1 + varint_len(key.len() as u64) + key.len()
        };
        // At most 10 + 10 + 1 + 10 bytes of framing before the key and
        // 1 + 10 + 16 after it.
        let mut head = Head::<{ 58 + INLINE_KEY }>::new();
        head.varint(u64::from(field << 3 | 2));
        head.varint((key_len + 1 + varint_len(value_len as u64) + value_len) as u64);
        if !key.is_empty() {
            head.byte(1 << 3 | 2);
            head.varint(key.len() as u64);
        }
        if key.len() <= INLINE_KEY {
            head.bytes(key);
        } else {
            self.0.extend_from_slice(head.as_slice());
            self.0.extend_from_slice(key);
            head.len = 0;
        }
        head.byte(2 << 3 | 2);
        head.varint(value_len as u64);
        head.bytes(value.as_slice());
        self.0.reserve(head.len + text.len());
        self.0.extend_from_slice(head.as_slice());
        self.0.extend_from_slice(text);
    }

    /// `AnyValue`: a oneof, so a default value is written too.
    #[inline]
    fn any_value(&mut self, value: &Value) {
        match value {
            Value::String(s) => self.bytes_always(1, s.as_str().as_bytes()),
            Value::Bool(b) => {
                self.key(2, 0);
                self.varint(u64::from(*b));
            }
            Value::I64(i) => {
                self.key(3, 0);
                self.varint(*i as u64);
            }
            Value::F64(f) => {
                self.key(4, 1);
                self.0.extend_from_slice(&f.to_le_bytes());
            }
            Value::Array(array) => self.message(5, |a| match array {
                Array::Bool(v) => v.iter().for_each(|x| a.array_item(&Value::Bool(*x))),
                Array::I64(v) => v.iter().for_each(|x| a.array_item(&Value::I64(*x))),
                Array::F64(v) => v.iter().for_each(|x| a.array_item(&Value::F64(*x))),
                Array::String(v) => v
                    .iter()
                    .for_each(|x| a.message(1, |m| m.bytes_always(1, x.as_str().as_bytes()))),
                // A kind of array added to the API later: its text.
                other => a.message(1, |m| m.bytes_always(1, other.to_string().as_bytes())),
            }),
            // A kind of value added to the API later: its text.
            other => self.bytes_always(1, other.to_string().as_bytes()),
        }
    }

    fn array_item(&mut self, value: &Value) {
        self.message(1, |m| m.any_value(value));
    }

    fn span(&mut self, span: &SpanData) {
        let cx = &span.span_context;
        self.bytes(1, &cx.trace_id().to_bytes());
        self.bytes(2, &cx.span_id().to_bytes());
        self.trace_state(3, cx.trace_state());
        if span.parent_span_id != opentelemetry::trace::SpanId::INVALID {
            self.bytes(4, &span.parent_span_id.to_bytes());
        }
        self.string(5, &span.name);
        self.uint(6, kind(&span.span_kind));
        self.fixed64(7, nanos(span.start_time));
        self.fixed64(8, nanos(span.end_time));
        self.attributes(9, &span.attributes);
        self.uint(10, u64::from(span.dropped_attributes_count));
        for event in span.events.iter() {
            self.message(11, |e| {
                e.fixed64(1, nanos(event.timestamp));
                e.string(2, &event.name);
                e.attributes(3, &event.attributes);
                e.uint(4, u64::from(event.dropped_attributes_count));
            });
        }
        self.uint(12, u64::from(span.events.dropped_count));
        for link in span.links.iter() {
            self.message(13, |l| {
                let cx = &link.span_context;
                l.bytes(1, &cx.trace_id().to_bytes());
                l.bytes(2, &cx.span_id().to_bytes());
                l.trace_state(3, cx.trace_state());
                l.attributes(4, &link.attributes);
                l.uint(5, u64::from(link.dropped_attributes_count));
                l.fixed32(6, flags(cx.is_remote(), cx.trace_flags().to_u8()));
            });
        }
        self.uint(14, u64::from(span.links.dropped_count));
        self.message(15, |s| match &span.status {
            Status::Unset => {}
            Status::Ok => s.uint(3, 1),
            Status::Error { description } => {
                s.string(2, description);
                s.uint(3, 2);
            }
        });
        self.fixed32(
            16,
            flags(span.parent_span_is_remote, cx.trace_flags().to_u8()),
        );
    }

    fn trace_state(&mut self, field: u32, state: &opentelemetry::trace::TraceState) {
        // The empty state (almost every span) without making a string.
        if *state != opentelemetry::trace::TraceState::NONE {
            self.string(field, &state.header());
        }
    }
}

/// Attribute keys up to this long are copied with the framing around
/// them (every key the gateway sets is shorter).
const INLINE_KEY: usize = 64;

/// A few bytes of protobuf framing put together before they are copied.
struct Head<const N: usize> {
    bytes: [u8; N],
    len: usize,
}

impl<const N: usize> Head<N> {
    #[inline]
    fn new() -> Head<N> {
        Head {
            bytes: [0; N],
            len: 0,
        }
    }

    #[inline]
    fn byte(&mut self, b: u8) {
        self.bytes[self.len] = b;
        self.len += 1;
    }

    #[inline]
    fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.byte((v as u8) | 0x80);
            v >>= 7;
        }
        self.byte(v as u8);
    }

    #[inline]
    fn bytes(&mut self, b: &[u8]) {
        self.bytes[self.len..self.len + b.len()].copy_from_slice(b);
        self.len += b.len();
    }

    #[inline]
    fn as_slice(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

/// Bytes of `v` as a varint.
#[inline]
fn varint_len(v: u64) -> usize {
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

/// `Span.flags`: the W3C trace flags, and whether the parent is remote
/// (`SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE_MASK` 0x100, `..._IS_REMOTE_MASK`
/// 0x200).
fn flags(remote: bool, trace_flags: u8) -> u32 {
    u32::from(trace_flags) | 0x100 | if remote { 0x200 } else { 0 }
}

fn kind(kind: &SpanKind) -> u64 {
    match kind {
        SpanKind::Internal => 1,
        SpanKind::Server => 2,
        SpanKind::Client => 3,
        SpanKind::Producer => 4,
        SpanKind::Consumer => 5,
    }
}

fn nanos(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// `ResourceSpans.resource` (field 1) with its key and length, and
/// `ResourceSpans.schema_url` (field 3) with its key: the parts of every
/// request body that come from the resource.
pub(super) fn encode_resource(resource: &Resource) -> (Vec<u8>, Vec<u8>) {
    let mut out = Vec::new();
    Pb(&mut out).message(1, |r| {
        for (key, value) in resource.iter() {
            r.message(1, |kv| {
                kv.string(1, key.as_str());
                kv.message(2, |v| v.any_value(value));
            });
        }
    });
    let mut schema_url = Vec::new();
    if let Some(url) = resource.schema_url() {
        Pb(&mut schema_url).string(3, url);
    }
    (out, schema_url)
}

/// Appends `span` as a `ScopeSpans.spans` member (field 2, with its key
/// and length).
pub(super) fn encode_span(out: &mut Vec<u8>, span: &SpanData) {
    Pb(out).message(2, |s| s.span(span));
}

/// `a == b`, without the sorted copies of the attribute lists that
/// `InstrumentationScope`'s `eq` makes when both lists are empty (the
/// gateway's one scope).
pub(super) fn same_scope(a: &InstrumentationScope, b: &InstrumentationScope) -> bool {
    if a.attributes().next().is_none() && b.attributes().next().is_none() {
        a.name() == b.name() && a.version() == b.version() && a.schema_url() == b.schema_url()
    } else {
        a == b
    }
}

/// `ScopeSpans.scope` (field 1) and `ScopeSpans.schema_url` (field 3) of
/// `scope`, each with its key: what surrounds a scope's spans.
fn scope_parts(scope: &InstrumentationScope) -> (Vec<u8>, Vec<u8>) {
    let mut head = Vec::new();
    Pb(&mut head).message(1, |s| {
        s.string(1, scope.name());
        s.string(2, scope.version().unwrap_or_default());
        s.attributes(3, scope.attributes());
    });
    let mut tail = Vec::new();
    Pb(&mut tail).string(3, scope.schema_url().unwrap_or_default());
    (head, tail)
}

fn framed(len: usize) -> usize {
    1 + varint_len(len as u64) + len
}

/// The request body (`ExportTraceServiceRequest`): one `ResourceSpans`
/// with `resource` and `schema_url` from [`encode_resource`], and one
/// `ScopeSpans` per `(scope, spans)`, `spans` being members written by
/// [`encode_span`]. Every length is known, so each is written once.
pub(super) fn encode_body(
    resource: &[u8],
    schema_url: &[u8],
    scopes: &[(&InstrumentationScope, &[u8])],
) -> Vec<u8> {
    let parts: Vec<(Vec<u8>, Vec<u8>, usize)> = scopes
        .iter()
        .map(|(scope, spans)| {
            let (head, tail) = scope_parts(scope);
            let len = head.len() + spans.len() + tail.len();
            (head, tail, len)
        })
        .collect();
    let inner = resource.len()
        + parts.iter().map(|(_, _, len)| framed(*len)).sum::<usize>()
        + schema_url.len();
    let mut out = Vec::with_capacity(framed(inner) + 8);
    let mut pb = Pb(&mut out);
    pb.key(1, 2);
    pb.varint(inner as u64);
    pb.0.extend_from_slice(resource);
    for ((head, tail, len), (_, spans)) in parts.iter().zip(scopes) {
        pb.key(2, 2);
        pb.varint(*len as u64);
        pb.0.extend_from_slice(head);
        pb.0.extend_from_slice(spans);
        pb.0.extend_from_slice(tail);
    }
    pb.0.extend_from_slice(schema_url);
    out
}

/// [`encode_body`] for one scope, around spans already in `buffer` after
/// `headroom` unused bytes: what comes before the spans is written into
/// the headroom and what comes after is appended, so the spans are not
/// copied (a batch is up to hundreds of kilobytes). The body is
/// `buffer[start..]`, `start` returned with it; `None` when the headroom
/// is too small (the caller copies instead).
pub(super) fn body_in_place(
    resource: &[u8],
    schema_url: &[u8],
    scope: &InstrumentationScope,
    mut buffer: Vec<u8>,
    headroom: usize,
) -> Result<(Vec<u8>, usize), Vec<u8>> {
    let (head, tail) = scope_parts(scope);
    let spans = buffer.len() - headroom;
    let scope_len = head.len() + spans + tail.len();
    let inner = resource.len() + framed(scope_len) + schema_url.len();
    let mut prefix = Vec::with_capacity(16 + resource.len() + head.len());
    let mut pb = Pb(&mut prefix);
    pb.key(1, 2);
    pb.varint(inner as u64);
    pb.0.extend_from_slice(resource);
    pb.key(2, 2);
    pb.varint(scope_len as u64);
    pb.0.extend_from_slice(&head);
    let Some(start) = headroom.checked_sub(prefix.len()) else {
        return Err(buffer);
    };
    buffer[start..headroom].copy_from_slice(&prefix);
    buffer.extend_from_slice(&tail);
    buffer.extend_from_slice(schema_url);
    Ok((buffer, start))
}

/// The headroom [`body_in_place`] needs for `scope` with `resource`.
pub(super) fn headroom(resource: &[u8], scope: &InstrumentationScope) -> usize {
    let (head, _) = scope_parts(scope);
    // Two keys and two lengths of at most five bytes each.
    12 + resource.len() + head.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::{Event, Link, SpanContext, SpanId, TraceFlags, TraceId, TraceState};
    use opentelemetry::InstrumentationScope;
    use opentelemetry_proto::tonic::collector::trace::v1::{
        ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
    };
    use opentelemetry_proto::transform::common::tonic::ResourceAttributesWithSchema;
    use opentelemetry_proto::transform::trace::tonic::group_spans_by_resource_and_scope;
    use opentelemetry_sdk::trace::{SpanEvents, SpanLinks};
    use proptest::prelude::*;
    use prost::Message as _;
    use std::collections::HashMap;

    fn at(nanos: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_nanos(nanos)
    }

    fn context(trace: u128, span: u64, sampled: bool, remote: bool, state: &str) -> SpanContext {
        SpanContext::new(
            TraceId::from(trace),
            SpanId::from(span),
            if sampled {
                TraceFlags::SAMPLED
            } else {
                TraceFlags::default()
            },
            remote,
            state.parse::<TraceState>().expect("a trace state"),
        )
    }

    fn span(name: &'static str, scope: &InstrumentationScope) -> SpanData {
        SpanData {
            span_context: context(
                0x0af7651916cd43dd8448eb211c80319c,
                0xb7ad6b7169203331,
                true,
                false,
                "",
            ),
            parent_span_id: SpanId::INVALID,
            parent_span_is_remote: false,
            span_kind: SpanKind::Server,
            name: name.into(),
            start_time: at(1_765_000_000_123_456_789),
            end_time: at(1_765_000_000_124_000_000),
            attributes: vec![KeyValue::new("http.request.method", "GET")],
            dropped_attributes_count: 0,
            events: SpanEvents::default(),
            links: SpanLinks::default(),
            status: Status::Unset,
            instrumentation_scope: scope.clone(),
        }
    }

    /// What `opentelemetry-otlp` sent for the same spans: the generated
    /// messages, encoded by prost.
    fn prost_body(resource: &Resource, batch: &[SpanData]) -> Vec<u8> {
        let resource = ResourceAttributesWithSchema::from(resource);
        ExportTraceServiceRequest {
            resource_spans: group_spans_by_resource_and_scope(batch.to_vec(), &resource),
        }
        .encode_to_vec()
    }

    /// The spans grouped by scope in the order the scopes first appear,
    /// as the batch processor keeps them, then the body.
    fn our_body(resource: &Resource, batch: &[SpanData]) -> Vec<u8> {
        let mut scopes: Vec<(&InstrumentationScope, Vec<u8>)> = Vec::new();
        for span in batch {
            let at = match scopes
                .iter()
                .position(|(s, _)| same_scope(s, &span.instrumentation_scope))
            {
                Some(at) => at,
                None => {
                    scopes.push((&span.instrumentation_scope, Vec::new()));
                    scopes.len() - 1
                }
            };
            encode_span(&mut scopes[at].1, span);
        }
        let (resource, schema_url) = encode_resource(resource);
        let scopes: Vec<(&InstrumentationScope, &[u8])> =
            scopes.iter().map(|(s, b)| (*s, b.as_slice())).collect();
        encode_body(&resource, &schema_url, &scopes)
    }

    fn every_kind_of_span() -> (Resource, Vec<SpanData>) {
        let scope = InstrumentationScope::builder("stella-gateway").build();
        let other = InstrumentationScope::builder("other")
            .with_version("1.2.3")
            .with_schema_url("https://opentelemetry.io/schemas/1.30.0")
            .with_attributes([KeyValue::new("scope.attr", 7)])
            .build();
        let resource = Resource::builder_empty()
            .with_schema_url(
                [KeyValue::new("service.name", "gateway-under-test")],
                "https://opentelemetry.io/schemas/1.30.0",
            )
            .build();
        let root = span("GET /bearer", &scope);

        let mut child = span("authenticate", &scope);
        child.span_context = context(
            0x0af7651916cd43dd8448eb211c80319c,
            0x00f067aa0ba902b7,
            true,
            false,
            "",
        );
        child.parent_span_id = SpanId::from(0xb7ad6b7169203331);
        child.span_kind = SpanKind::Internal;
        child.status = Status::error("upstream_unreachable");
        child.attributes = vec![
            KeyValue::new("empty", ""),
            KeyValue::new("bool.false", false),
            KeyValue::new("bool.true", true),
            KeyValue::new("int.zero", 0),
            KeyValue::new("int.negative", -42),
            KeyValue::new("int.max", i64::MAX),
            KeyValue::new("int.min", i64::MIN),
            KeyValue::new("double.zero", 0.0),
            KeyValue::new("double", -1.5e300),
            KeyValue::new("array.bool", Value::Array(Array::Bool(vec![true, false]))),
            KeyValue::new("array.int", Value::Array(Array::I64(vec![0, -1, 1 << 40]))),
            KeyValue::new("array.double", Value::Array(Array::F64(vec![0.0, 2.5]))),
            KeyValue::new(
                "array.string",
                Value::Array(Array::String(vec!["".into(), "é".into()])),
            ),
            KeyValue::new("array.empty", Value::Array(Array::I64(vec![]))),
            KeyValue::new("", "an empty key"),
            // Lengths that need two and three bytes, at every level.
            KeyValue::new("long.127", "x".repeat(127)),
            KeyValue::new("long.128", "x".repeat(128)),
            KeyValue::new("long.20000", "y".repeat(20_000)),
        ];
        child.dropped_attributes_count = 3;

        let mut remote = span("upstream", &other);
        remote.span_context = context(
            0x4bf92f3577b34da6a3ce929d0e0e4736,
            0x00f067aa0ba902b8,
            false,
            false,
            "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE",
        );
        remote.parent_span_id = SpanId::from(0x00f067aa0ba902b7);
        remote.parent_span_is_remote = true;
        remote.span_kind = SpanKind::Client;
        remote.status = Status::Ok;
        remote.start_time = UNIX_EPOCH;
        remote.end_time = UNIX_EPOCH - Duration::from_secs(1);
        let mut events = SpanEvents::default();
        events.events = vec![
            Event::new("retry", at(5), vec![KeyValue::new("attempt", 2)], 1),
            Event::new("", UNIX_EPOCH, vec![], 0),
        ];
        events.dropped_count = 4;
        remote.events = events;
        let mut links = SpanLinks::default();
        links.links = vec![
            Link::new(
                context(7, 8, true, true, "k=v"),
                vec![KeyValue::new("link.attr", "x".repeat(300))],
                2,
            ),
            Link::with_context(context(9, 10, false, false, "")),
        ];
        links.dropped_count = 5;
        remote.links = links;

        let mut producer = span("", &scope);
        producer.span_kind = SpanKind::Producer;
        let mut consumer = span("consume", &other);
        consumer.span_kind = SpanKind::Consumer;

        (resource, vec![root, remote, child, producer, consumer])
    }

    #[test]
    fn the_body_is_prosts_encoding_byte_for_byte() {
        let (resource, batch) = every_kind_of_span();
        assert_eq!(our_body(&resource, &batch), prost_body(&resource, &batch));
        // One span at a time, and a batch large enough that the outer
        // lengths need three bytes.
        for one in &batch {
            let one = std::slice::from_ref(one);
            assert_eq!(our_body(&resource, one), prost_body(&resource, one));
        }
        let many: Vec<SpanData> = batch.iter().cycle().take(512).cloned().collect();
        assert_eq!(our_body(&resource, &many), prost_body(&resource, &many));
        // The resource the gateway gives (`service.name`, the SDK's
        // defaults), no schema url.
        let plain = Resource::builder().with_service_name("g").build();
        assert_eq!(our_body(&plain, &batch), prost_body(&plain, &batch));
    }

    #[test]
    fn the_body_decodes_to_the_spans_given() {
        let (resource, batch) = every_kind_of_span();
        let decoded = ExportTraceServiceRequest::decode(&our_body(&resource, &batch)[..])
            .expect("a well-formed request");
        let scopes = &decoded.resource_spans[0].scope_spans;
        assert_eq!(scopes.len(), 2, "one ScopeSpans per scope");
        let names: Vec<&str> = scopes
            .iter()
            .flat_map(|s| s.spans.iter().map(|s| s.name.as_str()))
            .collect();
        assert_eq!(
            names,
            ["GET /bearer", "authenticate", "", "upstream", "consume"]
        );
        let upstream = &scopes[1].spans[0];
        assert_eq!(upstream.flags, 0x300, "unsampled, remote parent");
        assert_eq!(
            upstream.trace_state,
            "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"
        );
        assert_eq!(upstream.links[0].flags, 0x301);
        let authenticate = &scopes[0].spans[1];
        assert_eq!(authenticate.flags, 0x101);
        assert_eq!(
            authenticate.status.as_ref().unwrap().message,
            "upstream_unreachable"
        );
        assert_eq!(
            authenticate.parent_span_id,
            0xb7ad6b7169203331u64.to_be_bytes()
        );
    }

    proptest! {
        #[test]
        fn any_attribute_is_encoded_as_prost_does(
            // Past INLINE_KEY bytes too (the key copied on its own).
            key in ".{0,90}",
            text in proptest::collection::vec(any::<char>(), 0..400),
            number in any::<i64>(),
            real in any::<f64>(),
        ) {
            let scope = InstrumentationScope::builder("s").build();
            let mut one = span("n", &scope);
            let text: String = text.into_iter().collect();
            one.attributes = vec![
                KeyValue::new(key.clone(), text.clone()),
                KeyValue::new(key.clone(), number),
                KeyValue::new(key, real),
            ];
            one.name = text.into();
            let resource = Resource::builder_empty().build();
            let batch = [one];
            prop_assert_eq!(our_body(&resource, &batch), prost_body(&resource, &batch));
        }
    }

    #[test]
    fn keys_on_both_sides_of_the_inline_length_are_encoded_as_prost_does() {
        let scope = InstrumentationScope::builder("s").build();
        let resource = Resource::builder_empty().build();
        for len in [0, 1, INLINE_KEY - 1, INLINE_KEY, INLINE_KEY + 1, 200] {
            let mut one = span("n", &scope);
            let key = "k".repeat(len);
            one.attributes = vec![
                KeyValue::new(key.clone(), "v".repeat(130)),
                KeyValue::new(key.clone(), -1i64),
                KeyValue::new(key.clone(), true),
                KeyValue::new(key, 0.5),
            ];
            let batch = [one];
            assert_eq!(
                our_body(&resource, &batch),
                prost_body(&resource, &batch),
                "{len}"
            );
        }
    }

    #[test]
    fn a_partial_success_is_read_from_the_response() {
        let response = |rejected: i64, message: &str| {
            ExportTraceServiceResponse {
                partial_success: Some(ExportTracePartialSuccess {
                    rejected_spans: rejected,
                    error_message: message.into(),
                }),
            }
            .encode_to_vec()
        };
        assert_eq!(
            partial_success(&response(3, "too old")),
            Some((3, "too old".to_owned()))
        );
        assert_eq!(
            partial_success(&response(0, "a warning")),
            Some((0, "a warning".to_owned()))
        );
        assert_eq!(partial_success(&response(0, "")), None);
        assert_eq!(partial_success(&[]), None, "an empty body: full success");
        assert_eq!(partial_success(&[0xff, 0xff, 0xff]), None, "not protobuf");
        assert_eq!(partial_success(b"{\"partialSuccess\":{}}"), None);
    }

    fn target(
        vars: &[(&'static str, &str)],
        file_endpoint: Option<&str>,
    ) -> Result<Target, TargetError> {
        let vars: HashMap<&'static str, String> =
            vars.iter().map(|(k, v)| (*k, v.to_string())).collect();
        let config = Traces {
            enabled: true,
            endpoint: file_endpoint.map(str::to_owned),
            service_name: "g".into(),
            sampler: crate::config::TraceSampler::AlwaysOn,
            max_queue_size: 2048,
            export_timeout: Duration::from_millis(2500),
        };
        Target::from_lookup(&config, |name| {
            Ok(vars.get(name).filter(|v| !v.is_empty()).cloned())
        })
    }

    #[test]
    fn the_endpoint_is_the_signal_variable_then_the_general_one_then_the_file() {
        let url = |vars: &[(&'static str, &str)], file: Option<&str>| {
            target(vars, file).unwrap().endpoint.to_string()
        };
        assert_eq!(url(&[], None), "http://localhost:4318/v1/traces");
        assert_eq!(
            url(&[], Some("http://collector:4318")),
            "http://collector:4318/v1/traces"
        );
        assert_eq!(
            url(&[], Some("http://collector:4318/")),
            "http://collector:4318/v1/traces"
        );
        assert_eq!(
            url(
                &[(
                    "OTEL_EXPORTER_OTLP_ENDPOINT",
                    "https://otel.example:4318/base"
                )],
                Some("http://file:1")
            ),
            "https://otel.example:4318/base/v1/traces"
        );
        assert_eq!(
            url(
                &[
                    (
                        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                        "https://t.example/custom/path"
                    ),
                    ("OTEL_EXPORTER_OTLP_ENDPOINT", "https://otel.example:4318"),
                ],
                Some("http://file:1")
            ),
            "https://t.example/custom/path",
            "the signal's own variable is used as it is"
        );
        assert_eq!(
            url(
                &[("OTEL_EXPORTER_OTLP_ENDPOINT", "")],
                Some("http://file:1")
            ),
            "http://file:1/v1/traces",
            "an empty variable is unset"
        );
        for bad in ["not a url", "ftp://x/", "/v1/traces"] {
            let e = target(&[("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", bad)], None).unwrap_err();
            assert!(
                e.to_string().contains("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"),
                "{e}"
            );
        }
    }

    #[test]
    fn the_timeout_is_in_milliseconds_from_the_variables_then_the_file() {
        let timeout = |vars: &[(&'static str, &str)]| target(vars, None).unwrap().timeout;
        assert_eq!(timeout(&[]), Duration::from_millis(2500));
        assert_eq!(
            timeout(&[("OTEL_EXPORTER_OTLP_TIMEOUT", "700")]),
            Duration::from_millis(700)
        );
        assert_eq!(
            timeout(&[
                ("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "300"),
                ("OTEL_EXPORTER_OTLP_TIMEOUT", "700")
            ]),
            Duration::from_millis(300)
        );
        assert_eq!(
            timeout(&[("OTEL_EXPORTER_OTLP_TIMEOUT", "ten seconds")]),
            Duration::from_millis(2500),
            "a value that is not a number is ignored"
        );
        assert_eq!(
            timeout(&[("OTEL_EXPORTER_OTLP_TIMEOUT", "0")]),
            DEFAULT_TIMEOUT
        );
    }

    #[test]
    fn headers_come_from_the_variables_percent_decoded_and_bad_ones_left_out() {
        let headers = |vars: &[(&'static str, &str)]| {
            target(vars, None)
                .unwrap()
                .headers
                .into_iter()
                .map(|(n, v)| {
                    (
                        n.to_string(),
                        String::from_utf8(v.as_bytes().to_vec()).unwrap(),
                    )
                })
                .collect::<Vec<_>>()
        };
        let ua = (
            "user-agent".to_owned(),
            concat!("stella-gateway/", env!("CARGO_PKG_VERSION")).to_owned(),
        );
        assert_eq!(headers(&[]), std::slice::from_ref(&ua));
        assert_eq!(
            headers(&[(
                "OTEL_EXPORTER_OTLP_HEADERS",
                " Authorization = Basic%20dXNlcjpwdw%3D%3D ,x-tenant=a%2Cb,bad name=1,novalue=,noequals,x-raw=100%"
            )]),
            [
                ua.clone(),
                ("authorization".to_owned(), "Basic dXNlcjpwdw==".to_owned()),
                ("x-tenant".to_owned(), "a,b".to_owned()),
                ("x-raw".to_owned(), "100%".to_owned()),
            ]
        );
        assert_eq!(
            headers(&[
                ("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "x-signal=1"),
                ("OTEL_EXPORTER_OTLP_HEADERS", "x-general=1")
            ]),
            [ua, ("x-signal".to_owned(), "1".to_owned())],
            "the signal's own variable replaces the general one"
        );
        assert_eq!(
            headers(&[("OTEL_EXPORTER_OTLP_HEADERS", "user-agent=collector-test")]),
            [("user-agent".to_owned(), "collector-test".to_owned())]
        );
    }
}
