# syntax=docker/dockerfile:1
# carbonshift operator image: the release binary on distroless/cc, running as the
# numeric non-root user 65532 so the restricted Pod Security Standard admits it.
#   docker build -t ghcr.io/carbonshift/carbonshift:dev .
# The toolchain CI builds and tests with (Cargo.toml rust-version is the minimum).
ARG RUST_VERSION=1.95

FROM docker.io/library/rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src
# Manifests first so the dependency download is cached across source changes.
COPY Cargo.toml Cargo.lock ./
# benches/ is listed in Cargo.toml; data/ is embedded into the binary; crds/ is part of the
# package (see Cargo.toml include).
COPY benches ./benches
COPY data ./data
COPY crds ./crds
COPY src ./src
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin carbonshift \
 && install -D -m 0755 target/release/carbonshift /out/carbonshift

# cc (not static): the binary links glibc and libgcc_s.
FROM gcr.io/distroless/cc-debian12:nonroot
ARG VERSION=dev
ARG REVISION=unknown
LABEL org.opencontainers.image.title="carbonshift" \
      org.opencontainers.image.description="Kubernetes operator that runs GPU batch and training jobs when the electricity grid is cleanest" \
      org.opencontainers.image.source="https://github.com/carbonshift/carbonshift" \
      org.opencontainers.image.url="https://github.com/carbonshift/carbonshift" \
      org.opencontainers.image.documentation="https://github.com/carbonshift/carbonshift/blob/main/docs/install.md" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.vendor="carbonshift"
COPY --from=build /out/carbonshift /usr/local/bin/carbonshift
# Numeric, so Kubernetes can verify runAsNonRoot without reading /etc/passwd.
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/carbonshift"]
CMD ["run"]
