// Owns: one chat turn as the runtime's API takes it (role, content, and the tool-call fields templates render).
namespace Engine.Runtime;

/// <summary>One chat turn. Role is "system", "user", "assistant" or (templates that take tools) "tool".</summary>
public sealed record ChatMessage(string Role, string Content)
{
    /// <summary>Tool calls the assistant made in this turn (rendered by templates that take them).</summary>
    public IReadOnlyList<Engine.Tokenizers.ChatToolCall>? ToolCalls { get; init; }
    /// <summary>For a "tool" turn: the id of the call this is the result of.</summary>
    public string? ToolCallId { get; init; }
    /// <summary>Optional name (the tool's name for a "tool" turn).</summary>
    public string? Name { get; init; }
}
