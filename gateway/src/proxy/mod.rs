//! The Pingora glue. `ProxyHttp` here only gathers inputs (method, path,
//! headers, TLS client certificate) and hands them to the pure stages:
//! `routing` (normalize), `policy` (route and decision), `authn`
//! (credentials), `forward` (header hygiene) and `stella_envelope` (signing).
//! Every refusal is written by [`write_refusal`] from `response::Refusal`.

use crate::forward::{self, Added};
use crate::gateway::{Gateway, Snapshot};
use crate::otel;
use crate::response::{Refusal, Reply};
use crate::signing::EnvelopeSigner;
use crate::tls::ClientCert;
use crate::upstream::{Endpoint, UpstreamPool};
use async_trait::async_trait;
use bytes::Bytes;
use http::{HeaderName, HeaderValue};
use opentelemetry::context::FutureExt as _;
use opentelemetry::trace::SpanKind;
use opentelemetry::KeyValue;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::{HttpPeer, Session};
use pingora::proxy::{FailToProxy, ProxyHttp};
use pingora::{Error, ErrorType, OrErr, Result};
use std::sync::Arc;
use std::time::Instant;
use stella_authn::presented::presented;
use stella_authn::{Authenticated, AuthnError, PresentedCertificate, RequestFacts};
use stella_core::identity::{Binding, Caller};
use stella_envelope::{EnvelopeHeaders, Target, TxnRequest};
use stella_policy::decide::{authorize, decide_shadow, Authorized, Decision};
use stella_policy::{CallerIdentity, RouteTarget};
use stella_routing::{normalize_path, split_path_query, Lookup, NormalizedPath};

/// Per-request state shared between the filters.
pub struct Ctx {
    /// The configuration this request runs with, from start to end.
    snap: Arc<Snapshot>,
    started: Instant,
    request_id: String,
    route_id: Option<std::sync::Arc<str>>,
    service: Option<usize>,
    path: Option<NormalizedPath>,
    query: Option<String>,
    caller: Option<Caller>,
    /// The authenticated caller the policy allowed; forwarding and signing
    /// require it.
    authorized: Option<Authorized<Authenticated>>,
    reason: &'static str,
    tls: bool,
    /// The client's address and scheme (`crate::client_addr`).
    client: crate::client_addr::Client,
    client_cert: Option<ClientCert>,
    /// The endpoint of the current upstream attempt.
    endpoint: Option<Arc<Endpoint>>,
    /// Addresses already tried for this request (connect failures).
    tried: Vec<std::net::SocketAddr>,
    /// Why the exchange with the upstream failed (the metric's `kind`);
    /// empty while it has not.
    upstream_error: &'static str,
    /// Hand the client a fresh DPoP nonce with the response.
    send_nonce: bool,
    /// The server span, while traces are on.
    trace: Option<otel::RequestTrace>,
    /// The upstream call's client span; its context is the upstream's
    /// `traceparent`.
    upstream_span: Option<opentelemetry::Context>,
}

impl Ctx {
    fn pool(&self) -> Option<&Arc<UpstreamPool>> {
        self.service.and_then(|i| self.snap.upstreams.get(i))
    }

    /// The current address failed before the upstream could act on the
    /// request: count it towards ejection, leave it out for the rest of
    /// this request, and retry when another address is left.
    fn retry_elsewhere(&mut self, e: &mut Error) {
        let Some(addr) = self.endpoint.as_ref().map(|e| e.addr) else {
            return;
        };
        let Some(pool) = self.service.and_then(|i| self.snap.upstreams.get(i)) else {
            return;
        };
        pool.report_failure(addr);
        self.tried.push(addr);
        if pool.untried_left(&self.tried) {
            self.snap
                .metrics()
                .upstream_retries
                .with_label_values(&[pool.service.name.as_str()])
                .inc();
            e.set_retry(true);
        }
    }
}

impl Drop for Ctx {
    fn drop(&mut self) {
        self.snap.shared.leave();
    }
}

/// The proxy service: a handle on the shared gateway state.
pub struct Proxy {
    pub gateway: Arc<Gateway>,
}

/// The first two values of the field `name` into `buf` (credential rules
/// refuse a second line whatever it holds, so a third changes nothing):
/// no allocation, and the name is not parsed again.
fn header_values<'a, 'b>(
    req: &'a RequestHeader,
    name: &http::HeaderName,
    buf: &'b mut [&'a [u8]; 2],
) -> &'b [&'a [u8]] {
    let mut n = 0;
    for (slot, value) in buf.iter_mut().zip(req.headers.get_all(name)) {
        *slot = value.as_bytes();
        n += 1;
    }
    &buf[..n]
}

