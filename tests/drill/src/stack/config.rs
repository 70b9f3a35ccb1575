//! The gateway's configuration file, written through the gateway's own
//! file types.

use super::*;
use crate::harness::{write_atomic, Abort};

impl crate::Drill {
    /// The gateway's configuration, from the stack's settings.
    pub fn gateway_config(&self) -> FileConfig {
        let st = &self.stack;
        let mut config = FileConfig::default();
        let g = &mut config.gateway;
        g.id = Some("stella-gateway-drill".into());
        g.public_origin = Some(st.gw());
        g.listeners.http = Some(format!("127.0.0.1:{}", st.http_port));
        g.listeners.admin = Some(format!("127.0.0.1:{}", st.admin_port));
        g.listeners.tls = st.tls.clone();
        let mut authority = st.authority_settings.clone();
        authority.issuer = Some(st.issuer.clone());
        authority.require_https_metadata = Some(false);
        authority.audiences = vec![API_AUDIENCE.into()];
        authority.algorithms = ["ES256", "ES384", "EdDSA", "PS256", "RS256"]
            .map(String::from)
            .to_vec();
        authority.leeway_seconds = Some(30);
        g.auth.authority = authority;
        g.policies_dir = Some("policies".into());
        g.auth.dpop.replay_store = st.replay_store.clone();
        g.revocation = st.revocation.clone();
        let r = &mut config.router;
        r.on_missing_authorization = Some("RequireAuthenticated".into());
        match st
            .envelope
            .clone()
            .unwrap_or_else(|| Envelope::Single("k1".into()))
        {
            Envelope::Single(kid) => {
                r.identity_envelope_signing_key = st.keys.get(&kid).cloned();
                r.identity_envelope_signing_key_id = Some(kid);
            }
            Envelope::Ring(active, kids) => {
                r.identity_envelope_active_kid = Some(active);
                r.identity_envelope_keys = kids
                    .into_iter()
                    .map(|(kid, in_file)| EnvelopeKeySection {
                        key: (!in_file).then(|| st.keys.get(&kid).cloned()).flatten(),
                        key_file: in_file.then(|| format!("keys/{kid}.key")),
                        kid: Some(kid),
                        key_env: None,
                    })
                    .collect();
            }
        }
        r.identity_envelope_lifetime_seconds = Some(st.envelope_lifetime);
        config.services = st
            .routes
            .iter()
            .map(|route| ServiceSection {
                name: Some(route.name.clone()),
                upstreams: route
                    .instances
                    .iter()
                    .map(|i| st.service(i).addr.to_string())
                    .collect(),
                trust_mode: Some(route.mode.clone()),
                // Every replica is checked every 300 ms, so a replica that is
                // stopping (its health answers 503 for 1.5 s before it
                // closes) leaves the rotation before its connections close.
                health_check: Some(HealthCheckSection {
                    path: Some(route.health.clone()),
                    interval_ms: Some(300),
                    timeout_ms: Some(250),
                }),
                forward_credentials: (route.mode == "ServiceEnforced").then_some(true),
                ..ServiceSection::default()
            })
            .collect();
        config.logging.format = Some("text".into());
        config.logging.level = Some("info".into());
        config
    }

    /// Writes `config/gateway.yaml` (and the key files the keyring names).
    pub fn write_gateway_config(&self) -> Result<(), Abort> {
        if let Some(Envelope::Ring(_, kids)) = &self.stack.envelope {
            for (kid, in_file) in kids {
                if *in_file {
                    let key = self.stack.keys.get(kid).cloned().unwrap_or_default();
                    write_atomic(
                        &self.run.conf.join(format!("keys/{kid}.key")),
                        &format!("{key}\n"),
                    )?;
                }
            }
        }
        let text = yaml_without_nulls(&self.gateway_config())?;
        write_atomic(
            &self.run.conf.join("gateway.yaml"),
            &format!(
                "# Written by stella-drill for the {} drill.\n{text}",
                self.run.name
            ),
        )
    }
}
