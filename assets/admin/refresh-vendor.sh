#!/bin/sh
# Refreshes the admin UI's vendored browser libraries from the npm registry (run by hand,
# never by the build): Preact (+ hooks) and htm, as ES modules with their licences.
# Usage: assets/admin/refresh-vendor.sh [PREACT_VERSION] [HTM_VERSION]
set -eu
PREACT=${1:-10.29.8}
HTM=${2:-3.1.1}
here=$(cd "$(dirname "$0")" && pwd)
out="$here/vendor"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"
npm pack --silent "preact@$PREACT" "htm@$HTM" >/dev/null
mkdir preact htm
tar xzf "preact-$PREACT.tgz" -C preact
tar xzf "htm-$HTM.tgz" -C htm
mkdir -p "$out"
cp preact/package/dist/preact.module.js "$out/preact.module.js"
# hooks import the bare specifier "preact"; browsers without an import map (the CSP forbids
# inline scripts) need a relative path.
sed 's#from"preact"#from"./preact.module.js"#g; s#from "preact"#from "./preact.module.js"#g' \
  preact/package/hooks/dist/hooks.module.js > "$out/hooks.module.js"
cp htm/package/dist/htm.module.js "$out/htm.module.js"
# Source maps are not shipped.
sed -i '/^\/\/# sourceMappingURL=/d' "$out"/*.js
cp preact/package/LICENSE "$out/LICENSE-preact"
cp htm/package/LICENSE "$out/LICENSE-htm"
printf 'preact %s\nhtm %s\n' "$PREACT" "$HTM" > "$out/VERSIONS"
grep -q 'from"./preact.module.js"\|from "./preact.module.js"' "$out/hooks.module.js" || {
  echo "hooks.module.js no longer imports preact the expected way; fix the rewrite" >&2
  exit 1
}
echo "vendored preact $PREACT and htm $HTM into $out"