/// The `DPoP` request header (RFC 9449).
static DPOP: http::HeaderName = http::HeaderName::from_static("dpop");
/// W3C Trace Context, looked up by name made once: a lookup by `&str`
/// parses the name on every request.
static TRACEPARENT: http::HeaderName = http::HeaderName::from_static("traceparent");
static TRACESTATE: http::HeaderName = http::HeaderName::from_static("tracestate");

/// Writes a refusal: the only way the gateway answers a request itself.
/// `resource_metadata`: the url of the route's RFC 9728 metadata, which
/// its challenges name.
pub async fn write_refusal(
    session: &mut Session,
    refusal: &Refusal,
    request_id: &str,
    dpop_algs: &str,
    resource_metadata: Option<&str>,
) -> Result<()> {
    let Reply {
        status,
        headers,
        body,
    } = refusal.reply_with(request_id, dpop_algs, resource_metadata);
    let mut head = ResponseHeader::build(status, Some(headers.len() + 2))?;
    for (name, value) in headers {
        head.append_header(name, value)?;
    }
    head.insert_header("content-length", body.len().to_string())?;
    head.insert_header("x-request-id", request_id)?;
    session.write_response_header(Box::new(head), false).await?;
    session
        .write_response_body(Some(Bytes::from(body)), true)
        .await?;
    Ok(())
}

/// The decision-log reason of a request for the published keys on a public
/// listener (`gateway.listeners.public_jwks`): answered by the gateway itself.
const PUBLIC_KEYS: &str = crate::decision_log::catalogue::PUBLIC_JWKS;

/// The decision-log reason of a protected resource metadata document.
const RESOURCE_METADATA: &str = crate::decision_log::catalogue::RESOURCE_METADATA;

/// Answers `GET` or `HEAD /.well-known/stella/keys.json` with the snapshot's
/// JWKS (`crate::keyset`), before any route or policy is looked at.
async fn write_keyset(session: &mut Session, ctx: &mut Ctx) -> Result<()> {
    let method = &session.req_header().method;
    if method != http::Method::GET && method != http::Method::HEAD {
        let refusal = Refusal::MethodNotAllowed {
            allowed: vec!["GET".into(), "HEAD".into()],
        };
        ctx.reason = refusal.reason();
        return write_refusal(
            session,
            &refusal,
            &ctx.request_id,
            &ctx.snap.dpop_algs,
            None,
        )
        .await;
    }
    let head_only = method == http::Method::HEAD;
    let body = ctx.snap.keyset.clone();
    let mut head = ResponseHeader::build(200, Some(4))?;
    head.insert_header("content-type", crate::keyset::CONTENT_TYPE)?;
    head.insert_header("cache-control", crate::keyset::CACHE_CONTROL)?;
    head.insert_header("content-length", body.len().to_string())?;
    head.insert_header("x-request-id", ctx.request_id.as_str())?;
    ctx.reason = PUBLIC_KEYS;
    session
        .write_response_header(Box::new(head), head_only)
        .await?;
    if !head_only {
        session.write_response_body(Some(body), true).await?;
    }
    Ok(())
}

/// The error type of a failed envelope signature: `fail_to_proxy` answers
/// it with 503, and nothing is forwarded.
const ENVELOPE_SIGNING_FAILED: &str = "envelope_signing_failed";

/// The envelope for an authorized request. A failed signature is logged and
/// becomes an error, never a request forwarded with an empty envelope.
fn sign_envelope(
    signer: &EnvelopeSigner,
    who: &Authorized<Authenticated>,
    target: &Target<'_>,
    now: u64,
) -> Result<EnvelopeHeaders> {
    signer.sign(who, target, now).map_err(|e| {
        tracing::error!(
            request_id = %target.request_id,
            error = %e,
            "identity envelope not signed; refusing with 503"
        );
        Error::explain(
            ErrorType::Custom(ENVELOPE_SIGNING_FAILED),
            "identity envelope not signed",
        )
    })
}

/// The transaction token for an authorized request, like [`sign_envelope`]:
/// a failure is logged and becomes an error, never a request forwarded
/// without its token.
fn sign_txn_token(
    signer: &EnvelopeSigner,
    who: &Authorized<Authenticated>,
    request: &TxnRequest<'_>,
    now: u64,
) -> Result<String> {
    signer.sign_txn_token(who, request, now).map_err(|e| {
        tracing::error!(
            request_id = %request.target.request_id,
            error = %e,
            "transaction token not signed; refusing with 503"
        );
        Error::explain(
            ErrorType::Custom(ENVELOPE_SIGNING_FAILED),
            "transaction token not signed",
        )
    })
}

