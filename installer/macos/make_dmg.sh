#!/usr/bin/env bash
# Pack MetaGUI.app into a drag-to-Applications disk image (hdiutil, macOS only).
#   installer/macos/make_dmg.sh installer/dist/MetaGUI.app installer/dist/MetaGUI-0.1.0.dmg
set -euo pipefail
app=$1 dmg=$2
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
cp -R "$app" "$stage/"
ln -s /Applications "$stage/Applications"
rm -f "$dmg"
hdiutil create -volname MetaGUI -srcfolder "$stage" -fs HFS+ -format UDZO -ov "$dmg"
echo "wrote $dmg"
