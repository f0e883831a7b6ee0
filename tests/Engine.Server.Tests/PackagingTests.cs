// `dotnet pack` end to end, against the packed packages and not project references: packs the solution's src/ projects
// (already built) into a temporary folder feed under a unique prerelease version, builds and runs a tiny console app that
// references the Engine.Runtime package from that feed, and installs the `engine` .NET tool from it and runs it without
// --model from a folder outside the repository (its default model ships inside the tool). Both must print what the
// in-process engine (project reference) generates greedily. Takes ~20–60 s (three dotnet processes); Category
// "Packaging" lets a run skip it (--filter "TestCategory!=Packaging"). Leaves nothing behind: the temp folder and the
// unique version's entries in the NuGet cache are deleted, and the child builds run without build servers.
using System.Diagnostics;
using Engine.Runtime;
using Engine.Runtime.Sampling;

namespace Engine.Server.Tests;

[NonParallelizable, Category("Packaging")]
public class PackagingTests
{
    private const string Prompt = "Once upon a time";
    private const int Tokens = 12;

    [Test]
    public async Task PackedLibraryAndToolRunOutsideTheRepository()
    {
        string model = TestServerHost.ModelPath;
        string expected;
        using (var e = InferenceEngine.Load(model, new EngineOptions { Threads = 1 }))
            expected = (await e.GenerateTextAsync(e.GenerateAsync(Prompt, new GenerationOptions { MaxTokens = Tokens, Sampling = SamplingOptions.Greedy }))).Text;

        string config = AppContext.BaseDirectory.Contains($"{Path.DirectorySeparatorChar}Release{Path.DirectorySeparatorChar}") ? "Release" : "Debug";
        string version = $"0.1.0-pkgtest{DateTime.UtcNow:yyyyMMddHHmmss}{Environment.ProcessId}";
        string root = Directory.CreateTempSubdirectory("engine-pack-").FullName;
        string feed = Path.Combine(root, "feed"), app = Path.Combine(root, "app"), tools = Path.Combine(root, "tools");
        try
        {
            Run(SharedData.RepoRoot, "dotnet", "pack", Path.Combine(SharedData.RepoRoot, "Engine.sln"), "-c", config, "--no-build", "-o", feed,
                $"-p:PackageVersion={version}", "--disable-build-servers", "-nodeReuse:false");
            Assert.That(Directory.GetFiles(feed, "*.nupkg").Select(Path.GetFileName),
                Is.SupersetOf(new[] { $"Engine.Runtime.{version}.nupkg", $"Engine.Server.{version}.nupkg", $"engine.{version}.nupkg" }));

            Directory.CreateDirectory(app);
            File.WriteAllText(Path.Combine(app, "nuget.config"), $"""
                <?xml version="1.0" encoding="utf-8"?>
                <configuration><packageSources><clear /><add key="engine-feed" value="{feed}" /></packageSources></configuration>
                """);
            File.WriteAllText(Path.Combine(app, "app.csproj"), $"""
                <Project Sdk="Microsoft.NET.Sdk">
                  <PropertyGroup><OutputType>Exe</OutputType><TargetFramework>net10.0</TargetFramework><ImplicitUsings>enable</ImplicitUsings><Nullable>enable</Nullable></PropertyGroup>
                  <ItemGroup><PackageReference Include="Engine.Runtime" Version="{version}" /></ItemGroup>
                </Project>
                """);
            File.WriteAllText(Path.Combine(app, "Program.cs"), $$"""
                using Engine.Runtime;
                using var engine = InferenceEngine.Load(args[0], new EngineOptions { Threads = 1 });
                var options = new GenerationOptions { MaxTokens = {{Tokens}}, Sampling = Engine.Runtime.Sampling.SamplingOptions.Greedy };
                var (text, _, _) = await engine.GenerateTextAsync(engine.GenerateAsync("{{Prompt}}", options));
                Console.Write(text);
                """);
            Run(app, "dotnet", "build", "-c", "Release", "--disable-build-servers", "-nodeReuse:false", "-p:UseSharedCompilation=false");
            Assert.That(File.Exists(Path.Combine(app, "bin", "Release", "net10.0", "Engine.Runtime.dll")), "the app got Engine.Runtime from the package");
            string appOut = Run(app, "dotnet", Path.Combine(app, "bin", "Release", "net10.0", "app.dll"), model);
            Assert.That(appOut, Is.EqualTo(expected), "the packaged library generates what the project-referenced engine does");

            // only the feed (and the NuGet cache, for the library's dependencies) is consulted: no network needed
            Run(root, "dotnet", "tool", "install", "--tool-path", tools, "--configfile", Path.Combine(app, "nuget.config"), "engine", "--version", version);
            string toolOut = Run(root, Path.Combine(tools, OperatingSystem.IsWindows() ? "engine.exe" : "engine"),
                "run", "-p", Prompt, "-n", $"{Tokens}", "--temperature", "0", "--threads", "1");
            Assert.That(toolOut.TrimEnd('\n', '\r'), Is.EqualTo(expected), "the installed tool runs with its bundled default model");
        }
        finally
        {
            try { Directory.Delete(root, recursive: true); } catch (IOException) { }
            string cache = Environment.GetEnvironmentVariable("NUGET_PACKAGES") is { Length: > 0 } c ? c
                : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".nuget", "packages");
            if (Directory.Exists(cache))
                foreach (var id in Directory.GetDirectories(cache, "engine*"))
                {
                    var v = Path.Combine(id, version);
                    if (Directory.Exists(v)) try { Directory.Delete(v, recursive: true); } catch (IOException) { }
                    if (!Directory.EnumerateFileSystemEntries(id).Any()) try { Directory.Delete(id); } catch (IOException) { }
                }
        }
    }

    /// <summary>Runs a process to completion (≤ 5 min), failing the test with its output on a non-zero exit; returns stdout.</summary>
    private static string Run(string dir, string file, params string[] args)
    {
        var psi = new ProcessStartInfo(file) { WorkingDirectory = dir, RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in args) psi.ArgumentList.Add(a);
        foreach (var key in psi.Environment.Keys.Where(k => k.StartsWith("MSBUILD", StringComparison.OrdinalIgnoreCase) || k.StartsWith("VSTEST", StringComparison.OrdinalIgnoreCase)).ToList())
            psi.Environment.Remove(key);
        psi.Environment["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1";
        psi.Environment["DOTNET_NOLOGO"] = "1";
        psi.Environment["MSBUILDDISABLENODEREUSE"] = "1";
        psi.Environment["DOTNET_CLI_USE_MSBUILD_SERVER"] = "0";
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(TimeSpan.FromMinutes(5)))
        {
            p.Kill(entireProcessTree: true);
            Assert.Fail($"{file} {string.Join(' ', args)} did not finish in 5 minutes");
        }
        p.WaitForExit();
        Assert.That(p.ExitCode, Is.EqualTo(0), $"{file} {string.Join(' ', args)} failed:\n{stdout.Result}\n{stderr.Result}");
        return stdout.Result;
    }
}
