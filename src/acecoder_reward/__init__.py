"""The AceCoder reward service, installed under one distinctive name.

The repository keeps its design's top-level folders (`service/`, `sandbox_worker/`, `models/`); this package
links them in, so the wheel installs `acecoder_reward.service`, `acecoder_reward.sandbox_worker` and
`acecoder_reward.models` and no other distribution's `service` or `models`, nor a folder of that name in
the current directory, can shadow them (vLLM imports the plugin in every one of its processes).
"""
