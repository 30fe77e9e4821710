"""A throwaway PostgreSQL server for the tests: the machine's own PostgreSQL binaries (Debian keeps them
in /usr/lib/postgresql/<version>/bin, off the PATH), a new cluster in a temporary directory, listening on
127.0.0.1 only, stopped and removed at the end. `initdb` refuses to run as root: as root the cluster
belongs to the `postgres` user and every server command runs as it."""

from __future__ import annotations

import getpass
import glob
import os
import pwd
import shutil
import subprocess
from pathlib import Path

USER = "postgres"  # the cluster's superuser (trust authentication, 127.0.0.1 and a private socket only)


def binaries() -> Path | None:
    """The bin directory of the newest installed PostgreSQL, or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def why_not_available() -> str | None:
    """Why no server can be started here (one sentence), or None when one can."""
    if binaries() is None:
        return "PostgreSQL is not installed (scripts/test.sh installs Debian's postgresql package as root)"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(USER)
        except KeyError:
            return "running as root without a 'postgres' user to own the cluster"
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "the psycopg driver is not installed (pip install -e .[postgres])"
    return None


class PostgresServer:
    """`start()` a cluster in `folder`; `url(database)` for SQLAlchemy (MLflow, Optuna); `stop()`."""

    def __init__(self, folder: Path, port: int) -> None:
        self.folder = folder
        self.data = folder / "data"
        self.port = port
        bin_dir = binaries()
        assert bin_dir is not None
        self.bin = bin_dir

    def _run(self, *command: str) -> None:
        prefix = ["runuser", "-u", USER, "--"] if os.geteuid() == 0 else []
        done = subprocess.run([*prefix, *command], check=False, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed: {done.stderr or done.stdout}")

    def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            owner = pwd.getpwnam(USER)
            os.chown(self.folder, owner.pw_uid, owner.pw_gid)
            # Every folder above must let the postgres user through to its cluster.
            for parent in self.folder.parents:
                if parent == Path("/"):
                    break
                os.chmod(parent, os.stat(parent).st_mode | 0o011)
        user = USER if os.geteuid() == 0 else getpass.getuser()
        self.superuser = user
        self._run(str(self.bin / "initdb"), "-D", str(self.data), "-U", user, "--auth=trust", "-E", "UTF8",
                  "--no-sync")
        options = (f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.folder} -c fsync=off "
                   "-c max_connections=200")
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-o", options, "-l", str(self.folder / "log"),
                  "-w", "-t", "60", "start")

    def create_database(self, name: str) -> None:
        import psycopg

        with psycopg.connect(self.dsn("postgres"), autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')

    def dsn(self, database: str) -> str:
        return f"postgresql://{self.superuser}@127.0.0.1:{self.port}/{database}"

    def url(self, database: str) -> str:
        """The SQLAlchemy URL MLflow and Optuna take (the psycopg 3 driver)."""
        return f"postgresql+psycopg://{self.superuser}@127.0.0.1:{self.port}/{database}"

    def stop(self) -> None:
        if self.data.exists():
            self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")
