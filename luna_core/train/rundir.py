"""The run directory: its name, the files rank 0 writes there (TensorBoard runs beside it,
the event file, checkpoints/) and its control socket."""

from __future__ import annotations

import logging
import os
from argparse import Namespace

from luna_core.run import events as ev
from luna_core.run.command_table import Command, CommandChannel
from luna_core.run.control_socket import ControlServer, socket_path_for
from luna_core.run.eventfile import EVENT_FILE_NAME
from luna_core.run.index import IndexSink
from luna_core.run.runlock import RunLock, make_unique_run_dir
from luna_core.run.sinks import JsonlSink
from luna_core.train.checkpoint import checkpoint_dir
from luna_core.train.tensorboard import TensorBoardSink

log = logging.getLogger(__name__)


def run_dir_path(args: Namespace, time_str: str) -> str:
    """RUNS_DIR/TB_PREFIX/TIME-COMMENT: where the run named by ``time_str`` lives."""
    return os.path.join(args.runs_dir, args.tb_prefix, f"{time_str}-{args.comment}")


def new_run_dir(args: Namespace, time_str: str,
                run_id: str) -> tuple[str, str, RunLock]:
    """A new run's folder, made unique atomically and locked for this process's life:
    (folder, the time string it is named by, its lock). Rank 0 calls it."""
    run_dir, time_str = make_unique_run_dir(os.path.join(args.runs_dir, args.tb_prefix),
                                            time_str, args.comment)
    return run_dir, time_str, RunLock.acquire(run_dir, run_id)


class RunFolderOwner:
    """This process's hold on the run folder (rank 0): a new folder made unique and locked,
    or a resumed run's folder locked (refused while its run lives); released at the end."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self.lock: RunLock | None = None

    def new(self, args: Namespace, time_str: str) -> str:
        """Make and take a new run's folder; returns the time string it is named by."""
        _dir, time_str, self.lock = new_run_dir(args, time_str, self.run_id)
        return time_str

    def take(self, run_dir: str | None) -> None:
        """Take the folder a resume writes in; once is enough (None: not known yet)."""
        held = self.lock
        if run_dir is None or (held is not None and
                               os.path.abspath(held.run_dir) == os.path.abspath(run_dir)):
            return
        if held is not None:                 # the checkpoint named another folder
            held.release()
        os.makedirs(run_dir, exist_ok=True)  # a checkpoint copied away from a gone run
        self.lock = RunLock.acquire(run_dir, self.run_id)

    def release(self) -> None:
        if self.lock is not None:
            self.lock.release()


def add_run_dir_sinks(bus: ev.EventBus, args: Namespace, run_dir: str, time_str: str,
                      purge_step: int | None) -> None:
    """Create the run directory; add its TensorBoard and event-file sinks to ``bus``."""
    os.makedirs(checkpoint_dir(run_dir), exist_ok=True)
    bus.add(TensorBoardSink(args.runs_dir, args.tb_prefix, time_str, args.comment,
                            purge_step=purge_step,
                            kind="seg" if getattr(args, "task", None) == "seg" else "cls"))
    events = JsonlSink(os.path.join(run_dir, EVENT_FILE_NAME))
    if events.dropped_partial:      # a resume after a kill in the middle of a line
        log.warning("%s: cut an incomplete last line (%d bytes) left by the process before",
                    events.path, events.dropped_partial)
    bus.add(events)
    bus.add(IndexSink(run_dir))          # what `runs` reads: the event file less its batches


def start_control_server(run_dir: str, commands: CommandChannel) -> ControlServer:
    """Serve the run's control socket (`luna-tui attach`): its commands go to ``commands``."""
    server = ControlServer(socket_path_for(run_dir), commands, on_command=_log_remote_command)
    server.start()
    return server


def _log_remote_command(command: Command) -> None:
    log.info("command '%s' received on the control socket", command.value)
