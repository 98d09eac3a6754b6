"""The vLLM backend: OpenAI-compatible vLLM servers hosting the base model and the LoRA adapters."""
