# The test Authority (tests/authority: node-oidc-provider), for the compose
# stack only: test clients, test secrets, in-memory state, plain http.
# Build context: the repository root.
#   docker build -f compose/authority.Dockerfile -t stella-test-authority .
#
# Debian trixie, not bookworm: oidc-provider 9 needs Node.js 20.18 or later
# (it calls URL.parse and crypto.hash); bookworm's nodejs is 18.20, trixie's
# is 20.19. Node comes from Debian's packages, the node modules from the
# npm registry at the versions tests/authority/package-lock.json pins.
FROM debian:trixie-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends nodejs npm ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10002 --user-group --no-create-home --home-dir /nonexistent authority
WORKDIR /opt/authority
COPY tests/authority/package.json tests/authority/package-lock.json ./
# Behind a TLS-intercepting proxy: --build-arg NODE_EXTRA_CA_CERTS=<a PEM
# file mounted into the build> (compose/ci.sh does; build time only).
ARG NODE_EXTRA_CA_CERTS=
RUN npm ci --omit=dev --no-audit --no-fund --loglevel=error && npm cache clean --force
COPY tests/authority/server.mjs tests/authority/token.mjs tests/authority/proof.mjs ./
ENV AUTHORITY_HOST=0.0.0.0 AUTHORITY_PORT=7100
USER authority
EXPOSE 7100
CMD ["node", "server.mjs"]
