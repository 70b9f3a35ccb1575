//! `router.identity_envelope_*`: the gateway's envelope keyring and its active key.

use super::*;

/// Where an envelope key came from (`keys list`; never the key itself).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeySource {
    Inline,
    File(PathBuf),
    Env(String),
}

impl KeySource {
    pub fn describe(&self) -> String {
        match self {
            KeySource::Inline => "inline".into(),
            KeySource::File(path) => format!("file {}", path.display()),
            KeySource::Env(name) => format!("env {name}"),
        }
    }
}

/// The text of an envelope key, in a form `Key::parse_compat` reads;
/// zeroed when dropped, never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct EnvelopeKeyText {
    pub kid: KeyId,
    pub(super) text: zeroize::Zeroizing<String>,
}

impl std::fmt::Debug for EnvelopeKeyText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnvelopeKeyText")
            .field("kid", &self.kid)
            .field("text", &"<redacted>")
            .finish()
    }
}

impl EnvelopeKeyText {
    /// The key as configured: for building the signer, never for printing.
    pub(crate) fn expose(&self) -> &str {
        &self.text
    }
}

/// One key of the gateway's envelope keyring, without its material.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnvelopeKeyInfo {
    pub kid: String,
    pub alg: Alg,
    pub source: KeySource,
    /// Where the configuration sets it (`router.identity_envelope_keys[1].key_file`).
    pub path: String,
    /// An EdDSA or ES256 key's public half as JWK members (`kty`, `crv`,
    /// `x`, `y`, `alg`): public, published in the gateway's key set. `None`
    /// for HS256 (a shared secret has no public half).
    pub public_jwk: Option<serde_json::Value>,
}

/// The envelope keyring as configured: every key, which one signs, and the
/// key texts (for the version digest only).
pub(super) struct Keyring {
    pub(super) infos: Vec<EnvelopeKeyInfo>,
    pub(super) active: Option<Key>,
    pub(super) texts: Vec<(String, zeroize::Zeroizing<String>)>,
}

