# syntax=docker/dockerfile:1
#
# wxledger image: one binary, several roles. The entrypoint is the binary itself, so
#   docker run IMAGE serve | migrate | sim | demo --api URL --sim URL
# Settings come from WXLEDGER__SECTION__KEY variables, or a TOML file given with
# --config / WXLEDGER_CONFIG (see config/wxledger.example.toml).

# ---- build ---------------------------------------------------------------------------
FROM rust:1-bookworm AS builder
WORKDIR /src

# The whole context minus .dockerignore: src/ and Cargo.{toml,lock}, plus projections/
# (src/store/db/mod.rs include_str!s projections/*.sql) and tests/vectors/ (include_str!'d by
# src/core/crypto.rs under #[cfg(test)] only).
COPY . .

# Cache mounts keep the registry and target/ between builds; the binary is copied out of
# the target cache in the same step, since cache mounts are not part of the image.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin wxledger \
 && install -m 0755 target/release/wxledger /usr/local/bin/wxledger

# ---- runtime -------------------------------------------------------------------------
FROM debian:bookworm-slim

RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/*

RUN groupadd --system --gid 10001 wxledger \
 && useradd --system --uid 10001 --gid wxledger --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin wxledger

COPY --from=builder /usr/local/bin/wxledger /usr/local/bin/wxledger

# Numeric, so that runtimes enforcing runAsNonRoot can check it.
USER 10001:10001

# 8080: the daemon (`serve`); 8090: the WeChat simulator (`sim`).
EXPOSE 8080 8090

ENTRYPOINT ["/usr/local/bin/wxledger"]
CMD ["serve"]
