# CI variant of the compose stack's Prometheus (prom/prometheus for Docker
# users): Debian's prometheus package on debian:bookworm-slim, for machines
# without a registry. Same configuration folder (/etc/prometheus), same port.
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends prometheus \
 && rm -rf /var/lib/apt/lists/*
USER prometheus
EXPOSE 9090
ENTRYPOINT ["prometheus"]
CMD ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/var/lib/prometheus/metrics2", "--web.listen-address=0.0.0.0:9090"]
