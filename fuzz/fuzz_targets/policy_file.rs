//! Policy-file loading (`policy::Policies::from_files`: YAML, the file
//! format, compilation into a route table).
//!
//! Input: the text of one policy file (invalid UTF-8 read lossily). It is
//! compiled alone, alone with `echo` as the only known service, and next to
//! the shipped `policies/echo.yaml`.
//!
//! Besides "never panics": every refusal names a key path in the file, and
//! a file that compiles alone yields routes with ids and patterns that
//! parse again.

#![no_main]

use libfuzzer_sys::fuzz_target;
use stella_policy::{Policies, SourceFile};
use stella_routing::PathPattern;

const ECHO: &str = include_str!("../../policies/echo.yaml");

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let file = SourceFile::new("fuzz.yaml", text.as_ref());
    match Policies::from_files(std::slice::from_ref(&file), None) {
        Ok(policies) => {
            for route in policies.routes().iter() {
                assert!(!route.id().is_empty());
                assert_eq!(
                    PathPattern::parse(route.pattern().as_str()).as_ref(),
                    Ok(route.pattern())
                );
                let target = route.value();
                let _ = (target.requires_dpop_nonce(None), &target.service);
            }
            let _ = policies.global_tenant_rules().iter().count();
        }
        Err(errors) => {
            assert!(!errors.is_empty());
            for e in &errors {
                assert!(e.path.starts_with("fuzz.yaml"), "{e}");
                let _ = e.to_string();
            }
        }
    }
    let services = ["echo".to_owned()];
    let _ = Policies::from_files(std::slice::from_ref(&file), Some(&services));
    let _ = Policies::from_files(&[SourceFile::new("echo.yaml", ECHO), file], None);
});
