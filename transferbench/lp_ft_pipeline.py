"""Pipeline of ``transferbench reproduce lp_ft`` (Kumar et al. 2022, LP-FT).

The sweep trains scratch on the target; then the source networks, pre-trained with the sweep's
``source_train`` budget (to convergence), are trained by the engine; then, per seed, the three
transfers of the study are trained through the per-run path with their weights kept (once;
``--analyze-only`` reuses them): LP (``transfer`` at n = L-1), FT (the same, fine-tuned) and LP-FT
(``lp_then_ft``). They are the runs the sweep would make with those conditions
(:func:`harness.sweeps.expand`), so their records are ordinary records.

Every network is then evaluated on its final parameters: accuracy on the target's test set (ID)
and on the shifted test set the pair names as ``ood`` (OOD, e.g. ``mnist@noise0.5``, built through
the same TFDS path), and the distortion of its penultimate features from the pretrained network's
(:func:`analysis.lp_ft.feature_distortion`) on both. Evaluating saved networks needs no change to
the engine or to the curves (docs/reproductions/lp_ft.md); :mod:`analysis.lp_ft` checks the claims,
which are inconclusive if a source network did not converge (:mod:`analysis.convergence`).
"""

from __future__ import annotations

import dataclasses
import pathlib

import numpy as np
import pandas as pd

from analysis import lp_ft, reproduce
from harness import conditions
from harness.errors import UserError

FEATURE_EXAMPLES = 1000
# (condition, fine_tuned) -> method of analysis.lp_ft.
METHOD = {(conditions.TRANSFER, False): lp_ft.LP, (conditions.TRANSFER, True): lp_ft.FT,
          (conditions.LP_FT, False): lp_ft.LP_FT, (conditions.BASE, False): lp_ft.SCRATCH}


def ood_name(config) -> str:
  """The shifted data set of the sweep's one pair (its ``ood`` field).

  Raises:
    UserError: not one pair, or no ``ood`` field.
  """
  pairs = list(config.pairs)
  if len(pairs) != 1 or not dict(pairs[0]).get('ood'):
    raise UserError("the lp_ft study needs one task pair with an 'ood' field naming the shifted "
                    "test set, e.g. ood='mnist@noise0.5' (sweeps/lp_ft_small.py)")
  return dict(pairs[0])['ood']


def study_specs(config) -> list:
  """The runs of the study: base nets of both tasks, then LP, FT and LP-FT per seed."""
  from harness import sweeps
  derived = config.copy_and_resolve_references()
  derived.directions = ('AB',)
  derived.conditions = (conditions.TRANSFER, conditions.LP_FT)
  derived.n_layers = ()
  derived.fine_tune = (False, True)
  specs = sweeps.expand(derived)
  whole_body = {s.n_layers for s in specs if s.condition == conditions.LP_FT}
  return [s for s in specs if s.condition != conditions.TRANSFER or s.n_layers in whole_body]


def ood_task(target, ood: str, data_dir: str | None):
  """The target task's classes in the shifted data set ``ood`` (its test split is the OOD set).

  Raises:
    UserError: ``ood`` has another input shape than the target, or lacks one of its classes.
  """
  from harness import data
  info, mine = data.dataset_info(ood, data_dir), data.dataset_info(target.dataset, data_dir)
  if info.input_shape != mine.input_shape or max(target.classes) >= info.num_classes:
    raise UserError(f"ood='{ood}' does not match the target {target.dataset} (input shape "
                    f'{info.input_shape} vs {mine.input_shape}, {info.num_classes} classes): name '
                    f'a shift of the target, e.g. ood=\'{target.dataset}@noise0.5\'')
  return dataclasses.replace(target, name=f'{target.name}@ood', dataset=ood)


def _penultimate(run, variables: dict) -> np.ndarray:
  from harness import probe
  features = probe.layer_features(run, variables, FEATURE_EXAMPLES)
  last = features[run.names[-2]]
  return last.reshape(len(last), -1)


