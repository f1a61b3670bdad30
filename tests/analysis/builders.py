"""Small curve tables for the analysis tests."""

import pathlib

import numpy as np
import pandas as pd

FIXTURES = pathlib.Path(__file__).parent / 'fixtures'
HAND = FIXTURES / 'hand_curves.csv'


def run_rows(run_id, condition, n_layers, fine_tuned, source, target, seed, steps, accuracy,
             **extra):
  """Long-format rows of one run."""
  return [dict(run_id=run_id, condition=condition, n_layers=n_layers, fine_tuned=fine_tuned,
               source=source, target=target, seed=seed, step=s, accuracy=a, loss=np.nan, **extra)
          for s, a in zip(steps, accuracy)]


def final_values_study(scratch: list[float], transfer: list[float], transfer_seeds=None,
                       condition: str = 'transfer', n_evals: int = 12) -> pd.DataFrame:
  """Scratch and transfer runs on target B whose every evaluation after step 0 is one value.

  With flat curves, every asymptote rule (k <= n_evals - 1) gives exactly the listed value.
  """
  steps = np.arange(n_evals) * 10
  rows = []
  for seed, value in enumerate(scratch):
    rows += run_rows(f'scratch_{seed}', 'scratch', 0, False, 'none', 'B', seed, steps,
                     [0.1] + [value] * (n_evals - 1))
  seeds = range(len(transfer)) if transfer_seeds is None else transfer_seeds
  source = 'B' if condition == 'selffer' else 'A'
  for seed, value in zip(seeds, transfer):
    rows += run_rows(f'{condition}_{seed}', condition, 2, False, source, 'B', seed, steps,
                     [0.1] + [value] * (n_evals - 1))
  return pd.DataFrame(rows)


def yosinski_like(seeds=(0, 1, 2), ns=(1, 2), pairs=(('A', 'B'),), steps=tuple(range(0, 121, 10)),
                  noise=0.004, rng=0) -> pd.DataFrame:
  """A synthetic study with every condition: saturating curves whose asymptote falls with n."""
  rng = np.random.default_rng(rng)
  steps = np.asarray(steps, float)
  rows = []

  def add(run_id, condition, n, fine_tuned, source, target, seed, asymptote, start):
    acc = asymptote - (asymptote - start) * np.exp(-steps / 25) + rng.normal(0, noise, len(steps))
    rows.extend(run_rows(run_id, condition, n, fine_tuned, source, target, seed, steps,
                         np.clip(acc, 0, 1)))

  targets = sorted({t for pair in pairs for t in pair})
  for target in targets:
    for seed in seeds:
      add(f'base{target}_{seed}', 'scratch', 0, False, 'none', target, seed, 0.9, 0.1)
  for source, target in pairs:
    for n in ns:
      for seed in seeds:
        add(f'{target}{n}{target}_{seed}', 'selffer', n, False, target, target, seed,
            0.9 - 0.01 * n, 0.1 + 0.1 * n)
        add(f'{target}{n}{target}+_{seed}', 'selffer', n, True, target, target, seed, 0.905, 0.2)
        add(f'{source}{n}{target}_{seed}', 'transfer', n, False, source, target, seed,
            0.9 - 0.04 * n, 0.1 + 0.05 * n)
        add(f'{source}{n}{target}+_{seed}', 'transfer', n, True, source, target, seed, 0.91, 0.2)
        add(f'random{n}{target}_{seed}', 'random_frozen', n, False, 'random', target, seed,
            0.9 - 0.2 * n, 0.1)
  return pd.DataFrame(rows)


# Relative scores (score / base) of a Yosinski-2014-like study, per label, as functions of n.
PAPER_LIKE = {
    'BnB': lambda n, group: 1.0 - 0.03 * (n in (3, 4, 5, 6)),   # dip in the middle, recovery at 7
    'BnB+': lambda n, group: 1.0,
    'AnB': lambda n, group: 1.0 - (0.01 if group == 'random halves' else 0.04) * n,
    'AnB+': lambda n, group: 1.02,
    'random': lambda n, group: 1.0 - 0.1 * n,
}


def claim_runs(levels=None, seeds=5, splits=2, ns=range(1, 8), noise=0.002, dissimilar=True,
               rng=0) -> tuple[pd.DataFrame, dict]:
  """A runs table (one row per run: ``score``, ``pair``, ``pair_kind``) and its pair -> kind map.

  Every run's score is its (target, seed) base score x ``levels[label](n, group)`` + N(0, noise),
  group 'random halves' or 'dissimilar'; base scores are 0.9 + N(0, 0.005). Labels missing from
  ``levels`` have no runs.
  """
  levels = dict(PAPER_LIKE if levels is None else levels)
  rng = np.random.default_rng(rng)
  conditions = {'BnB': ('selffer', False), 'BnB+': ('selffer', True), 'AnB': ('transfer', False),
                'AnB+': ('transfer', True), 'random': ('random_frozen', False)}
  pairs = {f'A{s}|B{s}': 'random_halves' for s in range(splits)}
  if dissimilar:
    pairs['M|N'] = 'dissimilar'
  groups = {'random_halves': 'random halves', 'dissimilar': 'dissimilar'}
  rows = []
  for pair, kind in pairs.items():
    source, target, group = *pair.split('|'), groups[kind]
    for seed in range(seeds):
      base = 0.9 + rng.normal(0, 0.005)
      rows.append(dict(run_id=f'base{target}_{seed}', condition='scratch', fine_tuned=False,
                       n_layers=0, source='none', target=target, seed=seed, pair=pair,
                       pair_kind=kind, score=base))
      for name, level in levels.items():
        condition, fine_tuned = conditions[name]
        src = {'selffer': target, 'transfer': source, 'random_frozen': 'random'}[condition]
        for n in ns:
          rows.append(dict(run_id=f'{name}{n}{target}_{seed}', condition=condition,
                           fine_tuned=fine_tuned, n_layers=n, source=src, target=target,
                           seed=seed, pair=pair, pair_kind=kind,
                           score=base * level(n, group) + rng.normal(0, noise)))
  runs = pd.DataFrame(rows)
  return runs.assign(final_best_k=runs['score']), pairs