/// Whether `request` already goes out as the origin-form target `path`
/// with `query`: the bytes on the wire (not only the parsed URI) are those.
fn is_origin_form_of(request: &RequestHeader, path: &str, query: Option<&str>) -> bool {
    if request.uri.scheme().is_some() || request.uri.authority().is_some() {
        return false;
    }
    let wire = request.raw_path();
    let Some(rest) = wire.strip_prefix(path.as_bytes()) else {
        return false;
    };
    match query {
        None => rest.is_empty(),
        Some(q) => rest.first() == Some(&b'?') && &rest[1..] == q.as_bytes(),
    }
}

/// Whether an upstream error came from TLS with the service: a failed
/// handshake (a certificate its roots or its name do not vouch for, a
/// client certificate it refused under TLS 1.2), or an alert it sent after
/// the handshake (a TLS 1.3 server refuses a missing or unknown client
/// certificate only then, so it surfaces as a failed read).
fn is_tls_failure(e: &Error) -> bool {
    tls_failure_within(e, CAUSE_DEPTH)
}

fn tls_failure_within(e: &Error, depth: u8) -> bool {
    matches!(
        e.etype(),
        ErrorType::TLSHandshakeFailure
            | ErrorType::InvalidCert
            | ErrorType::HandshakeError
            | ErrorType::TLSWantX509Lookup
    ) || e.cause.as_deref().is_some_and(|c| cause_is_tls(c, depth))
}

/// How deep [`is_tls_failure`] looks into the causes of an error.
const CAUSE_DEPTH: u8 = 8;

/// Whether rustls is somewhere down `cause`: Pingora nests its own errors
/// (boxed, as context is added) and rustls's arrive inside io errors.
fn cause_is_tls(cause: &(dyn std::error::Error + 'static), depth: u8) -> bool {
    let Some(depth) = depth.checked_sub(1) else {
        return false;
    };
    if cause.is::<rustls::Error>() {
        return true;
    }
    let nested = cause
        .downcast_ref::<Error>()
        .or_else(|| cause.downcast_ref::<Box<Error>>().map(|b| &**b));
    if let Some(e) = nested {
        return tls_failure_within(e, depth);
    }
    if let Some(io) = cause.downcast_ref::<std::io::Error>() {
        return io.get_ref().is_some_and(|inner| cause_is_tls(inner, depth));
    }
    cause.source().is_some_and(|c| cause_is_tls(c, depth))
}

/// The `kind` of a failed upstream exchange, for
/// `stella_gateway_upstream_errors_total` and the decision log.
fn upstream_error_kind(refusal: &Refusal, e: &Error) -> &'static str {
    match refusal {
        Refusal::UpstreamUnavailable if is_tls_failure(e) => "tls",
        Refusal::UpstreamTimeout => "timeout",
        Refusal::UpstreamUnavailable => "unavailable",
        Refusal::MalformedRequest => "downstream",
        _ => "internal",
    }
}

/// The answer to a request that could not be proxied; `None` when the
/// client went away and there is nobody to answer.
fn proxy_failure(e: &Error) -> Option<Refusal> {
    Some(match e.etype() {
        ErrorType::Custom(ENVELOPE_SIGNING_FAILED) => Refusal::EnvelopeUnavailable,
        ErrorType::ConnectTimedout | ErrorType::ReadTimedout | ErrorType::WriteTimedout => {
            Refusal::UpstreamTimeout
        }
        ErrorType::InternalError => Refusal::Internal,
        _ => match e.esource() {
            pingora::ErrorSource::Upstream => Refusal::UpstreamUnavailable,
            pingora::ErrorSource::Downstream => match e.etype() {
                ErrorType::ReadError | ErrorType::WriteError | ErrorType::ConnectionClosed => {
                    return None
                }
                // A request Pingora refuses to forward, such as a
                // Connection header nominating a protected header.
                _ => Refusal::MalformedRequest,
            },
            _ => Refusal::Internal,
        },
    })
}

#[async_trait]
impl ProxyHttp for Proxy {
    type CTX = Ctx;