def _network(run, ood_test, pretrained: bool) -> dict:
  """ID and OOD accuracy of a run's final parameters, and its feature distortion."""
  from harness import probe
  shifted = dataclasses.replace(run, test=ood_test)
  row = {'id_accuracy': probe.evaluator(run)(run.trained)[0],
         'ood_accuracy': probe.evaluator(shifted)(run.trained)[0],
         'distortion_id': np.nan, 'distortion_ood': np.nan}
  if pretrained:
    start = run.initial()
    for split, r in (('id', run), ('ood', shifted)):
      row[f'distortion_{split}'] = lp_ft.feature_distortion(_penultimate(r, r.trained),
                                                            _penultimate(r, start))
  return row


def measure(results: pathlib.Path, config, data_dir: str | None,
            train: bool = True) -> pd.DataFrame:
  """Trains what is missing (``train``) and measures every network of the study."""
  from harness import probe, runs
  from harness.engine.data import device_task
  from harness.results import ResultsStore
  store = ResultsStore(results)
  ood = ood_name(config)
  specs = study_specs(config)
  target = next(s.target for s in specs if s.condition == conditions.LP_FT)
  ood_test = device_task(ood_task(target, ood, data_dir), data_dir)[2]
  if train:  # the base nets in packs (the engine); the transfers below one by one, with weights
    from harness import runner
    runner.execute([s for s in specs if s.condition == conditions.BASE], store, data_dir,
                   progress=False, desc='lp_ft base nets')
  rows = []
  for spec in specs:
    method = METHOD.get((spec.condition, spec.fine_tuned))
    run_dir = runs.network_with_weights(spec, store, data_dir, train)
    if spec.target != target or method is None:
      continue  # the source networks: trained, not measured
    run = probe.open_run(run_dir, data_dir)
    rows.append({'seed': spec.seed, 'method': method,
                 **_network(run, ood_test, method != lp_ft.SCRATCH)})
  if not rows:
    raise UserError(f'no networks of the lp_ft study in {results}: run `transferbench reproduce '
                    'lp_ft` without --analyze-only')
  return pd.DataFrame(rows, columns=list(lp_ft.COLUMNS))


def source_convergence(results: pathlib.Path, settings: reproduce.Settings) -> pd.DataFrame:
  """The base nets' convergence (:func:`analysis.convergence.base_convergence`; role 'source':
  the pretrained networks the transfers start from) from the curves of a results directory."""
  from analysis import convergence
  from harness.results import load_curves
  return convergence.base_convergence(load_curves(results), settings.convergence_rule())


def check(table: pd.DataFrame, study, settings: reproduce.Settings, out: pathlib.Path,
          ood: str, draw: bool = True, converged: pd.DataFrame | None = None):
  """Claims on the network table; writes networks.csv, summary.csv, claims.json/md, the figure.

  Args:
    converged: :func:`source_convergence` (None: not checked); an unconverged source network
      makes every claim inconclusive.
  """
  results = reproduce.check_claims(table, study.claims, settings, converged)
  out.mkdir(parents=True, exist_ok=True)
  written = [out / 'networks.csv', out / 'summary.csv']
  table.to_csv(written[0], index=False)
  lp_ft.summary(table).to_csv(written[1], index=False)
  method = (f'OOD = {ood}; unit: the seed, methods paired within a seed; one-sided t-tests at '
            f'alpha={settings.alpha}, Holm over each claim\'s parts; 90% t CIs; non-inferiority '
            f'margin {settings.margin:g} (accuracy)')
  written += reproduce.write_claims(results, out, settings, method,
                                    pd.DataFrame() if converged is None else converged)
  if draw:
    from analysis.plotting import save
    written += save(lp_ft.figure(table, ood), out, 'id_vs_ood_accuracy')
  return results, written
