"""Verifies a Stella Gateway transaction token with PyJWT, a generic JWT
library, and nothing of the gateway's own SDK (envelope/SPEC.md section 9).

    verify_txn_token.py --jwks URL --audience SERVICE [--issuer ID]
                        [--method GET --path /orders/7] [TOKEN]

The token is read from the argument, else from stdin (one line). The keys
come from the gateway's JWKS (`/.well-known/stella/keys.json`), fetched and
cached by PyJWT's `PyJWKClient`, which fetches again when it meets a kid it
does not know: that is how a service follows a key rotation.

Checks: the signature (EdDSA or ES256, the key chosen by `kid` from the JWKS),
`typ` `txntoken+jwt`, `aud` (this service), `exp` and `iat` (30 s leeway),
the claims the gateway always writes, and, when `--method` and `--path` are
given, that the token was issued for this very request (`rctx.req_method`,
`rctx.req_path`: the path without the query). Prints the claims as JSON and
exits 0; prints the reason on stderr and exits 1 when the token is refused,
2 on bad arguments.
"""

import argparse
import json
import sys

import jwt

TYP = "txntoken+jwt"
REQUIRED = ["iat", "exp", "aud", "txn", "scope", "req_wl", "tctx", "rctx"]


def verify(token, jwks, audience, issuer=None, method=None, path=None):
    """The verified claims of `token`; raises `jwt.PyJWTError` otherwise."""
    key = jwks.get_signing_key_from_jwt(token)
    decoded = jwt.decode_complete(
        token,
        key.key,
        algorithms=["EdDSA", "ES256"],
        audience=audience,
        issuer=issuer,
        leeway=30,
        options={"require": REQUIRED},
    )
    # The header is covered by the signature: read it from what verified.
    if decoded["header"].get("typ") != TYP:
        raise jwt.InvalidTokenError(f"typ is not {TYP}")
    claims = decoded["payload"]
    rctx = claims.get("rctx") or {}
    if method is not None and rctx.get("req_method") != method:
        raise jwt.InvalidTokenError("issued for another method (rctx.req_method)")
    if path is not None and rctx.get("req_path") != path:
        raise jwt.InvalidTokenError("issued for another path (rctx.req_path)")
    return claims


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jwks", required=True, help="the gateway's JWKS url")
    parser.add_argument("--audience", required=True, help="this service's name")
    parser.add_argument("--issuer", help="the gateway's id (iss), if checked")
    parser.add_argument("--method", help="the request's method")
    parser.add_argument("--path", help="the request's path, without the query")
    parser.add_argument("token", nargs="?", help="the Txn-Token value (default: stdin)")
    args = parser.parse_args(argv)
    token = (args.token or sys.stdin.readline()).strip()
    jwks = jwt.PyJWKClient(args.jwks, cache_keys=True, lifespan=300, timeout=10)
    try:
        claims = verify(token, jwks, args.audience, args.issuer, args.method, args.path)
    except jwt.PyJWTError as e:
        print(f"refused: {e}", file=sys.stderr)
        return 1
    print(json.dumps(claims, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
