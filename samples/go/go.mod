module github.com/stellaops/stella-gateway/samples/go

go 1.19

require github.com/stellaops/stella-gateway/sdk/go v0.0.0

// The SDK from this checkout, not a published version.
replace github.com/stellaops/stella-gateway/sdk/go => ../../sdk/go
