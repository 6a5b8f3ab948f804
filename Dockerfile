# pacsync-server image: build in a full Rust image, run in a slim Debian
# with only the binary, as an unprivileged user, data on a volume.
#
#   docker build -t pacsync-server .
#   docker run -p 8080:8080 -v pacsync-data:/var/lib/pacsync-server pacsync-server
#   docker run --rm -v pacsync-data:/var/lib/pacsync-server pacsync-server admin create-user admin
#
# Configuration is the environment of docs/server.md (DATABASE_TYPE,
# DATABASE_URL, JWT_SECRET_KEY, ...).

FROM rust:1.95-bookworm AS build
# The bundled libpq is built from source against the system OpenSSL.
RUN apt-get update \
 && apt-get install -y --no-install-recommends libssl-dev pkg-config \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p pacsync-server \
 && cp target/release/pacsync-server /pacsync-server

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends libssl3 ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --user-group --home-dir /var/lib/pacsync-server \
      --shell /usr/sbin/nologin pacsync \
 && install -d -o pacsync -g pacsync -m 0700 /var/lib/pacsync-server
COPY --from=build /pacsync-server /usr/local/bin/pacsync-server
# mimalloc gives freed memory back at once instead of after a delay: after
# a burst of state uploads the resident size falls back (~60 MiB instead of
# ~100 MiB with 10,000 machines) for a fraction of upload throughput.
ENV PACSYNC_DATA_DIR=/var/lib/pacsync-server \
    HTTP_HOST=0.0.0.0 \
    HTTP_PORT=8080 \
    MIMALLOC_PURGE_DELAY=0 \
    MIMALLOC_ARENA_EAGER_COMMIT=0
VOLUME ["/var/lib/pacsync-server"]
USER pacsync:pacsync
EXPOSE 8080
# No curl in the image: the binary checks /health/ready itself.
HEALTHCHECK --interval=30s --timeout=10s --start-period=30s --retries=3 \
    CMD ["/usr/local/bin/pacsync-server", "healthcheck"]
# SIGTERM drains in-flight requests for up to 30 s.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/pacsync-server"]
CMD ["serve"]
