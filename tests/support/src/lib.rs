//! Test support shared by the end-to-end tests: start real processes that
//! announce readiness with one stdout line, and speak plain HTTP/1.1 to them
//! over loopback. No fixed ports, no fixed sleeps.

use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

/// A child process killed when dropped.
pub struct Process {
    child: Child,
    /// The JSON that followed the ready marker.
    pub ready: Value,
    name: String,
    /// Stderr lines so far, when started with [`Process::try_start_capturing`].
    stderr: Option<Arc<Mutex<Vec<String>>>>,
}

impl Process {
    /// Spawns `command` and waits up to `timeout` for a stdout line
    /// `<marker> <json>`. Stderr is inherited so failures show in test output.
    pub fn start(name: &str, command: Command, marker: &str, timeout: Duration) -> Process {
        Process::try_start(name, command, marker, timeout).unwrap_or_else(|e| panic!("{e}"))
    }

    /// [`Process::start`] that reports a process which exits or stays silent
    /// instead of panicking, so a caller can retry (for example with other
    /// ports after losing a race for one).
    pub fn try_start(
        name: &str,
        command: Command,
        marker: &str,
        timeout: Duration,
    ) -> Result<Process, String> {
        Process::spawn(name, command, marker, timeout, false)
    }

    /// [`Process::try_start`] that also keeps every stderr line for
    /// [`Process::stderr_lines`] (they are still copied to the test's
    /// stderr, so failures show them).
    pub fn try_start_capturing(
        name: &str,
        command: Command,
        marker: &str,
        timeout: Duration,
    ) -> Result<Process, String> {
        Process::spawn(name, command, marker, timeout, true)
    }

    fn spawn(
        name: &str,
        mut command: Command,
        marker: &str,
        timeout: Duration,
        capture: bool,
    ) -> Result<Process, String> {
        command
            .stdout(Stdio::piped())
            .stderr(if capture {
                Stdio::piped()
            } else {
                Stdio::inherit()
            })
            .stdin(Stdio::null());
        let mut child = command
            .spawn()
            .map_err(|e| format!("cannot start {name}: {e}"))?;
        let stderr = child.stderr.take().map(|pipe| {
            let lines = Arc::new(Mutex::new(Vec::new()));
            let kept = lines.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines() {
                    let Ok(line) = line else { break };
                    eprintln!("{line}");
                    if let Ok(mut kept) = kept.lock() {
                        kept.push(line);
                    }
                }
            });
            lines
        });
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        let marker = format!("{marker} ");
        std::thread::spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if !sent {
                    if let Some(rest) = line.strip_prefix(&marker) {
                        let _ = tx.send(rest.to_owned());
                        sent = true;
                        continue;
                    }
                }
                // Keep draining so the child never blocks on a full pipe.
                println!("[child] {line}");
            }
        });
        match rx.recv_timeout(timeout) {
            Ok(json) => match serde_json::from_str(&json) {
                Ok(ready) => Ok(Process {
                    child,
                    ready,
                    name: name.to_owned(),
                    stderr,
                }),
                Err(e) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    Err(format!("{name} ready line is not json ({e}): {json}"))
                }
            },
            Err(_) => {
                let _ = child.kill();
                let status = child.wait().ok();
                Err(format!(
                    "{name} did not become ready within {timeout:?} (exit: {status:?})"
                ))
            }
        }
    }

    /// Kills the process now and waits for it to be gone (SIGKILL: an
    /// abrupt outage, not a graceful stop).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The `addr` member of the ready line as a socket address.
    pub fn addr(&self) -> SocketAddr {
        self.ready["addr"]
            .as_str()
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("{} ready line has no addr: {}", self.name, self.ready))
    }

    /// The stderr lines written so far (none unless started with
    /// [`Process::try_start_capturing`]).
    pub fn stderr_lines(&self) -> Vec<String> {
        self.stderr
            .as_ref()
            .and_then(|lines| lines.lock().ok().map(|l| l.clone()))
            .unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal by name (`HUP`, `TERM`, `INT`) with `kill -s`.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args(["-s", name, &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -s {name} {} failed", self.name);
    }

    /// Waits up to `timeout` for the process to exit; its exit code (None
    /// for a signal), or `Err` if it is still running.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<Option<i32>, String> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Some(code) = self.try_exit_code() {
                return Ok(code);
            }
            if std::time::Instant::now() > deadline {
                return Err(format!("{} still running after {timeout:?}", self.name));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether the process has exited, with its code.
    pub fn try_exit_code(&mut self) -> Option<Option<i32>> {
        self.child.try_wait().ok().flatten().map(|s| s.code())
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP response.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// All values of a header, in order (name matched case-insensitively).
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.header_all(name).first().copied()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not json ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Sends one HTTP/1.1 request with `Connection: close` and reads the whole
/// response. `headers` are sent exactly as given (names, case, duplicates).
pub fn request(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Response {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    stream.set_read_timeout(Some(Duration::from_secs(30))).ok();
    let mut head = format!("{method} {target} HTTP/1.1\r\n");
    if !headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("host")) {
        head.push_str(&format!("Host: {addr}\r\n"));
    }
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    ));
    stream.write_all(head.as_bytes()).expect("write request");
    stream.write_all(body).expect("write body");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).expect("read response");
    parse_response(&raw)
}

