"""Multi-host JAX under SLURM: one ``jax.distributed.initialize()`` per process of an ``srun`` step.

For a single run too large for one host. ``srun`` starts one Python process per task (one per
host, or one per GPU); each calls :func:`initialize`, after which ``jax.devices()`` lists the
devices of every process and a ``jax.jit`` over a mesh of them runs as one program. JAX reads the
coordinator address, process count and process id from SLURM's variables
(``SLURM_STEP_NODELIST``, ``SLURM_NTASKS``, ``SLURM_PROCID``); nothing is configured by hand.
See docs/slurm.md, "Multi-host JAX for one large run", for the sbatch script.

Outside an ``srun`` step with several tasks (a laptop, a job array task, a one-task job)
:func:`initialize` does nothing, so code that calls it runs unchanged everywhere.
"""

from __future__ import annotations

import os

import jax


def step_tasks() -> int:
  """How many processes the current ``srun`` step has (1 outside a step)."""
  return int(os.environ.get('SLURM_STEP_NUM_TASKS', '1'))


def initialize(**kwargs) -> bool:
  """Joins this process to the step's other processes, if there are any.

  Args:
    **kwargs: passed to ``jax.distributed.initialize`` (e.g. ``local_device_ids``);
      by default everything comes from SLURM's environment.

  Returns:
    True if ``jax.distributed`` was initialised (now or before), False on a single process.
  """
  if step_tasks() <= 1:
    return False
  if jax.distributed.is_initialized():
    return True
  if os.environ.get('JAX_PLATFORMS', '').startswith('cpu') or not _has_accelerator_plugin():
    # CPU processes exchange data through gloo (accelerators use their own collectives).
    jax.config.update('jax_cpu_collectives_implementation', 'gloo')
  jax.distributed.initialize(**kwargs)
  return True


def _has_accelerator_plugin() -> bool:
  """True if a GPU/TPU JAX plugin is installed (checked without initialising a backend)."""
  import importlib.util
  return any(importlib.util.find_spec(name) is not None
             for name in ('jax_cuda12_plugin', 'jax_cuda13_plugin', 'libtpu'))


def describe() -> str:
  """One line: this process' index, the process count, and local / global device counts."""
  return (f'process {jax.process_index()} of {jax.process_count()}: {jax.local_device_count()} '
          f'local device(s), {jax.device_count()} in all')


def check() -> float:
  """A global sum over every process' devices: each device contributes its process index + 1.

  Returns:
    The sum, which is ``sum(local_device_count * (p + 1) for p in processes)`` when every
    process takes part (on CPU: ``n (n + 1) / 2`` for n processes of one device each).
  """
  import jax.numpy as jnp
  import numpy as np
  from jax.sharding import Mesh, NamedSharding, PartitionSpec
  mesh = Mesh(np.array(jax.devices()), ('d',))
  local = np.full((jax.local_device_count(),), jax.process_index() + 1, np.float32)
  global_array = jax.make_array_from_process_local_data(NamedSharding(mesh, PartitionSpec('d')), local)
  return float(jax.jit(jnp.sum, out_shardings=NamedSharding(mesh, PartitionSpec()))(global_array))


if __name__ == '__main__':  # srun -n N python -m harness.distributed: a smoke test of the setup
  initialize()
  print(f'{describe()}; global sum {check():g}', flush=True)
