; Inno Setup script for MetaGUI on Windows: installs the PyInstaller folder
; (installer\dist\metagui, from installer\windows\build.ps1), a Start-menu entry, the
; .metagui file association and an uninstaller. Per-user install by default (no admin
; rights asked); the dialog offers an all-users install.
;
;   iscc /DAppVersion=0.1.0 installer\windows\metagui.iss   -> installer\dist\MetaGUI-0.1.0-setup.exe
;
; Written for Inno Setup 6. Not built or run on this project's Linux machine: the
; installers workflow (.github/workflows/installers.yml) builds it on a Windows runner.

#ifndef AppVersion
  #define AppVersion "0.1.0"
#endif
#define AppName "MetaGUI"
#define Dist "..\dist\metagui"

[Setup]
AppId={{6A4C8E0B-3D0F-4E71-9B8E-5D3A2C1F7E90}
AppName={#AppName}
AppVersion={#AppVersion}
AppPublisher=MetaGUI developers
AppPublisherURL=https://github.com/metagui/metagui
DefaultDirName={autopf}\{#AppName}
DefaultGroupName={#AppName}
DisableProgramGroupPage=yes
PrivilegesRequired=lowest
PrivilegesRequiredOverridesAllowed=dialog
ArchitecturesAllowed=x64compatible
ArchitecturesInstallIn64BitMode=x64compatible
OutputDir=..\dist
OutputBaseFilename=MetaGUI-{#AppVersion}-setup
SetupIconFile=..\build\icons\metagui.ico
UninstallDisplayIcon={app}\metaguiw.exe
Compression=lzma2/max
SolidCompression=yes
WizardStyle=modern
ChangesAssociations=yes
; the user's runs, projects and downloads (%LOCALAPPDATA%\metagui) are not the program's:
; the uninstaller leaves them, as upgrading does

[Files]
Source: "{#Dist}\*"; DestDir: "{app}"; Flags: ignoreversion recursesubdirs createallsubdirs

[Icons]
Name: "{group}\{#AppName}"; Filename: "{app}\metaguiw.exe"
Name: "{group}\Uninstall {#AppName}"; Filename: "{uninstallexe}"
Name: "{autodesktop}\{#AppName}"; Filename: "{app}\metaguiw.exe"; Tasks: desktopicon

[Tasks]
Name: "desktopicon"; Description: "{cm:CreateDesktopIcon}"; GroupDescription: "{cm:AdditionalIcons}"; Flags: unchecked
Name: "addtopath"; Description: "Add the metagui command to PATH (for the command line)"; Flags: unchecked

[Registry]
; .metagui bundles open in MetaGUI (the app adds them to Runs and Try it)
Root: HKA; Subkey: "Software\Classes\.metagui"; ValueType: string; ValueName: ""; ValueData: "MetaGUI.Bundle"; Flags: uninsdeletevalue
Root: HKA; Subkey: "Software\Classes\MetaGUI.Bundle"; ValueType: string; ValueName: ""; ValueData: "MetaGUI bundle"; Flags: uninsdeletekey
Root: HKA; Subkey: "Software\Classes\MetaGUI.Bundle\DefaultIcon"; ValueType: string; ValueName: ""; ValueData: "{app}\metaguiw.exe,0"
Root: HKA; Subkey: "Software\Classes\MetaGUI.Bundle\shell\open\command"; ValueType: string; ValueName: ""; ValueData: """{app}\metaguiw.exe"" ""%1"""
Root: HKCU; Subkey: "Environment"; ValueType: expandsz; ValueName: "Path"; ValueData: "{olddata};{app}"; Tasks: addtopath; Check: NeedsAddPath(ExpandConstant('{app}'))

[Run]
Filename: "{app}\metaguiw.exe"; Description: "{cm:LaunchProgram,{#AppName}}"; Flags: nowait postinstall skipifsilent

[Code]
function NeedsAddPath(Dir: string): Boolean;
var
  Path: string;
begin
  if not RegQueryStringValue(HKCU, 'Environment', 'Path', Path) then
    Path := '';
  Result := Pos(';' + Uppercase(Dir) + ';', ';' + Uppercase(Path) + ';') = 0;
end;
