"""`--shard ddp|fsdp`: a command run by torchrun, one process per rank.

Each rank builds the model as one process would (the same source, the same seed), wraps it
(DistributedDataParallel, or FSDP2's `fully_shard` on each layer that carries junctions and on
the root) and measures its slice of the probe batch; the engine makes the ranks' numbers one
report (`gradflow.engine.reduce`). Rank 0 prints and writes; every rank exits with rank 0's code.

Faults end every rank in bounded time. A rank that fails writes its error to torchrun's store.
Every rank watches the store, and once a rank has failed each one ends at once, whatever
collective it waits in: rank 0 first prints one line naming the first rank that failed and its
error, and publishes the exit code the others take. A rank that stops answering is caught by
the collective timeout (`--collective-timeout`), which bounds every wait.
"""

from __future__ import annotations

import os
import sys
import threading
import time
import traceback
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import typer

from gradflow.cli.options import ProbeOptions, Shard
from gradflow.cli.session import failure, guard, resolve_device
from gradflow.errors import OptionError, ProbeError, first_line

if TYPE_CHECKING:
    import torch

    from gradflow.probe import Probe

_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
_sessions = 0  # commands run by this process: each has its own keys in the store


class OneProcess:
    """One process: the model and the batch as they are, and this process writes."""

    lead = True

    def device(self, option: str) -> str:
        return option

    def wrap(self, module: torch.nn.Module, batch: Probe, probe: ProbeOptions) -> torch.nn.Module:
        return module

    def split(self, batch: Probe) -> Probe:
        return batch


class Ranks(OneProcess):
    """This process as one of the ranks torchrun started."""

    POLL = 0.2  # seconds between two looks at the store for another rank's failure

    def __init__(self, probe: ProbeOptions) -> None:
        import torch
        import torch.distributed as dist

        global _sessions
        _sessions += 1
        assert probe.shard is not None
        self.shard = probe.shard
        self.timeout = probe.collective_timeout
        self.rank = int(os.environ["RANK"])
        self.size = int(os.environ["WORLD_SIZE"])
        self.local_rank = int(os.environ["LOCAL_RANK"])
        self.lead = self.rank == 0
        restart = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
        self.prefix = f"gradflow/{restart}/{_sessions}"
        self.cuda = self.device(probe.device).startswith("cuda")
        if self.cuda:
            torch.cuda.set_device(self.local_rank)
        try:
            dist.init_process_group("nccl" if self.cuda else "gloo", timeout=timedelta(seconds=self.timeout))
        except Exception as e:
            raise OptionError(f"rank {self.rank} could not join the other ranks: {first_line(e)}") from e
        self.store = dist.distributed_c10d._get_default_store()
        self._done = threading.Event()
        self._ending = threading.Lock()
        threading.Thread(target=self._watch, daemon=True).start()

    def device(self, option: str) -> str:
        """This rank's own GPU where the option asks for CUDA (auto included), else the option."""
        if option.strip().lower() == "meta":
            raise OptionError("--shard measures a model with weights: drop --device meta")
        device = resolve_device(option)
        return f"cuda:{self.local_rank}" if device.type == "cuda" else str(device)

    def wrap(self, module: torch.nn.Module, batch: Probe, probe: ProbeOptions) -> torch.nn.Module:
        return wrapped(module, self.shard, batch, probe.mode.value, probe.seed)

    def split(self, batch: Probe) -> Probe:
        return split(batch, self.rank, self.size)

    def finish(self, code: int, message: str | None) -> int:
        """The exit code the ranks agree on: rank 0's, 2 where a rank failed. `message` is this
        rank's failure (None: it succeeded); a rank that failed ends here, since its process
        group may be stuck in a collective that no rank will finish."""
        import torch.distributed as dist

        with self._ending:  # once the watcher holds it, it ends the process
            self._done.set()
            if message is not None:
                self.store.set(f"{self.prefix}/failed/{self.rank}", f"{time.time()}\t{message}")
                self.store.set(f"{self.prefix}/failed", "1")
            code = self._agree(code)
            if message is not None:
                _exit(max(code, 2))
        dist.destroy_process_group()
        return code

    def _agree(self, code: int) -> int:
        """Rank 0 prints the first failure if a rank failed, publishes its exit code (2 after a
        failure) and waits until every rank has read it (rank 0's process may hold the store);
        the other ranks read it."""
        if not self.lead:
            code = self._read(f"{self.prefix}/exit")
            self.store.set(f"{self.prefix}/read/{self.rank}", "1")
            return code
        if self.store.check([f"{self.prefix}/failed"]):
            print(f"gradflow: error: {self._first_failure()}", file=sys.stderr, flush=True)
            code = max(code, 2)
        self.store.set(f"{self.prefix}/exit", str(code))
        readers = [f"{self.prefix}/read/{rank}" for rank in range(1, self.size)]
        try:
            self.store.wait(readers, timedelta(seconds=self.timeout))
        except Exception:
            pass  # a rank that is gone reads nothing
        return code

    def _first_failure(self) -> str:
        """The earliest failure the ranks wrote, as `rank R: message`."""
        failures = []
        for rank in range(self.size):
            key = f"{self.prefix}/failed/{rank}"
            if self.store.check([key]):
                stamp, _, message = self.store.get(key).decode().partition("\t")
                failures.append((float(stamp), rank, message))
        _, rank, message = min(failures)
        return f"rank {rank}: {message}"

    def _read(self, key: str) -> int:
        """An exit code from the store; 2 when it does not come within the timeout."""
        try:
            self.store.wait([key], timedelta(seconds=self.timeout))
            return int(self.store.get(key))
        except Exception:
            return 2

    def _watch(self) -> None:
        """End this rank as soon as another rank has failed: its collectives may wait on that
        rank until the timeout (a DDP reducer keeps a failed rank's connections open, and NCCL
        does not notice a peer that left)."""
        key = f"{self.prefix}/failed"
        while not self._done.wait(self.POLL):
            try:
                failed = self.store.check([key])
            except Exception:
                return
            if failed and self._ending.acquire(blocking=False):
                _exit(max(self._agree(2), 2))


