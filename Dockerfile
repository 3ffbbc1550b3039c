# syntax=docker/dockerfile:1.7
#
# redshift-auth-proxy container image.
#
#   docker build -t redshift-auth-proxy .
#   docker run --rm redshift-auth-proxy --help
#
# Two stages: the builder compiles the proxy and the local AWS stand-in (examples/aws_standin.rs,
# used by docker-compose.yml only) with the pinned toolchain; the runtime stage is Debian slim with
# CA certificates, the two binaries and a non-root user. Needs BuildKit (the default builder of
# current Docker) for the cache mounts.

# Exactly the toolchain rust-toolchain.toml pins (scripts/check-packaging checks that the two
# agree). The toolchain file itself is not copied in: with the matching image there is nothing
# for rustup to download, and the clippy/rustfmt components it lists are not needed to build.
ARG RUST_VERSION=1.95.0

FROM rust:${RUST_VERSION}-bookworm AS builder
WORKDIR /src
# Only what the build reads: the manifest and lock file, the library and binary sources, the
# stand-in example, and benches/ (Cargo.toml declares a [[bench]] target, which cargo insists on
# finding even when it does not build it). tests/ is not needed.
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY examples ./examples
COPY benches ./benches
# Cache mounts keep the crates.io registry and the target directory between builds, so a source
# change recompiles only this crate. The target directory is a cache, not a layer, so the
# binaries are copied out in the same step. sharing=locked: two concurrent builds wait for
# each other instead of corrupting the cache. --locked: the build uses Cargo.lock as committed.
# The proxy is built on its own, then the stand-in: an example may use the dev-dependencies,
# and built in one cargo run with it the proxy would get their features too (tokio's
# test-util among them, whose clock takes a lock on every read). The second run builds the
# shared dependencies again with those features, once; the cache keeps both.
RUN --mount=type=cache,id=redshift-auth-proxy-cargo-registry,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,id=redshift-auth-proxy-cargo-git,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,id=redshift-auth-proxy-target,target=/src/target,sharing=locked \
    cargo build --release --locked --bin redshift-auth-proxy \
    && cargo build --release --locked --example aws_standin \
    && install -D -m 0755 target/release/redshift-auth-proxy /out/redshift-auth-proxy \
    && install -D -m 0755 target/release/examples/aws_standin /out/aws-standin

# Debian slim rather than distroless: the binaries link glibc dynamically (as distroless/cc
# would serve), and slim also has bash, which docker-compose.yml's health checks use to speak
# HTTP over /dev/tcp (the image has no curl or wget, on purpose).
FROM debian:bookworm-slim AS runtime
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="redshift-auth-proxy" \
      org.opencontainers.image.description="PostgreSQL wire-protocol proxy for Amazon Redshift that logs in with short-lived IAM credentials" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0"
# ca-certificates: the OS trust store for `--upstream-roots native` and for the AWS SDK's HTTPS
# client. (The default `--upstream-roots webpki` roots are compiled in.) Versions are not pinned
# so that a rebuild picks up Debian's security updates.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 proxy \
    && useradd --system --uid 10001 --gid 10001 --home-dir /nonexistent --no-create-home \
       --shell /usr/sbin/nologin proxy
COPY --from=builder /out/redshift-auth-proxy /usr/local/bin/redshift-auth-proxy
COPY --from=builder /out/aws-standin /usr/local/bin/aws-standin
# The metrics and health endpoint must be reachable from outside the container's own loopback
# (kubelet probes and Prometheus scrape the pod IP), so the image listens on every interface;
# `--http-address` or this variable set to `off` disables it. The PostgreSQL listeners keep the
# proxy's loopback default: in a Kubernetes sidecar the application shares the pod's loopback,
# and anything else must say `--address 0.0.0.0` deliberately (anyone who can reach that port
# logs in as the proxy's IAM identity).
ENV REDSHIFT_AUTH_PROXY_HTTP_ADDRESS=0.0.0.0:9539
# glibc before 2.39 copies blocks of 2 KiB and more with `rep movsb`, which on some AMD EPYC
# machines runs 20-30 times slower when the destination is a few bytes past the source modulo
# 4 KiB. rustls copies each decrypted TLS record, and where the heap puts its buffers decides
# whether a session hits that case, so some sessions relayed about a third slower than others.
# glibc's vector loop has no such case. Ignored by other CPUs' glibc; see docs/benchmarks.md,
# "glibc and GLIBC_TUNABLES".
ENV GLIBC_TUNABLES=glibc.cpu.x86_rep_movsb_threshold=2097152
# Numeric uid:gid, so Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
USER 10001:10001
# 5439: the first target's PostgreSQL port (later targets take 5440, 5441, ...);
# 9539: /metrics, /startup, /liveness, /readiness (and POST /quitquitquit with --quitquitquit).
EXPOSE 5439 9539
# The proxy handles SIGTERM/SIGINT itself (graceful drain; see --min-sigterm-delay and
# --max-sigterm-delay) and starts no child processes, so it runs as PID 1 without an init.
STOPSIGNAL SIGTERM
# No HEALTHCHECK: without curl it would have to be a bash /dev/tcp script that assumes the HTTP
# endpoint is on and on port 9539, which `--http-address` can change or turn off; Kubernetes
# ignores HEALTHCHECK and uses its own probes (deploy/kubernetes/), and docker-compose.yml
# declares its own check where it controls the flags.
ENTRYPOINT ["/usr/local/bin/redshift-auth-proxy"]
CMD ["--help"]
