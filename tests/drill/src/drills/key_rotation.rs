//! Rotate the envelope signing key from k1 to k2 in three waves under
//! constant load, with zero failed requests
//! (runbooks/envelope-key-rotation.md):
//! 1. services accept k1 and k2 (their `Router__` file, SIGHUP);
//! 2. the gateway signs with k2 (keyring k1+k2, active k2; `stella-gateway reload`);
//! 3. services drop k1 (their `Router__` file, SIGHUP);
//! 4. the gateway drops k1 (keyring k2 only; SIGHUP);
//!
//! then an envelope signed with k1 is refused by a service (401) and one
//! signed with k2 is accepted.

use crate::harness::Outcome;
use crate::stack::{get_json, kids_of, status_at, Envelope};
use crate::Drill;
use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

const INSTANCES: [&str; 3] = ["echo", "echo-hybrid", "echo-legacy"];
const APPLIED: [(&str, &str); 1] = [("result", "applied")];

pub fn run(d: &mut Drill) -> Outcome {
    d.new_key("k1")?;
    d.new_key("k2")?;
    d.stack.envelope = Some(Envelope::Ring("k1".into(), vec![("k1".into(), false)]));
    // Short envelope lifetime and service clock skew, so that "no envelope
    // signed with k1 can still arrive" (lifetime + skew after wave 2) is 15 s.
    d.stack.envelope_lifetime = 10;
    d.stack.service_skew = Some(5);
    d.stack_up()?;

    let config = d.admin_json("/config");
    if config["envelope"]["active_kid"] != "k1" {
        return d.run.abort(format!(
            "gateway /config before the rotation: {config} (wanted active_kid k1)"
        ));
    }
    d.run
        .ok(format!("gateway signs with k1: {}", config["envelope"]));
    let applied_before = d.metric("stella_gateway_config_reloads_total", &APPLIED);

    d.load_start(d.default_kinds())?;
    d.step("baseline");
    d.hold()?;

    d.step("wave1-services-accept-k2");
    accept(d, &["k1", "k2"])?;
    d.hold()?;

    d.step("wave2-gateway-signs-k2");
    d.stack.envelope = Some(Envelope::Ring(
        "k2".into(),
        vec![("k1".into(), false), ("k2".into(), true)],
    ));
    d.write_gateway_config()?;
    d.reload_command()?;
    let config = d.admin_json("/config");
    if config["envelope"]["active_kid"] != "k2" {
        return d.run.abort(format!(
            "gateway /config after wave 2: {config} (wanted active_kid k2)"
        ));
    }
    d.run.ok(format!("gateway /config: {}", config["envelope"]));
    let wave2_at = Instant::now();
    for path in ["/items/1", "/hybrid/1"] {
        match d
            .run
            .wait_for(Duration::from_secs(5), || seen_kid(d, path) == "k2")
        {
            Some(ms) => d
                .run
                .ok(format!("requests to {path} carry kid k2 (after {ms} ms)")),
            None => {
                let kid = seen_kid(d, path);
                return d
                    .run
                    .abort(format!("a request to {path} carries kid '{kid}', not k2"));
            }
        }
    }
    d.hold()?;

    // Wave 3 waits until envelopes signed with k1 have expired: the envelope
    // lifetime plus the services' clock skew (15 s) after wave 2. (With
    // --short the step is shorter; nothing here holds an envelope past its
    // request.)
    d.step("wave3-services-drop-k1");
    let expired = Duration::from_secs(15);
    if !d.run.short && wave2_at.elapsed() < expired {
        std::thread::sleep(expired - wave2_at.elapsed());
    }
    accept(d, &["k2"])?;
    d.hold()?;

    d.step("retire-k1-at-gateway");
    d.stack.envelope = Some(Envelope::Ring("k2".into(), vec![("k2".into(), true)]));
    d.write_gateway_config()?;
    d.signal_gateway("HUP");
    let only_k2 = || kids_of(&d.admin_json("/config")["envelope"]["kids"]) == ["k2"];
    match d.run.wait_for(Duration::from_secs(5), only_k2) {
        Some(ms) => d.run.ok(format!(
            "SIGHUP: gateway keyring is k2 only after {ms} ms: {}",
            d.admin_json("/config")["envelope"]
        )),
        None => {
            return d.run.abort(format!(
                "gateway /config after SIGHUP: {}",
                d.admin_json("/config")
            ))
        }
    }
    for s in ["echo", "echo-hybrid"] {
        let got = direct_status(d, "k1", s)?;
        d.run.check(
            got == 401,
            format!("{s} refuses an envelope signed with k1: 401"),
            format!("{s} answered {got} to an envelope signed with the retired k1 (wanted 401)"),
        );
        let got = direct_status(d, "k2", s)?;
        d.run.check(
            got == 200,
            format!("{s} accepts an envelope signed with k2: 200"),
            format!("{s} answered {got} to an envelope signed with k2 (wanted 200)"),
        );
    }
    let applied = d.metric("stella_gateway_config_reloads_total", &APPLIED);
    d.run.check(
        applied >= applied_before + 2.0,
        format!("stella_gateway_config_reloads_total{{result=\"applied\"}}: {applied_before} -> {applied}"),
        format!("stella_gateway_config_reloads_total{{result=\"applied\"}} went {applied_before} -> {applied} (wanted +2)"),
    );
    d.hold()
}

/// Every instance accepts exactly these kids (its file, SIGHUP).
fn accept(d: &mut Drill, kids: &[&str]) -> Outcome {
    for s in INSTANCES {
        if let Some(service) = d.stack.services.get_mut(s) {
            service.accepted = kids.iter().map(|k| k.to_string()).collect();
        }
        d.reconfigure_service(s, true)?;
    }
    Ok(())
}

/// The kid a service saw on a request through the gateway.
fn seen_kid(d: &Drill, path: &str) -> String {
    let auth = format!("Bearer {}", d.stack.bearer_token);
    let addr = SocketAddr::from(([127, 0, 0, 1], d.stack.http_port));
    let body = get_json(addr, path, &[("Authorization", &auth)]);
    body["envelope"]["kid"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// The status of a request straight to a service with an envelope minted
/// with `kid` (`stella-gateway envelope mint`).
fn direct_status(d: &Drill, kid: &str, instance: &str) -> Result<u16, crate::harness::Abort> {
    let service = d.stack.service(instance);
    let key = d.stack.keys.get(kid).cloned().unwrap_or_default();
    let out = d.command_output(
        Command::new(d.run.binary("stella-gateway"))
            .env("Router__IdentityEnvelopeSigningKey", key)
            .args([
                "envelope",
                "mint",
                "--kid",
                kid,
                "--audience",
                &service.audience,
                "--path",
                "/items/1",
            ])
            .args([
                "--subject",
                "drill-user",
                "--tenant",
                "acme",
                "--client-id",
                "drill",
                "--scope",
                "echo.read",
            ]),
    )?;
    // Lines `-H 'Name: value'`, ready for curl.
    let headers: Vec<(String, String)> = out
        .lines()
        .filter_map(|l| l.strip_prefix("-H '")?.strip_suffix('\''))
        .filter_map(|h| h.split_once(": "))
        .map(|(n, v)| (n.to_owned(), v.to_owned()))
        .collect();
    if headers.len() < 6 {
        return d
            .run
            .abort(format!("envelope mint printed {} headers", headers.len()));
    }
    let headers: Vec<(&str, &str)> = headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    Ok(status_at(service.addr, "GET", "/items/1", &headers))
}
