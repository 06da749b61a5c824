"""The service's only configuration: one pydantic-settings object, read from `ACECODER_*` variables.

Built once in the entry point and passed down; nothing reads the environment at import time.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

MiB = 1024 * 1024


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ACECODER_", extra="ignore")

    host: str = Field("127.0.0.1", description="Address the gateway listens on.")
    port: int = Field(8000, description="Port the gateway listens on.")
    log_level: str = Field("info", description="Python logging level.")

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
    sandbox_max_output_bytes: int = Field(8 * MiB, gt=0, description="stdout+stderr before the run is killed.")
    sandbox_max_result_bytes: int = Field(16 * MiB, gt=0, description="Result data before the run is killed.")

    max_items_per_request: int = Field(1024, gt=0, description="Items in one /v1/rewards request.")
    max_tests_per_item: int = Field(512, gt=0, description="Tests in one item.")
    max_response_chars: int = Field(200_000, gt=0, description="Length of one response (the code).")
    max_test_chars: int = Field(20_000, gt=0, description="Length of one test.")
    max_body_bytes: int = Field(64 * MiB, gt=0, description="Request body size, enforced before parsing.")
    max_pending_items: int = Field(20_000, gt=0, description="Items accepted but not finished; past it: 429.")

    def resolved_pool_size(self) -> int:
        from sandbox_worker.pool import default_pool_size

        return self.pool_size or default_pool_size()
