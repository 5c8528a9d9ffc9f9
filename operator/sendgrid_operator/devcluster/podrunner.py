"""One Pod's containers as local processes, and the Pod status a kubelet would report.

Why it exists: the node agent needs, per Pod, the process bookkeeping of a kubelet: start each
container (after :mod:`podspec` resolved its files and env), notice exits, apply the Pod's
``restartPolicy``, kill on deletion (SIGTERM, then SIGKILL after the grace period), and describe
all of it as ``status`` (phase, conditions, containerStatuses with exit codes and termination
messages) in the shape the Job controller reads.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sendgrid_operator.devcluster.api import Api
from sendgrid_operator.devcluster.controlplane import die_with_parent
from sendgrid_operator.devcluster.podspec import ConfigError, Launch, prepare

JSON = dict[str, Any]
MAX_MESSAGE = 4096  # the kubelet's limit for a termination message
FALLBACK_LINES = 80


def now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class ContainerRun:
    """The current (or last) process of one container."""

    spec: JSON
    launch: Launch | None = None
    proc: subprocess.Popen[bytes] | None = None
    started_at: str = ""
    restarts: int = 0
    terminated: JSON | None = None
    last_terminated: JSON | None = None
    waiting: JSON | None = None
    restart_at: float = 0.0

    @property
    def name(self) -> str:
        return str(self.spec["name"])


@dataclass
class PodRun:
    """A Pod bound to the local node, from first start to its terminal phase."""

    pod: JSON
    dir: Path
    containers: list[ContainerRun] = field(default_factory=list)
    start_time: str = field(default_factory=now)
    killing: threading.Thread | None = None
    killed: bool = False
    retry_at: float = 0.0

    def __post_init__(self) -> None:
        self.containers = [ContainerRun(c) for c in self.pod["spec"]["containers"]]

    @property
    def uid(self) -> str:
        return str(self.pod["metadata"]["uid"])

    @property
    def restart_policy(self) -> str:
        return str(self.pod["spec"].get("restartPolicy", "Always"))

    # -- lifecycle -----------------------------------------------------------------------

    def step(self, api: Api, default_entrypoint: list[str], bin_dirs: list[str]) -> None:
        """Start containers that are due to (re)start, and collect exits."""
        for c in self.containers:
            if c.proc is not None and c.proc.poll() is not None:
                self._finished(c)
        if self.killed or self.killing is not None:
            return
        for c in self.containers:
            due = c.proc is None and c.terminated is None and time.monotonic() >= c.restart_at
            if due:
                self._start(c, api, default_entrypoint, bin_dirs)

    def _start(self, c: ContainerRun, api: Api, entrypoint: list[str], bin_dirs: list[str]) -> None:
        try:
            c.launch = prepare(api, self.pod, c.spec, self.dir, entrypoint, bin_dirs)
        except ConfigError as exc:
            c.waiting = {"reason": "CreateContainerConfigError", "message": str(exc)}
            c.restart_at = time.monotonic() + 1.0
            return
        launch = c.launch
        c.started_at, c.waiting = now(), None
        executable = shutil.which(launch.argv[0], path=launch.env["PATH"]) if launch.argv else None
        if executable is None:
            message = f"exec: {launch.argv[:1]!r}: executable file not found in $PATH"
            c.terminated = self._terminated(c, 128, "StartError", message)
            self._after_exit(c, 128)
            return
        with launch.log_path.open("ab") as log:
            c.proc = subprocess.Popen(
                [executable, *launch.argv[1:]],
                env=launch.env,
                cwd=launch.cwd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, killed as a whole
                preexec_fn=die_with_parent,
            )

    def _finished(self, c: ContainerRun) -> None:
        assert c.proc is not None and c.launch is not None
        code = c.proc.returncode
        code = 128 - code if code < 0 else code  # killed by signal N -> 128+N, like runtimes
        reason = "Completed" if code == 0 else "Error"
        c.terminated = self._terminated(c, code, reason, self._message(c.launch, code))
        c.proc = None
        self._after_exit(c, code)

    def _after_exit(self, c: ContainerRun, code: int) -> None:
        policy = self.restart_policy
        if self.killing is None and (policy == "Always" or (policy == "OnFailure" and code != 0)):
            c.last_terminated, c.terminated = c.terminated, None
            c.restarts += 1
            delay = min(2.0**c.restarts, 30.0)
            c.restart_at = time.monotonic() + delay
            c.waiting = {"reason": "CrashLoopBackOff", "message": f"back-off {delay:.0f}s"}

    def _terminated(self, c: ContainerRun, code: int, reason: str, message: str) -> JSON:
        state: JSON = {
            "exitCode": code,
            "reason": reason,
            "startedAt": c.started_at or now(),
            "finishedAt": now(),
        }
        if message:
            state["message"] = message
        if c.proc is not None:
            state["containerID"] = f"local://{c.proc.pid}"
        return state

    @staticmethod
    def _message(launch: Launch, code: int) -> str:
        try:
            text = launch.termination_path.read_bytes()[:MAX_MESSAGE].decode(errors="replace")
        except OSError:
            text = ""
        if not text and code != 0 and launch.termination_policy == "FallbackToLogsOnError":
            lines = launch.log_path.read_bytes().decode(errors="replace").splitlines()
            text = "\n".join(lines[-FALLBACK_LINES:])[-MAX_MESSAGE:]
        return text

    def terminate(self, grace: float) -> None:
        """Kill every process in the background: SIGTERM, then SIGKILL after ``grace``."""
        if self.killing is not None:
            return
        procs = [c.proc for c in self.containers if c.proc is not None]
        self.killing = threading.Thread(
            target=self._kill, args=(procs, grace), name=f"kill-{self.uid}", daemon=True
        )
        self.killing.start()

    def _kill(self, procs: list[subprocess.Popen[bytes]], grace: float) -> None:
        for proc in procs:
            _signal_group(proc, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for proc in procs:
            try:
                proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal_group(proc, signal.SIGKILL)
                proc.wait()
        self.killed = True

    # -- status --------------------------------------------------------------------------

    @property
    def done(self) -> bool:
        """Every container terminated for good (no restart pending)."""
        return all(c.terminated is not None and c.proc is None for c in self.containers)

    def phase(self) -> str:
        if self.done:
            codes = [c.terminated["exitCode"] for c in self.containers if c.terminated]
            return "Succeeded" if all(code == 0 for code in codes) else "Failed"
        if any(c.proc is not None or c.terminated or c.restarts for c in self.containers):
            return "Running"
        return "Pending"

    def status(self) -> JSON:
        phase = self.phase()
        statuses = [self._container_status(c) for c in self.containers]
        ready = phase == "Running" and all(s["ready"] for s in statuses)
        started = phase != "Pending" or any(c.started_at for c in self.containers)

        def cond(kind: str, value: bool, reason: str = "") -> JSON:
            out: JSON = {"type": kind, "status": "True" if value else "False"}
            out["lastTransitionTime"] = self.start_time
            if reason and not value:
                out["reason"] = reason
            return out

        done_reason = "PodCompleted" if phase in ("Succeeded", "Failed") else "ContainersNotReady"
        return {
            "phase": phase,
            # No podIP: the EndpointSlice controller refuses loopback addresses and would
            # retry forever; without one, Services simply have no endpoints.
            "hostIP": "127.0.0.1",
            "hostIPs": [{"ip": "127.0.0.1"}],
            "startTime": self.start_time,
            "conditions": [
                cond("PodReadyToStartContainers", started),
                cond("Initialized", True),
                cond("Ready", ready, done_reason),
                cond("ContainersReady", ready, done_reason),
                cond("PodScheduled", True),
            ],
            "containerStatuses": statuses,
        }

    def _container_status(self, c: ContainerRun) -> JSON:
        state: JSON
        if c.proc is not None:
            state = {"running": {"startedAt": c.started_at}}
        elif c.terminated is not None:
            state = {"terminated": c.terminated}
        else:
            state = {"waiting": c.waiting or {"reason": "ContainerCreating"}}
        out: JSON = {
            "name": c.name,
            "image": c.spec.get("image", ""),
            "imageID": "",
            "ready": c.proc is not None,
            "started": c.proc is not None,
            "restartCount": c.restarts,
            "state": state,
        }
        if c.proc is not None:
            out["containerID"] = f"local://{c.proc.pid}"
        if c.last_terminated:
            out["lastState"] = {"terminated": c.last_terminated}
        return out


def _signal_group(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)
