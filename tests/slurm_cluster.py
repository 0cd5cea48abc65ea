"""A throwaway single-node SLURM cluster on this machine, for tests/test_slurm.py.

`start()` installs Debian's `slurm-wlm` and `munge` if they are missing (needs root and apt-get),
writes a private munge key and a slurm.conf, starts `munged`, `slurmctld` and `slurmd` as child
processes of this Python process (foreground mode) and waits until `sinfo` shows the node idle.
`stop()` cancels the cluster's jobs, ends exactly those three processes (by pid) and restores
whatever /etc/slurm/slurm.conf held before.

slurm.conf goes to /etc/slurm/slurm.conf (Debian's compiled-in default), not to a SLURM_CONF
path: snakemake-executor-plugin-slurm's job step removes every SLURM_* variable except the job
ids from the environment of the `srun` it runs inside each job, so SLURM_CONF would not reach it.
Everything else (munge key and socket, state, spool, logs) lives in one temporary folder, and
the daemons listen on free ports, so nothing of an installed munge/SLURM setup is used or touched.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

PACKAGES = ("slurm-wlm", "munge")
PROGRAMS = ("munged", "slurmctld", "slurmd", "slurmstepd", "sbatch", "squeue", "sinfo", "scancel")
SLURM_CONF = Path("/etc/slurm/slurm.conf")
MARKER = "# written by vdm-bench tests/slurm_cluster.py"
PARTITION = "debug"


@dataclass
class Cluster:
    root: Path  # temporary folder: munge key/socket, state, spool, logs
    node: str
    cpus: int
    memory_mb: int  # RealMemory of the node: jobs may ask for at most this much
    partition: str = PARTITION
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)
    saved_conf: Path | None = None  # an earlier /etc/slurm/slurm.conf, put back by stop()

    def logs(self, tail: int = 3000) -> str:
        """The last characters of each daemon log, for failure messages."""
        parts = []
        for path in sorted(self.root.glob("*.log")):
            parts.append(f"--- {path.name}\n{path.read_text(errors='replace')[-tail:]}")
        return "\n".join(parts)


def ensure_sbin_on_path() -> None:
    """Debian puts the daemons in /usr/sbin, which a non-login PATH may lack."""
    parts = os.environ.get("PATH", "").split(os.pathsep)
    extra = [d for d in ("/usr/local/sbin", "/usr/sbin", "/sbin") if d not in parts]
    if extra:
        os.environ["PATH"] = os.pathsep.join(parts + extra)


def missing_programs() -> list[str]:
    ensure_sbin_on_path()
    return [name for name in PROGRAMS if shutil.which(name) is None]


def unavailable_reason() -> str | None:
    """Why no cluster can be brought up here (a pytest skip reason), or None."""
    if os.geteuid() != 0:
        return "bringing up a local SLURM needs root (daemons, /etc/slurm/slurm.conf, apt-get)"
    if missing_programs() and shutil.which("apt-get") is None:
        return f"SLURM/munge programs {missing_programs()} are missing and apt-get is unavailable"
    return None


def install_packages() -> None:
    """apt-get install slurm-wlm munge, refreshing the package lists if the first try fails."""
    if not missing_programs():
        return
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", "--no-install-recommends", *PACKAGES]
    if subprocess.run(install, env=env, capture_output=True).returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], env=env, check=True, capture_output=True)
        subprocess.run(install, env=env, check=True, capture_output=True, text=True)
    if missing_programs():
        raise RuntimeError(f"still missing after apt-get install: {missing_programs()}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _node_hardware() -> tuple[int, int]:
    """(CPUs, RealMemory in MB) as slurmd itself measures them (`slurmd -C`)."""
    out = subprocess.run(["slurmd", "-C"], capture_output=True, text=True).stdout
    cpus = re.search(r"\bCPUs=(\d+)", out)
    memory = re.search(r"\bRealMemory=(\d+)", out)
    if cpus and memory:
        return int(cpus.group(1)), int(memory.group(1))
    pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    return os.cpu_count() or 1, pages // 2**20


def slurm_conf(cluster: Cluster, munge_socket: Path) -> str:
    root = cluster.root
    return f"""{MARKER}; removed by its stop()
ClusterName=vdmtest
SlurmctldHost={cluster.node}(127.0.0.1)
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket={munge_socket}
CredType=cred/munge
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MpiDefault=none
ReturnToService=2
# finished jobs stay visible to squeue (Snakemake's status command here) for 5 minutes
MinJobAge=300
NodeName={cluster.node} NodeAddr=127.0.0.1 CPUs={cluster.cpus} RealMemory={cluster.memory_mb} State=UNKNOWN
# Up to 2 jobs per CPU for jobs that ask for it (sbatch --oversubscribe): such a job here is
# mostly interpreter start-ups (sbatch -> snakemake -> srun -> snakemake -> python -m vdm), and
# Snakemake polls at growing intervals, so sharing keeps the CPUs busy. Jobs that do not ask
# (training, with train.threads torch threads) get their CPUs to themselves: two 2-thread
# trainings on 2 CPUs would run several times slower than one after the other.
PartitionName={cluster.partition} Nodes={cluster.node} Default=YES MaxTime=INFINITE \
 State=UP OverSubscribe=YES:2
