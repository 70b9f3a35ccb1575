//! `token`: an access token by client credentials (RFC 6749 4.4) from the
//! profile's Authority, Bearer, DPoP-bound (RFC 9449: a proof with the
//! token request, `token_type: DPoP` checked, one retry with the
//! Authority's `DPoP-Nonce`) or certificate-bound (RFC 8705: the client
//! certificate on the TLS connection, the `mtls_endpoint_aliases` token
//! endpoint when the Authority names one). The token is cached in the
//! profile's cache file (0600) with what it was issued for, and reused
//! until [`EXPIRY_MARGIN`] before it expires; a profile whose issuer,
//! client, mode, scope, resource, DPoP key or certificate changed gets a
//! new one.

use super::dpop::DpopKey;
use super::profile::{Mode, Profile};
use super::{form_encode, now, write_private, Answer, Http};
use base64::Engine as _;
use bytes::Bytes;
use clap::Args;
use http_body_util::Full;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use zeroize::Zeroizing;

/// A cached token is renewed this many seconds before it expires.
pub const EXPIRY_MARGIN: u64 = 30;

#[derive(Args)]
pub struct TokenArgs {
    /// The profiles file (default $STELLA_GATEWAY_PROFILES, else
    /// ~/.config/stella-gateway/profiles.yaml).
    #[arg(long)]
    pub profiles: Option<PathBuf>,
    #[arg(long, default_value = "default")]
    pub profile: String,
    /// Print the access token itself (and nothing else) on stdout.
    #[arg(long)]
    pub print: bool,
    /// Ask for a new token even if the cached one is still good.
    #[arg(long)]
    pub force: bool,
}

/// What a request needs to authenticate: the token, how it is bound, and
/// the DPoP key for proofs.
pub struct Credential {
    pub mode: Mode,
    pub access_token: Zeroizing<String>,
    pub expires_at: u64,
    /// True when the Authority issued it just now (not from the cache).
    pub fresh: bool,
    pub key: Option<DpopKey>,
    /// The `cnf.jkt` or certificate thumbprint the token is bound to.
    pub binding: Option<String>,
}

