"""The zygote: a pre-imported process that runs one program at a time in isolated children it watches.

Protocol with its owner (the pool) on stdin/stdout: `zygote_protocol`'s frames.
  owner -> zygote: {"response", "names", "tests": [{"holes": [...], "in_sandbox": bool}], "limits": {...},
                    "allowed_modules": [...], "stream"?: true}
  zygote -> owner: the report of `supervise.Supervisor.run_program` (after progress frames when streaming).
The first frame the zygote sends is its readiness: {"ready": true, "mode": ...} or {"ready": false, "error"}.

The zygote never receives expected values (the judge keeps them), and its environment was scrubbed by the
pool before exec. Runs are cloned by its forker (`forker.py`), a fresh interpreter started before the first
job, so a run that reads its own memory or /proc/self/environ finds neither secrets nor earlier jobs. The
modules candidates commonly import are preloaded there, not here.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import traceback

from acecoder_reward.sandbox_worker import cgroups, isolation, supervise
from acecoder_reward.sandbox_worker.forker import DEFAULT_PRELOAD
from acecoder_reward.sandbox_worker.zygote_protocol import Stream, read_frame, write_frame

RUN_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": isolation.SCRATCH_DIR}


def main() -> None:
    config = json.loads(sys.argv[1])
    isolation.set_process_name("acecoder-zygote")
    # The runs' environment, set once here rather than per run (touching it in a child costs page faults).
    # The pool started this process with an environment holding nothing of the worker's.
    os.environ.clear()
    os.environ.update(RUN_ENV)
    proto_in, proto_out = os.dup(0), os.dup(1)
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1):
        os.dup2(devnull, fd)  # stray prints in the zygote must never corrupt the protocol
    cgroup: cgroups.SlotCgroup | None = None
    supervisor: supervise.Supervisor | None = None
    try:
        try:
            cgroup, supervisor = _start(config)
        except Exception as exc:
            write_frame(proto_out, {"ready": False, "error": f"{type(exc).__name__}: {exc}",
                                    "where": traceback.format_exc(limit=-3)})
            return
        write_frame(proto_out, {"ready": True, "mode": supervisor.mode,
                                "cgroup": cgroup.version if cgroup else None})
        _serve(supervisor, proto_in, proto_out)
    finally:  # an empty cgroup can be removed: end our children first
        if supervisor is not None:
            supervisor.close()
        if cgroup is not None:
            cgroup.leave_and_remove()


def _start(config: dict) -> tuple[cgroups.SlotCgroup | None, supervise.Supervisor]:
    mode = config["isolation"]
    cgroup = None
    if mode != "none":
        cgroups.remove_stale(config["cgroup_name"])
        cgroup = cgroups.create_slot_cgroup(config["cgroup_name"])
        if cgroup is not None:
            cgroup.join()
            # Runs raise theirs to 1000, so the OOM killer takes the run; lowering the zygote's
            # needs CAP_SYS_RESOURCE, which some containers lack.
            with contextlib.suppress(OSError), open("/proc/self/oom_score_adj", "w") as f:
                f.write("-1000")
        try:
            writable = tuple({cgroups.mount_root_of(p) for p in (cgroup.path, cgroup.pids_path) if p}) if cgroup else ()
            mode = isolation.prepare_zygote(config["hidden_paths"], isolation.python_install_paths(), config["uid"],
                                            writable)
        except BaseException:
            if cgroup is not None:
                cgroup.leave_and_remove()
            raise
    try:
        supervisor = supervise.Supervisor(mode=mode, uid=config["uid"], cgroup=cgroup,
                                          scratch_mb=config["scratch_mb"], warm_up=config.get("warm_up", True),
                                          preload=tuple(config.get("preload", DEFAULT_PRELOAD)))
    except BaseException:
        if cgroup is not None:
            cgroup.leave_and_remove()
        raise
    try:
        supervisor.self_check()
    except BaseException:
        supervisor.close()
        if cgroup is not None:
            cgroup.leave_and_remove()
        raise
    return cgroup, supervisor


def _serve(supervisor: supervise.Supervisor, proto_in: int, proto_out: int) -> None:
    while True:
        supervisor.prepare()  # the next run's child is cloned and isolated while we wait
        try:
            job = read_frame(proto_in)
        except EOFError:
            return
        if "stop" in job:
            continue  # a stop that crossed its run's report: that run had already ended
        stream = Stream(proto_in, proto_out) if job.get("stream") else None
        report = supervisor.run_program(job, stream)
        try:
            write_frame(proto_out, report)
        except BrokenPipeError:
            return  # the owner died (a killed worker): clean up quietly and exit
        supervisor.release()  # reap the finished run after its report went out


if __name__ == "__main__":
    main()
