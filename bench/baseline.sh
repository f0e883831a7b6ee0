#!/usr/bin/env bash
# The side-by-side table engine vs llama.cpp (LLamaSharp), Llama-3.2-1B-shape synthetic files, interleaved reps (see bench/Engine.Baseline/Program.cs).
exec dotnet run -c Release --project "$(dirname "$0")/Engine.Baseline" -- --type "${TYPES:-q4_0,q8_0,f16,q4_k}" -t "${THREADS:-2}" -r "${REPS:-3}" "$@"
