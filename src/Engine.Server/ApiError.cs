// Owns: the error answers of the server in OpenAI's shape — {"error": {"message", "type", "param", "code"}} — and the
// exception handlers throw to produce them. Invariant: a message is one line written for the client; exception details
// and stack traces of unexpected failures go to the server log only (the client gets a generic 500 message).
using System.Text.Json;
using Microsoft.AspNetCore.Http;

namespace Engine.Server;

/// <summary>An error the client caused or must be told about; becomes an OpenAI error object with this status.</summary>
public sealed class ApiException(int status, string message, string? param = null, string? code = null, string type = "invalid_request_error")
    : Exception(message)
{
    public int Status { get; } = status;
    public string? Param { get; } = param;
    public string? Code { get; } = code;
    public string Type { get; } = type;

    public static ApiException BadRequest(string message, string? param = null, string? code = null) => new(400, message, param, code);
}

internal static class ApiErrors
{
    public static object Body(ApiException e) => new { error = new { message = e.Message, type = e.Type, param = e.Param, code = e.Code } };

    public static async Task WriteAsync(HttpContext ctx, ApiException e)
    {
        ctx.Response.StatusCode = e.Status;
        ctx.Response.ContentType = "application/json";
        await ctx.Response.WriteAsync(JsonSerializer.Serialize(Body(e)), ctx.RequestAborted);
    }

    public static ApiException Internal() =>
        new(500, "the server failed to process the request (see the server log)", type: "server_error", code: "internal_error");
}