/// Writes `raw` (a whole request, exactly as given) and returns every byte
/// the server sent until it closed the connection: empty when it closed
/// without answering.
pub fn send_raw(addr: SocketAddr, raw: &[u8]) -> Vec<u8> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    stream.set_read_timeout(Some(Duration::from_secs(30))).ok();
    stream.write_all(raw).expect("write request");
    let mut answer = Vec::new();
    // A reset after a partial answer still returns what arrived.
    let _ = stream.read_to_end(&mut answer);
    answer
}

/// Parses an HTTP/1.1 response (Content-Length, chunked, or read-to-close).
pub fn parse_response(raw: &[u8]) -> Response {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no header end in {:?}", String::from_utf8_lossy(raw)));
    let head = String::from_utf8_lossy(&raw[..split]);
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let rest = &raw[split + 4..];
    let chunked = headers
        .iter()
        .any(|(n, v)| n.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    let body = if chunked {
        dechunk(rest)
    } else {
        rest.to_vec()
    };
    Response {
        status,
        headers,
        body,
    }
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = data.windows(2).position(|w| w == b"\r\n") {
        let size_text = String::from_utf8_lossy(&data[..eol]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("0").trim(), 16)
            .unwrap_or(0);
        data = &data[eol + 2..];
        if size == 0 || data.len() < size {
            break;
        }
        out.extend_from_slice(&data[..size]);
        data = &data[(size + 2).min(data.len())..];
    }
    out
}

/// A TCP port on 127.0.0.1 that was free a moment ago: bound to port 0 and
/// released. For programs that cannot bind port 0 and report back (Pingora);
/// another process may take it in between, so callers retry on a failed
/// start with a fresh port.
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local addr").port()
}

/// `n` distinct free ports (all held until every one is chosen, so they
/// differ from each other). Same caveat as [`free_port`].
pub fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<std::net::TcpListener> = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0"))
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().expect("local addr").port())
        .collect()
}

