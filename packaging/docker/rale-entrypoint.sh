#!/bin/sh
# Entrypoint of the RALE agent container (rale-operator's StatefulSet runs it).
#
# 1. Takes this member's ramd file from the ConfigMap ($RALE_CONFIG_DIR/$RALE_MEMBER.toml,
#    rendered by rale-operator without secrets) and appends the PostgreSQL passwords,
#    which ramd only takes inline, from the mounted Secrets: [postgresql] is the file's
#    last table. The result ($RALE_RUN_DIR/ramd.toml) is mode 0600 on an emptyDir.
# 2. With a separate WAL volume ($RALE_WAL_DIR set), builds $RALE_RUN_DIR/bin: the
#    PostgreSQL binaries, with initdb and pg_basebackup wrapped to put pg_wal there.
# 3. Execs ramd.
#
# Tested by rale-operator/tests/entrypoint.rs.
set -eu

member="${RALE_MEMBER:?RALE_MEMBER (the pod name) must be set}"
config_dir="${RALE_CONFIG_DIR:-/etc/rale/config}"
secrets_dir="${RALE_SECRETS_DIR:-/etc/rale/secrets}"
run_dir="${RALE_RUN_DIR:-/run/rale}"
ramd="${RALE_RAMD:-/usr/local/bin/ramd}"
pg_bin="${RALE_PG_BIN:-/usr/lib/postgresql/15/bin}"

src="$config_dir/$member.toml"
if [ ! -r "$src" ]; then
    echo "rale-entrypoint: no configuration for member $member ($src)" >&2
    exit 78
fi

for role in superuser replication; do
    if [ ! -r "$secrets_dir/$role/password" ]; then
        echo "rale-entrypoint: cannot read $secrets_dir/$role/password" >&2
        exit 78
    fi
done

# The first line of file $1 as a TOML basic string (backslash and quote escaped).
toml_string() {
    line=$(head -n 1 "$1" | tr -d '\r')
    escaped=$(printf '%s' "$line" | sed -e 's/\\/\\\\/g' -e 's/"/\\"/g')
    printf '"%s"' "$escaped"
}

umask 077
mkdir -p "$run_dir"
out="$run_dir/ramd.toml"
{
    cat "$src"
    printf '\n# Appended by rale-entrypoint from the mounted Secrets.\n'
    printf 'superuser_password = %s\n' "$(toml_string "$secrets_dir/superuser/password")"
    printf 'replication_password = %s\n' "$(toml_string "$secrets_dir/replication/password")"
} > "$out.tmp"
mv "$out.tmp" "$out"

if [ -n "${RALE_WAL_DIR:-}" ]; then
    bin="$run_dir/bin"
    rm -rf "$bin"
    mkdir -p "$bin"
    umask 022
    for f in "$pg_bin"/*; do
        ln -s "$f" "$bin/$(basename "$f")"
    done
    for tool in initdb pg_basebackup; do
        rm -f "$bin/$tool"
        # Both create a new data directory: WAL left from an earlier one is garbage.
        cat > "$bin/$tool" <<WRAPPER
#!/bin/sh
rm -rf "$RALE_WAL_DIR"
exec "$pg_bin/$tool" --waldir="$RALE_WAL_DIR" "\$@"
WRAPPER
        chmod 0755 "$bin/$tool"
    done
fi

exec "$ramd" --config "$out" "$@"