/// Reads `identity_envelope_signing_key[_file]` (one key, the form existing
/// deployments use) and `identity_envelope_keys` (the keyring), and picks
/// the active kid.
pub(super) fn envelope_keyring(
    e: &mut Errors,
    r: &RouterSection,
    base: &Path,
    env: &dyn EnvSource,
    sources: &mut Vec<PathBuf>,
) -> Keyring {
    let mut read_file = |e: &mut Errors, path: &str, f: &str| {
        let file = base.join(f.trim());
        sources.push(file.clone());
        match std::fs::read_to_string(&file) {
            Ok(text) => Some((zeroize::Zeroizing::new(text.trim().to_owned()), file)),
            Err(err) => {
                e.add(
                    path,
                    format!("cannot read {}: {}", file.display(), err.kind()),
                );
                None
            }
        }
    };
    // (path for errors, kid, text, source)
    let mut entries: Vec<(String, String, zeroize::Zeroizing<String>, KeySource)> = Vec::new();
    let single_kid = r
        .identity_envelope_signing_key_id
        .clone()
        .unwrap_or_else(|| "default".into());
    match (
        &r.identity_envelope_signing_key,
        &r.identity_envelope_signing_key_file,
    ) {
        (Some(_), Some(_)) => e.add(
            "router.identity_envelope_signing_key",
            "is set together with identity_envelope_signing_key_file; set one",
        ),
        (Some(k), None) => entries.push((
            "router.identity_envelope_signing_key".into(),
            single_kid.clone(),
            zeroize::Zeroizing::new(k.trim().to_owned()),
            KeySource::Inline,
        )),
        (None, Some(f)) => {
            let path = "router.identity_envelope_signing_key_file";
            if let Some((text, file)) = read_file(e, path, f) {
                entries.push((path.into(), single_kid.clone(), text, KeySource::File(file)));
            }
        }
        (None, None) => {}
    }
    let single = !entries.is_empty();
    for (i, k) in r.identity_envelope_keys.iter().enumerate() {
        let at = |key: &str| format!("router.identity_envelope_keys[{i}].{key}");
        let kid = k.kid.clone().unwrap_or_default();
        if kid.trim().is_empty() {
            e.add(&at("kid"), "is required");
            continue;
        }
        let given = [k.key.is_some(), k.key_file.is_some(), k.key_env.is_some()];
        if given.iter().filter(|g| **g).count() != 1 {
            e.add(&at("key"), "set exactly one of key, key_file and key_env");
            continue;
        }
        if let Some(text) = &k.key {
            entries.push((
                at("key"),
                kid,
                zeroize::Zeroizing::new(text.trim().to_owned()),
                KeySource::Inline,
            ));
        } else if let Some(f) = &k.key_file {
            if let Some((text, file)) = read_file(e, &at("key_file"), f) {
                entries.push((at("key_file"), kid, text, KeySource::File(file)));
            }
        } else if let Some(name) = &k.key_env {
            match env.get(name.trim()) {
                Some(text) if !text.trim().is_empty() => entries.push((
                    at("key_env"),
                    kid,
                    zeroize::Zeroizing::new(text.trim().to_owned()),
                    KeySource::Env(name.trim().to_owned()),
                )),
                _ => e.add(
                    &at("key_env"),
                    format!("names {} which is not set", name.trim()),
                ),
            }
        }
    }
    let mut keys: Vec<(Key, KeySource, String)> = Vec::new();
    let mut texts = Vec::new();
    for (path, kid, text, source) in entries {
        let kid_path = if path.starts_with("router.identity_envelope_keys") {
            path.rsplit_once('.')
                .map(|(p, _)| format!("{p}.kid"))
                .unwrap_or_default()
        } else {
            "router.identity_envelope_signing_key_id".into()
        };
        let Ok(kid) = KeyId::new(kid.trim()).map_err(|err| e.add(&kid_path, err.to_string()))
        else {
            continue;
        };
        if keys.iter().any(|(k, _, _)| k.kid() == &kid) {
            e.add(
                &kid_path,
                format!("kid {} is configured twice", kid.as_str()),
            );
            continue;
        }
        match Key::parse_compat(kid.clone(), &text) {
            Ok(key) if key.can_sign() => {
                texts.push((kid.as_str().to_owned(), text));
                keys.push((key, source, path));
            }
            Ok(_) => e.add(&path, "is a public key; the gateway needs a signing key"),
            Err(err) => e.add(&path, err.to_string()),
        }
    }
    if keys.is_empty()
        && !e
            .0
            .iter()
            .any(|x| x.path.starts_with("router.identity_envelope"))
    {
        e.add(
            "router.identity_envelope_signing_key",
            "is required (or identity_envelope_signing_key_file, identity_envelope_keys, or Router__IdentityEnvelopeSigningKey)",
        );
    }
    let active_kid = match &r.identity_envelope_active_kid {
        Some(kid) => Some(kid.trim().to_owned()),
        None if single => Some(single_kid.trim().to_owned()),
        None if keys.len() == 1 => Some(keys[0].0.kid().as_str().to_owned()),
        None if keys.is_empty() => None,
        None => {
            e.add(
                "router.identity_envelope_active_kid",
                "is required when several envelope keys are configured",
            );
            None
        }
    };
    let infos: Vec<EnvelopeKeyInfo> = keys
        .iter()
        .map(|(k, source, path)| EnvelopeKeyInfo {
            kid: k.kid().as_str().to_owned(),
            alg: k.alg(),
            source: source.clone(),
            path: path.clone(),
            public_jwk: k.public_jwk(),
        })
        .collect();
    let active = active_kid.and_then(|kid| {
        let found = keys.iter().position(|(k, _, _)| k.kid().as_str() == kid);
        if found.is_none() && !keys.is_empty() {
            e.add(
                "router.identity_envelope_active_kid",
                format!("names {kid}, which is not a configured envelope key"),
            );
        }
        let (key, _, path) = keys.swap_remove(found?);
        if key.alg() == Alg::Es256 {
            // ES256 keys sign transaction tokens only; the active key signs
            // the envelopes of every service without a key of its own.
            let (at, what) = match &r.identity_envelope_active_kid {
                Some(_) => ("router.identity_envelope_active_kid".to_owned(), format!("names {kid}, an ES256 key")),
                None => (path, "is an ES256 key".to_owned()),
            };
            e.add(
                &at,
                format!("{what}, which signs transaction tokens only; the active key signs envelopes: make an HS256 or EdDSA key active and give ES256 keys to txn-token services (services[].envelope_kid)"),
            );
            return None;
        }
        Some(key)
    });
    Keyring {
        infos,
        active,
        texts,
    }
}
