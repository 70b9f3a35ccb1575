#!/bin/sh
# Runs the Go SDK's benchmarks briefly (2000 iterations each).
set -eu
cd "$(dirname "$0")"
. ./goenv.sh

go test -run '^$' -bench . -benchtime 2000x ./...
