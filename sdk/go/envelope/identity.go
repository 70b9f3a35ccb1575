package envelope

import (
	"encoding/json"
	"time"
)

// AuthMethod is how the caller authenticated at the gateway.
type AuthMethod string

// The auth_method values of SPEC.md section 2.
const (
	AuthBearer    AuthMethod = "bearer"    // a plain Bearer access token
	AuthDPoP      AuthMethod = "dpop"      // a DPoP-bound token with a valid proof
	AuthMTLS      AuthMethod = "mtls"      // a certificate-bound token on a matching TLS connection
	AuthSPIFFE    AuthMethod = "spiffe"    // a SPIFFE X.509-SVID client certificate alone
	AuthAnonymous AuthMethod = "anonymous" // no credentials, on an anonymous route
	// AuthBypass is a sender-constrained token whose constraint was not
	// proven, let through by the operator's emergency bypass. A service may
	// trust such identities less.
	AuthBypass AuthMethod = "bypass"
)

func parseAuthMethod(text string) (AuthMethod, bool) {
	switch m := AuthMethod(text); m {
	case AuthBearer, AuthDPoP, AuthMTLS, AuthSPIFFE, AuthAnonymous, AuthBypass:
		return m, true
	}
	return "", false
}

// nullString is a JSON "string or null".
type nullString struct {
	value string
	set   bool
}

func (n nullString) get() (string, bool) { return n.value, n.set }

func (n nullString) ptr() *string {
	if !n.set {
		return nil
	}
	v := n.value
	return &v
}

// Confirmation is what the caller's credential was bound to (the payload's
// cnf). Each member is either a string or absent (null on the wire).
type Confirmation struct {
	jkt      nullString
	x5tS256  nullString
	spiffeID nullString
}

// JKT is the RFC 7638 thumbprint of the caller's DPoP key.
func (c Confirmation) JKT() (string, bool) { return c.jkt.get() }

// X5TS256 is the RFC 8705 SHA-256 thumbprint of the client certificate.
func (c Confirmation) X5TS256() (string, bool) { return c.x5tS256.get() }

// SPIFFEID is the SPIFFE ID of the client certificate.
func (c Confirmation) SPIFFEID() (string, bool) { return c.spiffeID.get() }

// Identity is a caller vouched for by an envelope that passed every check
// of SPEC.md section 5. Only the checks ([Verifier.Verify], [CheckRequest])
// fill one in; its fields are unexported so code that receives an
// *Identity cannot have been handed a hand-made or half-checked one. The
// zero value carries no identity.
type Identity struct {
	subject    nullString
	tenant     nullString
	clientID   nullString
	scopes     []string
	roles      []string
	authMethod AuthMethod
	cnf        Confirmation
	issuer     string
	audience   string
	method     string
	path       string
	requestID  string
	kid        string
	iat        uint64
	exp        uint64
}

// Subject is the subject of the caller's token; false for anonymous callers.
func (id *Identity) Subject() (string, bool) { return id.subject.get() }

// Tenant is the caller's tenant, when it has one.
func (id *Identity) Tenant() (string, bool) { return id.tenant.get() }

// ClientID is the OAuth client that obtained the token, when there is one.
func (id *Identity) ClientID() (string, bool) { return id.clientID.get() }

// Scopes returns a copy of the granted scopes.
func (id *Identity) Scopes() []string { return append([]string(nil), id.scopes...) }

// Roles returns a copy of the caller's roles.
func (id *Identity) Roles() []string { return append([]string(nil), id.roles...) }

// HasScope reports whether scope was granted (exact, case-sensitive).
func (id *Identity) HasScope(scope string) bool { return contains(id.scopes, scope) }

// HasRole reports whether the caller has role (exact, case-sensitive).
func (id *Identity) HasRole(role string) bool { return contains(id.roles, role) }

// AuthMethod is how the caller authenticated at the gateway.
func (id *Identity) AuthMethod() AuthMethod { return id.authMethod }

// Confirmation is what the caller's credential was bound to.
func (id *Identity) Confirmation() Confirmation { return id.cnf }

// Issuer is the id of the gateway that signed the envelope.
func (id *Identity) Issuer() string { return id.issuer }

// Audience is this service's name, as the envelope named it.
func (id *Identity) Audience() string { return id.audience }

// RequestID is the gateway's request id, also in the gateway's logs.
func (id *Identity) RequestID() string { return id.requestID }

// Kid is the id of the key the envelope was verified with.
func (id *Identity) Kid() string { return id.kid }

// IssuedAt is the envelope's iat.
func (id *Identity) IssuedAt() time.Time { return time.Unix(int64(id.iat), 0) }

// ExpiresAt is the envelope's exp.
func (id *Identity) ExpiresAt() time.Time { return time.Unix(int64(id.exp), 0) }

// MarshalJSON writes the verified payload's members (SPEC.md section 2), so
// a service can log or echo what the gateway vouched for. It is not the
// signed text and must never be used to check a signature.
func (id *Identity) MarshalJSON() ([]byte, error) {
	type cnf struct {
		JKT      *string `json:"jkt"`
		X5TS256  *string `json:"x5t#S256"`
		SPIFFEID *string `json:"spiffe_id"`
	}
	nonNil := func(s []string) []string {
		if s == nil {
			return []string{}
		}
		return s
	}
	return json.Marshal(struct {
		Ver        int        `json:"ver"`
		Iss        string     `json:"iss"`
		Aud        string     `json:"aud"`
		Sub        *string    `json:"sub"`
		Tenant     *string    `json:"tenant"`
		ClientID   *string    `json:"client_id"`
		Scopes     []string   `json:"scopes"`
		Roles      []string   `json:"roles"`
		AuthMethod AuthMethod `json:"auth_method"`
		Cnf        cnf        `json:"cnf"`
		Method     string     `json:"method"`
		Path       string     `json:"path"`
		RequestID  string     `json:"request_id"`
		Iat        uint64     `json:"iat"`
		Exp        uint64     `json:"exp"`
	}{
		Ver: payloadVersion, Iss: id.issuer, Aud: id.audience,
		Sub: id.subject.ptr(), Tenant: id.tenant.ptr(), ClientID: id.clientID.ptr(),
		Scopes: nonNil(id.scopes), Roles: nonNil(id.roles), AuthMethod: id.authMethod,
		Cnf:    cnf{id.cnf.jkt.ptr(), id.cnf.x5tS256.ptr(), id.cnf.spiffeID.ptr()},
		Method: id.method, Path: id.path, RequestID: id.requestID, Iat: id.iat, Exp: id.exp,
	})
}

func contains(list []string, want string) bool {
	for _, s := range list {
		if s == want {
			return true
		}
	}
	return false
}
