module github.com/stellaops/stella-gateway/sdk/go

go 1.19
