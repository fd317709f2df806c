# The mock OpenAI/Anthropic upstream of the tests (tests/src/mock), for compose and demos:
# it stands in for real providers, nothing here reaches the internet.
FROM scratch
ARG VERSION=unknown
ARG COMMIT=unknown
ARG CREATED=unknown
LABEL org.opencontainers.image.title="tollgate-mock-openai" \
      org.opencontainers.image.description="Mock OpenAI-compatible upstream for Tollgate demos and tests (not for production)" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${COMMIT}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY etc/passwd etc/group /etc/
COPY bin/mock-openai /usr/local/bin/mock-openai
USER 10001:10001
EXPOSE 8901
ENTRYPOINT ["/usr/local/bin/mock-openai"]
CMD ["--listen", "0.0.0.0:8901"]
