"""Run-folder driver shared by the SAM2Flow fine-tunes (:mod:`.flow_long_training`, :mod:`.flow_mix_training`).

Each fine-tune only decides what one optimizer step sees; this module owns the rest:

* the gated model and AdamW, started from ``--init`` weights or resumed from ``RUN/last.pt``
  (model, optimizer, step, clock and the caller's sampler seeds), ``RUN/config.json``;
* optionally a frozen warm-start gate (``warm_gate.*`` kept at its loaded value, out of the
  optimizer), so a fine-tune cannot learn to trust the previous pair's flow more;
* wall-clock progress (``max(step / steps, minutes / max_minutes)``), the learning-rate
  schedule of :func:`.flow_training.schedule`, the clipped optimizer step;
* ``RUN/last.pt`` every ``ckpt_minutes``, fp16 snapshots ``RUN/step_XXXXXX.pt`` every
  ``snapshot_minutes`` (for :mod:`.flow_selection`), ``RUN/final.pt`` and ``last.pt`` at the end;
* the command line: one ``--field`` per config dataclass field (booleans as
  ``--field/--no-field``) plus ``--run``, ``--init``, ``--resume`` and ``--threads``.

Never writes ``models/``: shipped weights change only by an explicit copy after selection.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import torch

from ..flow.net.model import SAM2Flow
from ..io.writers import atomic_write
from .flow_training import load_init, save_weights, schedule

__all__ = ["FlowRun", "open_run", "freeze_warm_gate", "run_main"]


def freeze_warm_gate(model: SAM2Flow) -> int:
    """Stop training the warm-start gate (``warm_gate.*``); returns the number of frozen tensors."""
    if model.warm_gate is None:
        raise ValueError("freeze_gate needs the gated feedback (SAM2FlowConfig.feedback='gated')")
    params = list(model.warm_gate.parameters())
    for p in params:
        p.requires_grad_(False)
    return len(params)


@dataclass
class FlowRun:
    """Model, optimizer, step counter and clocks of one run folder (see :func:`open_run`).

    ``resumed`` holds the extra keys of the ``last.pt`` it resumed from (empty on a fresh start);
    ``extras`` returns the keys the caller wants stored in every ``last.pt`` (e.g. sampler seeds).
    """

    run: Path
    model: SAM2Flow
    opt: torch.optim.Optimizer
    cfg: object
    step: int = 0
    resumed: dict = field(default_factory=dict)
    extras: Callable[[], dict] = dict
    start: float = 0.0
    last_ckpt: float = 0.0
    last_snap: float = 0.0

    def elapsed(self) -> float:
        """Seconds of training in this run folder, across resumes."""
        return time.perf_counter() - self.start

    def progress(self) -> float:
        """Training progress in [0, 1]: steps or wall-clock minutes, whichever is further."""
        return max(self.step / self.cfg.steps, self.elapsed() / (60 * self.cfg.max_minutes))

    def set_lr(self, progress: float) -> float:
        """Set the scheduled learning rate for ``progress``; returns it."""
        lr = schedule(progress, self.cfg.lr, self.cfg.warmup)
        for group in self.opt.param_groups:
            group["lr"] = lr
        return lr

    def optimize(self, loss: torch.Tensor) -> None:
        """Back-propagate ``loss``, clip to norm 1, step the optimizer, count the step."""
        if not torch.isfinite(loss):
            raise FloatingPointError(f"non-finite loss at step {self.step}")
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.opt.step()
        self.step += 1

    def save_state(self) -> None:
        """Write ``last.pt`` (model, optimizer, step, clock and the caller's extras) atomically."""
        state = {"model": self.model.state_dict(), "opt": self.opt.state_dict(), "step": self.step,
                 "elapsed": self.elapsed(), **self.extras()}
        atomic_write(self.run / "last.pt", lambda tmp: torch.save(state, tmp))

    def tick(self) -> None:
        """After a step: ``last.pt`` every ``ckpt_minutes``, a snapshot every ``snapshot_minutes``."""
        now = time.perf_counter()
        if now - self.last_ckpt > 60 * self.cfg.ckpt_minutes:
            self.save_state()
            self.last_ckpt = now
        if now - self.last_snap > 60 * self.cfg.snapshot_minutes:
            save_weights(self.model, self.run / f"step_{self.step:06d}.pt",
                         {"steps": self.step, "wall_s": now - self.start})
            self.last_snap = now

    def finish(self, init, log=print) -> SAM2Flow:
        """Write ``last.pt`` and the fp16 ``final.pt``; returns the model in eval mode."""
        self.model.eval()
        self.save_state()
        wall = self.elapsed()
        final = self.run / "final.pt"
        save_weights(self.model, final, {"steps": self.step, "wall_s": wall, "train": asdict(self.cfg),
                                         "init": str(init)})
        log(f"done: {self.step} steps in {wall:.0f}s -> {final}")
        return self.model


def open_run(cfg, run: Path, model: SAM2Flow, init: Path | None = None, resume: bool = False, log=print,
             weight_decay: float = 1e-4, freeze_gate: bool = False) -> FlowRun:
    """Prepare ``run`` for training ``model`` per ``cfg`` (a dataclass with ``steps``, ``max_minutes``,
    ``lr``, ``warmup``, ``ckpt_minutes`` and ``snapshot_minutes``).

    Resumes from ``run/last.pt`` when ``resume`` and it exists, else loads ``init`` (if given);
    writes ``run/config.json``; starts the clocks. Call ``model.train()`` and the loop afterwards.
    """
    run.mkdir(parents=True, exist_ok=True)
    if freeze_gate:
        freeze_warm_gate(model)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=weight_decay)
    step, elapsed0, resumed = 0, 0.0, {}
    last = run / "last.pt"
    if resume and last.is_file():
        ck = torch.load(last, map_location="cpu", weights_only=True)
        model.load_state_dict(ck.pop("model"))
        opt.load_state_dict(ck.pop("opt"))
        step, elapsed0, resumed = ck.pop("step"), ck.pop("elapsed"), ck
        log(f"resumed from {last} at step {step} ({elapsed0:.0f}s)")
    elif init is not None:
        log(f"init from {init}; new layers: {load_init(model, init)}")
    text = json.dumps({"train": asdict(cfg), "init": str(init)}, indent=2)
    atomic_write(run / "config.json", lambda tmp: tmp.write_text(text))
    now = time.perf_counter()
    return FlowRun(run=run, model=model, opt=opt, cfg=cfg, step=step, resumed=resumed, start=now - elapsed0,
                   last_ckpt=now, last_snap=now)


def run_main(config_cls, train_fn, description: str, argv=None) -> None:
    """Command line of a fine-tune: ``train_fn(config, run, init, resume, log=print)``."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--run", type=Path, required=True, help="run folder (checkpoints, snapshots, final.pt)")
    parser.add_argument("--init", type=Path, default=None, help="weights to start from (e.g. models/sam2flow_v1.pt)")
    parser.add_argument("--resume", action="store_true", help="continue from RUN/last.pt")
    parser.add_argument("--threads", type=int, default=1)
    defaults = asdict(config_cls())
    for name, value in defaults.items():
        flag = "--" + name.replace("_", "-")
        if isinstance(value, bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=value)
        else:
            parser.add_argument(flag, type=type(value), default=value)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    cfg = config_cls(**{k: getattr(args, k) for k in defaults})
    train_fn(cfg, args.run, args.init, args.resume, log=lambda s: print(s, flush=True))
