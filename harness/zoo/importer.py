"""``import-weights``: a public network's checkpoint file -> a harness source checkpoint.

The checkpoint is written as ``harness.runs.save_checkpoint`` writes a base net's (``state/`` by
orbax, ``meta.json``), so ``--config.source_checkpoint=DIR`` reads it like any other. Its
metadata adds ``preprocessing`` (the source network's input transform, which the model applies:
``harness.zoo.nets.source_transform``) and ``imported`` (the file, its SHA-256, the arch and the
measured logit difference). Nothing is written unless the file converts and checks.
"""

from __future__ import annotations

import dataclasses
import hashlib
import pathlib
import shutil
import tempfile
from typing import Callable

import numpy as np

from harness import runs, tasks
from harness.errors import UserError
from harness.zoo import convert


@dataclasses.dataclass(frozen=True)
class ImportReport:
  """What an import did: the arch, where it wrote, and the check's result (None: not checked)."""
  arch: str
  model: str
  out: pathlib.Path
  num_classes: int
  max_logit_difference: float | None


def _sha256(path: pathlib.Path) -> str:
  digest = hashlib.sha256()
  with open(path, 'rb') as f:
    for chunk in iter(lambda: f.read(1 << 20), b''):
      digest.update(chunk)
  return digest.hexdigest()


def preprocessing(arch: convert.ZooArch) -> dict:
  """The source network's input transform, as recorded in the checkpoint's metadata."""
  return {'image_size': arch.image_size, 'resize': 'bilinear', 'mean': list(arch.mean),
          'std': list(arch.std), 'grayscale': 'repeated to 3 channels', 'input_range': [0.0, 1.0]}


def checkpoint_meta(arch_name: str, file: pathlib.Path | None, num_classes: int,
                    difference: float | None) -> dict:
  """``meta.json`` of an imported network (the keys ``harness.runs`` reads, and provenance;
  ``file`` None: weights not read from a file, e.g. random ones in tests)."""
  arch = convert.get_arch(arch_name)
  task = tasks.TaskSpec(arch.source, arch.source, tuple(range(num_classes)))
  return {'model': arch.model, 'model_kwargs': {}, 'num_classes': num_classes,
          'input_shape': [arch.image_size, arch.image_size, 3], 'task': task.to_dict(),
          'run_id': None, 'preprocessing': preprocessing(arch),
          'imported': {'file': file and str(file.absolute()), 'sha256': file and _sha256(file),
                       'arch': arch_name,
                       'library': arch.library, 'constructor': arch.constructor,
                       'max_abs_logit_difference': difference}}


def _check_out(out: pathlib.Path) -> None:
  if out.exists() and (not out.is_dir() or any(out.iterdir())):
    raise UserError(f'{out} already exists and is not empty: choose another --out or delete it')


def write_checkpoint(out: pathlib.Path, variables: dict, meta: dict) -> None:
  """Saves as ``harness.runs.save_checkpoint`` does, into a staging directory renamed to ``out``
  at the end, so that a failure leaves nothing at ``out``.

  Raises:
    UserError: ``out`` exists and is not an empty directory.
  """
  out = pathlib.Path(out)
  _check_out(out)
  out.parent.mkdir(parents=True, exist_ok=True)
  staging = pathlib.Path(tempfile.mkdtemp(dir=out.parent, prefix=f'.{out.name}.'))
  try:
    runs.save_checkpoint(staging, variables, meta)
    if out.exists():
      out.rmdir()  # empty (checked above)
    staging.rename(out)
  except BaseException:
    shutil.rmtree(staging, ignore_errors=True)
    raise


def import_weights(file: str | pathlib.Path, arch_name: str, out: str | pathlib.Path,
                   check: bool = True, echo: Callable[[str], None] = print) -> ImportReport:
  """Converts, checks and saves one checkpoint file.

  Args:
    file: a ``.pth``/``.pt``/``.safetensors`` state_dict.
    arch_name: a key of ``harness.zoo.convert.ZOO``.
    out: the checkpoint directory to create (absent or empty).
    check: run the PyTorch original next to the conversion (needs the ``zoo`` extra); the
      import is refused above ``harness.zoo.verify.TOLERANCE``.
    echo: where progress lines go.

  Returns:
    The :class:`ImportReport`.

  Raises:
    UserError: unknown arch, unreadable or mismatching file, a non-empty ``out``, a failed check.
  """
  from harness.zoo import verify  # pylint: disable=import-outside-toplevel
  file, out = pathlib.Path(file), pathlib.Path(out)
  convert.get_arch(arch_name)
  _check_out(out)
  state = convert.read_state_dict(file)
  variables = convert.convert(arch_name, state)
  num_classes = int(np.shape(variables['params']['head']['bias'])[0])
  difference = None
  if check:
    difference = verify.max_logit_difference(arch_name, state, variables)
    echo(f'max |logit difference| PyTorch vs Flax on 2 seeded random images: {difference:.3g}')
    if not difference <= verify.TOLERANCE:  # NaN refused too
      raise UserError(f'the conversion differs from the original by {difference:.3g} > '
                      f'{verify.TOLERANCE} in the logits: nothing written; report it with the file')
  write_checkpoint(out, variables, checkpoint_meta(arch_name, file, num_classes, difference))
  return ImportReport(arch_name, convert.get_arch(arch_name).model, out, num_classes, difference)
