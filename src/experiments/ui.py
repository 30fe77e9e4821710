"""`experiments ui`: the MLflow UI on the project's store, bound to loopback."""

from __future__ import annotations

import argparse
import errno
import os
import shutil
import socket
import subprocess
import sys

from experiments.errors import UserError
from experiments.paths import project_root
from experiments.tracking.store import artifact_root_for, resolve_tracking_uri, ui_url

JOB_EXECUTION_ENV = "MLFLOW_SERVER_ENABLE_JOB_EXECUTION"


def refuse_busy_port(host: str, port: int) -> None:
    """Bind the address the server will listen on, and let it go: the server itself would print its
    bind error and still exit 0 after this command has shown the URL of whatever else holds the port."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        # As the server will: a port left in TIME_WAIT by a server that just stopped counts as free.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as err:
            if err.errno == errno.EADDRINUSE:
                raise UserError(
                    f"port {port} on {host} is in use (another MLflow UI?); pick another with --port N."
                ) from None
            raise UserError(f"cannot listen on port {port} of {host} ({err.strerror}); pick another "
                            "--host or --port N.") from None


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="experiments ui", description="Open the MLflow UI on the project's store.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5000)
    parser.add_argument("--tracking-uri", default=None, help="default: $MLFLOW_TRACKING_URI or outputs/mlflow.db")
    # One local user needs one server process; MLflow's default of 4 starts slowly on a small machine.
    parser.add_argument("--workers", type=int, default=1, help="server processes (default 1)")
    args = parser.parse_args(argv)
    uri = resolve_tracking_uri(args.tracking_uri, project_root() / "outputs")
    if uri.startswith("http"):
        print(f"The tracking store is a server already: {uri}")
        return 0
    if not 0 < args.port < 65536:
        raise UserError(f"--port {args.port} is not a TCP port; pick one from 1 to 65535.")
    refuse_busy_port(args.host, args.port)
    mlflow_bin = shutil.which("mlflow", path=os.path.dirname(sys.executable)) or shutil.which("mlflow")
    command = [mlflow_bin or "mlflow", "ui", "--backend-store-uri", uri, "--host", args.host, "--port", str(args.port),
               "--workers", str(args.workers)]
    artifacts = artifact_root_for(uri)
    if artifacts:
        command += ["--default-artifact-root", artifacts]
    print(f"MLflow UI for {uri}\n  {ui_url(uri, host=args.host, port=args.port)}   (Ctrl-C to stop)", flush=True)
    # MLflow's job runner and its huey consumers serve GenAI features (judges, scorers) this project never
    # calls: with them the UI is ~11 processes and ~2.3 GB, without them 2 and ~0.5 GB. The user's own
    # setting of the variable wins.
    env = {**os.environ}
    env.setdefault(JOB_EXECUTION_ENV, "false")
    try:
        return subprocess.call(command, env=env)
    except KeyboardInterrupt:
        return 0