def _exit(code: int) -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def split(batch: Probe, rank: int, ranks: int) -> Probe:
    """Rank `rank`'s slice of the probe batch: every input whose first dimension is the batch
    is cut into equal slices, in rank order; other inputs go to every rank whole."""
    import torch

    from gradflow.probe import Probe

    tensors = [t for t in batch.tensors() if t.dim() > 0]
    if not tensors:
        return batch
    size = tensors[0].shape[0]
    if size % ranks:
        raise ProbeError(
            f"the probe batch of {size} does not split evenly over {ranks} ranks: give a batch "
            f"that is a multiple of {ranks} (--batch-size, or the first size of --input-shape)"
        )
    rows = size // ranks

    def part(value: Any) -> Any:
        if isinstance(value, torch.Tensor) and value.dim() > 0 and value.shape[0] == size:
            return value[rank * rows : (rank + 1) * rows]
        return value

    return Probe(tuple(part(a) for a in batch.args), {k: part(v) for k, v in batch.kwargs.items()})


def wrapped(module: torch.nn.Module, shard: Shard, batch: Probe, mode: str, seed: int) -> torch.nn.Module:
    """`module` wrapped for data parallelism: DDP, or fully_shard on each module that runs a
    junction's add and on the root (`shard_layers`). The layers are found by one forward pass
    of `batch`, this rank's slice, before anything is sharded."""
    if shard is Shard.DDP:
        from torch.nn.parallel import DistributedDataParallel

        device = next((p.device for p in module.parameters()), None)
        ids = [device] if device is not None and device.type == "cuda" else None
        return DistributedDataParallel(module, device_ids=ids)
    from gradflow.engine.measure import locate

    return shard_layers(module, [j.module for j in locate(module, batch, mode=mode, seed=seed)])


def shard_layers(module: torch.nn.Module, layers: Sequence[str]) -> torch.nn.Module:
    """FSDP2's fully_shard on each named module (the deepest first, as FSDP2 requires of nested
    ones) and on the root; returns the root, now sharded."""
    from torch.distributed.fsdp import fully_shard

    named = dict(module.named_modules())
    for name in sorted({n for n in layers if n}, key=lambda n: -n.count(".")):
        fully_shard(named[name])
    fully_shard(module)
    return module


@contextmanager
def session(probe: ProbeOptions, debug: bool) -> Iterator[OneProcess]:
    """The command's run: `guard` on one process; with --shard, this rank's part of a torchrun
    job, whose failures and exit code the ranks agree on (see the module doc)."""
    if probe.shard is None:
        with guard(debug):
            yield OneProcess()
        return
    with guard(debug):
        missing = [name for name in _ENV if name not in os.environ]
        if missing:
            raise OptionError(
                f"--shard {probe.shard.value} runs one process per rank, started by torchrun "
                f"(no {missing[0]} in the environment): torchrun --nproc-per-node N -m gradflow "
                f"COMMAND MODEL --shard {probe.shard.value}"
            )
        ranks = Ranks(probe)
    debug = debug or os.environ.get("GRADFLOW_DEBUG") == "1"
    code, message = 0, None
    try:
        yield ranks
    except typer.Exit as e:
        code = e.exit_code
    except BaseException as e:
        if debug:
            traceback.print_exc()
        line, code = failure(e)
        message = line.removeprefix("gradflow: error: ").removeprefix("gradflow: ")
    raise typer.Exit(ranks.finish(code, message))

