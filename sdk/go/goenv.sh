# Sourced by test.sh and bench.sh: makes sure Go is installed and points it
# at this module alone. The module uses the standard library only, so the
# module proxy is switched off; caches go under /tmp unless the caller
# chose other places.

if ! command -v go >/dev/null 2>&1; then
	if [ "$(id -u)" -eq 0 ]; then
		sudo=""
	elif command -v sudo >/dev/null 2>&1; then
		sudo="sudo"
	else
		echo "go is not installed, and installing it needs root or sudo" >&2
		exit 1
	fi
	echo "installing golang-go with apt-get" >&2
	$sudo apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq golang-go
fi

export GOFLAGS=-mod=mod
export GOPROXY=off
# Go 1.21 and later would otherwise try to download the toolchain go.mod names.
export GOTOOLCHAIN=local
export GOCACHE="${GOCACHE:-/tmp/stella-sdk-go/cache}"
export GOPATH="${GOPATH:-/tmp/stella-sdk-go/gopath}"
go version
