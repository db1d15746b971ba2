# syntax=docker/dockerfile:1
# turnstile's image: built with the Rust toolchain, run from a distroless image
# (glibc, no shell, no package manager) as a non-root user.
# docker-compose.yml builds it; alone: `docker build -t turnstile .`

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
# Cargo.toml names the benches, so cargo wants their files even to build the binary.
COPY benches ./benches
# No debug info and stripped symbols: the image carries the binary only.
ENV CARGO_PROFILE_RELEASE_DEBUG=0 CARGO_PROFILE_RELEASE_STRIP=symbols
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin turnstile \
 && mkdir -p /out/data \
 && cp target/release/turnstile /out/turnstile

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/turnstile /usr/local/bin/turnstile
COPY deploy/turnstile.toml /etc/turnstile/turnstile.toml
# The store directory, owned by the image's non-root user (65532), so a fresh named
# volume mounted here starts out writable by it.
COPY --from=build --chown=65532:65532 /out/data /var/lib/turnstile
USER 65532:65532
VOLUME ["/var/lib/turnstile"]
EXPOSE 9443 12000
ENV TURNSTILE_CONFIG=/etc/turnstile/turnstile.toml
ENTRYPOINT ["/usr/local/bin/turnstile"]
CMD ["run"]
