# Thin mirror of the README's two commands (PowerShell is not installable on the dev machines; keep this trivial).
param([string]$Task = "test")
if ($Task -eq "run") {
    dotnet run --project src/Engine.Cli -c Release -- run --prompt "Once upon a time"
} else {
    dotnet test Engine.sln -c Release
}
