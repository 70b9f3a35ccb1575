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
        // The API's audience, and any more the drill asks for (the opaque
        // tokens' audience).
        if !authority.audiences.iter().any(|a| a == API_AUDIENCE) {
            authority.audiences.insert(0, API_AUDIENCE.into());
        }
        // The test Authority's claims endpoint, once its issuer is known.
        if let Some(claims) = authority.claims.as_mut() {
            claims
                .endpoint
                .get_or_insert_with(|| format!("{}/claims", st.issuer));
        }
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

    /// Writes `config/<name>.yaml`, the configuration of another replica
    /// of the gateway beside the stack's: the same settings on the ports
    /// `http` and `admin` (and `tls` for the TLS listener, when the stack
    /// has one), with its own state folder (`<state_dir>-<name>`). Its
    /// path.
    pub fn write_replica_config(
        &self,
        name: &str,
        http: u16,
        admin: u16,
        tls: Option<u16>,
    ) -> Result<std::path::PathBuf, Abort> {
        let mut config = self.gateway_config();
        let g = &mut config.gateway;
        g.public_origin = Some(format!("http://127.0.0.1:{http}"));
        g.listeners.http = Some(format!("127.0.0.1:{http}"));
        g.listeners.admin = Some(format!("127.0.0.1:{admin}"));
        if let (Some(section), Some(port)) = (g.listeners.tls.as_mut(), tls) {
            section.addr = Some(format!("127.0.0.1:{port}"));
        }
        if let Some(dir) = g.auth.authority.state_dir.as_mut() {
            dir.push_str(&format!("-{name}"));
            std::fs::create_dir_all(&*dir).map_err(|e| Abort(format!("{dir}: {e}")))?;
        }
        let text = yaml_without_nulls(&config)?;
        let file = self.run.conf.join(format!("{name}.yaml"));
        write_atomic(
            &file,
            &format!(
                "# Written by stella-drill for the {} drill: replica {name}.\n{text}",
                self.run.name
            ),
        )?;
        Ok(file)
    }
}
