#!/usr/bin/env bash
# Build MetaGUI for macOS from a checkout: installer/dist/MetaGUI.app (PyInstaller BUNDLE:
# Info.plist with the .metagui document type, .icns icon) and installer/dist/MetaGUI-VERSION.dmg.
#
#   installer/macos/build.sh [--python PY]
#
# Not run on this project's Linux machine: the installers workflow runs it on a macOS runner.
# The app is not signed or notarized: Gatekeeper asks the first time (right-click > Open).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
py=""
[ "${1:-}" = "--python" ] && py=$2
mkdir -p installer/build installer/dist
if [ -z "$py" ]; then
    [ -x installer/build/venv/bin/python ] || python3 -m venv installer/build/venv
    py=installer/build/venv/bin/python
    # PyPI's macOS torch wheels are CPU (+ MPS) builds
    "$py" -m pip install -q "torch==2.13.0" . "pyinstaller>=6.10,<7"
fi
version=$(PYTHONPATH="$root" "$py" -c "import metagui; print(metagui.__version__)")
QT_QPA_PLATFORM=offscreen "$py" installer/make_icons.py installer/build/icons
rm -rf installer/dist/metagui installer/dist/MetaGUI.app
"$py" -m PyInstaller --noconfirm --clean --log-level WARN \
    --distpath installer/dist --workpath installer/build/pyinstaller installer/metagui.spec
installer/dist/MetaGUI.app/Contents/MacOS/metagui --version
installer/macos/make_dmg.sh installer/dist/MetaGUI.app "installer/dist/MetaGUI-$version.dmg"
