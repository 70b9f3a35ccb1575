package envelope_test

import (
	"context"
	"fmt"
	"log"
	"net/http"
	"os"
	"time"

	"github.com/stellaops/stella-gateway/sdk/go/envelope"
)

// A service behind Stella Gateway: the trust mode and keys come from the
// Router__* variables and the file Router__ConfigFile names, and reload on
// SIGHUP or when the file changes.
func ExampleHandle_Middleware() {
	handle, err := envelope.NewHandle(envelope.Options{}) // Router__* variables + Router__ConfigFile
	if err != nil {
		log.Print(err) // every problem as "VARIABLE: problem", never a value
		os.Exit(2)
	}
	handle.StartTriggers(context.Background(), envelope.TriggerOptions{SIGHUP: true})
	mux := http.NewServeMux()
	mux.HandleFunc("/orders/", func(w http.ResponseWriter, r *http.Request) {
		if id, ok := envelope.IdentityFrom(r.Context()); ok { // a valid envelope, trusted in this mode
			sub, _ := id.Subject()
			fmt.Fprintln(w, "hello", sub)
			return
		}
		// No trusted identity: authenticate the caller by the service's own means.
	})
	log.Fatal(http.ListenAndServe(":8080", handle.Middleware(mux)))
}

// Verifying an envelope directly, without the middleware.
func ExampleVerifier_Verify() {
	ring, err := envelope.ParseKeyring("hs-1=hs256:dmVjdG9yLXNlY3JldC1ocy0xLWRvLW5vdC11c2UtaW4tcHJvZHVjdGlvbg")
	if err != nil {
		log.Fatal(err)
	}
	verifier, err := envelope.NewVerifier(ring, envelope.DefaultVerifierSettings("orders"))
	if err != nil {
		log.Fatal(err)
	}
	request, _ := http.NewRequest(http.MethodGet, "http://orders.internal/orders/42", nil)
	_, err = verifier.Verify(request.Header, request.Method, request.URL.EscapedPath(), time.Now())
	fmt.Println(err)
	// Output: request carries no identity envelope
}
