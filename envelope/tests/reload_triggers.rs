//! The file trigger: a change of the file `Router__ConfigFile` names reloads
//! the configuration, whether the file is replaced by rename (editors,
//! Kubernetes) or rewritten in place.
#![cfg(feature = "reload")]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use stella_envelope::reload::{spawn_reload_triggers_with, TriggerOptions};
use stella_envelope::{ServiceConfigHandle, TrustMode};

const SECRET: &str = "a-shared-secret-of-at-least-32-bytes!";

async fn wait_for_generation(handle: &ServiceConfigHandle, generation: u64) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if handle.status().generation >= generation {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

#[tokio::test]
async fn changes_of_the_config_file_reload_without_a_signal() {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let dir = std::env::temp_dir().join(format!(
        "stella-envelope-watch-{}-{nanos}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("envelope.env");
    let mode = |m: &str| format!("Router__AuthorizationTrustMode={m}\n");
    std::fs::write(&file, mode("GatewayEnforced")).unwrap();
    let env: HashMap<String, String> = [
        ("Router__IdentityEnvelopeSigningKey", SECRET),
        ("Router__IdentityEnvelopeAudience", "orders"),
        ("Router__ConfigFile", file.to_str().unwrap()),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let handle = Arc::new(ServiceConfigHandle::load(env).unwrap());
    let triggers = spawn_reload_triggers_with(
        handle.clone(),
        TriggerOptions {
            sighup: false,
            watch_file: true,
            debounce: Duration::from_millis(50),
        },
    )
    .unwrap();
    assert_eq!(triggers.watched_file(), Some(file.as_path()));

    // Replaced by rename, as editors and Kubernetes volumes do.
    let tmp = dir.join("envelope.env.tmp");
    std::fs::write(&tmp, mode("Hybrid")).unwrap();
    std::fs::rename(&tmp, &file).unwrap();
    assert!(wait_for_generation(&handle, 2).await, "rename not seen");
    assert_eq!(handle.current().mode, TrustMode::Hybrid);

    // Rewritten in place (the new file's watch was moved to it).
    std::fs::write(&file, mode("ServiceEnforced")).unwrap();
    assert!(
        wait_for_generation(&handle, 3).await,
        "in-place write not seen"
    );
    assert_eq!(handle.current().mode, TrustMode::ServiceEnforced);

    // Other files in the directory do not count: a bad one changes nothing.
    std::fs::write(dir.join("other.env"), "not a config file").unwrap();
    std::fs::write(&file, mode("GatewayEnforced")).unwrap();
    assert!(wait_for_generation(&handle, 4).await);
    assert!(handle.status().last_errors.is_none());

    triggers.abort();
    let _ = std::fs::remove_dir_all(&dir);
}
