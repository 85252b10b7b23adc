# syntax=docker/dockerfile:1
# rollwarden's container image: a release build, stripped (its debug info split off into
# the `debug` stage), with a pinned helm for the helm_rollback executor, on a distroless
# base holding only glibc, libgcc, CA certificates and those two binaries, running as
# UID 65532.
#
#   docker build -t registry.example.com/rollwarden:0.1.0 \
#     --build-arg ROLLWARDEN_COMMIT=$(git rev-parse --short=12 HEAD) \
#     --build-arg SOURCE_DATE_EPOCH=$(git log -1 --format=%ct) .
#
# The two build arguments are what `rollwarden --version` and the image's labels report
# (.git is not sent to the build); without them the commit reads "unknown".
#
# The split-off debug info, for symbolising a core dump or a perf profile:
#   docker build --target debug --output type=local,dest=./debug .
#
# The Kubernetes manifests (deploy/kubernetes) mount the config at
# /etc/rollwarden/rollwarden.toml, which the default CMD reads.
#
# `command:` executors run what the image carries: extend it with your team's CLIs
# (deploy/examples/Dockerfile.aws-cli, and docs/deploy.md).

ARG RUST_VERSION=1.95
ARG ROLLWARDEN_COMMIT=unknown
ARG SOURCE_DATE_EPOCH=0

# helm, for the helm_rollback executor. Helm publishes no container image of its own
# (helm/helm#4397), so this is the project's release archive from get.helm.sh, pinned by
# version and by the SHA-256 Helm publishes beside it (helm-vX.Y.Z-linux-ARCH.tar.gz
# .sha256sum): BuildKit refuses an archive whose digest differs. To move to another
# version, change HELM_VERSION and both digests together.
ARG HELM_VERSION=v3.16.2
FROM scratch AS helm-amd64
ARG HELM_VERSION
ADD --checksum=sha256:9318379b847e333460d33d291d4c088156299a26cd93d570a7f5d0c36e50b5bb \
    https://get.helm.sh/helm-${HELM_VERSION}-linux-amd64.tar.gz /helm.tar.gz
FROM scratch AS helm-arm64
ARG HELM_VERSION
ADD --checksum=sha256:1888301aeb7d08a03b6d9f4d2b73dcd09b89c41577e80e3455c113629fc657a4 \
    https://get.helm.sh/helm-${HELM_VERSION}-linux-arm64.tar.gz /helm.tar.gz
# TARGETARCH (amd64 or arm64) is BuildKit's; another architecture has no stage here.
# (A stage of this file, not an image: there is no tag to pin.)
# hadolint ignore=DL3006
FROM helm-${TARGETARCH} AS helm-archive

FROM rust:${RUST_VERSION}-slim-bookworm AS build
ARG ROLLWARDEN_COMMIT
ARG SOURCE_DATE_EPOCH
ARG TARGETARCH
ENV ROLLWARDEN_COMMIT=${ROLLWARDEN_COMMIT} SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH}
# The allocator, jemalloc (tikv-jemalloc-sys), builds with make, which the slim image
# lacks (it has gcc and libc6-dev). Pinned to bookworm's version.
RUN apt-get update \
    && apt-get install -y --no-install-recommends make=4.3-4.1 \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# What the release build reads: the manifest and lock, build.rs, the sources, and the migrations
# (sqlx::migrate! embeds them). tests/, examples/ and bench/ are not needed.
COPY Cargo.toml Cargo.lock build.rs ./
COPY src ./src
COPY migrations ./migrations
# The cargo registry and target/ are cache mounts (BuildKit), so a rebuild after a
# source change recompiles rollwarden only. A cache mount is not part of the image:
# the binary is copied out of it.
# On arm64, jemalloc is built for pages up to 64 KiB (some arm64 kernels use 16 or 64
# KiB pages; a jemalloc built for 4 KiB refuses to start there).
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    if [ "$TARGETARCH" = arm64 ]; then export JEMALLOC_SYS_WITH_LG_PAGE=16; fi \
    && cargo build --release --locked --bin rollwarden \
    && mkdir -p /out/data /out/debug \
    && objcopy --only-keep-debug target/release/rollwarden /out/debug/rollwarden.debug \
    && objcopy --strip-debug --add-gnu-debuglink=/out/debug/rollwarden.debug \
         target/release/rollwarden /out/rollwarden \
    && chmod 0755 /out/rollwarden \
    && ls -l target/release/rollwarden /out/rollwarden /out/debug/rollwarden.debug
# The stripped binary keeps its symbol table, so a panic's backtrace still names the
# functions; file and line come from the debug stage's file.
RUN --mount=type=bind,from=helm-archive,target=/helm \
    tar -xzf /helm/helm.tar.gz -C /tmp "linux-${TARGETARCH}/helm" \
    && install -m 0755 "/tmp/linux-${TARGETARCH}/helm" /out/helm \
    && /out/helm version --short

# `docker build --target debug --output ...`: the debug info the image's binary lacks.
FROM scratch AS debug
COPY --from=build /out/debug/rollwarden.debug /

# Debian 12, the builder's glibc; the :nonroot tag's user is 65532.
FROM gcr.io/distroless/cc-debian12:nonroot
ARG ROLLWARDEN_COMMIT
LABEL org.opencontainers.image.title="rollwarden" \
      org.opencontainers.image.version="0.1.0" \
      org.opencontainers.image.revision="${ROLLWARDEN_COMMIT}" \
      org.opencontainers.image.description="Decides, with evidence, whether a bad deploy must be rolled back" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /out/rollwarden /out/helm /usr/local/bin/
# helm writes its cache and config under these; the root filesystem is read-only and the
# manifests mount an emptyDir at /tmp.
ENV HELM_CACHE_HOME=/tmp/helm/cache \
    HELM_CONFIG_HOME=/tmp/helm/config \
    HELM_DATA_HOME=/tmp/helm/data
# Where an SQLite database goes (sqlite:/var/lib/rollwarden/rollwarden.db): owned by
# rollwarden's user, so a fresh volume mounted here is writable.
COPY --from=build --chown=65532:65532 /out/data /var/lib/rollwarden
USER 65532:65532
WORKDIR /var/lib/rollwarden
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/rollwarden"]
CMD ["serve", "--config", "/etc/rollwarden/rollwarden.toml"]
