"""verl's real trainer on a CPU (``verl.device: cpu``), through verl's own extension points.

verl 0.9.1 expects accelerators (what blocks it, with file:line: NOTES.md, issue 13). This
module adds, without editing any verl file:

* a ``cpu`` platform (``PlatformRegistry``, chosen by ``VERL_PLATFORM=cpu``); Ray schedules the
  workers on *logical* GPUs (``ray_init.num_gpus``), which are only a scheduling resource here;
* verl's FSDP engines registered for ``device="cpu"`` (``EngineRegistry``; the FSDP2 strategy,
  FSDP1 needs GPU parameters);
* a rollout replica ``hf`` (``RolloutReplicaRegistry``): one Ray actor per replica that samples
  with ``transformers`` forward passes (``hf_rollout.py``), and its worker-side adapter
  (``_ROLLOUT_REGISTRY``) that hands the actor's weights to it on every ``update_weights``, as
  vLLM's adapter does on GPUs;
* two workarounds, each named with the verl line it gets past: the gloo process group
  (:func:`init_gloo_process_group`) and the critic's attention (:func:`load_value_model_sdpa`).

:func:`install` does all of it; the plugin calls it in every process when ``VERL_PLATFORM=cpu``
(the overrides of a ``verl.device: cpu`` study set it for the launch and every Ray worker), so
nothing here is active on GPUs.
"""

from __future__ import annotations

import logging
import os
from contextlib import contextmanager
from types import ModuleType
from typing import Any

import ray
import torch
from verl.plugin.platform.platform_base import PlatformBase
from verl.workers.rollout.base import BaseRollout
from verl.workers.rollout.replica import RolloutReplica

from .hf_rollout import HFRolloutServer

logger = logging.getLogger(__name__)

PLATFORM = "cpu"
ROLLOUT = "hf"


# ---------------------------------------------------------------------------------------------
# The platform


class _CpuDeviceModule(ModuleType):
    """``torch.cpu`` plus the ``torch.cuda``-style calls verl makes on its device module.

    Memory calls report 0 and cache calls do nothing; RNG state is torch's CPU generator (saved
    and restored with verl's checkpoints).
    """

    def __init__(self):
        super().__init__("polarity_cpu_device")

    def __getattr__(self, name: str):
        if hasattr(torch.cpu, name):
            return getattr(torch.cpu, name)
        if name in ("get_rng_state", "set_rng_state", "manual_seed", "initial_seed", "seed"):
            return getattr(torch, name)
        if name == "manual_seed_all":
            return torch.manual_seed
        if name in ("memory_allocated", "memory_reserved", "max_memory_allocated",
                    "max_memory_reserved"):
            return lambda *a, **k: 0
        if name == "mem_get_info":
            return lambda *a, **k: (0, 0)
        if name in ("empty_cache", "reset_peak_memory_stats", "ipc_collect",
                    "set_per_process_memory_fraction"):
            return lambda *a, **k: None
        if name == "get_device_name":
            return lambda *a, **k: "CPU"  # verl's flops counter: unknown device, MFU 0
        raise AttributeError(f"the cpu device module has no {name!r}")

    @staticmethod
    def current_device() -> str:
        return "cpu"  # verl builds torch.device(f"{name}:{current_device()}") otherwise


class CpuPlatform(PlatformBase):
    """verl's platform interface on a CPU: gloo, no memory stats, logical Ray GPUs."""

    device_module_instance = _CpuDeviceModule()

    @property
    def device_name(self) -> str:
        return "cpu"

    @property
    def vendor_name(self) -> str:
        return "cpu"

    @property
    def device_module(self) -> ModuleType:
        return self.device_module_instance

    def is_available(self) -> bool:
        return True

    def is_platform_available(self, use_smi_check=False) -> bool:
        return os.environ.get("VERL_PLATFORM", "").strip().lower() == PLATFORM

    def current_device(self) -> str:
        return "cpu"

    def device_count(self) -> int:
        return 1

    def set_device(self, device_index) -> None:
        pass

    def synchronize(self, device_index=None) -> None:
        pass

    def manual_seed(self, seed: int) -> None:
        torch.manual_seed(seed)

    def manual_seed_all(self, seed: int) -> None:
        torch.manual_seed(seed)

    def set_allocator_settings(self, settings: str) -> None:
        pass

    def empty_cache(self) -> None:
        pass

    def get_device_capability(self, device_index: int = 0):
        return None, None

    def communication_backend_name(self) -> str:
        return "gloo"

    def visible_devices_envvar(self) -> str:
        return "CUDA_VISIBLE_DEVICES"  # Ray sets it for the logical GPUs; nothing reads it

    def ray_resource_name(self) -> str:
        return "GPU"  # logical: `ray_init.num_gpus` of them, one per worker

    def ray_noset_envvars(self) -> list[str]:
        return []

    def is_ipc_supported(self) -> bool:
        return False

    @contextmanager
    def nvtx_range(self, msg: str):
        yield

    def profiler_start(self) -> None:
        pass

    def profiler_stop(self) -> None:
        pass

    def cudart(self) -> Any:
        return None


# ---------------------------------------------------------------------------------------------
# The two workarounds: the process group and the critic's attention


