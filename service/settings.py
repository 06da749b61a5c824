"""The service's only configuration: one pydantic-settings object, read from `ACECODER_*` variables.

Built once in the entry point and passed down; nothing reads the environment at import time.
"""

from __future__ import annotations

import re
import sys
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from acecoder_reward.sandbox_worker.forker import DEFAULT_PRELOAD

_MODULE_NAME = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")
_NEVER_PRELOAD = frozenset({"antigravity", "this", "idlelib", "turtledemo", "acecoder_reward"})

MiB = 1024 * 1024


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ACECODER_", extra="ignore")

    host: str = Field("127.0.0.1", description="Address the gateway listens on.")
    port: int = Field(8000, description="Port the gateway listens on.")
    log_level: str = Field("info", description="Python logging level.")
    log_format: Literal["text", "json"] = Field("text", description="'json': one JSON object per log line "
                                                "(time, level, logger, message, request_id), for log pipelines.")
    auth_tokens: list[SecretStr] = Field(
        [], description="Bearer tokens accepted on every route but /health and /metrics (JSON list, e.g. from a "
                        "Kubernetes Secret); empty: no auth. List old and new together to rotate.")

    pool_size: int = Field(0, ge=0, description="Programs run at once by the embedded pool; 0 = one per CPU, plus one.")
    sandbox_isolation: Literal["namespaces", "none"] = Field(
        "namespaces", description="'none' runs candidates WITHOUT isolation; only for kernels that refuse it.")
    sandbox_hidden_paths: list[str] = Field(
        ["/root", "/home", "/run", "/var/lib/mysql", "/var/lib/postgresql", "/var/spool"],
        description="Directories masked by an empty tmpfs in the sandbox (the Python install stays visible): "
                    "secrets, and host services' unix sockets (a read-only mount does not stop connect()).")
    sandbox_uid_base: int = Field(200000, description="Runs use uid base+slot: one uid per slot, so process "
                                  "limits of one run never starve another.")
    sandbox_allowed_modules: list[str] = Field(
        [], description="Third-party top-level packages candidates may import (stdlib is always allowed).")
    sandbox_preload: list[str] = Field(
        list(DEFAULT_PRELOAD),
        description="Modules imported once into each slot's forker, so a run that imports them pays nothing. "
                    "Each one also costs every run its memory (~0.2 ms of CPU per MB: the clone copies and the "
                    "exit frees its page tables), so list what candidates commonly import. Third-party ones "
                    "must be in ACECODER_SANDBOX_ALLOWED_MODULES.")

    untrusted_tests: Literal["exclude", "count", "fail"] = Field(
        "exclude", description="Tests that could not be split and were judged inside the candidate's own process "
                               "(a hostile program could forge them): 'exclude' leaves them out of the reward (an "
                               "item with only such tests gets 0, status all_tests_untrusted), 'count' counts them "
                               "like the others, 'fail' counts them as failed. A request may override it.")

    default_test_timeout_s: float = Field(4.0, gt=0, description="Per-test limit (the seed's 4 s).")
    default_program_timeout_s: float = Field(15.0, gt=0, description="Whole-program limit (the seed's 15 s).")
    default_memory_mb: int = Field(4096, gt=0, description="Address-space limit per process (the seed's 4 GB).")
    max_test_timeout_s: float = Field(30.0, gt=0, description="Cap on a request's test_timeout_s.")
    max_program_timeout_s: float = Field(60.0, gt=0, description="Cap on a request's program_timeout_s.")
    max_memory_mb: int = Field(8192, gt=0, description="Cap on a request's memory_mb.")
    sandbox_max_processes: int = Field(8, gt=0, description="Processes a run may have at once (fork bombs).")
    sandbox_max_open_files: int = Field(64, gt=3, description="Open file descriptors per process.")
    sandbox_max_file_bytes: int = Field(16 * MiB, gt=0, description="Largest file a run may write.")
    sandbox_scratch_mb: int = Field(64, gt=0, description="Size of the run's private tmpfs working dir.")
    sandbox_warm_up: bool = Field(True, description="A spare run whose job has not come 1 ms after it is ready "
                                  "walks the runner's code on a throwaway program meanwhile: ~0.4 ms less latency "
                                  "per program when the server is not saturated; skipped under load.")
    sandbox_max_output_bytes: int = Field(8 * MiB, gt=0, description="stdout+stderr before the run is killed.")
    sandbox_max_result_bytes: int = Field(16 * MiB, gt=0, description="Result data before the run is killed.")

    max_items_per_request: int = Field(1024, gt=0, description="Items in one /v1/rewards request.")
    max_tests_per_item: int = Field(512, gt=0, description="Tests in one item.")
    max_response_chars: int = Field(200_000, gt=0, description="Length of one response (the code).")
    max_test_chars: int = Field(20_000, gt=0, description="Length of one test.")
    max_body_bytes: int = Field(64 * MiB, gt=0, description="Request body size, enforced before parsing.")
    max_pending_items: int = Field(20_000, gt=0, description="Items accepted but not finished; past it: 429.")

    test_cache: bool = Field(True, description="Answer a program meeting tests it has met before (same limits) from "
                             "the test-result cache, and identical items in flight from one run: in this process "
                             "in embedded mode, in Redis (shared by every gateway) in queue mode. false: every "
                             "item runs.")
    test_cache_max_mb: int = Field(256, gt=0, description="Bound on the test-result cache's size (in this process, "
                                   "or in Redis); least recently used entries go first.")
    test_cache_ttl_s: float = Field(86_400.0, gt=0, description="Queue mode: a cache entry not used for this long "
                                    "expires.")

    redis_url: SecretStr | None = Field(
        None, description="Queue mode: the gateway queues test jobs on this Redis (redis://[:password@]host:port/db) "
                          "for `acecoder-reward worker` processes; unset: the embedded pool runs them. Workers "
                          "need it too. Never reaches a sandboxed program.")
    queue_prefix: str = Field("acecoder", min_length=1, description="Prefix of every Redis key the queue uses "
                              "(one prefix per deployment sharing a Redis).")
    queue_max_depth: int = Field(10_000, gt=0, description="Jobs in the stream (queued + running) before the "
                                 "gateway answers 429.")
    queue_request_timeout_s: float = Field(300.0, gt=0, description="How long a request waits for its queued "
                                           "jobs; then 504, and its unfinished jobs are withdrawn.")
    queue_visibility_timeout_s: float = Field(
        120.0, gt=0, description="A job claimed this long ago without a result is claimed by another worker; "
                                 "must exceed the longest job (ACECODER_MAX_PROGRAM_TIMEOUT_S plus slack).")
    queue_max_deliveries: int = Field(3, gt=0, description="Deliveries without a result (each one ended its "
                                      "worker) before a job is dead-lettered as infra_error.")
    queue_result_ttl_s: float = Field(600.0, ge=1, description="Lifetime of a gateway's reply list in Redis "
                                      "after its last result.")
    queue_audit_interval_s: float = Field(30.0, gt=0, description="How often a gateway checks that its "
                                          "waiting jobs are still in Redis (also at once after a Redis restart).")
    queue_dead_letter_max: int = Field(10_000, gt=0, description="Entries kept in the dead-letter stream.")
    worker_heartbeat_s: float = Field(1.0, gt=0, description="Worker heartbeat period.")
    worker_heartbeat_ttl_s: float = Field(5.0, gt=0, description="A worker silent this long is dead: its "
                                          "health key expires and its jobs are reclaimed.")
    worker_drain_s: float = Field(30.0, ge=0, description="On SIGTERM, how long running jobs may finish before "
                                  "the rest are handed back; set terminationGracePeriodSeconds above it.")

    rm_backend: Literal["none", "vllm", "hf"] = Field(
        "none", description="Where AceCodeRM scores come from: 'vllm' (HTTP to ACECODER_VLLM_URL), 'hf' (in "
                            "process, needs the [hf] extra), 'none' (model rewards answer 422).")
    rm_model: str | None = Field(None, description="AceCodeRM checkpoint: a local directory or a hub name. The hf "
                                 "backend loads it; for vLLM it is the source of the tokenizer and chat template.")
    vllm_url: str = Field("", description="vLLM servers hosting AceCodeRM, comma-separated; batches are spread "
                          "over them round-robin.")
    vllm_served_model: str | None = Field(None, description="The model name vLLM serves (its --served-model-name); "
                                          "default: ACECODER_RM_MODEL.")
    rm_prompt_format: Literal["chat", "training"] = Field(
        "chat", description="'chat': the bare question and response in the chat template; 'training': wrapped "
                            "as in AceCodePair (instruction prefix, fenced question and first test, fenced program).")
    rm_max_model_len: int = Field(0, ge=0, description="Longest model input in tokens; 0: what vLLM reports "
                                  "(/v1/models), else the checkpoint's max_position_embeddings.")
    rm_overlong: Literal["reject", "truncate"] = Field(
        "reject", description="An input over the context: 'reject' answers 422 naming the item; 'truncate' keeps "
                              "its first tokens and the template's closing tokens (the end of the program is cut).")
    rm_hf_compile: Literal["auto", "on", "off"] = Field(
        "auto", description="hf backend: compiled kernels for the norms, MLP activation and rotary embedding "
                            "(torch.compile; about 10% more throughput on a GPU). 'auto': on a GPU only.")
    rm_max_batch_items: int = Field(64, gt=0, description="Items in one batch sent to the backend.")
    rm_max_batch_tokens: int = Field(32768, gt=0, description="Tokens in one batch sent to the backend.")
    rm_max_wait_ms: float = Field(5.0, ge=0, description="How long the first item of a batch waits for others "
                                  "while another batch is already being computed.")
    rm_max_inflight_batches: int = Field(4, gt=0, description="Batches being computed at once (over all backends).")
    rm_max_pending: int = Field(8192, gt=0, description="Model inputs queued or being computed; past it: 429.")
    rm_cache_items: int = Field(100_000, ge=0, description="Scores kept by content hash to answer repeats; 0: off.")
    rm_upstream_timeout_s: float = Field(120.0, gt=0, description="Per-batch limit on a vLLM call; then 504.")
    rm_upstream_retries: int = Field(2, ge=0, description="Retries of a batch on another vLLM server, only when "
                                     "it was surely not computed (connection refused, 503).")

    openrlhf_reward: Literal["tests", "model", "combined"] = Field(
        "tests", description="The reward POST /get_reward answers (a request may override it); without a reward "
                             "model it falls back to tests.")
    openrlhf_tests_reward: Literal["pass_rate", "binary"] = Field(
        "binary", description="The tests reward /get_reward uses (AceCoder's published RL runs used binary).")
    openrlhf_weight_tests: float = Field(1.0, description="Weight of the tests reward in /get_reward's combined.")
    openrlhf_weight_model: float = Field(1.0, description="Weight of the model score in /get_reward's combined.")
    dataset_path: str | None = Field(None, description="A dataset file (JSONL, .gz or Parquet) in any format "
                                     "`acecoder-reward score --format auto` reads (AceCode, APPS/TACO, CodeContests, "
                                     "LiveCodeBench, HumanEval, MBPP); a /get_reward label may be a row's id, and "
                                     "a request without labels finds its row by the question in the prompt.")

    def vllm_urls(self) -> list[str]:
        return [u.strip().rstrip("/") for u in self.vllm_url.split(",") if u.strip()]

    @model_validator(mode="after")
    def _model_backend_is_complete(self) -> Settings:
        if self.rm_backend != "none" and not self.rm_model:
            raise ValueError("ACECODER_RM_MODEL must name the AceCodeRM checkpoint when ACECODER_RM_BACKEND is set")
        if self.rm_backend == "vllm" and not self.vllm_urls():
            raise ValueError("ACECODER_VLLM_URL must list at least one vLLM server when ACECODER_RM_BACKEND=vllm")
        return self

    @model_validator(mode="after")
    def _preloads_are_allowed(self) -> Settings:
        # Preloads are imported as root in the forker, before any run: plain module names only, and none
        # whose import runs a program.
        malformed = [name for name in self.sandbox_preload if not _MODULE_NAME.fullmatch(name)
                     or "__main__" in name.split(".") or name.partition(".")[0] in _NEVER_PRELOAD]
        if malformed:
            raise ValueError(f"ACECODER_SANDBOX_PRELOAD must list importable module names (no __main__, "
                             f"none of {sorted(_NEVER_PRELOAD)}): {malformed}")
        # A preloaded module is in every run's sys.modules, so the import gate would let candidates have it.
        refused = [name for name in self.sandbox_preload if name.partition(".")[0] not in sys.stdlib_module_names
                   and name.partition(".")[0] not in self.sandbox_allowed_modules]
        if refused:
            raise ValueError(f"ACECODER_SANDBOX_PRELOAD lists third-party modules that are not in "
                             f"ACECODER_SANDBOX_ALLOWED_MODULES: {refused}")
        return self

    @model_validator(mode="after")
    def _visibility_exceeds_longest_job(self) -> Settings:
        if self.queue_visibility_timeout_s <= self.max_program_timeout_s:
            raise ValueError("ACECODER_QUEUE_VISIBILITY_TIMEOUT_S must exceed ACECODER_MAX_PROGRAM_TIMEOUT_S, "
                             "or running jobs would be claimed twice")
        if self.queue_max_depth < self.max_items_per_request:
            raise ValueError("ACECODER_QUEUE_MAX_DEPTH must be at least ACECODER_MAX_ITEMS_PER_REQUEST, or the "
                             "largest requests would be refused forever")
        if self.worker_heartbeat_ttl_s <= self.worker_heartbeat_s:
            raise ValueError("ACECODER_WORKER_HEARTBEAT_TTL_S must exceed ACECODER_WORKER_HEARTBEAT_S")
        return self

    def resolved_pool_size(self) -> int:
        from acecoder_reward.sandbox_worker.pool import default_pool_size

        return self.pool_size or default_pool_size()