    fn new_ctx(&self) -> Ctx {
        crate::front::request_accepted();
        let snap = self.gateway.current();
        snap.shared.enter();
        Ctx {
            request_id: snap.shared.next_request_id(),
            snap,
            started: Instant::now(),
            route_id: None,
            service: None,
            path: None,
            query: None,
            caller: None,
            authorized: None,
            reason: "",
            tls: false,
            client: Default::default(),
            client_cert: None,
            endpoint: None,
            tried: Vec::new(),
            upstream_error: "",
            send_nonce: false,
            trace: None,
            upstream_span: None,
        }
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        if otel::enabled() {
            let req = session.req_header();
            let header =
                |name: &http::HeaderName| req.headers.get(name).and_then(|v| v.to_str().ok());
            ctx.trace = otel::server_span(
                req.method.as_str(),
                header(&TRACEPARENT),
                header(&TRACESTATE),
            );
        }
        if let Some(ssl) = session.digest().and_then(|d| d.ssl_digest.as_ref()) {
            ctx.tls = true;
            ctx.client_cert = ssl.extension.get::<ClientCert>().cloned();
        }
        let trust = ctx.snap.config.listeners.proxy_trust(ctx.tls);
        ctx.client = crate::client_addr::of_session(session, &trust.trusted_proxies);
        if ctx.snap.config.listeners.public_jwks
            && session.req_header().uri.path() == crate::keyset::PATH
        {
            Box::pin(write_keyset(session, ctx)).await?;
            return Ok(true);
        }
        // RFC 9728 documents (`gateway.protected_resources`), before routing.
        if let Some(found) = ctx
            .snap
            .resource_metadata
            .lookup(session.req_header().uri.path())
        {
            let served = crate::resource_metadata::serve(session, found, &ctx.request_id);
            match Box::pin(served).await? {
                Ok(()) => ctx.reason = RESOURCE_METADATA,
                Err(refusal) => {
                    ctx.reason = refusal.reason();
                    let algs = &ctx.snap.dpop_algs;
                    Box::pin(write_refusal(
                        session,
                        &refusal,
                        &ctx.request_id,
                        algs,
                        None,
                    ))
                    .await?;
                }
            }
            return Ok(true);
        }
        match self.decide(session, ctx).await {
            Ok(()) => Ok(false),
            Err(refusal) => {
                if ctx.reason.is_empty() {
                    ctx.reason = refusal.reason();
                }
                let metadata = ctx.snap.resource_metadata.challenge(ctx.service);
                let (id, algs) = (&ctx.request_id, &ctx.snap.dpop_algs);
                // Every answer written here is boxed (the key set, the
                // metadata, refusals): writing one is a large future, and
                // inline it would enlarge this one, which Pingora moves into
                // a box on every request (docs/performance.md).
                Box::pin(write_refusal(session, &refusal, id, algs, metadata)).await?;
                Ok(true)
            }
        }
    }

    async fn upstream_peer(&self, _session: &mut Session, ctx: &mut Ctx) -> Result<Box<HttpPeer>> {
        let Some(pool) = ctx.pool() else {
            return Error::e_explain(
                ErrorType::InternalError,
                "route names no configured service",
            );
        };
        // None: the service's names never resolved, or every address was
        // tried; fail_to_proxy answers 502 upstream_unavailable.
        let endpoint = pool.select(&ctx.tried).ok_or_else(|| {
            let mut e = Error::explain(ErrorType::ConnectNoRoute, "no upstream address to try");
            e.esource = pingora::ErrorSource::Upstream;
            e
        })?;
        let peer = Box::new(endpoint.peer.clone());
        let address = || {
            [
                KeyValue::new("server.address", endpoint.ip_text.clone()),
                KeyValue::new("server.port", i64::from(endpoint.addr.port())),
            ]
        };
        match (&ctx.trace, &ctx.upstream_span) {
            // The first try: the span starts with its attributes.
            (Some(trace), None) => {
                // Three now, the status code when the response comes.
                let mut attributes = Vec::with_capacity(4);
                attributes.push(KeyValue::new("stella.service", pool.trace_name.clone()));
                attributes.extend(address());
                ctx.upstream_span =
                    Some(trace.child_with("upstream", SpanKind::Client, attributes));
            }
            // A retry on another address: the span says the last one tried.
            (_, Some(cx)) => address().into_iter().for_each(|a| otel::set(cx, a)),
            (None, None) => {}
        }
        ctx.endpoint = Some(endpoint);
        Ok(peer)
    }

    async fn connected_to_upstream(
        &self,
        _session: &mut Session,
        reused: bool,
        _peer: &HttpPeer,
        #[cfg(unix)] _fd: std::os::unix::io::RawFd,
        #[cfg(windows)] _sock: std::os::windows::io::RawSocket,
        _digest: Option<&pingora::protocols::Digest>,
        ctx: &mut Ctx,
    ) -> Result<()> {
        if !reused {
            if let (Some(pool), Some(endpoint)) = (ctx.pool(), &ctx.endpoint) {
                pool.report_success(endpoint.addr);
            }
        }
        Ok(())
    }

    /// Nothing reached the upstream yet, so any method can go to another
    /// address; the failed one counts towards its ejection.
    fn fail_to_connect(
        &self,
        _session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut Ctx,
        mut e: Box<Error>,
    ) -> Box<Error> {
        ctx.retry_elsewhere(&mut e);
        e
    }