def init_gloo_process_group() -> bool:
    """Create the gloo process group of a verl worker before verl does; True if created.

    verl 0.9.1 (``verl/utils/distributed.py:89``, ``initialize_global_process_group_ray``)
    builds the backend string ``f"cpu:gloo,{device}:{comm}"``, which on the cpu platform is
    ``"cpu:gloo,cpu:gloo"`` and torch rejects it; no setting changes it, and verl skips its own
    init when a group exists. So a worker (a process Ray started with ``RANK`` and
    ``MASTER_ADDR``) creates a plain gloo group at import, with the rank and address verl gave
    it. Only called in CPU mode; the clean fix is one line upstream.
    """
    import torch.distributed as dist

    needed = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
    if dist.is_initialized() or not all(os.environ.get(k) for k in needed):
        return False
    dist.init_process_group(backend="gloo", rank=int(os.environ["RANK"]),
                            world_size=int(os.environ["WORLD_SIZE"]))
    return True


class HFReplica(RolloutReplica):
    """One :class:`HFRolloutServer` per replica, on the node of the replica's first worker
    (hybrid mode: the trainer's own workers push weights to it)."""

    async def launch_servers(self):
        node_id = await self.workers[0].__ray_call__.remote(
            lambda self: ray.get_runtime_context().get_node_id())
        seed = int(self.config.get("seed", 0) if hasattr(self.config, "get") else 0)
        server = ray.remote(HFRolloutServer).options(
            name=f"{ROLLOUT}_server_{self.replica_rank}_0{self.name_suffix}",
            num_cpus=0,
            max_concurrency=self.max_concurrency,
            scheduling_strategy=ray.util.scheduling_strategies.NodeAffinitySchedulingStrategy(
                node_id=node_id, soft=False),
        ).remote(self.config, self.model_config, self.replica_rank, seed)
        self.servers = [server]
        self._server_handle = server
        self._server_address = f"{ROLLOUT}-replica-{self.replica_rank}"


class HFServerAdapter(BaseRollout):
    """The trainer workers' side of the ``hf`` rollout: sends the actor's weights."""

    def __init__(self, config, model_config, device_mesh, replica_rank: int = -1):
        super().__init__(config, model_config, device_mesh)
        rank = int(os.environ.get("RANK", 0))
        world = (self.config.tensor_model_parallel_size * self.config.data_parallel_size
                 * self.config.pipeline_model_parallel_size)
        self.replica_rank = rank // world if replica_rank == -1 else replica_rank
        self.is_sender = rank % world == 0
        self.server = None

    async def update_weights(self, weights, global_steps: int | None = None,
                             wire_format: str = "named_tensors", **kwargs):
        if wire_format != "named_tensors":
            raise ValueError(f"the hf rollout takes full tensors, not {wire_format!r}")
        # every rank walks the generator: gathering FSDP shards is a collective
        state = {name: tensor.detach().to("cpu", copy=True) for name, tensor in weights}
        if not self.is_sender:
            return
        if self.server is None:
            self.server = ray.get_actor(f"{ROLLOUT}_server_{self.replica_rank}_0")
        await self.server.update_weights.remote(state)
        if global_steps is not None:
            await self.server.set_global_steps.remote(global_steps)

    async def resume(self, tags):
        pass

    async def release(self):
        pass


def load_value_model_sdpa(local_path, torch_dtype, model_config, trust_remote_code):
    """verl's value-model load with SDPA attention (PPO's critic on a CPU).

    verl 0.9.1 (``verl/utils/model.py:650``, ``load_valuehead_model``) always asks transformers
    for ``flash_attention_2``, which needs CUDA and the flash-attn package; the critic config's
    ``attn_implementation`` is not passed on. Same load, same class, SDPA attention; only
    installed in CPU mode.
    """
    from transformers import AutoModelForTokenClassification

    return AutoModelForTokenClassification.from_pretrained(
        local_path, torch_dtype=torch_dtype, config=model_config, attn_implementation="sdpa",
        trust_remote_code=trust_remote_code)


_INSTALLED: dict[str, Any] = {}


def install() -> None:
    """Register the cpu platform, engines and ``hf`` rollout with verl (idempotent); in a verl
    worker process also create the gloo group. Only called when ``VERL_PLATFORM=cpu``."""
    if _INSTALLED:
        return
    from verl.plugin.platform.platform_manager import PlatformRegistry

    PlatformRegistry.register(platform=PLATFORM)(CpuPlatform)  # before verl asks for the device
    from verl.workers.engine.base import EngineRegistry
    from verl.workers.engine.fsdp.transformer_impl import (
        FSDPEngineWithLMHead,
        FSDPEngineWithValueHead,
    )
    from verl.workers.rollout import base as rollout_base
    from verl.workers.rollout.replica import RolloutReplicaRegistry

    EngineRegistry.register(model_type="language_model", backend=["fsdp", "fsdp2"], device="cpu")(
        FSDPEngineWithLMHead)
    EngineRegistry.register(model_type="value_model", backend=["fsdp", "fsdp2"], device="cpu")(
        FSDPEngineWithValueHead)
    RolloutReplicaRegistry.register(ROLLOUT, lambda: HFReplica)
    rollout_base._ROLLOUT_REGISTRY[(ROLLOUT, "async")] = f"{__name__}.HFServerAdapter"
    import verl.utils.model

    verl.utils.model.load_valuehead_model = load_value_model_sdpa  # read at call time
    _INSTALLED["gloo"] = init_gloo_process_group()
