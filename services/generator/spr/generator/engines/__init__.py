"""Generation engines behind one interface (:class:`spr.generator.engines.protocol.Engine`).

``transformers_engine`` runs the model in-process (CPU or CUDA); ``vllm_engine`` talks to an
OpenAI-compatible vLLM server, or runs ``vllm.LLM`` in-process. Import the engine modules directly:
they import their heavy dependencies lazily.
"""

from spr.generator.engines.protocol import (
    ChatMessage,
    Engine,
    EngineError,
    GenerationRequest,
    ImagePart,
    Sample,
    TextPart,
)

__all__ = ["ChatMessage", "Engine", "EngineError", "GenerationRequest", "ImagePart", "Sample", "TextPart"]
