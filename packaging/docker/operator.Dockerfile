# The rale-operator image: one static-ish binary on a distroless base, run as 65532.
#
# Build from the repository root (not buildable in the RALE development sandbox, which
# has no container runtime and no registry access; see docs/kubernetes.md):
#   docker build -f packaging/docker/operator.Dockerfile -t registry.example/rale/rale-operator:0.1.0 .

FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p rale-operator --bin rale-operator

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/rale-operator /usr/local/bin/rale-operator
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/rale-operator"]
CMD ["run"]
