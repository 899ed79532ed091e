# Stand-in for jaegertracing/all-in-one:1.62.0, for scripts/compose-run.sh only (no container registry
# is reachable here): an OTLP/gRPC trace receiver on 4317 that keeps spans in memory, and on 16686 the
# part of Jaeger's query API the run reads (GET /api/services, /api/traces?service=, /api/traces/{id})
# with a plain HTML list instead of Jaeger's UI. Debian 12's Python and grpcio; the server is
# otlp_sink.py, beside this file.
FROM debian:12.15-slim
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-grpcio \
    && rm -rf /var/lib/apt/lists/*
COPY otlp_sink.py /usr/local/lib/standin/otlp_sink.py
USER 65534:65534
EXPOSE 4317 16686
CMD ["python3", "/usr/local/lib/standin/otlp_sink.py"]
