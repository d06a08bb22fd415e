"""The run's flags and status: pause, stop (now or after the epoch), checkpoint-now and the
non-finite policy, the commands that set them (taken at batch boundaries;
luna_core.run.command_table.COMMANDS names each one's handler here), and the exit codes. It
decides; the loop acts: ``between_batches`` returns a ``Boundary`` saying what to do (no
callbacks).

Under DDP the flags are combined over all ranks before they act, so every rank pauses,
checkpoints and stops at the same batch boundary.
"""

from __future__ import annotations

import logging
import traceback
from dataclasses import dataclass

from luna_core.errors import LunaInputError
from luna_core.run import events as ev
from luna_core.run.command_table import Command, CommandChannel, Setting, command_spec
from luna_core.run.failure import exception_at
from luna_core.train.checkpoint import CheckpointError
from luna_core.train.distributed import DistContext, broadcast_object, combine_flags
from luna_core.train.state import LoopState

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_NONFINITE = 3


@dataclass(frozen=True)
class Boundary:
    """What the loop does at a batch boundary, in this order: apply ``setting`` (a new lr /
    momentum), write a ``checkpoint``, then ``stop``, or wait for more commands while
    ``paused``."""

    stop: bool = False
    checkpoint: bool = False
    paused: bool = False
    setting: Setting | None = None