/// Polls `check` until it returns true or `timeout` passes.
pub fn wait_until(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + timeout;
    while std::time::Instant::now() < deadline {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

// ---------------------------------------------------------------------------
// DPoP proofs (RFC 9449): the project's own client code

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ring::signature::{
    EcdsaKeyPair, KeyPair as _, ECDSA_P256_SHA256_ASN1_SIGNING, ECDSA_P256_SHA256_FIXED_SIGNING,
};
use serde_json::{json, Map};

fn b64url(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// `ath`: base64url(SHA-256(access token)), RFC 9449 section 4.2.
pub fn dpop_ath(access_token: &str) -> String {
    b64url(ring::digest::digest(&ring::digest::SHA256, access_token.as_bytes()).as_ref())
}

/// A client's DPoP key: an ES256 (P-256) key pair. The same key signs the
/// proof of the token request (through `token.mjs`, which reads
/// [`DpopKey::write_private_jwk`]'s file) and the proofs of resource
/// requests, so the Authority binds the token (`cnf.jkt`) to this key.
pub struct DpopKey {
    /// Signatures in JWS form (`r || s`).
    fixed: EcdsaKeyPair,
    /// Signatures in ASN.1 DER form, which JWS does not allow.
    der: EcdsaKeyPair,
    /// The private scalar, 32 octets.
    d: Vec<u8>,
    /// The public point, uncompressed (`04 || x || y`).
    point: Vec<u8>,
    rng: ring::rand::SystemRandom,
}

impl std::fmt::Debug for DpopKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DpopKey")
            .field("thumbprint", &self.thumbprint())
            .finish_non_exhaustive()
    }
}

impl DpopKey {
    /// A new random key.
    pub fn generate() -> DpopKey {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .expect("generate p-256 key");
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .expect("load p-256 key");
        // ring does not hand out the private scalar; it sits in the
        // PKCS#8 document's ECPrivateKey as `INTEGER 1, OCTET STRING (32)`.
        let doc = pkcs8.as_ref();
        let marker = [0x02, 0x01, 0x01, 0x04, 0x20];
        let at = doc
            .windows(marker.len())
            .position(|w| w == marker)
            .expect("ECPrivateKey in ring's pkcs8 document")
            + marker.len();
        let d = doc[at..at + 32].to_vec();
        let point = pair.public_key().as_ref().to_vec();
        DpopKey::from_parts(d, point)
    }

    /// A key from a private EC P-256 JWK (`{kty, crv, x, y, d}`).
    pub fn from_private_jwk(jwk: &Value) -> DpopKey {
        assert!(
            jwk["kty"] == "EC" && jwk["crv"] == "P-256",
            "not a P-256 jwk: {jwk}"
        );
        let member = |name: &str| {
            URL_SAFE_NO_PAD
                .decode(
                    jwk[name]
                        .as_str()
                        .unwrap_or_else(|| panic!("jwk has no {name}")),
                )
                .unwrap_or_else(|e| panic!("jwk {name} is not base64url: {e}"))
        };
        let mut point = vec![4u8];
        point.extend(member("x"));
        point.extend(member("y"));
        DpopKey::from_parts(member("d"), point)
    }

    fn from_parts(d: Vec<u8>, point: Vec<u8>) -> DpopKey {
        let rng = ring::rand::SystemRandom::new();
        // ring checks that the private and public halves belong together.
        let pair = |alg| {
            EcdsaKeyPair::from_private_key_and_public_key(alg, &d, &point, &rng)
                .expect("consistent p-256 key pair")
        };
        DpopKey {
            fixed: pair(&ECDSA_P256_SHA256_FIXED_SIGNING),
            der: pair(&ECDSA_P256_SHA256_ASN1_SIGNING),
            d,
            point,
            rng,
        }
    }

    /// The public key as a JWK, as it goes into a proof's header.
    pub fn jwk(&self) -> Value {
        json!({
            "kty": "EC",
            "crv": "P-256",
            "x": b64url(&self.point[1..33]),
            "y": b64url(&self.point[33..65]),
        })
    }

    /// The private key as a JWK (with `d`): the format `token.mjs
    /// --dpop-key-file` and `proof.mjs --key-file` read.
    pub fn private_jwk(&self) -> Value {
        let mut jwk = self.jwk();
        jwk["d"] = json!(b64url(&self.d));
        jwk
    }

    /// Writes [`private_jwk`](Self::private_jwk) to `path` (mode 0600 on
    /// unix), for `token.mjs` and `proof.mjs`.
    pub fn write_private_jwk(&self, path: &std::path::Path) {
        std::fs::write(path, format!("{}\n", self.private_jwk()))
            .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
                .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
        }
    }

    /// The RFC 7638 thumbprint: what the Authority puts in `cnf.jkt`.
    pub fn thumbprint(&self) -> String {
        let jwk = self.jwk();
        // Required members only, in lexicographic order, no whitespace.
        let canonical = format!(
            r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
            jwk["x"].as_str().unwrap_or_default(),
            jwk["y"].as_str().unwrap_or_default()
        );
        b64url(ring::digest::digest(&ring::digest::SHA256, canonical.as_bytes()).as_ref())
    }

    /// A well-formed proof: `typ: dpop+jwt`, `alg: ES256`, this key's
    /// public `jwk`; claims `jti`, `htm`, `htu`, `iat`, and `ath` /
    /// `nonce` when given.
    pub fn proof(
        &self,
        method: &str,
        url: &str,
        access_token: Option<&str>,
        nonce: Option<&str>,
        iat: u64,
        jti: &str,
    ) -> String {
        self.proof_builder(method, url, iat, jti)
            .access_token(access_token)
            .nonce(nonce)
            .build()
    }

    /// A builder that starts from a well-formed proof (without `ath` or
    /// `nonce`) and can be made defective in one way at a time.
    pub fn proof_builder(&self, method: &str, url: &str, iat: u64, jti: &str) -> ProofBuilder<'_> {
        let mut header = Map::new();
        header.insert("typ".into(), json!("dpop+jwt"));
        header.insert("alg".into(), json!("ES256"));
        header.insert("jwk".into(), self.jwk());
        let mut claims = Map::new();
        claims.insert("jti".into(), json!(jti));
        claims.insert("htm".into(), json!(method));
        claims.insert("htu".into(), json!(url));
        claims.insert("iat".into(), json!(iat));
        ProofBuilder {
            key: self,
            header,
            claims,
            signature: ProofSignature::Es256,
        }
    }
}

