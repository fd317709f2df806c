# tollgate-gateway on an empty base: the static binary, a passwd entry for uid 10001 and
# CA certificates (providers' TLS). Spool and last-known-good file live under
# /var/lib/tollgate: mount a volume there. Build context: deploy/images/build.
FROM scratch
ARG VERSION=unknown
ARG COMMIT=unknown
ARG CREATED=unknown
LABEL org.opencontainers.image.title="tollgate-gateway" \
      org.opencontainers.image.description="Tollgate gateway: OpenAI-compatible API with budgets, rate limits and routing" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${COMMIT}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.vendor="Tollgate"
COPY etc/passwd etc/group /etc/
COPY etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --chown=10001:10001 var/lib/tollgate /var/lib/tollgate
COPY bin/tollgate-gateway /usr/local/bin/tollgate-gateway
USER 10001:10001
WORKDIR /var/lib/tollgate
ENV TOLLGATE_SERVER__LISTEN=0.0.0.0:8080 \
    TOLLGATE_SERVER__LOG_FORMAT=json \
    TOLLGATE_TELEMETRY__SPOOL_DIR=/var/lib/tollgate/spool \
    TOLLGATE_CONTROL__LAST_KNOWN_GOOD=/var/lib/tollgate/last-known-good.snapshot
EXPOSE 8080
# Ready means: a verified config is loaded and the ledger takes reservations.
HEALTHCHECK --interval=5s --timeout=3s --start-period=60s --retries=3 \
  CMD ["/usr/local/bin/tollgate-gateway", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/tollgate-gateway"]
