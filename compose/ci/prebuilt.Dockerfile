# CI variant of compose/Dockerfile: the same gateway and echo images, from
# binaries already built on the host (debug or release) instead of a Rust
# build stage, for machines without a registry (rust:* cannot be pulled).
# Build context: a folder holding stella-gateway, stella-echo-service,
# stella-sample-go (the Go sample built with CGO_ENABLED=0), sample-python
# (app.py and lib/: its packages and sdk/python's) and sample-node
# (server.mjs and node_modules/, sdk/node copied in); compose/ci.sh stages
# them. The stages below match compose/Dockerfile's.

FROM debian:bookworm-slim AS runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --user-group --no-create-home --home-dir /nonexistent stella

FROM runtime AS gateway
COPY stella-gateway /usr/local/bin/stella-gateway
RUN install -d -o stella -g stella -m 0700 /var/lib/stella-gateway
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

FROM runtime AS sample-go
COPY stella-sample-go /usr/local/bin/stella-sample-go
ENV SAMPLE_LISTEN=0.0.0.0:8080
USER stella
EXPOSE 8080
ENTRYPOINT ["stella-sample-go"]

FROM runtime AS sample-python
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 \
 && rm -rf /var/lib/apt/lists/*
COPY sample-python /opt/stella-sample-python
ENV SAMPLE_LISTEN=0.0.0.0:8080 PYTHONPATH=/opt/stella-sample-python/lib PYTHONDONTWRITEBYTECODE=1
USER stella
EXPOSE 8080
ENTRYPOINT ["python3", "/opt/stella-sample-python/app.py"]

FROM debian:trixie-slim AS sample-node
RUN apt-get update \
 && apt-get install -y --no-install-recommends nodejs ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --user-group --no-create-home --home-dir /nonexistent stella
COPY sample-node /opt/stella-sample-node
ENV SAMPLE_LISTEN=0.0.0.0:8080 NODE_ENV=production
USER stella
EXPOSE 8080
ENTRYPOINT ["node", "/opt/stella-sample-node/server.mjs"]
