//! What a request must look like before any stage looks at it, and the
//! bounded status labels of the metrics.

use super::*;

/// Refuses what Pingora's parser lets through but a gateway must not
/// forward: more header fields than configured (431), more than one `Host`
/// (RFC 9112 section 3.2), an absolute-form target (the route is chosen on
/// the origin-form path and `Host` only), and `Content-Length` beside
/// `Transfer-Encoding` (RFC 9112 section 6.1: Pingora drops the length and
/// forwards the body chunked, but the two disagreeing is a smuggling
/// attempt, not a client mistake).
pub(super) fn request_shape(
    session: &Session,
    limits: &crate::config::Limits,
) -> std::result::Result<(), Refusal> {
    let req = session.req_header();
    if req.headers.len() > limits.max_request_headers {
        return Err(Refusal::RequestHeaderFieldsTooLarge);
    }
    if req
        .headers
        .get_all(http::header::HOST)
        .iter()
        .nth(1)
        .is_some()
    {
        return Err(Refusal::MalformedRequestShape {
            reason: "duplicate_host",
        });
    }
    // HTTP/2 requests carry `:scheme` and `:authority`, so their target is
    // absolute by construction; only an HTTP/1 request line can be refused.
    let http1 = session.as_downstream().as_http1();
    if http1.is_some() && (req.uri.scheme().is_some() || req.uri.authority().is_some()) {
        return Err(Refusal::MalformedRequestShape {
            reason: "absolute_form_target",
        });
    }
    if req.headers.contains_key(http::header::TRANSFER_ENCODING) {
        // Pingora removed the Content-Length field; the raw head still has it.
        let raw = http1.map(|h1| h1.get_headers_raw_bytes());
        if raw.is_some_and(|raw| raw_has_field(&raw, b"content-length")) {
            return Err(Refusal::MalformedRequestShape {
                reason: "ambiguous_framing",
            });
        }
    }
    Ok(())
}

/// Whether a raw request head has a field named `name` (lowercase).
fn raw_has_field(head: &[u8], name: &[u8]) -> bool {
    head.split(|&b| b == b'\n').skip(1).any(|line| {
        line.len() > name.len()
            && line[name.len()] == b':'
            && line[..name.len()].eq_ignore_ascii_case(name)
    })
}

/// Status codes as bounded metric labels.
pub(super) fn status_label(status: u16) -> &'static str {
    match status {
        200 => "200",
        201 => "201",
        204 => "204",
        301 => "301",
        302 => "302",
        304 => "304",
        400 => "400",
        401 => "401",
        403 => "403",
        404 => "404",
        405 => "405",
        429 => "429",
        500 => "500",
        502 => "502",
        503 => "503",
        504 => "504",
        0 => "none",
        s if s < 200 => "1xx",
        s if s < 300 => "2xx",
        s if s < 400 => "3xx",
        s if s < 500 => "4xx",
        _ => "5xx",
    }
}
