// Owns: an unmanaged, 64-byte-aligned copy of a byte range, used to parse model files held in memory
// (tests, mutation fuzzing) with the same zero-copy code path as a memory-mapped file.
// Invariant: Pointer addresses Length bytes until Dispose; Dispose frees once.
using System.Runtime.InteropServices;

namespace Engine.Formats;

internal sealed unsafe class NativeBytes : IDisposable
{
    private byte* _pointer;

    public NativeBytes(ReadOnlySpan<byte> bytes)
    {
        Length = bytes.Length;
        _pointer = (byte*)NativeMemory.AlignedAlloc((nuint)Math.Max(1, bytes.Length), 64);
        bytes.CopyTo(new Span<byte>(_pointer, bytes.Length));
    }

    public byte* Pointer => _pointer;
    public long Length { get; }

    public void Dispose()
    {
        var p = _pointer;
        _pointer = null;
        if (p != null) NativeMemory.AlignedFree(p);
    }
}
