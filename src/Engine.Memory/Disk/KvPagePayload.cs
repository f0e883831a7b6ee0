// Owns: the byte layout of one KvPage's payload (K rows, V rows, and the scale tables of quantized tiers) so a page of
// any KvElementType can be copied as one block (to the disk tier and back) and re-presented as a KvPage over the copy.
// Invariants: layout in a block is [K | V | KScale | VScale], each part 64-byte aligned; sizes follow the element
// layouts documented on KvPage (Engine.Kernels/IBackend.cs); a copy is bit-exact.
using Engine.Kernels;

namespace Engine.Memory.Disk;

/// <summary>Sizes of the four parts of a page payload.</summary>
public readonly record struct KvPageLayout(long KBytes, long VBytes, long KScaleBytes, long VScaleBytes)
{
    private static long Align(long x) => (x + 63) / 64 * 64;
    public long VOffset => Align(KBytes);
    public long KScaleOffset => VOffset + Align(VBytes);
    public long VScaleOffset => KScaleOffset + Align(KScaleBytes);
    public long TotalBytes => VScaleOffset + Align(VScaleBytes);

    /// <summary>The layout of a page with <paramref name="tokens"/> rows of <paramref name="rowStride"/> elements.</summary>
    public static KvPageLayout Of(KvElementType type, int tokens, int rowStride, int groupSize = 0)
    {
        long rows = (long)tokens * rowStride;
        return type switch
        {
            KvElementType.F32 => new(rows * 4, rows * 4, 0, 0),
            KvElementType.F16 => new(rows * 2, rows * 2, 0, 0),
            KvElementType.Int8 => new(rows, rows, (long)tokens * (rowStride / groupSize) * 4, (long)tokens * (rowStride / groupSize) * 4),
            KvElementType.Int4 => new(rows / 2, rows / 2, (long)((tokens + groupSize - 1) / groupSize) * rowStride * 2 * 4,
                (long)tokens * (rowStride / groupSize) * 2 * 4),
            _ => throw new ArgumentOutOfRangeException(nameof(type), $"unknown KV element type {type}"),
        };
    }

    public static KvPageLayout Of(in KvPage page) => Of(page.Type, page.TokenCount, page.RowStride, page.GroupSize);
}

/// <summary>Copies page payloads into a block and presents the block as a page.</summary>
public static unsafe class KvPagePayload
{
    /// <summary>Copies <paramref name="page"/>'s payload to <paramref name="block"/> (at least Layout.TotalBytes) and
    /// returns the same page pointing into the block.</summary>
    public static KvPage CopyTo(in KvPage page, byte* block)
    {
        var l = KvPageLayout.Of(page);
        Copy(page.K, block, l.KBytes);
        Copy(page.V, block + l.VOffset, l.VBytes);
        if (l.KScaleBytes > 0) Copy(page.KScale, block + l.KScaleOffset, l.KScaleBytes);
        if (l.VScaleBytes > 0) Copy(page.VScale, block + l.VScaleOffset, l.VScaleBytes);
        return Over(page, block);
    }

    /// <summary><paramref name="template"/> (type, counts, positions) re-pointed at a block holding its payload.</summary>
    public static KvPage Over(in KvPage template, byte* block)
    {
        var l = KvPageLayout.Of(template);
        return template with
        {
            K = (nint)block, V = (nint)(block + l.VOffset),
            KScale = l.KScaleBytes > 0 ? (nint)(block + l.KScaleOffset) : 0,
            VScale = l.VScaleBytes > 0 ? (nint)(block + l.VScaleOffset) : 0,
        };
    }

    private static void Copy(nint src, byte* dst, long bytes) => Buffer.MemoryCopy((void*)src, dst, bytes, bytes);
}

/// <summary>A page held in the disk tier: its slot and the page presented over the mapping.</summary>
public readonly record struct DiskPage(int Slot, KvPage Page);

/// <summary>The disk tier: pages of any element type offloaded to a memory-mapped slot file and read in place or promoted back.</summary>
public sealed unsafe class DiskKvTier(string pathPrefix, long slotBytes, int slotsPerSegment = 0) : IDisposable
{
    public DiskKvFile File { get; } = new(pathPrefix, slotBytes, slotsPerSegment);

    /// <summary>Copies the page to a free slot; the returned page reads from the mapping (the OS pages it in on demand).</summary>
    public DiskPage Offload(in KvPage page)
    {
        long need = KvPageLayout.Of(page).TotalBytes;
        if (need > File.SlotBytes) throw new ArgumentException($"page payload of {need} bytes exceeds the disk tier slot of {File.SlotBytes} bytes");
        int slot = File.Allocate();
        return new DiskPage(slot, KvPagePayload.CopyTo(page, File.Pointer(slot)));
    }

    /// <summary>Copies a disk page back to RAM at <paramref name="ram"/> (Layout.TotalBytes) and frees its slot.</summary>
    public KvPage Promote(in DiskPage page, byte* ram)
    {
        var p = KvPagePayload.CopyTo(page.Page, ram);
        File.Free(page.Slot);
        return p;
    }

    /// <summary>Frees a disk page's slot.</summary>
    public void Release(in DiskPage page) => File.Free(page.Slot);

    public void Dispose() => File.Dispose();
}
