# CI variant of compose/Dockerfile: the same gateway and echo images, from
# binaries already built on the host (debug or release) instead of a Rust
# build stage, for machines without a registry (rust:* cannot be pulled).
# Build context: a folder holding stella-gateway and stella-echo-service
# (compose/ci.sh stages them). The stages below match compose/Dockerfile's.

FROM debian:bookworm-slim AS runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --user-group --no-create-home --home-dir /nonexistent stella

FROM runtime AS gateway
COPY stella-gateway /usr/local/bin/stella-gateway
USER stella
EXPOSE 8080 9090
ENTRYPOINT ["stella-gateway"]
CMD ["run", "--config", "/etc/stella/gateway/gateway.yaml"]

FROM runtime AS echo
COPY stella-echo-service /usr/local/bin/stella-echo-service
RUN install -d -o stella -g stella /var/lib/stella-echo \
 && install -o stella -g stella -m 0600 /dev/null /var/lib/stella-echo/router.env
ENV ECHO_LISTEN=0.0.0.0:8080 Router__ConfigFile=/var/lib/stella-echo/router.env
USER stella
EXPOSE 8080
ENTRYPOINT ["stella-echo-service"]