    /// An error after a connection was made or reused. Pingora's own rule
    /// stays: a reused connection that failed before any response is retried
    /// (on a fresh connection, any address, this one included: the pool
    /// held a connection the upstream had already closed). Beyond it, while
    /// nothing was sent to the client yet, a request the upstream could not
    /// have acted on goes to another address: any idempotent request, and
    /// any request whose head or body could not be written. This is what
    /// makes a replica's graceful restart invisible (it closes idle and
    /// just-accepted connections as it stops).
    fn error_while_proxy(
        &self,
        peer: &HttpPeer,
        session: &mut Session,
        e: Box<Error>,
        ctx: &mut Ctx,
        client_reused: bool,
    ) -> Box<Error> {
        let mut e = e.more_context(format!("Peer: {peer}"));
        let idempotent = session.req_header().method.is_idempotent();
        let replayable = !session.as_ref().retry_buffer_truncated();
        if !idempotent || !replayable {
            e.set_retry(false);
        } else {
            e.retry.decide_reuse(client_reused);
        }
        if e.retry() || !replayable || session.response_written().is_some() {
            return e;
        }
        let unsent = matches!(e.etype(), ErrorType::WriteError | ErrorType::WriteTimedout);
        let closed = matches!(
            e.etype(),
            ErrorType::ConnectionClosed | ErrorType::ReadError | ErrorType::WriteError
        );
        if closed && (idempotent || unsent) {
            ctx.retry_elsewhere(&mut e);
        }
        e
    }

    async fn upstream_request_filter(
        &self,
        _session: &mut Session,
        upstream: &mut RequestHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        let gw = &ctx.snap;
        let (Some(service), Some(path), Some(authorized)) =
            (ctx.pool().map(|p| &p.service), &ctx.path, &ctx.authorized)
        else {
            // Unreachable: request_filter answers every request it does not allow.
            return Error::e_explain(ErrorType::InternalError, "forwarding an undecided request");
        };
        // Shared with the request, not copied: the headers change below.
        let text = |v: &&HeaderValue| v.to_str().is_ok();
        let incoming_trace = upstream.headers.get(&TRACEPARENT).filter(text).cloned();
        let incoming_state = upstream.headers.get(&TRACESTATE).filter(text).cloned();
        let original_host = upstream
            .headers
            .get(http::header::HOST)
            .filter(text)
            .cloned();
        let incoming_trace = incoming_trace.as_ref().and_then(|v| v.to_str().ok());
        // The names to remove, on the stack for the usual one or two (a
        // credential, a stray forwarding header); more spill into a Vec.
        let mut strip: [Option<HeaderName>; 4] = Default::default();
        let mut more_strip = Vec::new();
        let stripped = upstream
            .headers
            .keys()
            .filter(|name| forward::is_stripped(name.as_str(), service.forward_credentials, false));
        for name in stripped {
            match strip.iter_mut().find(|slot| slot.is_none()) {
                Some(slot) => *slot = Some(name.clone()),
                None => more_strip.push(name.clone()),
            }
        }
        for name in strip.iter().flatten().chain(&more_strip) {
            upstream.remove_header(name);
        }

        // One canonical path for matching and forwarding. Most requests
        // arrive in it already (origin-form, normalized): then nothing is
        // rebuilt.
        if !is_origin_form_of(upstream, path.as_str(), ctx.query.as_deref()) {
            let uri = match &ctx.query {
                Some(q) => format!("{}?{q}", path.as_str()),
                None => path.as_str().to_owned(),
            };
            let uri = uri.parse().map_err(|_| {
                Error::explain(ErrorType::InternalError, "normalized path is not a uri")
            })?;
            upstream.set_uri(uri);
        }

        let (trace, tracestate) = match ctx.upstream_span.as_ref().and_then(otel::traceparent_of) {
            // Traces on: the upstream continues from the upstream call's
            // span (no ids of our own are made, only to be replaced).
            Some(parent) => (
                parent,
                forward::continued_state(incoming_trace, incoming_state.as_ref()),
            ),
            None => forward::next_trace(incoming_trace, incoming_state.as_ref()),
        };
        let client_ip = ctx
            .client
            .ip
            .map(crate::decision_log::address_text)
            .unwrap_or_default();

        // The identity, in the service's format (docs/design.md §3.6). The
        // default, the envelope alone, does no other work.
        let format = service.identity_format;
        let method = upstream.method.clone();
        let target = Target {
            audience: &service.name,
            method: method.as_str(),
            path: path.as_str(),
            request_id: &ctx.request_id,
        };
        let now = gw.shared.clock.now();
        let envelope = match format.sends_envelope() {
            true => sign_envelope(&gw.signer, authorized, &target, now).map(Some),
            false => Ok(None),
        };
        let txn_token = match (format.sends_txn_token(), &envelope) {
            (true, Ok(_)) => {
                let request = TxnRequest {
                    target,
                    route: ctx.route_id.as_deref().unwrap_or_default(),
                    decision: authorized.allowed().reason(),
                    client_ip: Some(client_ip.as_str()).filter(|ip| !ip.is_empty()),
                };
                sign_txn_token(&gw.signer, authorized, &request, now).map(Some)
            }
            _ => Ok(None),
        };
        let (envelope, txn_token) = match (envelope, txn_token) {
            (Ok(envelope), Ok(txn_token)) => (envelope, txn_token),
            (Err(e), _) | (_, Err(e)) => {
                ctx.reason = Refusal::EnvelopeUnavailable.reason();
                return Err(e);
            }
        };

        let added = Added {
            forwarded_for: client_ip,
            forwarded_proto: match ctx.client.scheme {
                Some(scheme) => scheme.as_str(),
                None if ctx.tls => "https",
                None => "http",
            },
            forwarded_host: original_host,
            request_id: ctx.request_id.clone(),
            traceparent: trace,
            tracestate,
        };
        // Room for every header added, in one step (not one growth of both
        // header maps at a time).
        upstream.reserve_headers(forward::MAX_ADDED);
        let made = |text: String| {
            forward::made_value(text).or_err(
                ErrorType::InvalidHTTPHeader,
                "a header value the gateway made",
            )
        };
        for (name, value) in added.into_pairs() {
            let value = match value {
                forward::Value::Made(text) => made(text)?,
                forward::Value::Kept(value) => value,
            };
            upstream.insert_header(name, value)?;
        }
        let names = &*forward::NAMES;
        if let Some(envelope) = envelope {
            for ((_, value), name) in envelope.into_pairs().into_iter().zip(&names.envelope) {
                upstream.insert_header(name, made(value)?)?;
            }
        }
        if let Some(token) = txn_token {
            upstream.insert_header(&names.txn_token, made(token)?)?;
        }
        Ok(())
    }

