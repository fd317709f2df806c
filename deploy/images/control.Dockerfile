# tollgate-control on an empty base: the static binary, a passwd entry for uid 10001 and
# CA certificates (OIDC discovery, webhooks). Build context: deploy/images/build.
FROM scratch
ARG VERSION=unknown
ARG COMMIT=unknown
ARG CREATED=unknown
LABEL org.opencontainers.image.title="tollgate-control" \
      org.opencontainers.image.description="Tollgate control plane: admin API, web UI, signed config stream, usage ingest" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${COMMIT}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.vendor="Tollgate"
COPY etc/passwd etc/group /etc/
COPY etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --chown=10001:10001 var/lib/tollgate /var/lib/tollgate
COPY bin/tollgate-control /usr/local/bin/tollgate-control
USER 10001:10001
WORKDIR /var/lib/tollgate
ENV TOLLGATE_SERVER__LISTEN=0.0.0.0:8400 \
    TOLLGATE_GRPC__LISTEN=0.0.0.0:8401 \
    TOLLGATE_SERVER__LOG_FORMAT=json
EXPOSE 8400 8401
# No shell in the image: the binary probes its own /readyz.
HEALTHCHECK --interval=5s --timeout=3s --start-period=60s --retries=3 \
  CMD ["/usr/local/bin/tollgate-control", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/tollgate-control"]
CMD ["serve"]
