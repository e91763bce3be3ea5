#!/usr/bin/env python
"""Build a tiny, randomly initialised Qwen2 model that a real vLLM can serve.

No model hub is needed: the tokenizer is a byte-level BPE trained here on local text,
the weights are random (seeded, so every build is identical) and saved as safetensors.
vLLM loads it like any Hugging Face checkpoint: config.json, model.safetensors,
tokenizer.json, tokenizer_config.json (with a ChatML chat template) and
generation_config.json. The output is gibberish, which is all the tests need: the
engine, the API, streaming, metrics and the service around them are real.

Needs numpy, safetensors and tokenizers (see tests/requirements.txt).

With --shape qwen2.5-7b it writes only config.json and a tokenizer of the full 152,064-token
vocabulary (for `vllm serve --load-format dummy` on a GPU: real engine, random weights).

Usage: make_tiny_model.py [--shape tiny|qwen2.5-7b] OUTPUT_DIR
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

HIDDEN = 256
INTERMEDIATE = 512
LAYERS = 2
HEADS = 4
KV_HEADS = 2
VOCAB = 2048
MAX_POSITIONS = 4096
SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

_BASE_TEXT = """
The quick brown fox jumps over the lazy dog. A service that answers requests must start,
stay up, restart when it fails and tell its operators how it is doing. Tokens stream to the
client one by one; the first token should arrive quickly and the rest at an even pace.
Hello, how are you today? I am fine, thank you. What is the capital of France? Paris.
Numbers: 0 1 2 3 4 5 6 7 8 9 10 100 1000. Punctuation: , . ; : ! ? ( ) [ ] { } " ' - _ / \\
"""


def corpus() -> list[str]:
    """Training text: a fixed paragraph, so that every build gives the same tokenizer."""
    return [_BASE_TEXT] * 20


def build_tokenizer(texts: list[str]) -> Tokenizer:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB,
        special_tokens=SPECIAL,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return tok


def build_weights(vocab: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    head_dim = HIDDEN // HEADS

    def rand(*shape: int) -> np.ndarray:
        return (rng.standard_normal(shape) * 0.02).astype(np.float32)

    weights: dict[str, np.ndarray] = {"model.embed_tokens.weight": rand(vocab, HIDDEN)}
    for i in range(LAYERS):
        p = f"model.layers.{i}."
        weights[p + "input_layernorm.weight"] = np.ones(HIDDEN, dtype=np.float32)
        weights[p + "post_attention_layernorm.weight"] = np.ones(HIDDEN, dtype=np.float32)
        weights[p + "self_attn.q_proj.weight"] = rand(HEADS * head_dim, HIDDEN)
        weights[p + "self_attn.q_proj.bias"] = np.zeros(HEADS * head_dim, dtype=np.float32)
        weights[p + "self_attn.k_proj.weight"] = rand(KV_HEADS * head_dim, HIDDEN)
        weights[p + "self_attn.k_proj.bias"] = np.zeros(KV_HEADS * head_dim, dtype=np.float32)
        weights[p + "self_attn.v_proj.weight"] = rand(KV_HEADS * head_dim, HIDDEN)
        weights[p + "self_attn.v_proj.bias"] = np.zeros(KV_HEADS * head_dim, dtype=np.float32)
        weights[p + "self_attn.o_proj.weight"] = rand(HIDDEN, HEADS * head_dim)
        weights[p + "mlp.gate_proj.weight"] = rand(INTERMEDIATE, HIDDEN)
        weights[p + "mlp.up_proj.weight"] = rand(INTERMEDIATE, HIDDEN)
        weights[p + "mlp.down_proj.weight"] = rand(HIDDEN, INTERMEDIATE)
    weights["model.norm.weight"] = np.ones(HIDDEN, dtype=np.float32)
    return weights


QWEN25_7B = {
    "architectures": ["Qwen2ForCausalLM"],
    "model_type": "qwen2",
    "hidden_size": 3584,
    "intermediate_size": 18944,
    "num_hidden_layers": 28,
    "num_attention_heads": 28,
    "num_key_value_heads": 4,
    "vocab_size": 152064,
    "max_position_embeddings": 32768,
    "max_window_layers": 28,
    "use_sliding_window": False,
    "sliding_window": None,
    "rms_norm_eps": 1e-6,
    "rope_theta": 1000000.0,
    "hidden_act": "silu",
    "initializer_range": 0.02,
    "attention_dropout": 0.0,
    "tie_word_embeddings": False,
    "torch_dtype": "bfloat16",
    "bos_token_id": 151643,
    "eos_token_id": 151645,
    "use_cache": True,
}


def build_full_vocab_tokenizer(size: int) -> Tokenizer:
    """A byte-level tokenizer with exactly `size` ids, so any id a random model samples decodes."""
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab: dict[str, int] = {}
    for ch in sorted(alphabet):
        vocab[ch] = len(vocab)
    i = 0
    while len(vocab) < size - 3:
        vocab[f"\u0120w{i}"] = len(vocab)
        i += 1
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(SPECIAL)
    return tok


def write_tokenizer_files(out: Path, tok: Tokenizer, max_len: int) -> None:
    tok.save(str(out / "tokenizer.json"))
    (out / "tokenizer_config.json").write_text(
        json.dumps(
            {
                "tokenizer_class": "PreTrainedTokenizerFast",
                "model_max_length": max_len,
                "bos_token": None,
                "eos_token": "<|im_end|>",
                "pad_token": "<|endoftext|>",
                "unk_token": None,
                "clean_up_tokenization_spaces": False,
                "chat_template": CHAT_TEMPLATE,
            },
            indent=2,
        )
        + "\n"
    )
    (out / "special_tokens_map.json").write_text(
        json.dumps({"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"}, indent=2) + "\n"
    )


def main(argv: list[str]) -> int:
    shape = "tiny"
    args = argv[1:]
    if len(args) == 3 and args[0] == "--shape":
        shape, args = args[1], args[2:]
    if len(args) != 1 or shape not in ("tiny", "qwen2.5-7b"):
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    out = Path(args[0])
    out.mkdir(parents=True, exist_ok=True)
    if shape == "qwen2.5-7b":
        tok = build_full_vocab_tokenizer(QWEN25_7B["vocab_size"])
        config = dict(QWEN25_7B)
        config["eos_token_id"] = tok.token_to_id("<|im_end|>")
        config["bos_token_id"] = tok.token_to_id("<|endoftext|>")
        write_tokenizer_files(out, tok, QWEN25_7B["max_position_embeddings"])
        (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
        print(f"Qwen2.5-7B-shaped config + tokenizer ({tok.get_vocab_size()} ids) written to {out}")
        return 0
    tok = build_tokenizer(corpus())
    write_tokenizer_files(out, tok, MAX_POSITIONS)
    vocab = tok.get_vocab_size()
    eos = tok.token_to_id("<|im_end|>")
    pad = tok.token_to_id("<|endoftext|>")

    config = {
        "architectures": ["Qwen2ForCausalLM"],
        "model_type": "qwen2",
        "hidden_size": HIDDEN,
        "intermediate_size": INTERMEDIATE,
        "num_hidden_layers": LAYERS,
        "num_attention_heads": HEADS,
        "num_key_value_heads": KV_HEADS,
        "vocab_size": vocab,
        "max_position_embeddings": MAX_POSITIONS,
        "max_window_layers": LAYERS,
        "use_sliding_window": False,
        "sliding_window": None,
        "rms_norm_eps": 1e-6,
        "rope_theta": 10000.0,
        "hidden_act": "silu",
        "initializer_range": 0.02,
        "attention_dropout": 0.0,
        "tie_word_embeddings": True,
        "torch_dtype": "float32",
        "bos_token_id": pad,
        "eos_token_id": eos,
        "use_cache": True,
    }
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    (out / "generation_config.json").write_text(
        json.dumps({"bos_token_id": pad, "eos_token_id": eos, "pad_token_id": pad}, indent=2) + "\n"
    )
    save_file(build_weights(vocab), str(out / "model.safetensors"), metadata={"format": "pt"})
    print(f"tiny Qwen2 model written to {out} (vocab {vocab}, {LAYERS} layers, hidden {HIDDEN})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