    async fn response_filter(
        &self,
        _session: &mut Session,
        response: &mut ResponseHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        response.insert_header(&forward::NAMES.request_id, ctx.request_id.as_str())?;
        if let Some(cx) = &ctx.upstream_span {
            otel::set(
                cx,
                KeyValue::new(
                    "http.response.status_code",
                    i64::from(response.status.as_u16()),
                ),
            );
        }
        if ctx.send_nonce {
            if let Some(nonce) = ctx.snap.authn.fresh_nonce() {
                response.insert_header("dpop-nonce", nonce)?;
            }
        }
        Ok(())
    }

    async fn fail_to_proxy(&self, session: &mut Session, e: &Error, ctx: &mut Ctx) -> FailToProxy {
        let Some(refusal) = proxy_failure(e) else {
            // The client went away: nobody to answer.
            ctx.reason = crate::decision_log::catalogue::DOWNSTREAM_CLOSED;
            return FailToProxy {
                error_code: 0,
                can_reuse_downstream: false,
            };
        };
        // A failed envelope signature is the gateway's fault, not the
        // upstream's: it has its own decision reason and error log line.
        let upstream_failed = refusal != Refusal::EnvelopeUnavailable;
        if let Some(pool) = ctx.pool().filter(|_| upstream_failed) {
            let kind = upstream_error_kind(&refusal, e);
            if kind == "tls" {
                // What rustls said (unknown issuer, name mismatch, an
                // alert from the service) is for the operator: the client
                // gets the plain 502.
                tracing::warn!(
                    request_id = %ctx.request_id,
                    service = %pool.service.name,
                    upstream = %ctx.endpoint.as_ref().map(|e| e.addr.to_string()).unwrap_or_default(),
                    error = %e,
                    "tls with the upstream failed"
                );
            }
            ctx.snap
                .metrics()
                .upstream_errors
                .with_label_values(&[pool.service.name.as_str(), kind])
                .inc();
            ctx.upstream_error = kind;
        }
        ctx.reason = refusal.reason();
        if let Some(cx) = ctx.upstream_span.as_ref().filter(|_| upstream_failed) {
            otel::set_error(cx, refusal.reason());
        }
        let status = refusal.status();
        // The connection is not reused after this answer: say so.
        session.set_keepalive(None);
        let _ = write_refusal(
            session,
            &refusal,
            &ctx.request_id,
            &ctx.snap.dpop_algs,
            None,
        )
        .await;
        FailToProxy {
            error_code: status,
            can_reuse_downstream: false,
        }
    }

