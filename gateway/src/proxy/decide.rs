//! The decision for one request: path, route, credential, authentication,
//! policy (and its shadow), the DPoP proof's replay entry, and the envelope
//! the upstream gets. Each stage is a call into its crate; refusals go
//! through `response.rs`.

use super::*;

impl Proxy {
    /// The route, identity and decision for a request; `Err` is the answer.
    pub(super) async fn decide(
        &self,
        session: &Session,
        ctx: &mut Ctx,
    ) -> std::result::Result<(), Refusal> {
        request_shape(session, &ctx.snap.config.limits)?;
        let req = session.req_header();
        let target = req
            .uri
            .path_and_query()
            .map(|pq| pq.as_str())
            .unwrap_or("/");
        let (raw_path, query) = split_path_query(target.as_bytes());
        let path = normalize_path(raw_path).map_err(|e| Refusal::BadPath { code: e.code() })?;
        if query.is_some_and(forward::query_has_access_token) {
            return Err(Refusal::TokenInQuery);
        }
        ctx.query = query.map(|q| String::from_utf8_lossy(q).into_owned());
        let host = req.uri.host().or_else(|| {
            req.headers
                .get(http::header::HOST)
                .and_then(|h| h.to_str().ok())
        });
        let gw = ctx.snap.clone();
        let route = match gw.policies.lookup(host, req.method.as_str(), &path) {
            Lookup::Matched(route) => route,
            Lookup::MethodNotAllowed { allowed } => {
                return Err(Refusal::MethodNotAllowed {
                    allowed: allowed.iter().map(|m| m.to_string()).collect(),
                })
            }
            Lookup::NotFound => return Err(Refusal::NoRoute),
        };
        let target: &RouteTarget = route.value();
        ctx.route_id = Some(target.route_id.clone());
        ctx.service = gw.service_index(&target.service);

        let (mut authorization, mut dpop) = ([&[][..]; 2], [&[][..]; 2]);
        let credential = presented(
            header_values(req, &http::header::AUTHORIZATION, &mut authorization),
            header_values(req, &DPOP, &mut dpop),
        )
        .map_err(Refusal::from)?;
        // A token's cache key is remembered per connection (the same token
        // comes again on a keep-alive connection).
        let connection = match credential {
            stella_authn::presented::Presented::None => None,
            _ => crate::front::connection(),
        };
        let facts = RequestFacts {
            method: req.method.as_str(),
            path: &path,
            query: ctx.query.as_deref(),
            tls: ctx.tls,
            client_cert: ctx.client_cert.as_ref().map(|c| PresentedCertificate {
                thumbprint: &c.thumbprint,
                spiffe_id: c.spiffe.as_ref().ok().and_then(|id| id.as_deref()),
            }),
            dpop_nonce_required: &|tenant| target.requires_dpop_nonce(tenant),
            token_keys: connection.as_ref().map(|c| c.token_keys()),
        };
        let auth_span = ctx
            .trace
            .as_ref()
            .map(|t| t.child("authenticate", SpanKind::Internal));
        // Awaited in place (not through `otel::run_in`, whose future holds
        // this one twice): the request's future is moved into a box on
        // every request, so its size is copied each time.
        let authenticate = gw.authn.authenticate(credential, &facts);
        let authenticated = match auth_span.as_ref() {
            None => authenticate.await,
            Some(cx) => authenticate.with_context(cx.clone()).await,
        };
        let authenticated = authenticated.map_err(|e| {
            if let AuthnError::Revoked(hit) = &e {
                // Which entry refused it, by the value's hash: never the
                // value itself.
                tracing::warn!(
                    request_id = %ctx.request_id,
                    route = %target.route_id,
                    kind = hit.kind.as_str(),
                    value_sha256 = &hit.value_sha256[..stella_authn::revocation::HASH_PREFIX_LEN],
                    "request refused: the caller's identity is revoked"
                );
            }
            Refusal::from(e)
        });
        if let Some(cx) = &auth_span {
            otel::set(
                cx,
                match &authenticated {
                    Ok(a) => KeyValue::new("stella.auth_method", a.caller().auth_method().as_str()),
                    Err(refusal) => KeyValue::new("stella.reason", refusal.reason()),
                },
            );
            otel::end(cx);
        }
        let mut authenticated = authenticated?;
        let proof = authenticated.take_proof();
        let caller = authenticated.caller();
        ctx.send_nonce = caller.auth_method() == stella_envelope::AuthMethod::Dpop
            && target.requires_dpop_nonce(caller.claims().and_then(|c| c.tenant()));
        ctx.caller = Some(caller.clone());
        let shadow = decide_shadow(
            target,
            &path,
            caller,
            CallerIdentity::of(caller)
                .with_certificate_spiffe_id(authenticated.confirmation().spiffe_id.as_deref()),
            gw.config.on_missing_authorization,
        );
        let decision = authorize(
            target,
            &path,
            authenticated,
            gw.config.on_missing_authorization,
        );
        if let Some(shadow) = shadow {
            let enforced = match &decision {
                Ok(a) => (true, a.allowed().reason()),
                Err(d) => (false, d.reason()),
            };
            record_shadow(&gw, &ctx.request_id, &target.route_id, enforced, &shadow);
        }
        ctx.path = Some(path);
        match decision {
            Ok(authorized) => {
                // Only now is the proof recorded: a request the policy
                // refuses never takes a replay entry.
                if let Some(proof) = proof {
                    let span = ctx
                        .trace
                        .as_ref()
                        .map(|t| t.child("replay_store", SpanKind::Internal));
                    let spent = gw.authn.spend_proof(proof).await.map_err(Refusal::from);
                    if let Some(cx) = &span {
                        let result = match &spent {
                            Ok(()) => "fresh",
                            Err(refusal) => refusal.reason(),
                        };
                        otel::set(cx, KeyValue::new("stella.replay.result", result));
                        otel::end(cx);
                    }
                    spent?;
                }
                let allowed = authorized.allowed();
                if allowed.used_bypass() {
                    gw.metrics().dpop_bypass.inc();
                    tracing::warn!(
                        request_id = %ctx.request_id,
                        route = %target.route_id,
                        client_id = ctx.caller.as_ref().and_then(Caller::claims).and_then(|c| c.client_id()).unwrap_or(""),
                        "emergency bypass: sender constraint not proven, request let through"
                    );
                }
                ctx.reason = allowed.reason();
                ctx.authorized = Some(authorized);
                Ok(())
            }
            Err(denial) => {
                ctx.reason = denial.reason();
                Err(Refusal::from(denial))
            }
        }
    }
}

/// Counts a shadow policy's decision beside the enforced one, and logs it
/// when the two differ (what the shadow policy would change if enforced).
fn record_shadow(
    gw: &Snapshot,
    request_id: &str,
    route: &str,
    (enforced_allow, enforced_reason): (bool, &'static str),
    shadow: &Decision,
) {
    let label = |allow: bool| if allow { "allow" } else { "deny" };
    gw.metrics()
        .shadow_decisions
        .with_label_values(&[route, label(enforced_allow), label(shadow.is_allow())])
        .inc();
    if enforced_allow != shadow.is_allow() {
        tracing::info!(
            target: "stella_gateway::shadow",
            request_id,
            route,
            enforced = label(enforced_allow),
            enforced_reason,
            shadow = label(shadow.is_allow()),
            shadow_status = shadow.status(),
            shadow_reason = shadow.reason(),
            "shadow policy decides otherwise"
        );
    }
}