/// How a [`ProofBuilder`] signs.
enum ProofSignature<'a> {
    /// ES256 with the builder's key, JWS form.
    Es256,
    /// ES256 with the builder's key, ASN.1 DER form.
    Der,
    /// ES256 by another key (the header still names the builder's key).
    By(&'a DpopKey),
    /// `alg: none`, empty signature.
    None,
    /// HS256 with this secret.
    Hs256(Vec<u8>),
}

/// A proof under construction; see [`DpopKey::proof_builder`].
pub struct ProofBuilder<'a> {
    key: &'a DpopKey,
    header: Map<String, Value>,
    claims: Map<String, Value>,
    signature: ProofSignature<'a>,
}

impl<'a> ProofBuilder<'a> {
    /// Sets `ath` for `access_token` (nothing when `None`).
    pub fn access_token(mut self, access_token: Option<&str>) -> Self {
        if let Some(token) = access_token {
            self.claims.insert("ath".into(), json!(dpop_ath(token)));
        }
        self
    }

    /// Sets `nonce` (nothing when `None`).
    pub fn nonce(mut self, nonce: Option<&str>) -> Self {
        if let Some(nonce) = nonce {
            self.claims.insert("nonce".into(), json!(nonce));
        }
        self
    }

    /// Sets (or replaces) a header member.
    pub fn header(mut self, name: &str, value: Value) -> Self {
        self.header.insert(name.into(), value);
        self
    }

    pub fn without_header(mut self, name: &str) -> Self {
        self.header.remove(name);
        self
    }

    /// Sets (or replaces) a claim.
    pub fn claim(mut self, name: &str, value: Value) -> Self {
        self.claims.insert(name.into(), value);
        self
    }

    pub fn without_claim(mut self, name: &str) -> Self {
        self.claims.remove(name);
        self
    }

    pub fn typ(self, typ: &str) -> Self {
        self.header("typ", json!(typ))
    }

    /// `alg: none` and an empty signature.
    pub fn alg_none(mut self) -> Self {
        self.signature = ProofSignature::None;
        self.header("alg", json!("none"))
    }