class RunControl:
    def __init__(self, bus: ev.EventBus, commands: CommandChannel, loop: LoopState,
                 on_nonfinite: str, interactive: bool) -> None:
        self.bus, self.commands, self.loop = bus, commands, loop
        # --on-nonfinite skip, pause or stop; auto: pause in the cockpit, else stop
        self.nonfinite_action = ("pause" if interactive else "stop") \
            if on_nonfinite == "auto" else on_nonfinite
        self.state = ev.STARTING
        self.paused = False
        self.stop_requested = False
        self.stop_after_epoch = False               # end the run at the end of this epoch
        self.checkpoint_requested = False
        self.nonfinite_stop = False                 # the stop is for a non-finite batch
        self.nonfinite_batches: list[tuple[int, int, str]] = []  # (epoch, batch, what)
        self.stop_exit_code = EXIT_OK      # the headless runner sets 130/143 for signals
        self.setting: Setting | None = None  # an lr / momentum change for the next boundary

    def set_state(self, state: str, detail: str = "") -> None:
        if state != self.state or detail:
            self.state = state
            self.bus.emit(ev.StatusChanged(state=state, detail=detail))

    def between_batches(self, dist: DistContext, commands: list) -> Boundary:
        """Take ``commands`` (the loop has sent the batches done so far first) and say what
        the loop must do at this boundary. Under DDP the flags are combined over the ranks
        and rank 0's new setting is broadcast, so every rank does the same."""
        for command in commands:
            self._apply(command)
        stop, checkpoint_now, paused, nonfinite, setting, after_epoch = combine_flags(dist, [
            int(self.stop_requested), int(self.checkpoint_requested), int(self.paused),
            int(self.nonfinite_stop), int(self.setting is not None),
            int(self.stop_after_epoch)])
        self.stop_after_epoch = bool(after_epoch)
        chosen = broadcast_object(dist, self.setting) if setting else None
        self.setting = None
        self.checkpoint_requested = False
        if stop:
            self.nonfinite_stop = bool(nonfinite)
            if not self.stop_requested:
                self.stop_requested = True
                self.set_state(ev.STOPPING)
        return Boundary(stop=bool(stop), checkpoint=bool(checkpoint_now),
                        paused=bool(paused) and not stop, setting=chosen)

    def wait_while_paused(self) -> list:
        """The commands that arrive within a short wait (paused time is not active time)."""
        t0 = self.loop.clock()
        commands = self.commands.wait(0.1)
        self.loop.paused_s += self.loop.clock() - t0
        return commands

    def _apply(self, command: Command | Setting) -> None:
        """Act on one command: the table names the method (luna_core.run.command_table)."""
        getattr(self, command_spec(command.value).handler)(command)

    # -- the commands' handlers (COMMANDS' ``handler``): each takes its command ------------

    def pause(self, _command: Command | None = None) -> None:
        if not self.paused:
            self.paused = True
            self.set_state(ev.PAUSED)
            log.info("paused at E%d %s batch %d", self.loop.epoch, self.loop.phase,
                     self.loop.batch_ndx + 1)

    def resume(self, _command: Command | None = None) -> None:
        if self.paused:
            self.paused = False
            self.set_state(ev.working_state(self.loop.phase))
            log.info("resumed")

    def request_checkpoint(self, _command: Command | None = None) -> None:
        self.checkpoint_requested = True

    def request_stop(self, _command: Command | None = None) -> None:
        if not self.stop_requested:
            self.stop_requested = True
            self.set_state(ev.STOPPING)

    def request_stop_after_epoch(self, _command: Command | None = None) -> None:
        if not self.stop_after_epoch:
            self.stop_after_epoch = True
            log.info("the run stops at the end of E%d, once it is validated and checkpointed",
                     self.loop.epoch)
        self.bus.emit(ev.StopAfterEpoch(epoch=self.loop.epoch))   # asked again: said again

    def stops_after(self, epoch: int, last_epoch: int) -> bool:
        """Whether the run ends now, ``epoch`` done, as stop-after-epoch asked (the last epoch
        ends it anyway)."""
        return self.stop_after_epoch and epoch < last_epoch

    def take_setting(self, setting: Setting) -> None:
        self.setting = setting            # the newest wins if several wait

    def on_nonfinite(self, epoch: int, batch_ndx: int, gradient_only: bool = False) -> None:
        """A batch whose update was skipped: a non-finite loss, or a finite loss with a
        non-finite gradient (the same event and action)."""
        action = self.nonfinite_action
        what = "non-finite gradient" if gradient_only else "non-finite training loss"
        self.nonfinite_batches.append((epoch, batch_ndx, what))
        self.bus.emit(ev.NonFiniteLoss(phase="trn", epoch=epoch, batch_ndx=batch_ndx,
                                       action=action))
        said = f"{what} (the loss was finite)" if gradient_only else what
        if action == "skip":
            log.warning("E%d batch %d: %s; its update was skipped", epoch, batch_ndx, said)
        elif action == "pause":
            log.error("E%d batch %d: %s; its update was not applied. "
                      "Paused: checkpoint, inspect, or quit.", epoch, batch_ndx, said)
            self.paused = True
            short = "gradient" if gradient_only else "loss"
            self.set_state(ev.PAUSED, f"non-finite {short} at E{epoch} batch {batch_ndx}")
        else:
            log.error("E%d batch %d: %s; its update was not applied. "
                      "Stopping with the last good weights checkpointed (lower --lr, or "
                      "--on-nonfinite skip).", epoch, batch_ndx, said)
            self.nonfinite_stop = True
            self.stop_requested = True

    def stop_outcome(self) -> tuple[str, int, str | None]:
        """(final state, exit code, error) of a run that stopped before its last epoch."""
        if self.nonfinite_stop:
            bad_epoch, bad_batch, what = self.nonfinite_batches[0]
            return ev.FAILED, EXIT_NONFINITE, f"{what} at E{bad_epoch} batch {bad_batch}"
        return ev.STOPPED, self.stop_exit_code, None

    def failure_outcome(self, exc: Exception) -> tuple[str, int, str]:
        """(final state, exit code, error) of a run that raised ``exc``, said in the log."""
        if isinstance(exc, LunaInputError):
            message = str(exc)
            if "Original Traceback" in message:  # raised in a DataLoader worker
                message = message.rstrip().splitlines()[-1].split(": ", 1)[-1]
            log.error(message)
            return ev.FAILED, EXIT_BAD_INPUT, message
        if isinstance(exc, CheckpointError):
            log.error(str(exc))
            return ev.FAILED, EXIT_BAD_INPUT if self.state == ev.STARTING else EXIT_FAILED, \
                str(exc)
        message = exception_at(exc)
        log.error("training failed: %s\n%s", message,
                  "".join(traceback.format_exception(exc)).rstrip())
        return ev.FAILED, EXIT_FAILED, message
