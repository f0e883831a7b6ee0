// Owns: reading a request body as one JSON object under a size limit. Invariants: never reads more than limit + 1 bytes;
// a larger body → 413, an empty / malformed / non-object body → 400 (the parser's position, not its exception, is shown).
using System.Text.Json;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;

namespace Engine.Server;

internal static class RequestBody
{
    public static async Task<JsonDocument> ReadJsonAsync(HttpContext ctx, long limit)
    {
        if (ctx.Request.ContentLength > limit) throw TooLarge(limit);
        if (ctx.Features.Get<IHttpMaxRequestBodySizeFeature>() is { IsReadOnly: false } f) f.MaxRequestBodySize = limit;
        var buffer = new MemoryStream();
        var chunk = new byte[16384];
        while (true)
        {
            int n;
            try { n = await ctx.Request.Body.ReadAsync(chunk, ctx.RequestAborted); }
            catch (BadHttpRequestException e) when (e.StatusCode == StatusCodes.Status413PayloadTooLarge) { throw TooLarge(limit); }
            if (n == 0) break;
            if (buffer.Length + n > limit) throw TooLarge(limit);
            buffer.Write(chunk, 0, n);
        }
        if (buffer.Length == 0) throw ApiException.BadRequest("the request body is empty; send a JSON object");
        JsonDocument doc;
        try { doc = JsonDocument.Parse(buffer.GetBuffer().AsMemory(0, (int)buffer.Length), new JsonDocumentOptions { MaxDepth = 64 }); }
        catch (JsonException e)
        {
            throw ApiException.BadRequest($"the request body is not valid JSON (line {e.LineNumber + 1}, byte {e.BytePositionInLine + 1})");
        }
        if (doc.RootElement.ValueKind != JsonValueKind.Object)
        {
            doc.Dispose();
            throw ApiException.BadRequest("the request body must be a JSON object");
        }
        return doc;
    }

    private static ApiException TooLarge(long limit) =>
        new(413, $"the request body is larger than the server's limit of {limit} bytes", code: "request_too_large");
}
