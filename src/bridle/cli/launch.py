"""`bridle <method> --num-processes N [--accelerate-config FILE]`: the command starts itself again under a
distributed launcher, N processes on this machine, and waits for them. Bridle launches nothing of its own: plain
data parallel goes through torch's launcher (torchrun), any other strategy (FSDP, DeepSpeed ZeRO) through
`accelerate launch --config_file FILE`. Several machines: run `accelerate launch` yourself on each (docs/scaling.md).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bridle.engine.distributed import launched
from bridle.errors import ConfigError

LAUNCH_ENV = "BRIDLE_LAUNCHED"  # set in the launched processes: they train, they never launch again


def free_port() -> int:
    """A TCP port free on the loopback interface now (the rendezvous of a one-machine launch)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def needs_launch(config: Any) -> bool:
    """Whether this command must start its processes first (several asked for, or an accelerate config, and this
    process is not already one of a launch)."""
    wanted = config.num_processes > 1 or bool(config.accelerate_config)
    return wanted and not launched() and not os.environ.get(LAUNCH_ENV)


def launch_command(config: Any, argv: Sequence[str], *, port: int | None = None) -> list[str]:
    """The command line that runs `bridle <argv>` in `config.num_processes` processes on this machine."""
    port = port or free_port()
    if config.accelerate_config:
        path = Path(config.accelerate_config)
        if not path.is_file():
            raise ConfigError(f"--accelerate-config {path}: no such file. The shipped ones are in configs/accelerate/"
                              " (ddp.yaml, fsdp.yaml, zero2.yaml, zero3.yaml).")
        processes = ["--num_processes", str(config.num_processes)] if config.num_processes > 1 else []
        return [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(path), *processes,
                "--main_process_ip", "127.0.0.1", "--main_process_port", str(port), "-m", "bridle.cli.main", *argv]
    return [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(config.num_processes),
            "--nnodes", "1", "--master_addr", "127.0.0.1", "--master_port", str(port),
            "-m", "bridle.cli.main", *argv]


def launch(config: Any, argv: Sequence[str]) -> int:
    """Run the command in its processes; their exit status (non-zero when any of them failed)."""
    command = launch_command(config, argv)
    env = {**os.environ, LAUNCH_ENV: "1"}
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // config.num_processes)))
    try:
        return subprocess.run(command, env=env, check=False).returncode
    except KeyboardInterrupt:
        return 130
