# StreamBank: one image holding all four binaries (streambank-api, streambank-relay, streambank-worker,
# bankctl); each service picks its binary with its command. Why one image: docs/deployment.md.
#
#   docker build -t streambank:dev .
#   docker run --rm streambank:dev bankctl migrate
#
# Plain Dockerfile syntax only (no `RUN --mount`, no `# syntax=` line): the image must also build with
# compose's classic builder and with podman, neither of which has BuildKit here. Dependency caching comes
# from cargo-chef's layer instead of a cache mount.
#
# Base images are pinned by version. The builder and the runtime are both Debian 12 (bookworm), so the
# binaries link against the same glibc (2.36) they run with.

# ---------------------------------------------------------------------------------------------------------
# chef: the Rust toolchain plus cargo-chef, installed from the crates registry and pinned.
FROM rust:1.95.0-bookworm AS chef
ARG CARGO_CHEF_VERSION=0.1.78
RUN cargo install cargo-chef --version "${CARGO_CHEF_VERSION}" --locked \
    && rm -rf "${CARGO_HOME}/registry" "${CARGO_HOME}/git"
WORKDIR /src
# The sqlx query macros read the committed .sqlx/ cache; no database is needed at build time
# (.cargo/config.toml says the same; this makes it explicit for every stage below).
# The workspace's release profile keeps line tables for profiling the benchmarks; the image needs no debug
# information (it is four fifths of each binary), so these stages build without it. Symbols stay, so a
# panic's backtrace still names functions.
ENV SQLX_OFFLINE=true \
    CARGO_TERM_COLOR=never \
    CARGO_PROFILE_RELEASE_DEBUG=false \
    CARGO_PROFILE_RELEASE_STRIP=debuginfo

# ---------------------------------------------------------------------------------------------------------
# planner: reduce the workspace to a recipe (manifests, lock file, build scripts). The recipe changes only
# when dependencies change, so the `cook` layer below stays cached across ordinary code edits.
FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

# ---------------------------------------------------------------------------------------------------------
# builder: compile the dependencies (cached layer), then the workspace's binaries.
FROM chef AS builder
# The packages whose binaries go into the image. Override with --build-arg to build a subset
# (e.g. BINARIES=bankctl while the other services do not exist yet).
ARG BINARIES="bankctl streambank-api streambank-relay streambank-worker"
COPY --from=planner /src/recipe.json recipe.json
# hadolint ignore=SC2086
RUN set -eu; pkgs=""; for b in ${BINARIES}; do pkgs="${pkgs} --package ${b}"; done; \
    cargo chef cook --release --locked --recipe-path recipe.json ${pkgs}
COPY . .
# hadolint ignore=SC2086
RUN set -eu; pkgs=""; for b in ${BINARIES}; do pkgs="${pkgs} --package ${b}"; done; \
    cargo build --release --locked ${pkgs}; \
    mkdir -p /out; \
    for b in ${BINARIES}; do install -m 0755 "target/release/${b}" "/out/${b}"; done

# ---------------------------------------------------------------------------------------------------------
# runtime: Debian slim with CA certificates and a non-root user. Keep in step with Dockerfile.runtime,
# which builds the same runtime around binaries compiled on the host (scripts/build-image.sh).
FROM debian:12.15-slim AS runtime
# Unpinned apt package versions on purpose: the base image is pinned, and bookworm's security updates
# to ca-certificates should be picked up on rebuild rather than fail the build when a version rotates.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --gid 10001 streambank \
    && useradd --uid 10001 --gid 10001 --home-dir /nonexistent --no-create-home \
       --shell /usr/sbin/nologin streambank
COPY --from=builder /out/ /usr/local/bin/
# Numeric user, so that Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
USER 10001:10001
WORKDIR /
# No ENV here: configuration (and every secret) comes from the environment at run time
# (docs/architecture.md §3), so the binaries' own defaults apply unless compose or Kubernetes say otherwise.
EXPOSE 8080 8081 9090 9100 9101 9102
LABEL org.opencontainers.image.title="streambank" \
      org.opencontainers.image.description="StreamBank: streambank-api, streambank-relay, streambank-worker and bankctl" \
      org.opencontainers.image.licenses="MIT OR Apache-2.0"
# No ENTRYPOINT: the command names the binary (`streambank-relay`, `bankctl migrate`, ...).
CMD ["streambank-api"]
