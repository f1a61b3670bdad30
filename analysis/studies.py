"""The table of published studies that ``transferbench reproduce STUDY`` runs and checks.

A study is a row: the sweep that measures it (a module of ``sweeps/``), the claims of the paper
(each a function from a table of measurements to the parts of :mod:`analysis.reproduce`), the
published numbers it is compared with (``results/reference/``, provenance in its PROVENANCE.md)
and the paper. Adding a study is adding a row and its claims; the command reads only this table.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping

import pandas as pd

from analysis import basins, criticality, lp_ft, reproduce, surgical, what_transfers
from harness.errors import UserError


@dataclasses.dataclass(frozen=True)
class Study:
  """A reproducible study.

  Attributes:
    sweep: the sweep module of ``sweeps/`` (``get_config(arg)``) that measures it.
    claims: claim name -> :class:`analysis.reproduce.Claim`.
    reference: the key of its published numbers under ``results/reference/`` (None: none).
    title: one line for ``--help`` and tables.
    citation: the paper.
    pipeline: how the app layer measures it: ``curves`` (claims on the training curves) or
      ``resets`` (evaluation-only: per-layer resets of the trained base nets) or ``basins``
      (fine-tuned and scratch pairs: barriers, parameter distances, CKA) or ``lp_ft`` (linear
      probe, fine-tune and LP-FT networks: ID and OOD accuracy, feature distortion).
    figure: for ``curves`` studies other than Yosinski's, relative scores -> its figure.
    also: other sweeps whose results the study checks too (``--analyze-only --results DIR``).
  """
  sweep: str
  claims: Mapping[str, reproduce.Claim]
  reference: str | None
  title: str
  citation: str
  pipeline: str = 'curves'
  figure: Callable[[pd.DataFrame], Any] | None = None
  also: tuple[str, ...] = ()


STUDIES: dict[str, Study] = {
    'yosinski2014': Study(
        'yosinski2014_converged', reproduce.YOSINSKI2014_CLAIMS, 'yosinski2014',
        'how transferable are features: AnB, BnB, AnB+, random features vs n',
        'Yosinski, Clune, Bengio & Lipson, NeurIPS 2014', also=('yosinski2014_small',)),
    'criticality': Study(
        'criticality_small', criticality.CLAIMS, 'criticality',
        'are all layers created equal: accuracy after resetting one trained layer',
        'Zhang, Bengio & Singer, JMLR 2022', pipeline='resets'),
    'what_transfers': Study(
        'what_transfers_small', what_transfers.CLAIMS, 'what_transfers',
        'what is being transferred: pre-training benefit on block-shuffled targets',
        'Neyshabur, Sedghi & Zhang, NeurIPS 2020', figure=what_transfers.figure),
    'what_transfers_basins': Study(
        'what_transfers_basins', basins.CLAIMS, 'what_transfers',
        'what is being transferred: one basin, close to the source (barriers, distance, CKA)',
        'Neyshabur, Sedghi & Zhang, NeurIPS 2020', pipeline='basins'),
    'lp_ft': Study(
        'lp_ft_small', lp_ft.CLAIMS, 'lp_ft',
        'fine-tuning distorts pretrained features: LP vs FT vs LP-FT, in and out of distribution',
        'Kumar, Raghunathan, Jones, Ma & Liang, ICLR 2022', pipeline='lp_ft'),
    'surgical_finetuning': Study(
        'surgical_finetuning_small', surgical.CLAIMS, 'surgical_finetuning',
        'surgical fine-tuning: tune one layer vs all under input-, feature- and output-level shift',
        'Lee, Chen, Tajwar, Kumar, Yao, Liang & Finn, ICLR 2023', figure=surgical.figure),
}


def get(name: str) -> Study:
  """The study of a name.

  Raises:
    UserError: an unknown name (the message lists the known ones).
  """
  if name not in STUDIES:
    raise UserError(f"unknown study '{name}': choose one of {', '.join(sorted(STUDIES))} "
                    '(`transferbench reproduce --help` describes them)')
  return STUDIES[name]


def listing() -> str:
  """One line per study, ``name: title (citation)``, for ``--help``."""
  return '\n'.join(f'  {name}: {s.title} ({s.citation})' for name, s in sorted(STUDIES.items()))


def study_of_sweep(sweep_name: str, names: Mapping[str, str]) -> str | None:
  """The study whose sweep recorded ``sweep_name`` (its config ``name``), or None.

  Args:
    sweep_name: the ``name`` in a results directory's ``sweep.json``.
    names: study -> the sweep config names it writes (its ``get_config`` with and without args).
  """
  return next((study for study, sweeps in names.items() if sweep_name in sweeps), None)


def check_results_belong(results_dir: str, recorded: str | None, expected: str,
                         study: str, owner: str | None) -> None:
  """Refuses a results directory written by another sweep than the study's.

  Args:
    results_dir: the directory (for the message).
    recorded: the sweep name in its ``sweep.json`` (None: no sweep.json yet, accepted).
    expected: the sweep name this command runs.
    study: the study asked for.
    owner: the study that wrote the directory (:func:`study_of_sweep`), if any.

  Raises:
    UserError: ``recorded`` is another sweep than ``expected``.
  """
  if recorded is None or recorded == expected:
    return
  whose = f" (study '{owner}')" if owner else ''
  fix = (f'run `transferbench reproduce {owner} --results {results_dir}`' if owner and owner != study
         else 'pass the same --arg as when it was written')
  raise UserError(f"{results_dir} holds the sweep '{recorded}'{whose}, not '{expected}' of study "
                  f"'{study}': {fix}, or pass another --results directory")
