"""The worker process's side of the pool: evaluate chunks of items, report every hard call.

Runs in a fresh ``python -c`` interpreter started by :mod:`.pool`, which loads this package's
files by path (``BOOT``): it imports only the standard library, :mod:`.extract`, :mod:`.verify`
and, inside the evaluator, math_verify; never the ``polarity`` package. Announcing each hard
call before it starts is what lets the parent kill exactly the item that hangs.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import signal
import sys
import time
from multiprocessing.connection import Connection

from .verify import make_evaluator

_FLUSH_SECONDS = 0.01  # a worker sends its finished results at least this often

BOOT = (
    "import sys, json, types, importlib\n"
    "if sys.path and sys.path[0] == '': sys.path.pop(0)\n"
    "pkg_dir, fd_in, fd_out, extra = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), json.loads(sys.argv[4])\n"
    "sys.path.extend(p for p in extra if p not in sys.path)\n"
    "pkg = types.ModuleType('_polarity_reward_worker')\n"
    "pkg.__path__ = [pkg_dir]\n"
    "sys.modules[pkg.__name__] = pkg\n"
    "mod = importlib.import_module('_polarity_reward_worker.worker')\n"
    "mod.main(fd_in, fd_out, sys.argv[5], sys.argv[6])\n"
)
"""The worker's ``python -c`` program; argv: this package's folder, the two pipe descriptors,
the parent's ``sys.path`` (JSON), the evaluator factory's file and name ("" for the default).
The package is registered without running its ``__init__`` (no pool, no exit hooks here)."""


def load_factory(path: str, name: str):
    """The evaluator factory a worker runs: ``name`` in the file ``path``, or, when ``path`` is
    empty, :func:`.verify.make_evaluator` (see ``pool.EVALUATOR_FACTORY``)."""
    if not path:
        return make_evaluator
    spec = importlib.util.spec_from_file_location("_polarity_reward_evaluator", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return getattr(module, name)


def main(fd_in: int, fd_out: int, factory_path: str = "", factory_name: str = "") -> None:
    """Child loop: receive chunks of ``(idx, gold, response)``, send results in batches.

    To the parent: ``("ready", pid)`` once; ``("r", batch, [(idx, correct, reason, answer,
    lenient_only), ...])`` at the end of each chunk, every ``_FLUSH_SECONDS`` and before every
    announcement; ``("a", digest)`` / ``("e",)`` around every memo-miss math-verify call (see
    :func:`.verify.make_evaluator`); ``("p", batch, idx, correct, reason, answer)`` when an
    item's verdict is settled and only the monitor's second opinion remains (after a flush, so
    ``idx`` is the first item the parent has not heard about). Because results are flushed
    before ``("a", ...)``, the parent knows that the first item it has not heard back about is
    the one inside that call. From the parent: ``("poison", [digest, ...])``, ``("unpoison",
    [digest, ...])`` (a larger limit retries them), ``(batch, extraction, monitor, items)``, or
    None to stop. The evaluator comes from :func:`load_factory`.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's business
    logging.getLogger("math_verify").setLevel(logging.ERROR)
    conn_in = Connection(fd_in, writable=False)
    conn_out = Connection(fd_out, readable=False)
    out: list = []
    state = {"batch": 0, "flushed": time.monotonic()}

    def flush() -> None:
        if out:
            conn_out.send(("r", state["batch"], list(out)))
            out.clear()
        state["flushed"] = time.monotonic()

    def announce(digest: str) -> None:
        flush()
        conn_out.send(("a", digest))

    def settled(correct, reason, answer) -> None:
        # Earlier results first, so that this item is the first the parent has not heard
        # about: it keeps this verdict if the monitor's check must be killed.
        flush()
        conn_out.send(("p", state["batch"], state["idx"], bool(correct), reason, answer))

    factory = load_factory(factory_path, factory_name)
    evaluate = factory(announce=announce, done=lambda: conn_out.send(("e",)), settled=settled)
    conn_out.send(("ready", os.getpid()))
    try:
        while True:
            try:
                msg = conn_in.recv()
            except (EOFError, OSError):
                break
            if msg is None:
                break
            if msg[0] == "poison":
                evaluate.poison.update(msg[1])
                continue
            if msg[0] == "unpoison":  # a call with a larger limit retries these
                evaluate.poison.difference_update(msg[1])
                continue
            state["batch"], extraction, monitor, items = msg
            for idx, gold, response in items:
                state["idx"] = idx
                out.append((idx, *evaluate(gold, response, extraction, monitor)))
                if time.monotonic() - state["flushed"] > _FLUSH_SECONDS:
                    flush()
            flush()
    except (BrokenPipeError, OSError):
        return
