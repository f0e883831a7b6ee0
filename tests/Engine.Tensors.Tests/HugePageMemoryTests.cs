// Owns: tests for HugePageMemory: every byte of a block is writable and reads back, blocks are 64-byte aligned (2 MiB
// when mapped), large blocks on Linux are mapped (and unmapped on Free), small ones and the disabled path go to the
// aligned allocator, and Free accepts what each path returned. Expected values are the written pattern itself.
// The huge-page choice is passed to Allocate(bytes, hugePages) explicitly (no process-wide switch to save and restore).
using System.Runtime.InteropServices;

namespace Engine.Tensors.Tests;

[NonParallelizable]
public unsafe class HugePageMemoryTests
{
    private static void FillAndCheck(byte* p, nuint bytes)
    {
        // A position-dependent pattern over the whole range (8 bytes at a time, then the tail), then read it back.
        ulong n8 = (ulong)bytes / 8;
        var q = (ulong*)p;
        for (ulong i = 0; i < n8; i++) q[i] = i * 0x9E3779B97F4A7C15UL + 1;
        for (ulong i = n8 * 8; i < (ulong)bytes; i++) p[i] = (byte)(i * 31 + 7);
        for (ulong i = 0; i < n8; i++)
            if (q[i] != i * 0x9E3779B97F4A7C15UL + 1) Assert.Fail($"word {i} of {n8} read back wrong");
        for (ulong i = n8 * 8; i < (ulong)bytes; i++)
            if (p[i] != (byte)(i * 31 + 7)) Assert.Fail($"tail byte {i} read back wrong");
    }

    [Test]
    public void LargeBlockIsMappedOnLinuxWritableAlignedAndFreed()
    {
        nuint bytes = 3 * HugePageMemory.HugePageBytes + 12;   // not a multiple of the huge page
        long before = HugePageMemory.MappedBytes;
        var p = (byte*)HugePageMemory.Allocate(bytes, hugePages: true);
        Assert.That(p != null, Is.True);
        Assert.That((ulong)p % 64, Is.EqualTo(0UL));
        if (OperatingSystem.IsLinux())
        {
            Assert.That((ulong)p % HugePageMemory.HugePageBytes, Is.EqualTo(0UL));
            Assert.That(HugePageMemory.MappedBytes, Is.EqualTo(before + 4 * (long)HugePageMemory.HugePageBytes));
        }
        FillAndCheck(p, bytes);
        HugePageMemory.Free(p);
        Assert.That(HugePageMemory.MappedBytes, Is.EqualTo(before));
    }

    [Test]
    public void DisabledFallsBackToAlignedAllocator()
    {
        nuint bytes = 5 * HugePageMemory.HugePageBytes + 100;
        long before = HugePageMemory.MappedBytes;
        var p = (byte*)HugePageMemory.Allocate(bytes, hugePages: false);
        Assert.That(p != null, Is.True);
        Assert.That((ulong)p % 64, Is.EqualTo(0UL));
        Assert.That(HugePageMemory.MappedBytes, Is.EqualTo(before));   // not mapped
        FillAndCheck(p, bytes);
        HugePageMemory.Free(p);
        Assert.That(HugePageMemory.MappedBytes, Is.EqualTo(before));
    }

    [Test]
    public void SmallAndEmptyBlocksUseAlignedAllocator()
    {
        long before = HugePageMemory.MappedBytes;
        nuint small = HugePageMemory.MinBytes - 1;
        var p = (byte*)HugePageMemory.Allocate(small, hugePages: true);
        Assert.That((ulong)p % 64, Is.EqualTo(0UL));
        Assert.That(HugePageMemory.MappedBytes, Is.EqualTo(before));
        FillAndCheck(p, small);
        HugePageMemory.Free(p);
        var e = HugePageMemory.Allocate(0, hugePages: true);
        Assert.That(e != null, Is.True);
        HugePageMemory.Free(e);
        HugePageMemory.Free(null);   // ignored
    }

    [Test]
    public void MappedBlockIsAdvisedForHugePages()
    {
        // The kernel reports the madvise flag as "hg" in VmFlags of the block's mapping (smaps); whether 2 MiB pages
        // actually back it depends on the THP setting and fragmentation, so only the advice is checked.
        if (!OperatingSystem.IsLinux() || !File.Exists("/proc/self/smaps"))
            Assert.Ignore("needs Linux /proc/self/smaps");
        const string thp = "/sys/kernel/mm/transparent_hugepage/enabled";
        if (!File.Exists(thp) || File.ReadAllText(thp).Contains("[never]"))
            Assert.Ignore("transparent huge pages are not available on this kernel (madvise is then refused; the mapping still works)");
        {
            nuint bytes = 4 * HugePageMemory.HugePageBytes;
            var p = (byte*)HugePageMemory.Allocate(bytes, hugePages: true);
            try
            {
                FillAndCheck(p, bytes);
                string? flags = null;
                bool inside = false;
                foreach (var line in File.ReadLines("/proc/self/smaps"))
                {
                    int dash = line.IndexOf('-');
                    int space = line.IndexOf(' ');
                    if (dash > 0 && space > dash && ulong.TryParse(line.AsSpan(0, dash), System.Globalization.NumberStyles.HexNumber, null, out ulong lo)
                        && ulong.TryParse(line.AsSpan(dash + 1, space - dash - 1), System.Globalization.NumberStyles.HexNumber, null, out ulong hi))
                        inside = lo <= (ulong)p && (ulong)p < hi;
                    else if (inside && line.StartsWith("VmFlags:", StringComparison.Ordinal)) { flags = line; break; }
                }
                Assert.That(flags, Is.Not.Null);
                Assert.That(flags, Does.Contain(" hg"));
            }
            finally { HugePageMemory.Free(p); }
        }
    }
}
