"""Published model configurations (config.json values), for planners that must not download them."""

from __future__ import annotations

# Qwen/Qwen2.5-32B-Instruct, the Sky-T1 student
QWEN25_32B = {
    "model_type": "qwen2",
    "hidden_size": 5120,
    "intermediate_size": 27648,
    "num_hidden_layers": 64,
    "num_attention_heads": 40,
    "num_key_value_heads": 8,
    "vocab_size": 152064,
    "tie_word_embeddings": False,
}
