# Stand-in for jaegertracing/all-in-one:1.62.0 when the workspace has the streambank-trace-viewer
# package (an in-memory OTLP collector that serves Jaeger's own UI and query API), for
# scripts/compose-run.sh only. The build context is a staging directory holding bin/ with the
# host-built binary, as for Dockerfile.runtime. Without that package, jaeger.Dockerfile is used.
FROM debian:12.15-slim
COPY bin/streambank-trace-viewer /usr/local/bin/streambank-trace-viewer
ENV TRACE_UI_ADDR=0.0.0.0:16686 \
    OTLP_GRPC_ADDR=0.0.0.0:4317
USER 65534:65534
EXPOSE 4317 16686
CMD ["streambank-trace-viewer"]
