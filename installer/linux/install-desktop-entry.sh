#!/usr/bin/env sh
# Add MetaGUI to the desktop's application menu for the current user (Linux, freedesktop).
# Run after `pip install metagui` (or from a checkout): it copies the .desktop entry, the
# AppStream metainfo, the icon and the .metagui file type into $XDG_DATA_HOME (default ~/.local/share).
set -eu
here=$(cd "$(dirname "$0")/../.." && pwd)
data=${XDG_DATA_HOME:-$HOME/.local/share}
command -v metagui >/dev/null 2>&1 || echo "note: 'metagui' is not on PATH yet; the menu entry runs 'metagui'" >&2
install -D -m 644 "$here/resources/metagui.desktop" "$data/applications/metagui.desktop"
install -D -m 644 "$here/resources/io.github.metagui.MetaGUI.metainfo.xml" "$data/metainfo/io.github.metagui.MetaGUI.metainfo.xml"
install -D -m 644 "$here/metagui/resources/app.svg" "$data/icons/hicolor/scalable/apps/io.github.metagui.MetaGUI.svg"
install -D -m 644 "$here/resources/metagui-mime.xml" "$data/mime/packages/io.github.metagui.MetaGUI.xml"
if command -v update-mime-database >/dev/null 2>&1; then update-mime-database "$data/mime" >/dev/null 2>&1 || true; fi
echo "installed MetaGUI's menu entry under $data"
