//! The envelope layer over a reloadable configuration: each request is
//! decided and served with the one configuration it started with, whatever
//! reloads happen while it is in flight.
#![cfg(feature = "axum")]

use axum::body::Body;
use axum::routing::get;
use axum::Router;
use http::{Request, StatusCode};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use stella_envelope::middleware::{EnvelopeLayer, RequestConfig};
use stella_envelope::{ReloadOutcome, ServiceConfigHandle};
use tokio::sync::{mpsc, Mutex};
use tower::Service;

const SECRET: &str = "a-shared-secret-of-at-least-32-bytes!";

fn write_mode(file: &PathBuf, mode: &str) {
    let tmp = file.with_extension("tmp");
    std::fs::write(&tmp, format!("Router__AuthorizationTrustMode={mode}\n")).unwrap();
    std::fs::rename(&tmp, file).unwrap();
}

async fn body_text(response: axum::response::Response) -> String {
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 16)
        .await
        .unwrap();
    String::from_utf8(bytes.to_vec()).unwrap()
}

#[tokio::test]
async fn a_request_in_flight_keeps_the_config_it_started_with() {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let dir = std::env::temp_dir().join(format!(
        "stella-envelope-inflight-{}-{nanos}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("envelope.env");
    write_mode(&file, "ServiceEnforced");
    let env: HashMap<String, String> = [
        ("Router__IdentityEnvelopeSigningKey", SECRET),
        ("Router__IdentityEnvelopeAudience", "orders"),
        ("Router__ConfigFile", file.to_str().unwrap()),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let handle = Arc::new(ServiceConfigHandle::load(env).unwrap());

    // The handler says it has started, then waits to be released.
    let (started_tx, mut started) = mpsc::channel::<()>(1);
    let (release, release_rx) = mpsc::channel::<()>(1);
    let release_rx = Arc::new(Mutex::new(release_rx));
    let app = Router::new()
        .route(
            "/slow",
            get(move |RequestConfig(config): RequestConfig| {
                let started_tx = started_tx.clone();
                let release_rx = release_rx.clone();
                async move {
                    let _ = started_tx.send(()).await;
                    release_rx.lock().await.recv().await;
                    config.mode.to_string()
                }
            }),
        )
        .route(
            "/fast",
            get(|RequestConfig(config): RequestConfig| async move { config.mode.to_string() }),
        )
        .layer(EnvelopeLayer::from_handle(handle.clone()));

    // No envelope: ServiceEnforced lets it through to the handler.
    let mut service = app.clone();
    let in_flight = tokio::spawn(async move {
        service
            .call(Request::get("/slow").body(Body::empty()).unwrap())
            .await
    });
    tokio::time::timeout(Duration::from_secs(10), started.recv())
        .await
        .expect("the slow request reaches its handler")
        .unwrap();

    write_mode(&file, "GatewayEnforced");
    assert_eq!(
        handle.reload(),
        Ok(ReloadOutcome::Applied { generation: 2 })
    );
    // A new request is decided with the new configuration...
    let fresh = app
        .clone()
        .call(Request::get("/fast").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(fresh.status(), StatusCode::UNAUTHORIZED);
    assert!(body_text(fresh).await.contains("envelope_required"));

    // ...while the one in flight finishes with the one it started with.
    release.send(()).await.unwrap();
    let response = in_flight.await.unwrap().unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(body_text(response).await, "ServiceEnforced");

    let _ = std::fs::remove_dir_all(&dir);
}
