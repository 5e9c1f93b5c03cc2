# Build MetaGUI for Windows from a checkout: the PyInstaller folder installer\dist\metagui
# (metagui.exe: the CLI; MetaGUI.exe: the window) and, where Inno Setup 6 is installed,
# installer\dist\MetaGUI-VERSION-setup.exe.
#
#   powershell -ExecutionPolicy Bypass -File installer\windows\build.ps1 [-Python py]
#
# Not run on this project's Linux machine: the installers workflow runs it on windows-latest.
param([string]$Python = "")
$ErrorActionPreference = "Stop"
$root = Resolve-Path (Join-Path $PSScriptRoot "..\..")
Set-Location $root
New-Item -ItemType Directory -Force installer\build, installer\dist | Out-Null
if (-not $Python) {
    if (-not (Test-Path installer\build\venv\Scripts\python.exe)) { python -m venv installer\build\venv }
    $Python = "installer\build\venv\Scripts\python.exe"
    # PyPI's Windows torch wheels are CPU-only
    & $Python -m pip install -q "torch==2.13.0" . "pyinstaller>=6.10,<7"
    if ($LASTEXITCODE) { throw "pip install failed" }
}
$env:PYTHONPATH = "$root"
$version = & $Python -c "import metagui; print(metagui.__version__)"
$env:QT_QPA_PLATFORM = "offscreen"
& $Python installer\make_icons.py installer\build\icons
if ($LASTEXITCODE) { throw "icons failed" }
Remove-Item Env:QT_QPA_PLATFORM
& $Python -m PyInstaller --noconfirm --clean --log-level WARN --distpath installer\dist --workpath installer\build\pyinstaller installer\metagui.spec
if ($LASTEXITCODE) { throw "PyInstaller failed" }
& installer\dist\metagui\metagui.exe --version
$iscc = Get-Command iscc -ErrorAction SilentlyContinue
if (-not $iscc -and (Test-Path "${env:ProgramFiles(x86)}\Inno Setup 6\ISCC.exe")) { $iscc = "${env:ProgramFiles(x86)}\Inno Setup 6\ISCC.exe" }
if ($iscc) {
    & $iscc "/DAppVersion=$version" installer\windows\metagui.iss
    if ($LASTEXITCODE) { throw "Inno Setup failed" }
} else {
    Write-Host "no Inno Setup (iscc): built the folder only"
}
