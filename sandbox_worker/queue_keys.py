"""Every Redis key and stream name the queue uses, in one place (gateway and workers both read it).

    {prefix}:jobs            stream of jobs; consumer group `workers`; an entry is deleted once acknowledged,
                             so its length is the queue depth plus the jobs being run
    {prefix}:dead            dead-letter stream: jobs that killed their workers too often (capped length)
    {prefix}:reply:{gateway} list of results for one gateway instance (expires when nobody reads it)
    {prefix}:workers         sorted set: worker name -> last heartbeat (ms, Redis clock)
    {prefix}:worker:{name}   a worker's health record (JSON); expires unless the worker keeps beating
    {prefix}:stats           hash of cumulative counters: reclaimed, dead_lettered, expired, handed_back, done
"""

from __future__ import annotations

from dataclasses import dataclass

GROUP = "workers"
HANDED_BACK = "handed-back"  # a consumer that never beats: draining workers move unfinished jobs to it
DATA_FIELD = "j"  # the one field of a job entry: the job as JSON


@dataclass(frozen=True)
class QueueKeys:
    prefix: str

    @property
    def jobs(self) -> str:
        return f"{self.prefix}:jobs"

    @property
    def dead(self) -> str:
        return f"{self.prefix}:dead"

    @property
    def workers(self) -> str:
        return f"{self.prefix}:workers"

    @property
    def stats(self) -> str:
        return f"{self.prefix}:stats"

    def reply(self, gateway: str) -> str:
        return f"{self.prefix}:reply:{gateway}"

    def worker(self, name: str) -> str:
        return f"{self.prefix}:worker:{name}"

    @property
    def worker_pattern(self) -> str:
        return f"{self.prefix}:worker:*"
