// Command stella-sample-go is a sample service behind Stella Gateway in Go:
// net/http, with the envelope verified by the Go SDK (sdk/go).
//
// The SDK reads the Router__* variables (envelope/SPEC.md section 7): trust
// mode, accepted keys, audience, issuer, and Router__ConfigFile, reloaded
// when the file changes and on SIGHUP. SAMPLE_LISTEN is the address to bind
// (host:port, default 127.0.0.1:0, an ephemeral port); once listening the
// service prints one line, SAMPLE_READY {"addr": ...}, on stdout.
//
// Routes: GET /health (outside the envelope check, for health checks), and
// GET /go/whoami and GET|POST /go/orders/{id}, which answer with the
// identity the gateway vouched for. Rejections (401 envelope_required,
// envelope_invalid, ...) are answered by the SDK's middleware.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/stellaops/stella-gateway/sdk/go/envelope"
)

const language = "go"

// optional is a value the identity may lack, as JSON null when absent.
func optional(value string, ok bool) *string {
	if !ok {
		return nil
	}
	return &value
}

func identityJSON(id *envelope.Identity) map[string]any {
	sub, hasSub := id.Subject()
	tenant, hasTenant := id.Tenant()
	clientID, hasClientID := id.ClientID()
	cnf := id.Confirmation()
	return map[string]any{
		"subject":     optional(sub, hasSub),
		"tenant":      optional(tenant, hasTenant),
		"client_id":   optional(clientID, hasClientID),
		"scopes":      append([]string{}, id.Scopes()...),
		"roles":       append([]string{}, id.Roles()...),
		"auth_method": id.AuthMethod(),
		"cnf": map[string]*string{
			"jkt":       optional(cnf.JKT()),
			"x5t#S256":  optional(cnf.X5TS256()),
			"spiffe_id": optional(cnf.SPIFFEID()),
		},
		"kid":        id.Kid(),
		"issuer":     id.Issuer(),
		"audience":   id.Audience(),
		"request_id": id.RequestID(),
	}
}

func answer(w http.ResponseWriter, r *http.Request, body map[string]any) {
	id, trusted := envelope.IdentityFrom(r.Context()) // a valid envelope, trusted in this mode
	if !trusted {
		// Hybrid (or ServiceEnforced) without a trusted envelope: a real
		// service authenticates the caller itself here; this one has no
		// authentication of its own.
		w.Header().Set("Content-Type", "application/problem+json")
		w.WriteHeader(http.StatusUnauthorized)
		fmt.Fprint(w, `{"type":"about:blank","title":"Unauthorized","status":401,"error":"service_auth_required"}`)
		return
	}
	outcome, _ := envelope.OutcomeFrom(r.Context())
	body["language"] = language
	body["mode"] = outcome.Config().Mode().String()
	body["identity"] = identityJSON(id)
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(body)
}

func main() {
	handle, err := envelope.NewHandle(envelope.Options{}) // Router__* + Router__ConfigFile
	if err != nil {
		log.Print(err) // every problem as "VARIABLE: problem", never a value
		os.Exit(2)
	}
	handle.StartTriggers(context.Background(), envelope.TriggerOptions{SIGHUP: true})

	api := http.NewServeMux()
	api.HandleFunc("/go/whoami", func(w http.ResponseWriter, r *http.Request) {
		answer(w, r, map[string]any{})
	})
	api.HandleFunc("/go/orders/", func(w http.ResponseWriter, r *http.Request) {
		order := strings.TrimPrefix(r.URL.Path, "/go/orders/")
		if order == "" || strings.Contains(order, "/") {
			http.NotFound(w, r)
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodPost {
			w.Header().Set("Allow", "GET, POST")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		answer(w, r, map[string]any{"order": order, "method": r.Method})
	})
	root := http.NewServeMux()
	root.HandleFunc("/health", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"status":"ok"}`)
	})
	// Outside any path rewriting: the envelope is bound to the path as received.
	root.Handle("/go/", handle.Middleware(api))

	listen := os.Getenv("SAMPLE_LISTEN")
	if listen == "" {
		listen = "127.0.0.1:0"
	}
	listener, err := net.Listen("tcp", listen)
	if err != nil {
		log.Printf("cannot listen on %s: %v", listen, err)
		os.Exit(1)
	}
	ready, _ := json.Marshal(map[string]string{
		"addr": listener.Addr().String(), "language": language, "mode": handle.Current().Mode().String(),
	})
	fmt.Printf("SAMPLE_READY %s\n", ready)
	server := &http.Server{Handler: root, ReadHeaderTimeout: 10 * time.Second}
	log.Fatal(server.Serve(listener))
}
