# The shardmesh image: one binary, every role (`gateway`, `consumer`, `ctl`, `store`,
# `sim`), chosen by the command.
#
#   docker build -t localhost/shardmesh .                 # builds the binary in the image
#   cargo build --profile dist -p shardmesh-cli && \
#     docker build --target prebuilt -t localhost/shardmesh .   # or takes the host's binary
#
# The base images are build arguments, so a machine that cannot reach a registry builds
# from local ones (scripts/container-base makes a Debian bookworm base with debootstrap):
#   --build-arg RUNTIME_IMAGE=local/debian:bookworm-slim
# A binary built on the host must link against a glibc no newer than the runtime
# image's (bookworm: 2.36), which holds for any build on bookworm.
#
# Stages are ordered for Docker's legacy builder, which builds every stage before the
# one it targets: `prebuilt` needs nothing from the Rust image.

ARG RUST_IMAGE=docker.io/library/rust:1-bookworm
ARG RUNTIME_IMAGE=docker.io/library/debian:bookworm-slim

# The CA bundle, for anything in the container that uses the system's roots (shardmesh
# itself verifies Discord and amqps against the webpki roots compiled in). Only the
# bundle is copied: the package would bring openssl along, 9 MB the nodes never run.
FROM ${RUNTIME_IMAGE} AS certificates
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/*

FROM ${RUNTIME_IMAGE} AS runtime-base
COPY --from=certificates /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
RUN useradd --system --uid 10001 --user-group --home-dir /var/lib/shardmesh --create-home shardmesh
# A node's HTTP face (/health, /ready, /metrics) on every interface of the container,
# so health checks and Prometheus reach it; SQLite (one host only) under the state
# directory, which compose mounts as a volume shared by the host's nodes.
ENV SHARDMESH__NODE__HTTP_BIND=0.0.0.0:9464 \
    SHARDMESH__STORE__SQLITE__PATH=/var/lib/shardmesh/shardmesh.sqlite
USER shardmesh
WORKDIR /var/lib/shardmesh
EXPOSE 9464
# `docker stop` sends SIGTERM to shardmesh itself (PID 1, exec form): the node hands its
# shards or partitions over and exits; give it the time (compose: stop_grace_period).
STOPSIGNAL SIGTERM
ENTRYPOINT ["shardmesh"]
CMD ["--help"]

FROM runtime-base AS prebuilt
# Path of the host-built binary inside the build context.
ARG PREBUILT=target/dist/shardmesh
COPY ${PREBUILT} /usr/local/bin/shardmesh

FROM ${RUST_IMAGE} AS builder
WORKDIR /src
COPY . .
RUN cargo build --profile dist --locked -p shardmesh-cli

FROM runtime-base AS runtime
COPY --from=builder /src/target/dist/shardmesh /usr/local/bin/shardmesh
