// Package envelope verifies the Stella identity envelope: the six
// X-StellaOps-Identity-Envelope* headers Stella Gateway adds to a forwarded
// request to tell the service behind it who is calling (envelope/SPEC.md in
// the gateway repository).
//
// The package has three layers, so that everything that can be tested
// without a socket is:
//
//   - A pure core. [ExtractHeaders], [Verifier.Verify] and [Decide] are plain
//     functions of the request's headers, method and path, the keyring and
//     the current time; they do no I/O and read no clock. A verified
//     [Identity] is only made by these checks ([Verifier.Verify],
//     [CheckRequest]): its fields are unexported, so a handler cannot be
//     handed a half-checked one.
//   - Configuration. [LoadConfig] reads the Router__* variables SPEC.md
//     section 7 lists, overlaid by the file Router__ConfigFile names. A
//     [Handle] keeps the checked [Config] behind an atomic pointer and
//     replaces it whole on [Handle.Reload]; a reload with any problem keeps
//     the configuration in use. [Handle.StartTriggers] reloads on SIGHUP and
//     when the file changes. With Router__IdentityEnvelopeJwksUrl the
//     handle also fetches the gateway's public keys ([JWKSKeys], parsed by
//     [ParseJWKS]) until [Handle.Close].
//   - A net/http middleware, [Handle.Middleware], that loads the
//     configuration once per request, applies the trust mode, answers
//     rejections with application/problem+json and hands the verified
//     identity to the handler through the request context ([IdentityFrom]).
//
// The module uses the standard library only.
package envelope
