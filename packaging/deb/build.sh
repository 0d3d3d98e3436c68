#!/bin/sh
# Builds the Debian package `rale` (ramd, ramctrl, systemd unit, /etc/rale/ramd.toml,
# completions, manual pages): release binaries, then the generated assets, then
# `cargo deb --no-build`. Needs cargo-deb (`cargo install cargo-deb --locked`).
# Run from anywhere: packaging/deb/build.sh  → prints the path of the .deb
set -eu
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
target=${CARGO_TARGET_DIR:-$root/target}
jobs=${RALE_BUILD_JOBS:-1}
cargo build --release -j "$jobs" -p ramd-ref --bin ramd --bin ramctrl
assets=$target/release/deb-assets
rm -rf "$assets"
mkdir -p "$assets/completions" "$assets/man"
bin=$target/release
"$bin/ramctrl" completions bash > "$assets/completions/ramctrl.bash"
"$bin/ramctrl" completions zsh > "$assets/completions/_ramctrl"
"$bin/ramctrl" completions fish > "$assets/completions/ramctrl.fish"
"$bin/ramd" --completions bash > "$assets/completions/ramd.bash"
"$bin/ramd" --completions zsh > "$assets/completions/_ramd"
"$bin/ramd" --completions fish > "$assets/completions/ramd.fish"
"$bin/ramctrl" manpages "$assets/man"
"$bin/ramd" --manpages "$assets/man"
gzip -9n "$assets"/man/*.1 "$assets"/man/*.8
# The packaged unit runs the packaged binaries.
sed 's|/usr/local/bin/ramd|/usr/bin/ramd|g; s|file:///usr/share/doc/rale/operations.md|file:///usr/share/doc/rale/operations.md|' \
    packaging/systemd/ramd.service > "$assets/ramd.service"
cargo deb -p ramd-ref --no-build ${RALE_DEB_ARGS:-} | tail -n 1
