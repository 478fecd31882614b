#!/bin/sh
# Re-vendor the console's libraries from the npm registry: run by hand (or `make vendor`) when a
# version below changes, never at run time or by the tests. Each package is fetched with
# `npm pack` at the exact version, checked against the integrity recorded here (npm's sha512 of
# the tarball; a mismatch stops everything), and only the files the page loads are copied,
# with the package's licence. VERSIONS is written from this table; commit both with the files.
#
# To move to a new version: change it below, set its integrity to "-", run this script, check
# the printed integrity against `npm view PACKAGE@VERSION dist.integrity`, write it below, and
# run the script again.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# package@version  integrity  then pairs of file-in-package:file-under-vendor/
PACKAGES='
mqtt@5.16.0 sha512-G0VsEtuJz5sJUgZJaaADMVfW7SIFPzkIuHR+d6rk+tBeSwdCfd9BaIRycRfd2AbyFDEmLlFM+SDQeti/+IbOnw== dist/mqtt.esm.js:mqtt/mqtt.esm.js LICENSE.md:mqtt/LICENSE.md
preact@11.2.0 sha512-/HfHI/7N84e6GrWBJ3J280z3mLaRJiDcSvj/A+y/4AbLnND/1UlGHe1sR6oYuTGwId0nP7dqDU9OnLxMPZ7xBg== dist/preact.mjs:preact/preact.mjs hooks/dist/hooks.mjs:preact/hooks.mjs LICENSE:preact/LICENSE
htm@3.1.1 sha512-983Vyg8NwUE7JkZ6NmOqpCZ+sh1bKv2iYTlUkzlWmA5JD2acKoxd4KVxbMmxX/85mtfdnDmTFoNKcg5DGAvxNQ== dist/htm.mjs:htm/htm.mjs LICENSE:htm/LICENSE
'

{
    echo "# Vendored by console/vendor/update.sh from the npm registry; do not edit by hand."
    echo "# package@version integrity files"
} > "$tmp/VERSIONS"
echo "$PACKAGES" | while read -r spec integrity files; do
    [ -n "$spec" ] || continue
    mkdir -p "$tmp/$spec"
    (cd "$tmp/$spec" && npm pack --silent "$spec" > name)
    tarball="$tmp/$spec/$(cat "$tmp/$spec/name")"
    got="sha512-$(openssl dgst -sha512 -binary "$tarball" | base64 -w0)"
    if [ "$integrity" != "$got" ]; then
        echo "update.sh: $spec: integrity $got, expected $integrity" >&2
        exit 1
    fi
    tar -xzf "$tarball" -C "$tmp/$spec"
    for pair in $files; do
        from=${pair%%:*} to=${pair#*:}
        mkdir -p "$tmp/out/$(dirname "$to")"
        # A source map comment would have the browser ask for a file that is not vendored.
        sed '/^\/\/# sourceMappingURL=/d' "$tmp/$spec/package/$from" > "$tmp/out/$to"
    done
    echo "$spec $integrity $files" >> "$tmp/VERSIONS"
    echo "vendored $spec"
done
# hooks.mjs imports "preact" by its bare name, which a browser resolves only through an import
# map, an inline script the page's Content-Security-Policy does not allow: point it at the file.
sed -i 's|from"preact"|from"./preact.mjs"|' "$tmp/out/preact/hooks.mjs"
grep -q 'from"./preact.mjs"' "$tmp/out/preact/hooks.mjs" || { echo "update.sh: hooks.mjs no longer imports preact as expected" >&2; exit 1; }
for dir in mqtt preact htm; do
    rm -rf "${here:?}/$dir"
    cp -r "$tmp/out/$dir" "$here/$dir"
done
cp "$tmp/VERSIONS" "$here/VERSIONS"
