// Tests of StopStringMatcher: stop strings split across pieces, earliest match, no partial emission.
namespace Engine.Runtime.Tests;

public class StopStringMatcherTests
{
    private static (string Emitted, bool Stopped) Feed(string[] stops, params string[] pieces)
    {
        var m = new StopStringMatcher(stops);
        var s = string.Concat(pieces.Select(m.Push));
        return (s + m.Flush(), m.Stopped);
    }

    [Test]
    public void NoStopsPassesEverything() => Assert.That(Feed([], "ab", "cd"), Is.EqualTo(("abcd", false)));

    [Test]
    public void StopSplitAcrossPiecesIsFoundAndNotEmitted() =>
        Assert.That(Feed(["END"], "hello E", "N", "D world"), Is.EqualTo(("hello ", true)));

    [Test]
    public void PartialPrefixIsReleasedWhenItTurnsOutNotToBeAStop() =>
        Assert.That(Feed(["END"], "a E", "N", "x"), Is.EqualTo(("a ENx", false)));

    [Test]
    public void EarliestOfSeveralStopsWins() =>
        Assert.That(Feed(["world", "lo"], "hello world"), Is.EqualTo(("hel", true)));

    [Test]
    public void HeldTextIsNotEmittedEarly()
    {
        var m = new StopStringMatcher(["\nuser:"]);
        Assert.That(m.Push("hi\nus"), Is.EqualTo("hi"));
        Assert.That(m.Push("e"), Is.EqualTo(""));
        Assert.That(m.Push("d"), Is.EqualTo("\nused"));
    }
}