    async fn logging(&self, session: &mut Session, _e: Option<&Error>, ctx: &mut Ctx) {
        let status = session
            .response_written()
            .map(|r| r.status.as_u16())
            .unwrap_or(0);
        let route = ctx.route_id.as_deref().unwrap_or("none");
        let decision = if ctx.authorized.is_some()
            || ctx.reason == PUBLIC_KEYS
            || ctx.reason == RESOURCE_METADATA
        {
            "allow"
        } else {
            "deny"
        };
        let m = ctx.snap.metrics();
        m.requests
            .with_label_values(&[route, decision, status_label(status)])
            .inc();
        let elapsed = ctx.started.elapsed();
        m.latency
            .with_label_values(&[route])
            .observe(elapsed.as_secs_f64());
        if decision == "deny" {
            m.refusals.with_label_values(&[route, ctx.reason]).inc();
        }
        let claims = ctx.caller.as_ref().and_then(Caller::claims);
        let cnf = ctx
            .caller
            .as_ref()
            .and_then(|c| match c.claims().map(|c| c.binding()) {
                Some(Binding::Jkt(t)) | Some(Binding::X5tS256(t)) => Some(t.as_str()),
                _ => None,
            });
        let upstream = ctx.endpoint.as_ref().map(|e| e.addr);
        crate::decision_log::log(&crate::decision_log::Decision {
            request_id: &ctx.request_id,
            route,
            service: ctx
                .pool()
                .map(|p| p.service.name.as_str())
                .unwrap_or("none"),
            method: session.req_header().method.as_str(),
            decision,
            status,
            reason: ctx.reason,
            auth_method: ctx
                .caller
                .as_ref()
                .map(|c| c.auth_method().as_str())
                .unwrap_or("none"),
            tenant: claims.and_then(|c| c.tenant()).unwrap_or(""),
            client_id: claims.and_then(|c| c.client_id()).unwrap_or(""),
            cnf: cnf.unwrap_or(""),
            client: ctx.client.ip,
            upstream,
            upstream_error: ctx.upstream_error,
            latency_us: elapsed.as_micros() as u64,
        });
        if let Some(trace) = ctx.trace.take() {
            if let Some(cx) = ctx.upstream_span.take() {
                otel::end(&cx);
            }
            let request_id = std::mem::take(&mut ctx.request_id);
            trace.finish(otel::Summary {
                route: ctx
                    .route_id
                    .clone()
                    .unwrap_or_else(|| std::sync::Arc::from(route)),
                service: ctx
                    .pool()
                    .map(|p| p.trace_name.clone())
                    .unwrap_or_else(|| std::sync::Arc::from("none")),
                decision,
                reason: ctx.reason,
                auth_method: ctx
                    .caller
                    .as_ref()
                    .map(|c| c.auth_method().as_str())
                    .unwrap_or("none"),
                status,
                request_id,
            });
        }
    }
}

mod decide;
mod shape;

