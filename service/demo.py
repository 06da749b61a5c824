"""Waits for a running gateway and scores one sample item: the first reward a new user sees."""

from __future__ import annotations

import json
import sys
import time

import httpx

SAMPLE = {
    "items": [{
        "question": "Write add(a, b) returning the sum.",
        "response": "Here you go:\n```python\ndef add(a, b):\n    return a + b\n```",
        "tests": ["assert add(1, 2) == 3", "assert add(-1, 1) == 0", "assert add(2, 2) == 5"],
    }],
    "reward": "tests",
    "tests_reward": "pass_rate",
}


def main(base_url: str) -> None:
    with httpx.Client(base_url=base_url, timeout=30) as client:
        for _ in range(300):
            try:
                if client.get("/health").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        else:
            sys.exit(f"gateway at {base_url} did not become healthy")
        print(f"POST {base_url}/v1/rewards\n{json.dumps(SAMPLE, indent=2)}")
        answer = client.post("/v1/rewards", json=SAMPLE)
        print(f"-> {answer.status_code}\n{json.dumps(answer.json(), indent=2)}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:8000")
