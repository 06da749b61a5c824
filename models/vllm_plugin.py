"""vLLM general plugin: lets a stock vLLM server (`--runner pooling`) host AceCodeRM checkpoints.

Registered under the `vllm.general_plugins` entry point, so vLLM runs `register()` in every one of its
processes (API server and engine core alike); it must stay idempotent and import nothing heavy at module level.
"""

from __future__ import annotations

from typing import Any, cast

# The names AceCodeRM checkpoints give their class in config.json "architectures". A checkpoint that calls
# itself plain `Qwen2ForCausalLM` is vLLM's own class: serve it with `--hf-overrides
# '{"architectures": ["AceCodeRM"]}'` (the README says so); hijacking that name would change every Qwen2 model.
ARCHITECTURES = ("Qwen2ForCausalRM", "AceCodeRM")
MODEL_CLASS = "acecoder_reward.models.vllm_model:AceCodeRMForScoring"


def register() -> None:
    from vllm import ModelRegistry
    from vllm.model_executor.models.config import MODELS_CONFIG_MAP

    supported = set(ModelRegistry.get_supported_archs())
    for arch in ARCHITECTURES:
        if arch not in supported:
            ModelRegistry.register_model(arch, MODEL_CLASS)
        MODELS_CONFIG_MAP.setdefault(arch, cast(Any, AceCodeRMConfig))  # duck-typed VerifyAndUpdateConfig


class AceCodeRMConfig:
    """Config hook vLLM runs where the model config is built (the API server too, which fills request
    defaults from it): one label, and no activation unless a request asks for one explicitly."""

    @staticmethod
    def verify_and_update_model_config(model_config: Any) -> None:
        model_config.hf_config.num_labels = 1
        pooler = model_config.pooler_config
        if pooler is not None and pooler.use_activation is None:
            pooler.use_activation = False

    @staticmethod
    def verify_and_update_config(vllm_config: Any) -> None:
        AceCodeRMConfig.verify_and_update_model_config(vllm_config.model_config)
