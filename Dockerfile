# syntax=docker/dockerfile:1
# rollwarden's container image: a release build, on a distroless base holding only
# glibc, libgcc, CA certificates and the binary, running as UID 65532.
#
#   docker build -t registry.example.com/rollwarden:0.1.0 \
#     --build-arg ROLLWARDEN_COMMIT=$(git rev-parse --short=12 HEAD) \
#     --build-arg SOURCE_DATE_EPOCH=$(git log -1 --format=%ct) .
#
# The two build arguments are what `rollwarden --version` and the image's labels report
# (.git is not sent to the build); without them the commit reads "unknown".
#
# The Kubernetes manifests (deploy/kubernetes) mount the config at
# /etc/rollwarden/rollwarden.toml, which the default CMD reads.

ARG RUST_VERSION=1.95
ARG ROLLWARDEN_COMMIT=unknown
ARG SOURCE_DATE_EPOCH=0

FROM rust:${RUST_VERSION}-slim-bookworm AS build
ARG ROLLWARDEN_COMMIT
ARG SOURCE_DATE_EPOCH
ENV ROLLWARDEN_COMMIT=${ROLLWARDEN_COMMIT} SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH}
WORKDIR /src
# What the release build reads: the manifest and lock, build.rs, the sources, and the migrations
# (sqlx::migrate! embeds them). tests/, examples/ and bench/ are not needed.
COPY Cargo.toml Cargo.lock build.rs ./
COPY src ./src
COPY migrations ./migrations
# The cargo registry and target/ are cache mounts (BuildKit), so a rebuild after a
# source change recompiles rollwarden only. A cache mount is not part of the image:
# the binary is copied out of it.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin rollwarden \
    && install -D -m 0755 target/release/rollwarden /out/rollwarden \
    && mkdir -p /out/data

# Debian 12, the builder's glibc; the :nonroot tag's user is 65532.
FROM gcr.io/distroless/cc-debian12:nonroot
ARG ROLLWARDEN_COMMIT
LABEL org.opencontainers.image.title="rollwarden" \
      org.opencontainers.image.version="0.1.0" \
      org.opencontainers.image.revision="${ROLLWARDEN_COMMIT}" \
      org.opencontainers.image.description="Decides, with evidence, whether a bad deploy must be rolled back" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /out/rollwarden /usr/local/bin/rollwarden
# Where an SQLite database goes (sqlite:/var/lib/rollwarden/rollwarden.db): owned by
# rollwarden's user, so a fresh volume mounted here is writable.
COPY --from=build --chown=65532:65532 /out/data /var/lib/rollwarden
USER 65532:65532
WORKDIR /var/lib/rollwarden
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/rollwarden"]
CMD ["serve", "--config", "/etc/rollwarden/rollwarden.toml"]