/// The cache file: the token and everything it was issued for.
#[derive(Serialize, Deserialize, PartialEq)]
struct Issued {
    issuer: String,
    client_id: String,
    mode: String,
    scope: Option<String>,
    resource: Option<String>,
    binding: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct CacheFile {
    #[serde(flatten)]
    issued: Issued,
    token_type: String,
    expires_at: u64,
    access_token: String,
}

/// `stella-gateway token`.
pub fn main(args: &TokenArgs) -> i32 {
    let profile = match super::profile::profiles_path(args.profiles.as_deref())
        .map_err(|e| vec![e])
        .and_then(|path| super::profile::load_one(&path, &args.profile))
    {
        Ok(p) => p,
        Err(errors) => {
            for e in errors {
                eprintln!("{e}");
            }
            return 2;
        }
    };
    let http = match Http::new(profile.ca_file.as_deref(), profile.cert.as_ref()) {
        Ok(h) => h,
        Err(e) => {
            eprintln!("{e}");
            return 2;
        }
    };
    match obtain(&profile, &http, args.force) {
        Ok(credential) => {
            if args.print {
                println!("{}", credential.access_token.as_str());
            } else {
                println!(
                    "{} token for {} ({}), expires in {} s, {} {}",
                    match credential.mode {
                        Mode::Dpop => "DPoP-bound",
                        Mode::Mtls => "certificate-bound",
                        Mode::Bearer | Mode::Certificate => "Bearer",
                    },
                    profile.client_id,
                    credential
                        .binding
                        .as_deref()
                        .map(|b| format!("bound to {b}"))
                        .unwrap_or_else(|| "unbound".into()),
                    credential.expires_at.saturating_sub(now()),
                    if credential.fresh {
                        "new, cached in"
                    } else {
                        "from the cache"
                    },
                    profile.cache_file.display()
                );
            }
            0
        }
        Err(e) => {
            eprintln!("{e}");
            1
        }
    }
}

/// The profile's token: the cached one while it is good, else a new one
/// (then cached).
pub fn obtain(profile: &Profile, http: &Http, force: bool) -> Result<Credential, String> {
    if profile.mode == Mode::Certificate {
        return Err(format!(
            "profile {} is mode certificate: it sends its client certificate alone, no token",
            profile.name
        ));
    }
    let key = match (&profile.mode, &profile.key_file) {
        (Mode::Dpop, Some(path)) => Some(DpopKey::load_or_generate(path)?),
        _ => None,
    };
    let binding = match profile.mode {
        Mode::Dpop => key.as_ref().map(DpopKey::thumbprint),
        Mode::Mtls => match &profile.cert {
            Some((cert, _)) => Some(certificate_thumbprint(cert)?),
            None => None,
        },
        Mode::Bearer | Mode::Certificate => None,
    };
    let issued = Issued {
        issuer: profile.issuer.clone(),
        client_id: profile.client_id.clone(),
        mode: profile.mode.as_str().to_owned(),
        scope: profile.scope.clone(),
        resource: profile.resource.clone(),
        binding: binding.clone(),
    };
    if !force {
        if let Some(cached) = read_cache(profile, &issued) {
            return Ok(Credential {
                mode: profile.mode,
                access_token: Zeroizing::new(cached.access_token),
                expires_at: cached.expires_at,
                fresh: false,
                key,
                binding,
            });
        }
    }
    let (access_token, token_type, expires_at) = request(profile, http, key.as_ref())?;
    let cache = CacheFile {
        issued,
        token_type,
        expires_at,
        access_token,
    };
    let text = Zeroizing::new(serde_json::to_string(&cache).map_err(|e| e.to_string())?);
    write_private(&profile.cache_file, text.as_bytes())?;
    Ok(Credential {
        mode: profile.mode,
        access_token: Zeroizing::new(cache.access_token),
        expires_at,
        fresh: true,
        key,
        binding,
    })
}

fn read_cache(profile: &Profile, issued: &Issued) -> Option<CacheFile> {
    let bytes = Zeroizing::new(std::fs::read(&profile.cache_file).ok()?);
    let cached: CacheFile = serde_json::from_slice(&bytes).ok()?;
    (cached.issued == *issued && cached.expires_at > now().saturating_add(EXPIRY_MARGIN))
        .then_some(cached)
}

/// `x5t#S256` of the first certificate in `path`.
fn certificate_thumbprint(path: &std::path::Path) -> Result<String, String> {
    use rustls::pki_types::pem::PemObject;
    let der = rustls::pki_types::CertificateDer::pem_file_iter(path)
        .ok()
        .and_then(|mut i| i.next())
        .and_then(Result::ok)
        .ok_or_else(|| format!("{}: holds no pem certificate", path.display()))?;
    Ok(stella_envelope::encoding::b64url_encode(
        ring::digest::digest(&ring::digest::SHA256, der.as_ref()).as_ref(),
    ))
}

/// The token endpoint from the Authority's discovery document.
fn token_endpoint(profile: &Profile, http: &Http) -> Result<String, String> {
    let url = format!("{}/.well-known/openid-configuration", profile.issuer);
    let request = http::Request::get(url.as_str())
        .header(http::header::ACCEPT, "application/json")
        .body(Full::new(Bytes::new()))
        .map_err(|_| format!("issuer is not a usable url: {}", profile.issuer))?;
    let answer = http.send(request)?;
    if !answer.status.is_success() {
        return Err(format!("{url}: discovery answered {}", answer.status));
    }
    let doc: serde_json::Value = serde_json::from_slice(&answer.body)
        .map_err(|_| format!("{url}: discovery document is not json"))?;
    let alias = doc["mtls_endpoint_aliases"]["token_endpoint"].as_str();
    let endpoint = match (profile.mode, alias) {
        (Mode::Mtls, Some(alias)) => Some(alias),
        _ => doc["token_endpoint"].as_str(),
    };
    endpoint
        .map(str::to_owned)
        .ok_or_else(|| format!("{url}: discovery document has no token_endpoint"))
}

/// One client credentials exchange; (token, token_type, expires_at).
fn request(
    profile: &Profile,
    http: &Http,
    key: Option<&DpopKey>,
) -> Result<(String, String, u64), String> {
    let endpoint = token_endpoint(profile, http)?;
    let secret = match &profile.secret_file {
        Some(path) => Some(Zeroizing::new(
            std::fs::read_to_string(path)
                .map_err(|e| format!("{}: cannot read: {}", path.display(), e.kind()))?
                .trim()
                .to_owned(),
        )),
        None => None,
    };
    let mut form = String::from("grant_type=client_credentials");
    if let Some(scope) = &profile.scope {
        form.push_str(&format!("&scope={}", form_encode(scope)));
    }
    if let Some(resource) = &profile.resource {
        form.push_str(&format!("&resource={}", form_encode(resource)));
    }
    if secret.is_none() {
        form.push_str(&format!("&client_id={}", form_encode(&profile.client_id)));
    }
    let basic = secret.as_ref().map(|secret| {
        let pair = Zeroizing::new(format!(
            "{}:{}",
            form_encode(&profile.client_id),
            form_encode(secret)
        ));
        Zeroizing::new(format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(pair.as_bytes())
        ))
    });
    let send = |nonce: Option<&str>| -> Result<Answer, String> {
        let mut builder = http::Request::post(endpoint.as_str())
            .header(
                http::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .header(http::header::ACCEPT, "application/json");
        if let Some(basic) = &basic {
            builder = builder.header(http::header::AUTHORIZATION, basic.as_str());
        }
        if let Some(key) = key {
            builder = builder.header("DPoP", key.proof("POST", &endpoint, None, nonce, now())?);
        }
        let request = builder
            .body(Full::new(Bytes::from(form.clone())))
            .map_err(|_| format!("token endpoint is not a usable url: {endpoint}"))?;
        http.send(request)
    };
    let mut answer = send(None)?;
    if key.is_some() && answer.status == http::StatusCode::BAD_REQUEST {
        let error: serde_json::Value = serde_json::from_slice(&answer.body).unwrap_or_default();
        if error["error"] == "use_dpop_nonce" {
            if let Some(nonce) = answer.header("dpop-nonce").map(str::to_owned) {
                eprintln!("* the Authority asked for a DPoP nonce; sent again with it");
                answer = send(Some(&nonce))?;
            }
        }
    }
    let body: serde_json::Value = serde_json::from_slice(&answer.body).unwrap_or_default();
    if !answer.status.is_success() {
        // RFC 6749 5.2 error and description: the Authority's words, no
        // secret in them.
        return Err(format!(
            "{endpoint}: {} {}{}",
            answer.status,
            body["error"].as_str().unwrap_or("(no error code)"),
            body["error_description"]
                .as_str()
                .map(|d| format!(": {d}"))
                .unwrap_or_default()
        ));
    }
    let token = body["access_token"]
        .as_str()
        .ok_or_else(|| format!("{endpoint}: the answer has no access_token"))?
        .to_owned();
    let token_type = body["token_type"].as_str().unwrap_or_default().to_owned();
    let expected = match profile.mode {
        Mode::Dpop => "DPoP",
        Mode::Bearer | Mode::Mtls | Mode::Certificate => "Bearer",
    };
    if !token_type.eq_ignore_ascii_case(expected) {
        return Err(format!(
            "{endpoint}: token_type is {:?}, expected {expected} (is client {} registered for {} tokens?)",
            token_type,
            profile.client_id,
            profile.mode.as_str()
        ));
    }
    let expires_in = body["expires_in"].as_u64().unwrap_or(60);
    Ok((token, token_type, now().saturating_add(expires_in)))
}