    /// `alg: HS256`, MACed with `secret`.
    pub fn hs256(mut self, secret: &[u8]) -> Self {
        self.signature = ProofSignature::Hs256(secret.to_vec());
        self.header("alg", json!("HS256"))
    }

    /// The header's `jwk` carries the private key (`d`) too.
    pub fn private_jwk_in_header(self) -> Self {
        let jwk = self.key.private_jwk();
        self.header("jwk", jwk)
    }

    /// The ES256 signature in ASN.1 DER instead of JWS's `r || s`.
    pub fn der_signature(mut self) -> Self {
        self.signature = ProofSignature::Der;
        self
    }

    /// Signed by `other` while the header names this key: a bad signature.
    pub fn signed_by(mut self, other: &'a DpopKey) -> Self {
        self.signature = ProofSignature::By(other);
        self
    }

    /// The compact JWS.
    pub fn build(self) -> String {
        let input = format!(
            "{}.{}",
            b64url(Value::Object(self.header).to_string().as_bytes()),
            b64url(Value::Object(self.claims).to_string().as_bytes())
        );
        let es256 = |key: &DpopKey, pair: &EcdsaKeyPair| {
            pair.sign(&key.rng, input.as_bytes())
                .expect("es256 sign")
                .as_ref()
                .to_vec()
        };
        let signature = match &self.signature {
            ProofSignature::Es256 => es256(self.key, &self.key.fixed),
            ProofSignature::Der => es256(self.key, &self.key.der),
            ProofSignature::By(other) => es256(other, &other.fixed),
            ProofSignature::None => Vec::new(),
            ProofSignature::Hs256(secret) => {
                let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
                ring::hmac::sign(&key, input.as_bytes()).as_ref().to_vec()
            }
        };
        format!("{input}.{}", b64url(&signature))
    }
}

#[cfg(test)]
mod dpop_key_tests {
    use super::*;
    use ring::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_ASN1, ECDSA_P256_SHA256_FIXED};

    fn part(jws: &str, i: usize) -> Vec<u8> {
        URL_SAFE_NO_PAD
            .decode(jws.split('.').nth(i).expect("three parts"))
            .expect("base64url")
    }

    #[test]
    fn a_proof_verifies_with_the_jwk_in_its_header_and_carries_the_claims() {
        let key = DpopKey::generate();
        let proof = key.proof("GET", "https://a.test/x", Some("tok"), Some("n"), 7, "j");
        let header: Value = serde_json::from_slice(&part(&proof, 0)).unwrap();
        let claims: Value = serde_json::from_slice(&part(&proof, 1)).unwrap();
        assert_eq!(header["typ"], "dpop+jwt");
        assert_eq!(header["alg"], "ES256");
        assert_eq!(header["jwk"], key.jwk());
        assert!(header["jwk"].get("d").is_none());
        assert_eq!(
            claims,
            json!({"jti": "j", "htm": "GET", "htu": "https://a.test/x", "iat": 7,
                   "ath": dpop_ath("tok"), "nonce": "n"})
        );
        let input = proof.rsplit_once('.').unwrap().0;
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &key.point)
            .verify(input.as_bytes(), &part(&proof, 2))
            .expect("valid es256 signature");
        let der = key
            .proof_builder("GET", "u", 1, "j")
            .der_signature()
            .build();
        let input = der.rsplit_once('.').unwrap().0;
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, &key.point)
            .verify(input.as_bytes(), &part(&der, 2))
            .expect("valid der signature");
    }

    #[test]
    fn the_private_jwk_round_trips_and_keeps_the_thumbprint() {
        let key = DpopKey::generate();
        let again = DpopKey::from_private_jwk(&key.private_jwk());
        assert_eq!(again.thumbprint(), key.thumbprint());
        assert_eq!(key.thumbprint().len(), 43);
        // `ath` of RFC 9449 section 7.1's example token.
        assert_eq!(
            dpop_ath("Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU"),
            "fUHyO2r2Z3DZ53EsNrWBb0xWXoaNy59IiKCAqksmQEo"
        );
    }
}
