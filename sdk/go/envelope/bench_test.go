package envelope_test

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stellaops/stella-gateway/sdk/go/envelope"
)

// benchmarkVerify measures a whole check of one vector: finding the six
// headers in a request's header map, the signature and the payload.
func benchmarkVerify(b *testing.B, vector string) {
	vf := loadVectors(b)
	v := vf.verifier(b)
	header := headerOf(vf.validHeaders(b, vector))
	header.Set("Accept", "application/json")
	header.Set("User-Agent", "bench")
	header.Set("Traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
	now := vf.now()
	if _, err := v.Verify(header, vf.Request.Method, vf.Request.Path, now); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := v.Verify(header, vf.Request.Method, vf.Request.Path, now); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerifyHS256(b *testing.B) { benchmarkVerify(b, "hs256_bearer") }

func BenchmarkVerifyEdDSA(b *testing.B) { benchmarkVerify(b, "eddsa_dpop") }

// The middleware around a trivial handler, to show its share of a request.
func BenchmarkMiddlewareGatewayEnforcedHS256(b *testing.B) {
	vf := loadVectors(b)
	h, err := envelope.NewHandle(envelope.Options{
		Environ: fixedEnviron(vf.vectorEnviron("GatewayEnforced")...),
		Logger:  (&logBuffer{}).logger(),
		Now:     vf.now,
	})
	if err != nil {
		b.Fatal(err)
	}
	var served int
	handler := h.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { served++ }))
	req := httptest.NewRequest(http.MethodGet, vf.Request.Path, nil)
	req.Header = headerOf(vf.validHeaders(b, "hs256_bearer"))
	w := httptest.NewRecorder()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		handler.ServeHTTP(w, req)
	}
	if served != b.N {
		b.Fatalf("served %d of %d", served, b.N)
	}
}
