#!/usr/bin/env python3
"""Writes fuzz/seeds/<target>/ from the published vectors, the shipped
configuration and policies, and the path cases of the unit tests.

Run from anywhere: python3 fuzz/make_seeds.py. Seeds are small and stable;
rebuild them when the vectors, config/ or policies/ change.
"""
import base64, hashlib, hmac, json, pathlib, re, shutil, struct

ROOT = pathlib.Path(__file__).resolve().parent.parent
SEEDS = ROOT / "fuzz" / "seeds"
VECTORS = json.loads((ROOT / "crates/authn/src/dpop/testdata/rfc-vectors.json").read_text())
JOSE = json.loads((ROOT / "crates/jose/src/testdata/rfc-vectors.json").read_text())


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def put(target: str, name: str, data) -> None:
    d = SEEDS / target
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_bytes(data if isinstance(data, bytes) else data.encode())


shutil.rmtree(SEEDS, ignore_errors=True)
rfc = VECTORS["rfc9449"]
proofs = {
    "rfc9449_fig13": rfc["resource_request_proof"]["proof"],
    "rfc9449_fig2": rfc["token_request_proof"]["proof"],
}

# jws_compact: tokens as text, and the same as raw JSON parts (mode NUL).
for name, proof in proofs.items():
    put("jws_compact", name, proof)
    h, p, s = proof.split(".")
    dec = lambda t: base64.urlsafe_b64decode(t + "=" * (-len(t) % 4))
    put("jws_compact", name + "_raw", b"\0" + dec(h) + b"\n" + dec(p) + b"\n" + dec(s))
put("jws_compact", "rfc8037_a4", JOSE["rfc8037"]["jws"])
put("jws_compact", "crit_header", b"\0" + b'{"alg":"ES256","crit":["b64"],"b64":false}\n{}\nsig')
put("jws_compact", "kid_typ", b"\0" + b'{"alg":"RS256","typ":"at+jwt","kid":"k1"}\n{"sub":"a"}\nsig')

# jwk_thumbprint: each published key, and a JWKS document of all of them.
keys = {
    "rfc9449_ec_p256": rfc["example_public_jwk"],
    "rfc7638_rsa": JOSE["rfc7638"]["rsa_example_jwk"],
    "rfc8037_ed25519": JOSE["rfc7638"]["ed25519_rfc8037_jwk"],
    "leading_zero_x_p256": JOSE["rfc7638"]["leading_zero_x_p256"]["jwk"],
}
for name, key in keys.items():
    put("jwk_thumbprint", name, json.dumps(key))
put("jwk_thumbprint", "jwks", json.dumps({"keys": list(keys.values())}))
put("jwk_thumbprint", "private_oct", '{"kty":"oct","k":"AAAA"}')
put("jwk_thumbprint", "ec_p384_key_ops", '{"kty":"EC","crv":"P-384","x":"AA","y":"AA","key_ops":["verify"],"use":"sig"}')

# dpop_proof: mode 0 = header value against RFC 9449 figure 13; mode 1
# (3 with a nonce, 5 bound elsewhere) = JSON signed by the target.
put("dpop_proof", "rfc9449_fig13", b"\0" + proofs["rfc9449_fig13"].encode())
put("dpop_proof", "rfc9449_fig2_wrong_request", b"\0" + proofs["rfc9449_fig2"].encode())
header = '{"typ":"dpop+jwt","alg":"EdDSA","jwk":"$JWK"}'
claims = '{"jti":"j-1","htm":"POST","htu":"https://api.example.test/orders/7","iat":$NOW,"ath":"$ATH"}'
with_nonce = claims[:-1] + ',"nonce":"$NONCE"}'
put("dpop_proof", "signed_valid", b"\1" + (header + "\n" + claims).encode())
put("dpop_proof", "signed_valid_nonce", b"\3" + (header + "\n" + with_nonce).encode())
put("dpop_proof", "signed_other_key", b"\5" + (header + "\n" + claims).encode())
put("dpop_proof", "signed_htu_normalized", b"\1" + (header + "\n" + claims.replace(
    "https://api.example.test/orders/7", "HTTPS://API.example.test:443/orders/7?y=2")).encode())
