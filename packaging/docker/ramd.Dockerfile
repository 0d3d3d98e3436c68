# The RALE agent image: PostgreSQL 15 (Debian's packages) + ramd + ramctrl + pgBackRest,
# run by rale-operator's StatefulSet through rale-entrypoint.
#
# Build from the repository root (not buildable in the RALE development sandbox, which
# has no container runtime and no registry access; see docs/kubernetes.md):
#   docker build -f packaging/docker/ramd.Dockerfile -t registry.example/rale/ramd:0.1.0 .

FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p ramd-ref --bin ramd --bin ramctrl

FROM debian:bookworm-slim
# postgres is uid/gid 999, as in the official PostgreSQL images: the operator's pods run
# as 999 with fsGroup 999. Created before the packages so that they reuse it.
RUN groupadd --system --gid 999 postgres \
 && useradd --system --uid 999 --gid 999 --home-dir /var/lib/postgresql --shell /bin/bash postgres \
 && apt-get update \
 && apt-get install -y --no-install-recommends postgresql-15 postgresql-client-15 pgbackrest ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && mkdir -p /var/lib/rale /run/rale \
 && chown postgres:postgres /var/lib/rale /run/rale
COPY --from=build /src/target/release/ramd /src/target/release/ramctrl /usr/local/bin/
COPY packaging/docker/rale-entrypoint.sh /usr/local/bin/rale-entrypoint
RUN chmod 0755 /usr/local/bin/rale-entrypoint
USER 999:999
EXPOSE 5432 8008
ENTRYPOINT ["/usr/local/bin/rale-entrypoint"]
