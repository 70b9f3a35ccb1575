#!/bin/sh
# Vets and tests the Go SDK of the identity envelope, installing Go with apt
# if it is missing. The tests read ../../envelope/testdata/vectors.json.
set -eu
cd "$(dirname "$0")"
. ./goenv.sh

unformatted=$(gofmt -l .)
if [ -n "$unformatted" ]; then
	echo "not gofmt-formatted:" >&2
	echo "$unformatted" >&2
	exit 1
fi
go vet ./...
go test -count=1 ./...