put("dpop_proof", "signed_kid_jku", b"\1" + ('{"typ":"application/dpop+jwt","alg":"EdDSA","jwk":"$JWK","kid":"k","jku":"https://x"}\n' + claims).encode())

# presented_credential: A = Authorization line, D = DPoP line.
tok = rfc["access_token"]
for name, text in {
    "dpop": f"ADPoP {tok}\nD{proofs['rfc9449_fig13']}",
    "bearer": f"ABearer {tok}",
    "bearer_with_dpop": f"Abearer {tok}\nDx.y.z",
    "two_authorization": "ABearer a\nABearer b",
    "dpop_two_proofs": "ADPoP abc\nDa\nDb",
    "dpop_folded": "ADPoP abc\nDa, b",
    "dpop_without_token": "Dp.r.f",
    "basic": "ABasic dXNlcjpwYXNz",
    "padded": "ABEARER   abc==",
}.items():
    put("presented_credential", name, text)

# path_normalize: every path of the normalization unit tests.
normalize = (ROOT / "crates/routing/src/normalize.rs").read_text()
paths = sorted(set(re.findall(r'\(\s*"(/[^"]*)"', normalize)))
for i, path in enumerate(paths):
    put("path_normalize", f"case_{i:03}", path.encode().decode("unicode_escape").encode("latin-1"))
put("path_normalize", "query", "/a/%7e/../b?x=%2F#y")

# route_lookup: mode 0 = shipped policies; mode 1 = patterns after the request.
for name, req in {
    "public": "\nGET\n/public/x?y=1",
    "admin": "\nGET\n/admin/../admin/users",
    "items_head": "api.example.test:8443\nHEAD\n/items/7",
    "items_patch": "\nPATCH\n/items/7",
    "missing": "\nGET\n/nowhere",
}.items():
    put("route_lookup", "shipped_" + name, b"\0" + req.encode())
put("route_lookup", "patterns", b"\1api.example.test\nGET\n/a/b/c\n/a/**\n/a/*/c\n/a/**/c\n/a/b/c\n/**\n/x")
put("route_lookup", "patterns_method", b"\1\nDELETE\n/orders/7/\n/orders/*\n/orders/**\n/\n/orders")
put("route_lookup", "patterns_params", b"\1\nPOST\n/executors/e%32/heartbeat\n/executors/{eid}/heartbeat\n/executors/*/**\n/{a}/{b}/{a}")

# policy_file and config_file: the shipped files.
for f in sorted((ROOT / "policies").glob("**/*.yaml")):
    put("policy_file", f.relative_to(ROOT / "policies").as_posix().replace("/", "_"), f.read_bytes())
put("policy_file", "identity_binding.yaml", b"""service: executors
routes:
  - id: heartbeat
    path: /executors/{eid}/heartbeat
    identity_binding: {eid: spiffe_path_last}
    policy: {spiffe_ids: [spiffe://stella.test/executors/e1]}
  - id: bad
    path: /a/**/{x}
    identity_binding: {x: sub, y: nope}
""")
for f in sorted((ROOT / "config").glob("*.yaml")):
    put("config_file", f.name, f.read_bytes())
local = (ROOT / "config/local.yaml").read_bytes()
put("config_file", "local_with_env", local + b"\0Router__OnMissingAuthorization=Deny\nGateway__Threads=2\n")

# dpop_nonce: 8 bytes of now, then the nonce text (secret and step of the target).
secret, step, now = b"fuzz-nonce-secret-0123456789abcd", 60, 1_767_225_600
def nonce(counter: int) -> str:
    c = struct.pack(">Q", counter)
    return b64(c + hmac.new(secret, b"stella-dpop-nonce" + c, hashlib.sha256).digest()[:16])
for name, (t, n) in {
    "current": (now, nonce(now // step)),
    "previous": (now, nonce(now // step - 1)),
    "expired": (now, nonce(now // step - 2)),
    "future": (now, nonce(now // step + 1)),
    "padded": (now, nonce(now // step) + "="),
    "zero_time": (0, nonce(0)),
    "max_time": (2**64 - 1, nonce((2**64 - 1) // step)),
}.items():
    put("dpop_nonce", name, struct.pack(">Q", t) + n.encode())
