"""A one-node SLURM cluster on localhost for the tests (Debian's slurm-wlm and munge, run
as root as CI does): munged, slurmctld and slurmd, with state and logs under one
directory. The configuration goes where every SLURM client looks, /etc/slurm/slurm.conf:
the SLURM executor's job step drops SLURM_CONF from the environment of the `srun` it
runs. A configuration that is not this module's is never touched."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

SLURM_CONF = Path("/etc/slurm/slurm.conf")
MUNGE_SOCKET = Path("/run/munge/munge.socket.2")  # where SLURM's auth/munge looks by default
MARK = "# a one-node test cluster written by hybridbatch's tests/slurm_cluster.py\n"
COMMANDS = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "sinfo", "scancel")


def why_not_here() -> str | None:
    """Why a local cluster cannot run here (None: it can)."""
    missing = [name for name in COMMANDS if shutil.which(name) is None]
    if missing:
        return f"SLURM and munge are not installed ({', '.join(missing)} missing; apt install slurm-wlm munge)"
    if os.geteuid() != 0:
        return "the one-node SLURM cluster's daemons run as root"
    if SLURM_CONF.exists() and not SLURM_CONF.read_text().startswith(MARK):
        return f"{SLURM_CONF} belongs to a real cluster: the test cluster does not replace it"
    running = [name for name in ("slurmctld", "slurmd") if subprocess.run(["pgrep", "-x", name]).returncode == 0]
    if running:
        return f"{' and '.join(running)} already running here: the test cluster starts its own"
    return None


def machine() -> tuple[int, int]:
    """This machine's CPUs and memory in MB (what slurmd reports: the node may not claim more)."""
    meminfo = Path("/proc/meminfo").read_text()
    total_kb = int(re.search(r"^MemTotal:\s+(\d+)", meminfo, re.M).group(1))
    return len(os.sched_getaffinity(0)), int(total_kb / 1024 * 0.9)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def slurm_conf(root: Path, cpus: int, memory_mb: int) -> str:
    host = socket.gethostname().split(".")[0]
    return (
        MARK
        + f"""\
ClusterName=hybridbatch-test
SlurmctldHost={host}(127.0.0.1)
SlurmUser=root
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/slurmctld.log
SlurmdLogFile={root}/slurmd.log
SlurmctldPort={free_port()}
SlurmdPort={free_port()}
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
MpiDefault=none
ReturnToService=2
NodeName={host} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={memory_mb} State=UNKNOWN
PartitionName=local Nodes=ALL Default=YES MaxTime=INFINITE State=UP
"""
    )


def pid_of(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (FileNotFoundError, ValueError, IndexError):
        return None


def end(pid: int | None) -> None:
    """SIGTERM, then SIGKILL after 20 s; returns when the process is gone."""
    if pid is None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.time() + 20
    while time.time() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def munge_answers() -> bool:
    """Whether a munged already serves the default socket (then it is left running)."""
    if not MUNGE_SOCKET.exists():
        return False
    credential = subprocess.run(["munge", "-n"], capture_output=True)
    decoded = subprocess.run(["unmunge"], input=credential.stdout, capture_output=True)
    return credential.returncode == 0 and decoded.returncode == 0


@contextlib.contextmanager
def local_cluster(root: Path):
    """Start the cluster, one node as large as this machine, with its state under `root`;
    stop it, leaving nothing running."""
    reason = why_not_here()
    if reason:
        raise RuntimeError(reason)
    root.mkdir(parents=True)
    for folder in ("state", "spool"):
        (root / folder).mkdir()
    started_munge = False
    try:
        SLURM_CONF.parent.mkdir(parents=True, exist_ok=True)
        SLURM_CONF.write_text(slurm_conf(root, *machine()))
        started_munge = not munge_answers()
        if started_munge:
            key = root / "munge.key"
            key.write_bytes(os.urandom(1024))
            key.chmod(0o600)
            MUNGE_SOCKET.parent.mkdir(parents=True, exist_ok=True)
            subprocess.run(
                ["munged", "--force", f"--key-file={key}", f"--socket={MUNGE_SOCKET}",
                 f"--pid-file={root}/munged.pid", f"--log-file={root}/munged.log", f"--seed-file={root}/munge.seed"],
                check=True,
            )  # fmt: skip
        subprocess.run(["slurmctld"], check=True)
        subprocess.run(["slurmd"], check=True)
        deadline = time.time() + 60
        while "idle" not in subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True).stdout:
            if time.time() > deadline:
                logs = "".join((root / f"{name}.log").read_text()[-1500:] for name in ("slurmctld", "slurmd"))
                raise RuntimeError(f"the local SLURM node did not come up in 60 s:\n{logs}")
            time.sleep(0.5)
        yield
    finally:
        subprocess.run(["scancel", "--full", "--user=root"], capture_output=True)
        deadline = time.time() + 30
        while time.time() < deadline and subprocess.run(["squeue", "-h"], capture_output=True, text=True).stdout:
            time.sleep(0.5)  # cancelled jobs end while their daemons still run
        for daemon in ("slurmd", "slurmctld"):
            end(pid_of(root / f"{daemon}.pid"))
        if started_munge:
            end(pid_of(root / "munged.pid"))
        SLURM_CONF.unlink(missing_ok=True)