use shape::{request_shape, status_label};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::MissingAuthorization;
    use crate::response::DPOP_ALGS;
    use stella_authn::Authenticated;
    use stella_core::identity::TokenClaims;
    use stella_envelope::{AuthMethod, Key, KeyId, Signer};
    use stella_policy::Requirements;

    const NOW: u64 = 1_800_000_000;

    fn signer() -> Signer {
        let key = Key::parse(
            KeyId::new("k1").unwrap(),
            "hs256:c3RlbGxhLWUyZS1zZWNvbmQtZW52ZWxvcGUta2V5LW5vdC1mb3ItcHJvZHVjdGlvbg",
        )
        .unwrap();
        Signer::new(key, "gw-test", 60).unwrap()
    }

    fn authorized() -> Authorized<Authenticated> {
        let caller = Caller::Token {
            claims: Arc::new(TokenClaims::for_tests("ann", &["read"])),
            method: AuthMethod::Bearer,
        };
        authorize(
            &RouteTarget::for_tests(Some(Requirements::Anonymous)),
            &normalize_path(b"/items/1").expect("a plain path"),
            Authenticated::for_tests(caller),
            MissingAuthorization::Deny,
        )
        .expect("an anonymous route allows")
    }

    const TARGET: Target<'static> = Target {
        audience: "echo",
        method: "GET",
        path: "/items/1",
        request_id: "req-1",
    };

    #[test]
    fn an_authorized_caller_gets_a_signed_envelope_with_its_identity() {
        let who = authorized();
        let headers =
            sign_envelope(&EnvelopeSigner::new(signer()), &who, &TARGET, NOW).expect("signed");
        assert!(!headers.signature.is_empty());
        assert_eq!(headers.kid, "k1");
        assert_eq!(
            who.authenticated().identity().subject.as_deref(),
            Some("ann")
        );
    }

    #[test]
    fn a_failed_envelope_signature_is_a_503_problem_never_an_empty_header() {
        let broken = EnvelopeSigner::broken_for_tests(signer());
        let e = sign_envelope(&broken, &authorized(), &TARGET, NOW).unwrap_err();
        let refusal = proxy_failure(&e).expect("the client is still there");
        assert_eq!(refusal, Refusal::EnvelopeUnavailable);
        assert_eq!(refusal.reason(), "envelope_signing_failed");
        let reply = refusal.reply_with_algs("req-1", DPOP_ALGS);
        assert_eq!(reply.status, 503);
        let header = |name: &str| {
            reply
                .headers
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(header("content-type"), Some("application/problem+json"));
        assert_eq!(header("retry-after"), Some("5"));
        let body: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
        assert_eq!(body["status"], 503);
        assert_eq!(body["error"], "temporarily_unavailable");
    }

    #[test]
    fn a_failed_or_missing_transaction_token_is_a_503_never_a_request_without_it() {
        let request = TxnRequest {
            target: TARGET,
            route: "echo-items-read",
            decision: "anonymous",
            client_ip: None,
        };
        let broken = EnvelopeSigner::broken_for_tests(signer());
        let e = sign_txn_token(&broken, &authorized(), &request, NOW).unwrap_err();
        assert_eq!(proxy_failure(&e), Some(Refusal::EnvelopeUnavailable));
        // A signer without a token key for the service (unreachable through
        // configuration, which builds one for every txn-token service).
        let plain = EnvelopeSigner::new(signer());
        let e = sign_txn_token(&plain, &authorized(), &request, NOW).unwrap_err();
        assert_eq!(proxy_failure(&e), Some(Refusal::EnvelopeUnavailable));
    }

    #[test]
    fn other_proxy_failures_keep_their_answers() {
        let e = |t: ErrorType| Error::explain(t, "test");
        assert_eq!(
            proxy_failure(&e(ErrorType::InternalError)),
            Some(Refusal::Internal)
        );
        assert_eq!(
            proxy_failure(&e(ErrorType::ConnectTimedout)),
            Some(Refusal::UpstreamTimeout)
        );
        let mut gone = e(ErrorType::ConnectionClosed);
        gone.esource = pingora::ErrorSource::Downstream;
        assert_eq!(proxy_failure(&gone), None);
    }

    #[test]
    fn tls_failures_with_the_upstream_are_a_502_of_kind_tls() {
        let upstream = |t: ErrorType| {
            let mut e = Error::explain(t, "test");
            e.esource = pingora::ErrorSource::Upstream;
            e
        };
        // A handshake the service's certificate failed.
        let handshake = upstream(ErrorType::TLSHandshakeFailure);
        let refusal = proxy_failure(&handshake).unwrap();
        assert_eq!(refusal, Refusal::UpstreamUnavailable);
        assert_eq!(refusal.reason(), "upstream_unavailable");
        assert_eq!(upstream_error_kind(&refusal, &handshake), "tls");
        // An alert after a TLS 1.3 handshake: a read error whose cause is
        // rustls's, wrapped in an io error.
        let mut alert = upstream(ErrorType::ReadError);
        alert.cause = Some(Box::new(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::AlertReceived(rustls::AlertDescription::CertificateRequired),
        )));
        let refusal = proxy_failure(&alert).unwrap();
        assert_eq!(upstream_error_kind(&refusal, &alert), "tls");
        // The same alert as Pingora reports it once it added its context:
        // the read error boxed inside another.
        let mut inner = Error::explain(ErrorType::ReadError, "while reading response headers");
        inner.cause = alert.cause.take();
        let mut outer = upstream(ErrorType::ReadError);
        outer.cause = Some(Box::new(inner));
        let refusal = proxy_failure(&outer).unwrap();
        assert_eq!(upstream_error_kind(&refusal, &outer), "tls");
        // Other failures keep their kinds.
        let refused = upstream(ErrorType::ConnectRefused);
        let refusal = proxy_failure(&refused).unwrap();
        assert_eq!(upstream_error_kind(&refusal, &refused), "unavailable");
        let slow = upstream(ErrorType::ConnectTimedout);
        let refusal = proxy_failure(&slow).unwrap();
        assert_eq!(refusal, Refusal::UpstreamTimeout);
        assert_eq!(upstream_error_kind(&refusal, &slow), "timeout");
    }
}
