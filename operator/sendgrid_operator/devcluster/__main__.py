"""``python -m sendgrid_operator.devcluster``: start, stop and inspect a local cluster.

Why it exists: ``make demo`` and developers need the cluster outside pytest. Commands:

- ``up --dir DIR``: start everything, write ``DIR/kubeconfig`` and ``DIR/env`` (sourceable),
  stay in the foreground until SIGINT/SIGTERM, then stop everything. With ``--background`` it
  returns once the cluster is ready, leaving a supervisor whose pid is in ``DIR/pid``.
- ``down --dir DIR``: stop the supervisor started by ``up``.
- ``logs --dir DIR NAMESPACE POD [CONTAINER]``: print a Pod's output (there is no kubelet for
  ``kubectl logs``).
- ``nodeagent --dir DIR``: the node agent alone (``up`` starts it as a child process).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from sendgrid_operator.devcluster.api import Api, KubeConfig
from sendgrid_operator.devcluster.logs import PodLogNotFound, pod_log


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _read_pid(directory: Path) -> int | None:
    try:
        pid = int((directory / "pid").read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if _pid_alive(pid) else None


def up(args: argparse.Namespace) -> int:
    directory: Path = args.dir.resolve()
    if (pid := _read_pid(directory)) is not None:
        print(f"devcluster: already running in {directory} (pid {pid})", file=sys.stderr)
        return 1
    if args.background:
        return _up_background(directory, args.timeout)
    from sendgrid_operator.devcluster.cluster import DevCluster

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    cluster = DevCluster(directory)
    ready = directory / "ready"
    ready.unlink(missing_ok=True)
    try:
        cluster.start(timeout=args.timeout)
        (directory / "pid").write_text(f"{os.getpid()}\n")
        ready.write_text(f"{cluster.startup_seconds:.1f}\n")
        print(f"devcluster: ready in {cluster.startup_seconds:.1f}s; source {cluster.env_file}")
        print(cluster.env_file.read_text(), end="", flush=True)
        while not stop.wait(1.0):
            cluster.check_alive()
    finally:
        print("devcluster: stopping", flush=True)
        cluster.stop()
        ready.unlink(missing_ok=True)
        (directory / "pid").unlink(missing_ok=True)
    return 0


def _up_background(directory: Path, timeout: float) -> int:
    directory.mkdir(parents=True, exist_ok=True)
    ready = directory / "ready"
    ready.unlink(missing_ok=True)
    log_path = directory / "devcluster.log"
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "sendgrid_operator.devcluster",
                "up",
                "--dir",
                str(directory),
                "--timeout",
                str(timeout),
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + timeout * 3 + 1800  # may include a cold build.sh run
    while not ready.exists():
        if proc.poll() is not None:
            print(f"devcluster: failed to start; see {log_path}", file=sys.stderr)
            print(log_path.read_text(errors="replace")[-4000:], file=sys.stderr)
            return 1
        if time.monotonic() > deadline:
            proc.terminate()
            print(f"devcluster: timed out; see {log_path}", file=sys.stderr)
            return 1
        time.sleep(0.2)
    print(f"devcluster: running in the background (pid {proc.pid}); source {directory / 'env'}")
    return 0


def down(args: argparse.Namespace) -> int:
    directory: Path = args.dir.resolve()
    pid = _read_pid(directory)
    if pid is None:
        print(f"devcluster: nothing running in {directory}")
        return 0
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + args.timeout
    while _pid_alive(pid):
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            print(f"devcluster: pid {pid} did not stop; killed it", file=sys.stderr)
            return 1
        time.sleep(0.1)
    print(f"devcluster: stopped (pid {pid})")
    return 0


def logs(args: argparse.Namespace) -> int:
    try:
        sys.stdout.write(pod_log(args.dir.resolve(), args.namespace, args.pod, args.container))
    except PodLogNotFound as exc:
        print(f"devcluster: {exc}", file=sys.stderr)
        return 1
    return 0


def nodeagent(args: argparse.Namespace) -> int:
    from sendgrid_operator.devcluster.nodeagent import NodeAgent

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    directory: Path = args.dir.resolve()
    kubeconfig = args.kubeconfig or directory / "kubeconfig"
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    with Api(KubeConfig.load(kubeconfig)) as api:
        agent = NodeAgent(
            api,
            directory,
            node_name=args.node_name,
            bin_dirs=(str(Path(sys.executable).parent),),
        )
        agent.run(stop)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sendgrid_operator.devcluster")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("up", help="start a local cluster in DIR")
    p.add_argument("--dir", type=Path, required=True)
    p.add_argument("--background", action="store_true", help="return once ready")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds per start-up step")
    p.set_defaults(func=up)
    p = sub.add_parser("down", help="stop the cluster started by `up` in DIR")
    p.add_argument("--dir", type=Path, required=True)
    p.add_argument("--timeout", type=float, default=60.0)
    p.set_defaults(func=down)
    p = sub.add_parser("logs", help="print a Pod's output")
    p.add_argument("--dir", type=Path, required=True)
    p.add_argument("namespace")
    p.add_argument("pod")
    p.add_argument("container", nargs="?")
    p.set_defaults(func=logs)
    p = sub.add_parser("nodeagent", help="run the node agent only")
    p.add_argument("--dir", type=Path, required=True)
    p.add_argument("--kubeconfig", type=Path)
    p.add_argument("--node-name", default="devcluster-node")
    p.set_defaults(func=nodeagent)
    args = parser.parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
