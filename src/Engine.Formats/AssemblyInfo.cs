// Owns: assembly-level attributes of Engine.Formats (tests reach the in-memory parse entry points).
using System.Runtime.CompilerServices;

[assembly: InternalsVisibleTo("Engine.Formats.Tests")]