"""


def _spawn(cluster: Cluster, name: str, args: list[str]) -> None:
    # in the foreground (-D, --foreground) the daemons log to stdout/stderr: into <name>.log
    out = open(cluster.root / f"{name}.log", "wb")
    cluster.processes[name] = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT,
                                               stdin=subprocess.DEVNULL, start_new_session=True)
    out.close()


def _wait_for(what: str, cluster: Cluster, check, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for name, process in cluster.processes.items():
            if process.poll() is not None:
                raise RuntimeError(f"{name} exited ({process.returncode}) while waiting for "
                                   f"{what}\n{cluster.logs()}")
        if check():
            return
        time.sleep(0.5)
    raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}\n{cluster.logs()}")


def _node_state(cluster: Cluster) -> str:
    result = subprocess.run(["sinfo", "-h", "-N", "-n", cluster.node, "-o", "%t"],
                            capture_output=True, text=True)
    return result.stdout.strip() if result.returncode == 0 else ""


def start() -> Cluster:
    """Install if needed, configure and start munged, slurmctld and slurmd; wait for an idle node.

    On any failure the daemons started so far are stopped again before the error propagates."""
    install_packages()
    cpus, memory_mb = _node_hardware()
    cluster = Cluster(root=Path(tempfile.mkdtemp(prefix="vdm-slurm-")),
                      node=socket.gethostname().split(".")[0], cpus=cpus, memory_mb=memory_mb)
    try:
        _start(cluster)
    except BaseException:
        stop(cluster)
        raise
    return cluster


def _start(cluster: Cluster) -> None:
    root = cluster.root
    os.chmod(root, 0o700)
    for sub in ("state", "spool"):
        (root / sub).mkdir(mode=0o700)
    (root / "munge").mkdir(mode=0o755)  # munged wants its socket folder world-searchable
    key = root / "munge" / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o600)
    munge_socket = root / "munge" / "munge.socket"

    if SLURM_CONF.exists() and MARKER not in SLURM_CONF.read_text(errors="replace"):
        cluster.saved_conf = root / "slurm.conf.saved"
        shutil.copy2(SLURM_CONF, cluster.saved_conf)
    SLURM_CONF.parent.mkdir(parents=True, exist_ok=True)
    SLURM_CONF.write_text(slurm_conf(cluster, munge_socket))

    _spawn(cluster, "munged", [
        "munged", "--foreground", "--force", f"--socket={munge_socket}", f"--key-file={key}",
        f"--pid-file={root}/munge/munged.pid", f"--seed-file={root}/munge/munged.seed",
        f"--log-file={root}/munge/munged.log"])
    _wait_for("the munge socket", cluster, munge_socket.exists, timeout=30)
    _spawn(cluster, "slurmctld", ["slurmctld", "-D", "-c", "-i"])
    _wait_for("slurmctld", cluster,
              lambda: subprocess.run(["scontrol", "ping"], capture_output=True, text=True)
              .stdout.count("UP") > 0)
    _spawn(cluster, "slurmd", ["slurmd", "-D", "-N", cluster.node])
    _wait_for(f"node {cluster.node} to be idle", cluster,
              lambda: _node_state(cluster) == "idle", timeout=90)


def stop(cluster: Cluster) -> None:
    """Cancel the cluster's jobs, end its daemons (by pid), restore slurm.conf, remove the folder."""
    if "slurmctld" in cluster.processes and cluster.processes["slurmctld"].poll() is None:
        jobs = subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True, text=True)
        ids = jobs.stdout.split() if jobs.returncode == 0 else []
        if ids:
            subprocess.run(["scancel", *ids], capture_output=True)
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and subprocess.run(
                    ["squeue", "-h", "-t", "RUNNING,COMPLETING", "-o", "%i"],
                    capture_output=True, text=True).stdout.strip():
                time.sleep(0.5)
    for name in ("slurmd", "slurmctld", "munged"):
        process = cluster.processes.pop(name, None)
        if process is None or process.poll() is not None:
            continue
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
    if SLURM_CONF.exists() and MARKER in SLURM_CONF.read_text(errors="replace"):
        SLURM_CONF.unlink()
    if cluster.saved_conf is not None:
        shutil.copy2(cluster.saved_conf, SLURM_CONF)
    shutil.rmtree(cluster.root, ignore_errors=True)
