"""Finding and checking AceCodeRM checkpoints: a local directory or a Hugging Face hub name.

A checkpoint is recognised by its tensors, not by the class name in config.json: AceCodeRM has been published
as `Qwen2ForCausalRM`, `AceCodeRM` and plain `Qwen2ForCausalLM`. What makes it a reward model is the value head
`v_head.summary.{weight,bias}`; a checkpoint without it is refused, because scoring with a missing head would
silently give random numbers.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

HEAD_PREFIX = "v_head.summary."
HEAD_TENSORS = (HEAD_PREFIX + "weight", HEAD_PREFIX + "bias")
SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"


class CheckpointError(ValueError):
    """The checkpoint cannot be used as AceCodeRM; the message says why."""


@dataclass(frozen=True)
class Checkpoint:
    path: Path  # local directory holding config.json, tokenizer files and safetensors
    architecture: str
    head_files: dict[str, Path]  # head tensor name -> the safetensors file holding it
    max_model_len: int  # the model's context length (max_position_embeddings)


def resolve(name_or_path: str) -> Path:
    """A local directory as is; anything else is a hub name, fetched into the local cache."""
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return path
    if path.exists() or name_or_path.startswith((".", "/", "~")):
        raise CheckpointError(f"{name_or_path}: not a checkpoint directory")
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(name_or_path, allow_patterns=["*.json", "*.safetensors", "*.txt",
                                                                      "*.model", "*.jinja"]))
    except Exception as exc:  # hub errors come in many types; all mean "cannot get it"
        raise CheckpointError(f"{name_or_path}: not a local directory and not fetchable from the hub: {exc}") from exc


def inspect(name_or_path: str) -> Checkpoint:
    """Resolves the checkpoint and checks it is AceCodeRM-shaped (config, safetensors, value head)."""
    path = resolve(name_or_path)
    config_file = path / "config.json"
    if not config_file.is_file():
        raise CheckpointError(f"{path}: no config.json")
    config = json.loads(config_file.read_text())
    if config.get("model_type") != "qwen2":
        raise CheckpointError(f"{path}: model_type is {config.get('model_type')!r}; AceCodeRM is a qwen2 model")
    files = _tensor_files(path)
    missing = [t for t in HEAD_TENSORS if t not in files]
    if missing:
        raise CheckpointError(f"{path}: no value head ({', '.join(missing)} missing); this is not an AceCodeRM "
                              "reward-model checkpoint")
    architecture = (config.get("architectures") or ["?"])[0]
    return Checkpoint(path=path, architecture=architecture, head_files={t: files[t] for t in HEAD_TENSORS},
                      max_model_len=int(config.get("max_position_embeddings", 32768)))


def _tensor_files(path: Path) -> dict[str, Path]:
    """Tensor name -> file, from the shard index or the single safetensors file's header."""
    index = path / INDEX_FILE
    if index.is_file():
        weight_map: dict[str, str] = json.loads(index.read_text())["weight_map"]
        return {name: path / file for name, file in weight_map.items()}
    single = path / SINGLE_FILE
    if single.is_file():
        from safetensors import safe_open

        with safe_open(str(single), framework="numpy") as f:
            return dict.fromkeys(f.keys(), single)
    raise CheckpointError(f"{path}: no {SINGLE_FILE} or {INDEX_FILE} (only safetensors checkpoints are supported)")
